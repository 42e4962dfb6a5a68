"""The shipper examples parse, name only options their hosts know, run the installed
command, and never carry a token."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# Options checked against the sources named in the README (Fluent Bit 5.1 plugin config maps,
# Vector 0.58 config structs). Keys are compared case-insensitively, as Fluent Bit does.
FLUENT_BIT_OPTIONS = {
    "service": {"flush", "grace", "log_level", "parsers_file", "daemon", "http_server"},
    "parser": {"name", "format", "time_key", "time_format", "time_keep"},
    "exec": {
        *("name", "tag", "command", "parser", "interval_sec", "interval_nsec", "buf_size"),
        *("oneshot", "exit_after_oneshot", "propagate_exit_code", "threaded"),
    },
    "stdout": {"name", "match", "format", "json_date_key", "json_date_format"},
    "file": {"name", "match", "path", "file", "format", "mkdir"},
    "http": {
        *("name", "match", "host", "port", "uri", "format", "json_date_key", "header"),
        *("http_user", "http_passwd", "tls", "tls.verify"),
    },
}
VECTOR_OPTIONS = {
    "exec": {
        *("type", "mode", "command", "include_stderr", "decoding", "scheduled"),
        *("environment", "clear_environment", "working_directory", "framing"),
    },
    "route": {"type", "inputs", "route"},
    "remap": {"type", "inputs", "source"},
    "console": {"type", "inputs", "target", "encoding"},
    "file": {"type", "inputs", "path", "encoding"},
    "clickhouse": {
        *("type", "inputs", "endpoint", "database", "table", "skip_unknown_fields"),
        *("date_time_best_effort", "auth", "compression", "batch", "format"),
    },
}
TOKEN_LIKE = re.compile(r"HRKU-[A-Za-z0-9_-]{8,}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-")


def read_classic(path: Path) -> list[tuple[str, dict[str, str]]]:
    """A small reader for Fluent Bit's classic format: [SECTION] then `Key Value` lines."""
    sections: list[tuple[str, dict[str, str]]] = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        header = re.fullmatch(r"\[([A-Z]+)\]", line)
        if header:
            sections.append((header.group(1).lower(), {}))
            continue
        assert raw.startswith("    "), f"{path.name}:{number}: entries are indented"
        assert sections, f"{path.name}:{number}: entry outside a section"
        key, _, value = line.partition(" ")
        assert value.strip(), f"{path.name}:{number}: {key} has no value"
        sections[-1][1][key.lower()] = value.strip()
    return sections


def check_fluent_bit_entry(kind: str, options: dict[str, Any]) -> None:
    name = str(options.get("name", "")).lower() if kind in ("input", "output") else kind
    unknown = {key.lower() for key in options} - FLUENT_BIT_OPTIONS[name]
    assert not unknown, f"{name}: unknown options {unknown}"


def check_command(command: str) -> None:
    assert re.search(r"(^|[ /])heroku-audit-trail poll$", command)
    assert "HEROKU_API_KEY=" not in command and not TOKEN_LIKE.search(command)


def test_classic_config_and_parsers() -> None:
    sections = read_classic(EXAMPLES / "fluent-bit.conf")
    for kind, options in sections:
        check_fluent_bit_entry(kind, options)
    (service,) = [options for kind, options in sections if kind == "service"]
    (exec_input,) = [options for kind, options in sections if kind == "input"]
    assert (EXAMPLES / service["parsers_file"]).is_file()
    assert exec_input["tag"] == "heroku_logs" and exec_input["threaded"].lower() == "on"
    assert exec_input["buf_size"] == "1mb"
    check_command(exec_input["command"])
    outputs = {options["name"] for kind, options in sections if kind == "output"}
    assert outputs == {"stdout", "file", "http"}

    (parser,) = [options for kind, options in read_classic(EXAMPLES / "parsers.conf")]
    check_fluent_bit_entry("parser", parser)
    assert parser["name"] == exec_input["parser"]
    assert parser["time_key"] == "@timestamp"
    assert parser["time_format"] == "%Y-%m-%dT%H:%M:%S.%L%z"
    assert parser["time_keep"].lower() == "on"


def test_yaml_twin_matches_the_classic_config() -> None:
    doc = yaml.safe_load((EXAMPLES / "fluent-bit.yaml").read_text())
    classic = read_classic(EXAMPLES / "fluent-bit.conf")
    (exec_input,) = doc["pipeline"]["inputs"]
    check_fluent_bit_entry("input", exec_input)
    for output in doc["pipeline"]["outputs"]:
        check_fluent_bit_entry("output", output)
    (parser,) = doc["parsers"]
    check_fluent_bit_entry("parser", parser)
    assert parser["time_key"] == "@timestamp" and parser["time_keep"] is True
    check_command(exec_input["command"])
    (classic_input,) = [options for kind, options in classic if kind == "input"]
    assert exec_input["command"] == classic_input["command"]
    classic_http = next(o for k, o in classic if k == "output" and o["name"] == "http")
    yaml_http = next(o for o in doc["pipeline"]["outputs"] if o["name"] == "http")
    assert yaml_http["uri"] == classic_http["uri"]


def test_clickhouse_uri_is_the_documented_insert() -> None:
    sections = read_classic(EXAMPLES / "fluent-bit.conf")
    (http,) = [o for k, o in sections if k == "output" and o["name"] == "http"]
    query = parse_qs(urlsplit(http["uri"]).query)
    assert query["query"] == ["INSERT INTO heroku_logs FORMAT JSONEachRow"]
    assert query["date_time_input_format"] == ["best_effort"]
    assert query["input_format_skip_unknown_fields"] == ["1"]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is Python 3.11+")
def test_vector_config() -> None:
    import tomllib

    doc = tomllib.loads((EXAMPLES / "vector.toml").read_text())
    for section in ("sources", "transforms", "sinks"):
        for name, component in doc[section].items():
            unknown = set(component) - VECTOR_OPTIONS[component["type"]]
            assert not unknown, f"{section}.{name}: unknown options {unknown}"
    source = doc["sources"]["heroku_audit"]
    assert source["mode"] == "scheduled" and source["decoding"] == {"codec": "json"}
    assert source["scheduled"]["exec_interval_secs"] == 300
    assert source["command"][-1] == "poll" and source["command"][0].endswith("heroku-audit-trail")
    environment = source["environment"]
    assert "HEROKU_API_KEY" not in environment and "HEROKU_API_KEY_FILE" in environment
    # The program must stop itself well before Vector's SIGKILL at the interval.
    assert float(environment["HEROKU_AUDIT_MAX_RUNTIME"]) < 300
    route = doc["transforms"]["heroku_split"]["route"]
    assert route == {"events": '.stream == "stdout"', "diagnostics": '.stream == "stderr"'}
    remap = doc["transforms"]["heroku_events"]["source"]
    assert 'parse_timestamp(."@timestamp"' in remap
    assert all(f"del(.{field})" in remap for field in ("pid", "command", "stream", "source_type"))
    clickhouse = doc["sinks"]["heroku_clickhouse"]
    assert clickhouse["table"] == "heroku_logs" and clickhouse["inputs"] == ["heroku_events"]
    assert clickhouse["skip_unknown_fields"] and clickhouse["date_time_best_effort"]
    assert "${" not in (EXAMPLES / "vector.toml").read_text()


def test_no_example_carries_a_token() -> None:
    for path in EXAMPLES.rglob("*"):
        if path.is_file():
            text = path.read_text()
            if path.parent.name == "sigma":  # a Sigma rule's id is a UUID, as the format wants
                text = re.sub(r"(?m)^id: [0-9a-f-]{36}$", "", text)
            assert not TOKEN_LIKE.search(text), path.name


ROOT = EXAMPLES.parent


def test_the_readme_is_a_readme_and_docs_carry_the_rest() -> None:
    """A newcomer's page (what it is, quick start, a shipper in one minute, install, settings,
    exit codes, where to read more); the manual is in docs/, one page per reader, each linked."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 220
    for heading in ("## Quick start", "## Try it in a shipper", "## Install", "## Exit codes"):
        assert heading in readme
    pages = sorted((ROOT / "docs").glob("*.md"))
    assert len(pages) >= 5
    for page in pages:
        assert f"(docs/{page.name})" in readme, page.name


def test_ci_keeps_the_test_tools_out_of_the_programs_venv() -> None:
    """.ci/run installs pytest, mypy, ruff, chdb… into .venv-test: the .venv that
    packaging/install.sh makes for the program stays small."""
    ci = (ROOT / ".ci" / "run").read_text()
    assert "install.sh .venv-test" in ci and "install.sh .venv\n" not in ci
