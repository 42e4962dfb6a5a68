"""Diagnostics on stderr, on the standard `logging` module: JSON lines for shippers, short
text for people, secrets masked. Our records and every library's (urllib3, requests, Python
warnings) take the same path: one handler, one masking filter, one formatter.

A `Log` is made once per run by the CLI and passed to whatever reports something.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, MutableMapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TextIO

import orjson

LOGGER_NAME = "heroku-audit-trail"
REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 8
LEVEL_NAMES = {logging.INFO: "info", logging.WARNING: "warning", logging.ERROR: "error"}


def _level(record: logging.LogRecord) -> str:
    if record.levelno >= logging.ERROR:
        return "error"
    return LEVEL_NAMES.get(record.levelno, "warning" if record.levelno > logging.INFO else "info")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's keyword fields; a library's record says which logger it came from."""
    fields: dict[str, Any] = dict(getattr(record, "fields", None) or {})
    if record.name != LOGGER_NAME:
        fields["origin"] = record.name
    return fields


class MaskSecrets(logging.Filter):
    """Replaces every registered secret in a record's message and fields, whoever logged it."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: list[str] = []

    def add(self, secret: str) -> None:
        # Real tokens are long (a UUID, or HRKU-...); masking "x" would mangle every line.
        if len(secret) >= MIN_SECRET_LENGTH and secret not in self.secrets:
            self.secrets.append(secret)

    def mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def _masked(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.mask(value)
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, dict):
            return {str(key): self._masked(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._masked(item) for item in value]
        return self.mask(str(value))  # a path, an exception: as the text it would print

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a library's bad format string must not stop a run
            message = str(record.msg)
        record.msg, record.args = self.mask(message), None
        fields = getattr(record, "fields", None)
        if fields:
            record.fields = self._masked(fields)
        record.exc_info = record.exc_text = record.stack_info = None  # never a traceback
        return True


def printable(text: str) -> str:
    """`text` safe for a terminal: control characters (an escape sequence a server could put
    in a name, a newline in a library's warning) written out as \\x1b, \\n, ..."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: @timestamp, log.level, log.logger, message, fields."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, timezone.utc)
        document = {
            "@timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "log.level": _level(record),
            "log.logger": LOGGER_NAME,  # tells these lines apart from events
            "message": record.getMessage(),
        }
        for key, value in _fields(record).items():
            document.setdefault(key, value)  # a field never replaces one of the above
        try:
            return orjson.dumps(document, default=str).decode()
        except TypeError:  # a lone surrogate in what Heroku sent: escape it, never fail
            return json.dumps(document, default=str, ensure_ascii=True)


class TextFormatter(logging.Formatter):
    """`heroku-audit-trail: warning: message (key=value ...)` for a person at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        level = _level(record)
        details = " ".join(f"{key}={value}" for key, value in _fields(record).items())
        prefix = "" if level == "info" else f"{level}: "
        line = f"{LOGGER_NAME}: {prefix}{record.getMessage()}"
        return printable(line + (f" ({details})" if details else ""))  # one line, no escapes


class StderrHandler(logging.Handler):
    """Writes to `stream`, else to sys.stderr as it is at that moment (a test may swap it; a
    process started without one has None). A write that fails is dropped without a word:
    with stderr gone nothing can be told, and the run goes on."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(logging.INFO)
        self.stream = stream
        self.before_write: Callable[[], None] | None = None  # e.g. clear a progress line

    def emit(self, record: logging.LogRecord) -> None:
        stream = self.stream or sys.stderr
        if stream is None:
            return
        line = self.format(record)
        if self.before_write is not None:
            self.before_write()
        try:
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass

    def handleError(self, record: logging.LogRecord) -> None:
        pass  # logging's default prints a traceback to stderr: never that


if TYPE_CHECKING:
    _Adapter = logging.LoggerAdapter[logging.Logger]
else:
    _Adapter = logging.LoggerAdapter


class Log(_Adapter):
    """The run's logger: `log.warning("text", enterprise="acme")`, keyword fields becoming
    the record's `fields` (None values left out)."""

    def __init__(self, log_format: str = "text", stream: TextIO | None = None) -> None:
        # A logger of its own, outside logging's registry: two Logs (tests make many) never
        # share handlers, and nothing a library configures reaches it.
        logger = logging.Logger(LOGGER_NAME, logging.INFO)
        self.handler = StderrHandler(stream)
        self.secrets = MaskSecrets()
        self.handler.addFilter(self.secrets)
        logger.addHandler(self.handler)
        super().__init__(logger, {})
        self.log_format = log_format

    @property
    def log_format(self) -> str:
        return "json" if isinstance(self.handler.formatter, JsonFormatter) else "text"

    @log_format.setter
    def log_format(self, value: str) -> None:
        self.handler.setFormatter(JsonFormatter() if value == "json" else TextFormatter())

    @property
    def before_write(self) -> Callable[[], None] | None:
        return self.handler.before_write

    @before_write.setter
    def before_write(self, hook: Callable[[], None] | None) -> None:
        self.handler.before_write = hook

    def add_secret(self, secret: str) -> None:
        self.secrets.add(secret)

    def mask(self, text: str) -> str:
        return self.secrets.mask(text)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        fields = {key: value for key, value in kwargs.items() if value is not None}
        return msg, {"extra": {"fields": fields}}


def capture_library_logs(log: Log) -> None:
    """Route the logging module's root (every library's records) and Python warnings (e.g.
    urllib3's) through `log`'s handler: masked, formatted like ours, never logging's
    last-resort plain text. For the process (cli.run), not for main() called in a test."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, StderrHandler)]:
        root.removeHandler(handler)
    root.addHandler(log.handler)
    logging.captureWarnings(True)  # warnings.warn → the "py.warnings" logger → the root
