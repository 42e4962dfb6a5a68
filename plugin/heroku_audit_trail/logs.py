"""Diagnostics on stderr: JSON lines for shippers, short text for people. Secrets are masked."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TextIO

import orjson

LOGGER_NAME = "heroku-audit-trail"
REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 8


class Log:
    """Writes one line per record; `log.logger` tells these lines apart from events."""

    def __init__(self, log_format: str = "text", stream: TextIO | None = None) -> None:
        self.log_format = log_format
        self.stream = stream
        self._secrets: list[str] = []
        self.before_write: Callable[[], None] | None = None  # e.g. clear a progress line

    def add_secret(self, secret: str) -> None:
        # Real tokens are long (a UUID, or HRKU-...); masking "x" would mangle every line.
        if len(secret) >= MIN_SECRET_LENGTH and secret not in self._secrets:
            self._secrets.append(secret)

    def mask(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def info(self, message: str, **fields: Any) -> None:
        self._emit("info", message, fields)

    def warning(self, message: str, **fields: Any) -> None:
        self._emit("warning", message, fields)

    def error(self, message: str, **fields: Any) -> None:
        self._emit("error", message, fields)

    def _emit(self, level: str, message: str, fields: dict[str, Any]) -> None:
        fields = {key: value for key, value in fields.items() if value is not None}
        if self.log_format == "json":
            record = {
                "@timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "log.level": level,
                "log.logger": LOGGER_NAME,
                "message": message,
                **fields,
            }
            try:
                line = orjson.dumps(record, default=str).decode()
            except TypeError:  # a lone surrogate in what Heroku sent: escape it, never fail
                line = json.dumps(record, default=str, ensure_ascii=True)
        else:
            details = " ".join(f"{key}={value}" for key, value in fields.items())
            prefix = "" if level == "info" else f"{level}: "
            line = f"{LOGGER_NAME}: {prefix}{message}" + (f" ({details})" if details else "")
        stream = self.stream or sys.stderr
        if stream is None:
            return  # started without stderr: nothing can be told, and the run goes on
        if self.before_write is not None:
            self.before_write()
        try:
            stream.write(self.mask(line) + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass  # stderr gone: nothing else can be told


log = Log()


class _Forward(logging.Handler):
    """Library log records (urllib3's, requests') become lines of ours: JSON for a shipper,
    masked like ours, never the plain text of logging's last-resort handler."""

    def __init__(self, target: Log) -> None:
        super().__init__(logging.WARNING)
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a library's bad format string must not stop a run
            message = str(record.msg)
        level = "error" if record.levelno >= logging.ERROR else "warning"
        self.target._emit(level, message, {"origin": record.name})


def capture_library_logs(target: Log) -> None:
    """Route the logging module and Python warnings (e.g. urllib3's) through `target`."""
    root = logging.getLogger()
    if not any(isinstance(handler, _Forward) for handler in root.handlers):
        root.addHandler(_Forward(target))
    logging.captureWarnings(True)  # warnings.warn → the "py.warnings" logger → _Forward
