"""Diagnostics on stderr: JSON lines for shippers, short text for people. Secrets are masked."""

from __future__ import annotations

import json
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
