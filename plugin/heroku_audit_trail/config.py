"""Settings from flags and environment (flag wins), and the token from its sources (DESIGN §3)."""

from __future__ import annotations

import ipaddress
import netrc
import os
import re
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs

from heroku_audit_trail.errors import ConfigError

DEFAULT_API_URL = "https://api.heroku.com"
NETRC_MACHINE = "api.heroku.com"
_TOKEN_RE = re.compile(r"[\x21-\x7e]+")
_ENTERPRISE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class Secret:
    """A token that never shows itself in a repr, a traceback's locals or an f-string."""

    __slots__ = ("_value", "source", "warning")

    def __init__(self, value: str, source: str, warning: str | None = None) -> None:
        self._value = value
        self.source = source
        self.warning = warning  # about where it was kept, e.g. a netrc others can read

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(<hidden>, source={self.source!r})"

    __str__ = __repr__


# After SIGTERM, SIGINT or the deadline, a write to a reader that stopped reading (or a save
# to a disk that stopped) is given this long, then abandoned (--stop-grace). The cap keeps
# DESIGN's "exits within a few seconds" a matter of seconds.
STOP_GRACE_SECONDS = 3.0
MAX_STOP_GRACE = 60.0
RETRY_BUDGET = 15.0  # seconds of waiting between retries, in all, per run (--retry-budget)
CONCURRENCY = 8  # requests in flight at once: days and partitions read side by side


@dataclass(frozen=True)
class Settings:
    enterprises: tuple[str, ...]
    api_url: str
    state_dir: Path
    lookback_days: int
    min_interval: float
    filters: tuple[tuple[str, str], ...]
    output_format: str
    include_original: bool
    rate_limit_floor: int
    max_runtime: float | None
    token_file: str | None
    metrics_file: Path | None = None
    retry_budget: float = RETRY_BUDGET
    concurrency: int = CONCURRENCY
    stop_grace: float = STOP_GRACE_SECONDS  # a stalled write's time after a stop


def default_state_dir() -> Path:
    return Path(platformdirs.user_state_dir("heroku-audit-trail"))


def parse_enterprises(values: list[str] | None, env: Mapping[str, str]) -> tuple[str, ...]:
    raw = values if values else (env.get("HEROKU_ENTERPRISE") or "").split(",")
    names = tuple(dict.fromkeys(name.strip() for name in raw if name.strip()))
    if not names:
        raise ConfigError(
            "no enterprise account: pass --enterprise NAME_OR_ID or set HEROKU_ENTERPRISE"
        )
    for name in names:
        validate_enterprise(name)
    return names


def validate_enterprise(name: str) -> None:
    if not _ENTERPRISE_RE.fullmatch(name):
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise ConfigError(
            f"Invalid Enterprise Account Name {shown!r}: use the account's name "
            "(lowercase, hyphenated, as in the Dashboard) or its id"
        )


def is_loopback(host: str) -> bool:
    """An address in 127.0.0.0/8 or ::1, or a name that resolves only to such addresses (a
    `*.localhost` name is checked too: /etc/hosts can point one anywhere)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if host != "localhost" and not host.endswith(".localhost"):
        return False  # any other name: plain http would cross a network
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except (OSError, UnicodeError):
        return False
    return bool(addresses) and all(
        ipaddress.ip_address(address.split("%")[0]).is_loopback for address in addresses
    )


def validate_api_url(url: str) -> str:
    """https anywhere; plain http only to a loopback host (a simulator, a local proxy)."""
    if "://" not in url:
        raise ConfigError(
            f"API URL {url!r} has no scheme: write https://{url.strip()} "
            "(or http:// for a simulator on this host)"
        )
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        _ = parts.port
    except ValueError:
        raise ConfigError(f"API URL {url!r} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError(f"API URL {url!r} must start with https:// and name a host")
    if parts.username or parts.password:
        raise ConfigError("API URL must not contain credentials: use HEROKU_API_KEY instead")
    if parts.scheme == "http" and not is_loopback(host):
        raise ConfigError(
            f"API URL {url!r} uses plain http:// to a non-loopback host: "
            "the token would travel in clear text; use https://"
        )
    return url.strip().rstrip("/")


def _checked(value: str, source: str) -> Secret:
    token = value.strip()
    if not token:
        raise ConfigError(f"the token from {source} is empty")
    if not _TOKEN_RE.fullmatch(token):
        raise ConfigError(
            f"the token from {source} contains spaces or control characters; "
            "paste only the token (heroku auth:token prints it)"
        )
    return Secret(token, source)


def _read_token_file(path: str, source: str) -> Secret:
    try:
        return _checked(Path(path).read_text(encoding="utf-8"), source)
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or "not UTF-8 text"
        raise ConfigError(f"cannot read token file {path} ({source}): {reason}") from None


def _netrc_token(env: Mapping[str, str], api_host: str) -> Secret | None:
    path = env.get("NETRC") or str(Path.home() / ".netrc")
    if not os.path.isfile(path):
        return None
    try:
        entries = netrc.netrc(path)
    except (netrc.NetrcParseError, OSError, UnicodeDecodeError):
        # The parser's message can quote the file's lines, password included: say only where.
        raise ConfigError(f"cannot parse netrc file {path}") from None
    for machine in dict.fromkeys((api_host, NETRC_MACHINE)):
        entry = entries.authenticators(machine)
        if entry and entry[2]:
            token = _checked(entry[2], f"netrc file {path} (machine {machine})")
            if os.stat(path).st_mode & 0o077:
                token.warning = (
                    f"netrc file {path} holding the Heroku token can be read by other users; "
                    f"run 'chmod 600 {path}'"
                )
            return token
    return None


def load_token(token_file: str | None, env: Mapping[str, str], api_url: str) -> Secret:
    """First found wins: file flag/env, HEROKU_API_KEY, HEROKU_API_TOKEN, systemd, netrc."""
    if token_file:
        return _read_token_file(token_file, "--token-file")
    if env.get("HEROKU_API_KEY_FILE"):
        return _read_token_file(env["HEROKU_API_KEY_FILE"], "HEROKU_API_KEY_FILE")
    for name in ("HEROKU_API_KEY", "HEROKU_API_TOKEN"):
        if env.get(name, "").strip():
            return _checked(env[name], name)
    credentials_dir = env.get("CREDENTIALS_DIRECTORY")
    if credentials_dir:
        path = Path(credentials_dir) / "heroku-api-key"
        if path.is_file():
            return _read_token_file(str(path), "$CREDENTIALS_DIRECTORY/heroku-api-key")
    token = _netrc_token(env, urlsplit(api_url).hostname or NETRC_MACHINE)
    if token is None:
        raise ConfigError(
            "no Heroku API token: set HEROKU_API_KEY (heroku auth:token prints one) "
            "or HEROKU_API_KEY_FILE, or add 'machine api.heroku.com' to ~/.netrc"
        )
    return token


def default_log_format(env: Mapping[str, str]) -> str:
    chosen = env.get("HEROKU_AUDIT_LOG_FORMAT", "").strip().lower()
    if chosen in ("text", "json"):
        return chosen
    return "text" if sys.stderr is not None and sys.stderr.isatty() else "json"
