"""What a response says besides its body (an `Answer`), and its body read within a cap."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import BinaryIO
from urllib.parse import urlsplit

import orjson
import requests

from heroku_audit_trail.errors import MalformedDataError
from heroku_audit_trail.logs import REDACTED

_CHUNK = 1 << 16


@dataclass(frozen=True)
class Answer:
    """What a response says besides its body."""

    request_id: str | None = None
    date: datetime | None = None  # the server's clock
    rate_limit_remaining: int | None = None
    retry_after: float | None = None  # seconds, from a 429

    @classmethod
    def of(cls, response: requests.Response) -> Answer:
        remaining = response.headers.get("RateLimit-Remaining", "").strip()
        return cls(
            response.headers.get("Request-Id"),
            http_date(response.headers.get("Date", "")),
            int(remaining) if remaining.isdigit() else None,
            retry_after(response) if response.status_code == 429 else None,
        )


def http_date(value: str) -> datetime | None:
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def retry_after(response: requests.Response) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date less the server's own Date."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    until = http_date(value)
    now = http_date(response.headers.get("Date", "")) or datetime.now(timezone.utc)
    return None if until is None else max(0.0, (until - now).total_seconds())


def error_detail(response: requests.Response, secret: str) -> str:
    """The API's own message, when the body is the documented {id, message} object. The token
    is masked before the message is cut short: a cut first could leave most of it in view."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return ""
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        error_id = body.get("id") if isinstance(body.get("id"), str) else "error"
        error_id, message = (
            text.replace(secret, REDACTED) if secret else text
            for text in (str(error_id), body["message"].strip())
        )
        return f" (Heroku said {error_id[:60]}: {message[:200]})"
    return ""


def read_capped(
    response: requests.Response, cap: int, what: str, sink: BinaryIO | None = None
) -> bytes:
    """The body, decoded (gzip), a chunk at a time; MalformedDataError past `cap` bytes.
    With `sink`, the body is written there (from its start) and b"" returned."""
    chunks: list[bytes] = []
    total = 0
    if sink is not None:
        sink.seek(0)
        sink.truncate()  # a retried download starts over
    for chunk in response.iter_content(_CHUNK):
        total += len(chunk)
        if total > cap:
            response.close()
            raise MalformedDataError(
                f"a Heroku API response{' (' + what + ')' if what else ''} inflates past "
                f"{cap >> 20} MiB, the most this program reads; nothing of it was printed",
                request_id=response.headers.get("Request-Id"),
            )
        if sink is not None:
            sink.write(chunk)
        else:
            chunks.append(chunk)
    return b"".join(chunks)


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def tls_reason(error: Exception) -> str:
    text = str(error)
    for needle, reason in (
        ("CERTIFICATE_VERIFY_FAILED", "the server's certificate is not trusted"),
        ("WRONG_VERSION_NUMBER", "the server does not speak TLS (plain HTTP on an https URL?)"),
        ("hostname", "the certificate does not name this host"),
    ):
        if needle in text:
            return reason
    return "TLS handshake failed"
