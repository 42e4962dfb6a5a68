"""Settings and the token: sources in order, URL rule, names, and the secret staying secret."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from heroku_audit_trail.config import (
    Secret,
    load_token,
    parse_enterprises,
    validate_api_url,
)
from heroku_audit_trail.errors import ConfigError

API = "https://api.heroku.com"


def test_token_sources_in_order(tmp_path: Path) -> None:
    token_file = tmp_path / "key"
    token_file.write_text("from-file\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "heroku-api-key").write_text("from-systemd")
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.heroku.com\n  login me@example.com\n  password from-netrc\n")
    netrc.chmod(0o600)
    env = {
        "HEROKU_API_KEY_FILE": str(token_file),
        "HEROKU_API_KEY": "from-key",
        "HEROKU_API_TOKEN": "from-token",
        "CREDENTIALS_DIRECTORY": str(creds),
        "NETRC": str(netrc),
        "HOME": str(tmp_path),
    }
    order = ["from-file", "from-key", "from-token", "from-systemd", "from-netrc"]
    drop = ["HEROKU_API_KEY_FILE", "HEROKU_API_KEY", "HEROKU_API_TOKEN", "CREDENTIALS_DIRECTORY"]
    for expected, dropped in zip(order, [*drop, None], strict=True):
        assert load_token(None, env, API).reveal() == expected
        if dropped:
            del env[dropped]
    assert load_token(str(token_file), {}, API).reveal() == "from-file"


def test_no_token_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="HEROKU_API_KEY"):
        load_token(None, {"HOME": str(tmp_path), "NETRC": str(tmp_path / "none")}, API)


def test_bad_tokens_never_echo_themselves(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_token(None, {"HEROKU_API_KEY": "secret part two"}, API)
    assert "secret" not in str(raised.value)
    with pytest.raises(ConfigError) as raised:
        load_token(str(tmp_path / "missing"), {}, API)
    assert "cannot read token file" in str(raised.value)


def test_unparsable_netrc_does_not_quote_its_lines(tmp_path: Path) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("unterminated-secret-value machine api.heroku.com password x\n")
    with pytest.raises(ConfigError) as raised:
        load_token(None, {"NETRC": str(netrc)}, API)
    assert "unterminated-secret-value" not in str(raised.value)


def test_secret_repr_hides_the_value() -> None:
    secret = Secret("HRKU-very-secret", "HEROKU_API_KEY")
    assert "very-secret" not in repr(secret) and "very-secret" not in f"{secret}"


@pytest.mark.parametrize(
    "url",
    ["https://api.heroku.com", "http://127.0.0.1:5000", "http://localhost:1", "http://[::1]:8"],
)
def test_allowed_urls(url: str) -> None:
    assert validate_api_url(url + "/") == url


@pytest.mark.parametrize(
    "url",
    ["http://api.heroku.com", "http://10.0.0.1", "ftp://x", "api.heroku.com", "https://u:p@h"],
)
def test_refused_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        validate_api_url(url)


def test_enterprises_from_flag_or_env() -> None:
    assert parse_enterprises(["acme"], {"HEROKU_ENTERPRISE": "other"}) == ("acme",)
    assert parse_enterprises(None, {"HEROKU_ENTERPRISE": "a, b,,a"}) == ("a", "b")
    with pytest.raises(ConfigError, match="no enterprise"):
        parse_enterprises(None, {})


@pytest.mark.parametrize("name", ["../x", "acme corp", "a" * 300, "", "acme/events", "-x"])
def test_malformed_names_are_refused_before_any_request(name: str) -> None:
    with pytest.raises(ConfigError):
        parse_enterprises([name], {})


def test_a_netrc_others_can_read_gives_a_warning(tmp_path: Path) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.heroku.com\n  login me@example.com\n  password from-netrc\n")
    netrc.chmod(0o644)
    token = load_token(None, {"NETRC": str(netrc)}, API)
    assert token.warning and "chmod 600" in token.warning
    netrc.chmod(0o600)
    assert load_token(None, {"NETRC": str(netrc)}, API).warning is None


def test_a_url_without_a_scheme_says_so() -> None:
    with pytest.raises(ConfigError, match=r"has no scheme: write https://127\.0\.0\.1:8080"):
        validate_api_url("127.0.0.1:8080")


@pytest.mark.parametrize(
    ("addresses", "allowed"),
    [(["127.0.0.2"], True), (["::1", "127.0.0.1"], True), (["10.0.0.5"], False), ([], False)],
)
def test_a_localhost_name_is_checked_against_what_it_resolves_to(
    monkeypatch: pytest.MonkeyPatch, addresses: list[str], allowed: bool
) -> None:
    def resolve(host: str, port: object) -> list[tuple[object, ...]]:
        if not addresses:
            raise OSError("no such name")
        return [(0, 0, 0, "", (address, 0)) for address in addresses]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    if allowed:
        assert validate_api_url("http://sim.localhost:8765") == "http://sim.localhost:8765"
    else:
        with pytest.raises(ConfigError, match="plain http"):
            validate_api_url("http://sim.localhost:8765")
