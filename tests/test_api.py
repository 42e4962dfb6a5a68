"""The HTTP client against `responses` mocks: headers, pages, retries, rate limits, errors."""

from __future__ import annotations

import threading
from datetime import date

import orjson
import pytest
import requests
import responses
from responses import matchers

from heroku_audit_trail.config import Secret
from heroku_audit_trail.deadline import Deadline
from heroku_audit_trail.ecs import UNPARSED
from heroku_audit_trail.errors import (
    ApiUnavailableError,
    ConfigError,
    DeadlineError,
    MalformedDataError,
    PermissionDeniedError,
    RateLimitedError,
)
from heroku_audit_trail.heroku.api import AbandonedError, HerokuClient, with_max
from heroku_audit_trail.heroku.jsonbody import parse_events

API = "https://api.heroku.com"
TOKEN = "HRKU-unit-test-token-aaaaaaaaaaaaaaaaaaaa"
EVENTS_URL = f"{API}/enterprise-accounts/acct-1/events"
DAY = date(2026, 11, 23)


def client(floor: int = 0, sleeps: list[float] | None = None) -> HerokuClient:
    recorded = sleeps if sleeps is not None else []
    return HerokuClient(API, Secret(TOKEN, "test"), rate_limit_floor=floor, sleep=recorded.append)


def events(*ids: str) -> bytes:
    return orjson.dumps([{"id": i, "created_at": "2026-11-23T00:00:00Z"} for i in ids])


@responses.activate
def test_headers_on_every_request() -> None:
    responses.get(
        f"{API}/enterprise-accounts/acme",
        json={"id": "acct-1", "name": "acme"},
        match=[
            matchers.header_matcher(
                {
                    "Accept": "application/vnd.heroku+json; version=3",
                    "Authorization": f"Bearer {TOKEN}",
                }
            )
        ],
    )
    assert client().enterprise_account("acme")["id"] == "acct-1"
    sent = responses.calls[0].request.headers
    assert sent["User-Agent"].startswith("heroku-audit-trail/")
    assert len(sent["Request-Id"]) == 36


@responses.activate
def test_account_name_is_quoted_as_one_path_segment() -> None:
    responses.get(f"{API}/enterprise-accounts/..%2Fx", status=404, json={"id": "not_found"})
    with pytest.raises(ConfigError, match="Invalid Enterprise Account Name"):
        client().enterprise_account("../x")


@responses.activate
def test_follows_next_range_with_max_1000_and_drops_the_etag() -> None:
    responses.get(
        EVENTS_URL,
        body=events("a", "b"),
        status=206,
        headers={"Next-Range": "]b..; max=200", "ETag": '"page1"'},
        match=[matchers.query_param_matcher({"day": "2026-11-23"})],
    )
    responses.get(
        EVENTS_URL,
        body=events("c"),
        status=200,
        match=[matchers.header_matcher({"Range": "]b..; max=1000"})],
    )
    pages = list(client().day_pages("acct-1", DAY, etag=None))
    assert [event["id"] for page in pages for event in page.events] == ["a", "b", "c"]
    assert [page.next_range for page in pages] == ["]b..; max=200", None]
    # Neither page's ETag is kept: the first does not cover page two, the second is not day.
    assert [page.etag for page in pages] == [None, None]
    assert "Range" not in responses.calls[0].request.headers


@responses.activate
def test_single_page_day_keeps_etag_and_304_means_nothing_new() -> None:
    responses.get(EVENTS_URL, body=events("a"), headers={"ETag": '"v1"'})
    [first] = client().day_pages("acct-1", DAY)
    assert first.etag == '"v1"' and first.next_range is None
    responses.replace(responses.GET, EVENTS_URL, status=304)
    [again] = client().day_pages("acct-1", DAY, etag='"v1"')
    assert again.not_modified and again.events == [] and again.complete
    assert responses.calls[1].request.headers["If-None-Match"] == '"v1"'


@responses.activate
def test_a_full_single_page_keeps_no_etag() -> None:
    """200 events in one page may have a page two that the ETag knows nothing of."""
    full = [str(number) for number in range(200)]
    responses.get(EVENTS_URL, body=events(*full), headers={"ETag": '"v1"'})
    [page] = client().day_pages("acct-1", DAY)
    assert len(page.events) == 200 and page.etag is None


@responses.activate
def test_a_304_to_a_later_page_keeps_the_pages_before_it() -> None:
    responses.get(
        EVENTS_URL,
        body=events("a"),
        status=206,
        headers={"Next-Range": "]a..; max=200"},
        match=[matchers.query_param_matcher({"day": "2026-11-23"})],
    )
    responses.get(
        EVENTS_URL, status=304, match=[matchers.header_matcher({"Range": "]a..; max=1000"})]
    )
    first, second = client().day_pages("acct-1", DAY)
    assert [event["id"] for event in first.events] == ["a"]
    assert not second.not_modified and not second.complete and second.warning


@responses.activate
def test_a_206_without_next_range_is_the_end_with_a_warning() -> None:
    responses.get(EVENTS_URL, body=events("a"), status=206)
    [page] = client().day_pages("acct-1", DAY)
    assert page.next_range is None and page.complete and page.warning
    assert "206" in page.warning


@responses.activate
def test_repeated_next_range_is_an_error_not_a_loop() -> None:
    responses.get(EVENTS_URL, body=events("a"), status=206, headers={"Next-Range": "]a..; max=2"})
    with pytest.raises(MalformedDataError, match="does not end"):
        client().fetch_day("acct-1", DAY)
    assert len(responses.calls) == 2


@pytest.mark.parametrize(
    "body", [b"[]", b'{"data": []}', b'[{"id": "a"}]', b'{"data": [{"id": "a"}]}']
)
def test_accepted_body_shapes(body: bytes) -> None:
    assert isinstance(parse_events(body), list)


@pytest.mark.parametrize(
    "body",
    [b"", b"<html>", b'{"events": []}', b'"x"', b"[{", b'{"data": {}}', b'[{"a": 1},]', b"[1 2]"],
)
def test_other_bodies_are_malformed(body: bytes) -> None:
    with pytest.raises(MalformedDataError):
        parse_events(body)


def test_elements_that_are_not_objects_are_kept_for_a_degraded_line() -> None:
    assert [UNPARSED in item for item in parse_events(b'[1, {"id": "a"}]')] == [True, False]


def test_with_max() -> None:
    assert with_max("]abc..; max=200") == "]abc..; max=1000"
    assert with_max("]abc..; max=200,order=asc") == "]abc..; max=1000,order=asc"
    assert with_max("id ]abc..") == "id ]abc..; max=1000"


@responses.activate
def test_5xx_is_retried_then_succeeds() -> None:
    responses.get(EVENTS_URL, status=503)
    responses.get(EVENTS_URL, status=502)
    responses.get(EVENTS_URL, body=events("a"))
    sleeps: list[float] = []
    assert len(client(sleeps=sleeps).fetch_day("acct-1", DAY).events) == 1
    assert len(sleeps) == 2


@responses.activate
def test_persistent_5xx_gives_up_after_four_retries() -> None:
    responses.get(EVENTS_URL, status=503, headers={"Request-Id": "req-503"})
    sleeps: list[float] = []
    with pytest.raises(ApiUnavailableError) as raised:
        client(sleeps=sleeps).fetch_day("acct-1", DAY)
    assert len(responses.calls) == 5 and len(sleeps) == 4
    assert sum(sleeps) <= 15
    assert raised.value.request_id == "req-503"


@responses.activate
def test_connection_errors_are_retried_and_reported_without_the_token() -> None:
    responses.get(EVENTS_URL, body=requests.exceptions.ConnectionError(f"boom {TOKEN}"))
    with pytest.raises(ApiUnavailableError) as raised:
        client().fetch_day("acct-1", DAY)
    assert TOKEN not in str(raised.value)


@responses.activate
def test_429_honours_retry_after() -> None:
    responses.get(EVENTS_URL, status=429, headers={"Retry-After": "2"}, json={"id": "rate_limit"})
    responses.get(EVENTS_URL, body=events("a"))
    sleeps: list[float] = []
    client(sleeps=sleeps).fetch_day("acct-1", DAY)
    assert sleeps == [2.0]


@responses.activate
def test_429_with_a_long_retry_after_gives_up_at_once() -> None:
    responses.get(EVENTS_URL, status=429, headers={"Retry-After": "3600"})
    sleeps: list[float] = []
    with pytest.raises(RateLimitedError, match="Rate Limiting"):
        client(sleeps=sleeps).fetch_day("acct-1", DAY)
    assert sleeps == []


@responses.activate
def test_floor_stops_before_the_next_request() -> None:
    responses.get(EVENTS_URL, body=events("a"), headers={"RateLimit-Remaining": "499"})
    api = client(floor=500)
    api.fetch_day("acct-1", DAY)
    with pytest.raises(RateLimitedError, match="under the floor of 500"):
        api.fetch_day("acct-1", DAY)
    assert len(responses.calls) == 1


@pytest.mark.parametrize(
    ("status", "error", "words"),
    [
        (401, PermissionDeniedError, "Authentication Failed"),
        (403, PermissionDeniedError, "no access"),
        (404, ConfigError, "Invalid Enterprise Account Name"),
        (400, ApiUnavailableError, "invalid"),
        (406, ApiUnavailableError, "Accept"),
        (416, ApiUnavailableError, "Range"),
        (422, ApiUnavailableError, "parameters"),
    ],
)
@responses.activate
def test_status_table(status: int, error: type[Exception], words: str) -> None:
    responses.get(
        EVENTS_URL,
        status=status,
        json={"id": "x", "message": "the API's own words", "url": "https://example"},
        headers={"Request-Id": "req-1"},
    )
    with pytest.raises(error, match=words) as raised:
        client().fetch_day("acct-1", DAY)
    assert "the API's own words" in str(raised.value)
    assert len(responses.calls) == 1  # a 4xx is not retried


@responses.activate
def test_deadline_refuses_to_start_a_request() -> None:
    responses.get(EVENTS_URL, body=events("a"))
    api = HerokuClient(API, Secret(TOKEN, "t"), deadline=Deadline(1, clock=lambda: 0.0))
    api.deadline = Deadline(0.0)
    with pytest.raises(DeadlineError):
        api.fetch_day("acct-1", DAY)
    assert len(responses.calls) == 0


@responses.activate
def test_archive_download_carries_no_token() -> None:
    import io

    responses.get("https://storage.example/archive.json.gz", body=b"gz")
    sink = io.BytesIO(b"left by an earlier attempt")
    client().download("https://storage.example/archive.json.gz", sink)
    assert sink.getvalue() == b"gz"  # streamed to the file, from its start
    assert "Authorization" not in responses.calls[0].request.headers


def test_valid_json_that_orjson_refuses_is_read_tolerantly() -> None:
    huge = b'[{"id": "a", "n": ' + b"1" * 5000 + b"}]"
    assert [event["id"] for event in parse_events(huge)] == ["a"]
    wrapped = b'{"meta": 1, "data": [{"id": "b", "x": "\\ud800"}, {"id": "c"}], "next": null}'
    assert [event["id"] for event in parse_events(wrapped)] == ["b", "c"]


@pytest.mark.parametrize(
    "value", ["Mon, 01 Jan 2026 00:00:00 +99999999999999", "yesterday", "", "Mon, 99 Foo"]
)
def test_a_malformed_date_header_is_ignored(value: str) -> None:
    from heroku_audit_trail.heroku.responses import http_date as _http_date

    assert _http_date(value) is None


@responses.activate
def test_an_abandoned_day_makes_no_further_request_and_counts_none() -> None:
    """A read-ahead whose caller stopped (another account's run may follow on the same
    client): no retry after the backoff, no next page, and nothing added to the counts."""
    responses.get(EVENTS_URL, body=events("a"), status=206, headers={"Next-Range": "]a..; max=200"})
    responses.get(EVENTS_URL, status=503)
    abandoned = threading.Event()
    api = HerokuClient(API, Secret(TOKEN, "test"), sleep=lambda _: abandoned.set())
    pages = api.day_pages("acct-1", DAY, abandoned=abandoned)
    assert [event["id"] for event in next(pages).events] == ["a"]
    with pytest.raises(AbandonedError):
        next(pages)  # the 503's backoff: the caller left while it slept
    assert len(responses.calls) == 2 and api.requests_made == 2

    responses.reset()
    left_in_flight = threading.Event()

    def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        left_in_flight.set()  # the caller left while this request was on its way
        return 200, {"RateLimit-Remaining": "4000"}, events("b")

    responses.add_callback(responses.GET, EVENTS_URL, callback=answer)
    late = HerokuClient(API, Secret(TOKEN, "test"))
    with pytest.raises(AbandonedError):
        next(late.day_pages("acct-1", DAY, abandoned=left_in_flight))
    assert len(responses.calls) == 1
    assert late.requests_made == 0 and late.rate_limit_remaining is None


@responses.activate
def test_rate_limit_remaining_is_the_lowest_of_answers_that_came_in_any_order() -> None:
    """Days fetched side by side answer in any order: the quota left is the lowest seen."""
    for remaining in ("4497", "4499"):  # the later request's answer read first
        responses.get(
            f"{API}/enterprise-accounts/acme",
            json={"id": "acct-1", "name": "acme"},
            headers={"RateLimit-Remaining": remaining},
        )
    api = client()
    api.enterprise_account("acme")
    api.enterprise_account("acme")
    assert api.rate_limit_remaining == 4497
