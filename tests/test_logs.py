"""The logging path: our records and every library's through one handler, masked, as JSON
(or text for a person), never a traceback; each Log is its own, never a shared global."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterator

import orjson
import pytest

from heroku_audit_trail.logs import LOGGER_NAME, REDACTED, Log, capture_library_logs

TOKEN = "HRKU-logs-unit-secret-token-0123456789"


@pytest.fixture
def captured() -> Iterator[tuple[Log, io.StringIO]]:
    """A Log installed for the process (as cli.run does), and what it wrote."""
    stream = io.StringIO()
    log = Log("json", stream)
    log.add_secret(TOKEN)
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    capture_library_logs(log)
    try:
        yield log, stream
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        logging.captureWarnings(False)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_our_record_is_one_json_line_with_its_fields(captured: tuple[Log, io.StringIO]) -> None:
    log, stream = captured
    log.warning("slow answer", enterprise="acme", seconds=1.5, request_id=None)
    (record,) = lines(stream)
    assert record["log.level"] == "warning" and record["log.logger"] == LOGGER_NAME
    assert record["message"] == "slow answer"
    assert record["enterprise"] == "acme" and record["seconds"] == 1.5
    assert "request_id" not in record and "origin" not in record
    assert str(record["@timestamp"]).endswith("Z")


def test_a_library_record_and_a_python_warning_take_the_same_path(
    captured: tuple[Log, io.StringIO],
) -> None:
    _, stream = captured
    logging.getLogger("urllib3.connectionpool").warning(
        "Retrying (%s) after connection broken by %r: /x?token=%s", 2, "reset", TOKEN
    )
    logging.getLogger("urllib3.connectionpool").info("Starting new HTTPS connection")  # below
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn(f"Unverified HTTPS request with {TOKEN}", stacklevel=1)
    library, warned = lines(stream)
    assert library["origin"] == "urllib3.connectionpool" and library["log.level"] == "warning"
    assert "Retrying (2)" in str(library["message"])
    assert warned["origin"] == "py.warnings" and "Unverified HTTPS request" in str(
        warned["message"]
    )
    assert TOKEN not in stream.getvalue() and stream.getvalue().count(REDACTED) == 2


def test_secrets_are_masked_in_fields_of_any_shape_and_no_traceback_is_printed(
    captured: tuple[Log, io.StringIO],
) -> None:
    log, stream = captured
    error = RuntimeError(f"bad {TOKEN}")
    log.error("failed", detail={"nested": [f"x {TOKEN}"]}, error=error, exc_info=None)
    try:
        raise error
    except RuntimeError:
        logging.getLogger("requests").exception("a library logs with its traceback")
    text = stream.getvalue()
    assert TOKEN not in text and "Traceback" not in text
    first, second = lines(stream)
    assert first["detail"] == {"nested": [f"x {REDACTED}"]} and first["error"] == f"bad {REDACTED}"
    assert second["log.level"] == "error" and second["origin"] == "requests"


def test_a_bad_format_string_or_a_closed_stderr_never_stops_a_run() -> None:
    stream = io.StringIO()
    log = Log("json", stream)
    log.logger.handlers[0].handle(
        logging.LogRecord("lib", logging.WARNING, __file__, 1, "%d items", ("x",), None)
    )
    assert orjson.loads(stream.getvalue())["message"] == "%d items"
    stream.close()
    log.error("nobody hears this")  # no exception, no traceback


def test_text_for_a_person_and_each_log_is_its_own() -> None:
    first, second = io.StringIO(), io.StringIO()
    person, shipper = Log("text", first), Log("json", second)
    person.warning("cursor rewound", enterprise="acme")
    shipper.info("poll summary", events_emitted=3)
    assert first.getvalue() == "heroku-audit-trail: warning: cursor rewound (enterprise=acme)\n"
    assert orjson.loads(second.getvalue())["events_emitted"] == 3  # nothing crossed over
    person.log_format = "json"
    person.info("now json")
    assert orjson.loads(first.getvalue().splitlines()[1])["message"] == "now json"
