"""The simulator behaves like the Platform API as the reference records it (real HTTP)."""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import http.client
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import orjson
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heroku_audit_trail import simulator as simulator_module
from heroku_audit_trail.eventgen import EVENT_TYPES, generate_day
from heroku_audit_trail.simulator import (
    DEMO_TOKEN,
    NO_ACCESS_TOKEN,
    Faults,
    Simulator,
    SimulatorConfig,
)

from .conftest import utc_today

ACCEPT = "application/vnd.heroku+json; version=3"
JSON = "application/json; charset=utf-8"
STAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z")


@pytest.fixture(scope="module")
def shared() -> Iterator[Simulator]:
    """Read-only tests share one simulator: 450 events a day, so a day takes three pages."""
    with Simulator(SimulatorConfig(seed=2, events_per_day=450, history_days=40)) as sim:
        yield sim


@pytest.fixture
def small() -> Iterator[Simulator]:
    """A fresh simulator for tests that flip faults or add events."""
    with Simulator(SimulatorConfig(seed=3, events_per_day=20, history_days=3)) as sim:
        yield sim


def get(
    sim: Simulator, path: str, token: str | None = DEMO_TOKEN, **headers: str
) -> requests.Response:
    merged = {"Accept": ACCEPT}
    if token is not None:
        merged["Authorization"] = f"Bearer {token}"
    merged.update({name.replace("_", "-"): value for name, value in headers.items()})
    return requests.get(sim.url + path, headers=merged, timeout=10)


def events_path(sim: Simulator, query: str = "") -> str:
    return f"/enterprise-accounts/{sim.config.enterprise_id}/events{query}"


def by_id(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(events, key=lambda event: event["id"])


def fetch_day(sim: Simulator, day: date, page_max: int | None = None) -> list[dict[str, Any]]:
    """Every page of a day, following Next-Range (optionally asking for another max)."""
    response = get(sim, events_path(sim, f"?day={day}"))
    collected = list(response.json())
    while "Next-Range" in response.headers:
        assert response.status_code == 206
        next_range = response.headers["Next-Range"]
        if page_max is not None:
            next_range = re.sub(r"max=\d+", f"max={page_max}", next_range)
        response = get(sim, events_path(sim, f"?day={day}"), Range=next_range)
        collected += response.json()
    assert response.status_code == 200
    return collected


# -- authentication, media type, errors ----------------------------------------------------


def test_bad_or_missing_credentials_are_401(shared: Simulator) -> None:
    basic_wrong = base64.b64encode(b"me@example.com:HRKU-nope").decode()
    for authorization in (None, "Bearer HRKU-nope", f"Token {DEMO_TOKEN}", f"Basic {basic_wrong}"):
        headers = {"Accept": ACCEPT} | ({"Authorization": authorization} if authorization else {})
        response = requests.get(
            shared.url + "/enterprise-accounts/acme", headers=headers, timeout=5
        )
        assert response.status_code == 401
        assert response.json() == {
            "id": "unauthorized",
            "message": "Invalid credentials provided.",
            "url": "https://devcenter.heroku.com/articles/platform-api-reference#clients",
        }


def test_basic_auth_with_the_token_as_password(shared: Simulator) -> None:
    response = requests.get(
        shared.url + "/enterprise-accounts/acme",
        headers={"Accept": ACCEPT},
        auth=("me@example.com", DEMO_TOKEN),
        timeout=5,
    )
    assert response.status_code == 200


def test_no_access_token_authenticates_but_is_forbidden(shared: Simulator) -> None:
    for path in (
        "/enterprise-accounts/acme",
        events_path(shared),
        "/enterprise-accounts/acme/archives",
    ):
        response = get(shared, path, token=NO_ACCESS_TOKEN)
        assert response.status_code == 403 and response.json()["id"] == "forbidden"
    assert get(shared, "/account/rate-limits", token=NO_ACCESS_TOKEN).status_code == 200
    assert get(shared, "/enterprise-accounts", token=NO_ACCESS_TOKEN).json() == []
    assert get(shared, "/enterprise-accounts/nope", token=NO_ACCESS_TOKEN).status_code == 404


def test_accept_header_must_ask_for_version_3(shared: Simulator) -> None:
    for accept in ("", "application/json", "application/vnd.heroku+json; version=30"):
        response = get(shared, "/enterprise-accounts/acme", Accept=accept)
        assert response.status_code == 406 and response.json()["id"] == "not_acceptable"
    for accept in (
        "application/vnd.heroku+json; version=3.sdk",
        "application/json, application/vnd.heroku+json;version=3",
    ):
        assert get(shared, "/enterprise-accounts/acme", Accept=accept).status_code == 200


def test_every_api_answer_has_the_common_headers(shared: Simulator) -> None:
    answers = [
        get(shared, "/enterprise-accounts/acme"),
        get(shared, "/enterprise-accounts/acme", token="HRKU-nope"),
        get(shared, "/enterprise-accounts/nope"),
        get(shared, "/nowhere"),
        requests.post(shared.url + "/enterprise-accounts/acme", timeout=5),
    ]
    assert [answer.status_code for answer in answers] == [200, 401, 404, 404, 405]
    for answer in answers:
        assert answer.headers["Content-Type"] == JSON
        assert uuid.UUID(answer.headers["Request-Id"])
        assert int(answer.headers["RateLimit-Remaining"]) >= 0
        assert set(answer.json()) >= {"id"}
    assert answers[-1].json()["id"] == "method_not_allowed"
    assert requests.delete(shared.url + events_path(shared), timeout=5).status_code == 405


def test_http_level_errors_are_json_too(shared: Simulator) -> None:
    host, port = shared.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 101 + b"\r\n")  # too many
        reply = connection.makefile("rb").read()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 431 " in head.split(b"\r\n")[0]
    assert orjson.loads(body)["id"] == "bad_request"


# -- the enterprise account ----------------------------------------------------------------


def test_account_by_name_and_by_id(shared: Simulator) -> None:
    by_name = get(shared, "/enterprise-accounts/acme").json()
    assert set(by_name) == {
        "id",
        "name",
        "created_at",
        "updated_at",
        "permissions",
        "trial",
        "identity_provider",
    }
    assert by_name["id"] == shared.config.enterprise_id and by_name["name"] == "acme"
    assert by_name["permissions"] == ["view", "create", "manage", "billing"]
    assert by_name["trial"] is False and by_name["identity_provider"] is None
    assert get(shared, f"/enterprise-accounts/{by_name['id']}").json() == by_name
    assert get(shared, "/enterprise-accounts").json() == [by_name]


@pytest.mark.parametrize(
    "name", ["nope", "..%2Fx", "a%20b", "a" * 300, "%00", "%ff%fe", "ACME", "acme%2Fevents"]
)
def test_unknown_or_malformed_names_are_404(shared: Simulator, name: str) -> None:
    for suffix in ("", "/events", "/archives"):
        response = get(shared, f"/enterprise-accounts/{name}{suffix}")
        assert response.status_code == 404
        assert response.json()["message"] == "Couldn't find that enterprise account."


def test_unknown_routes_are_404(shared: Simulator) -> None:
    for path in ("/apps", "/enterprise-accounts/acme/nope", "/enterprise-accounts/acme/events/x"):
        response = get(shared, path)
        assert response.status_code == 404 and response.json()["id"] == "not_found"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=st.text(min_size=1, max_size=120), range_header=st.text(max_size=60))
def test_no_input_makes_a_server_error(shared: Simulator, name: str, range_header: str) -> None:
    account = get(shared, f"/enterprise-accounts/{quote(name, safe='')}")
    assert account.status_code in (200, 404)
    printable = "".join(char for char in range_header if " " <= char <= "~").strip()
    events = get(shared, events_path(shared), Range=printable)
    assert events.status_code in (200, 206, 416)


# -- /events -------------------------------------------------------------------------------


def test_a_small_day_is_one_200_equal_to_the_ground_truth(small: Simulator) -> None:
    day = utc_today() - timedelta(days=1)
    response = get(small, events_path(small, f"?day={day}"))
    assert response.status_code == 200 and "Next-Range" not in response.headers
    assert response.headers["Accept-Ranges"] == "id" and response.headers["ETag"]
    body = response.json()
    assert body == by_id(small.events_for_day(day))  # the very same objects, in id order
    assert len(body) == 20
    times = [event["created_at"] for event in body]
    assert times != sorted(times)  # ordered by id, never by time: clients must sort


def test_day_defaults_to_today_and_other_days_are_empty(small: Simulator) -> None:
    today = get(small, events_path(small)).json()
    assert by_id(today) == by_id(small.events_for_day(utc_today()))
    for day in (utc_today() + timedelta(days=1), utc_today() - timedelta(days=400)):
        response = get(small, events_path(small, f"?day={day}"))
        assert response.status_code == 200 and response.json() == []


@pytest.mark.parametrize(
    "day",
    [
        "yesterday",
        "2026-13-01",
        "20260101",
        "2026-W01-1",
        "\uff12\uff10\uff12\uff16-01-01",
        "2026-1-1",
    ],
)
def test_malformed_day_is_422(shared: Simulator, day: str) -> None:
    response = get(shared, events_path(shared, f"?day={quote(day)}"))
    assert response.status_code == 422 and response.json()["id"] == "invalid_params"


def test_filters_by_type_action_and_actor(shared: Simulator) -> None:
    day = utc_today() - timedelta(days=2)
    truth = shared.events_for_day(day)
    cases: list[tuple[dict[str, str], list[dict[str, Any]]]] = [
        ({"type": "app"}, [e for e in truth if e["type"] == "app"]),
        (
            {"type": "app", "action": "create"},
            [e for e in truth if (e["type"], e["action"]) == ("app", "create")],
        ),
        ({"action": "destroy"}, [e for e in truth if e["action"] == "destroy"]),
        (
            {"actor": "zoë@example.com"},
            [e for e in truth if e["actor"]["email"] == "zoë@example.com"],
        ),
        ({"type": "no-such-type"}, []),
    ]
    for params, expected in cases:
        response = requests.get(
            shared.url + events_path(shared),
            params={"day": str(day), "order": "desc", **params},
            headers={"Accept": ACCEPT, "Authorization": f"Bearer {DEMO_TOKEN}"},
            timeout=5,
        )
        assert response.status_code == 200, params  # every filtered set fits one page here
        assert by_id(response.json()) == by_id(expected), params
    assert any(expected for _, expected in cases[:4])


def test_pages_cover_the_day_exactly(shared: Simulator) -> None:
    day = utc_today() - timedelta(days=1)
    first = get(shared, events_path(shared, f"?day={day}"))
    assert first.status_code == 206 and len(first.json()) == 200
    assert first.headers["Accept-Ranges"] == "id"
    last_id = first.json()[-1]["id"]
    assert first.headers["Next-Range"] == f"]{last_id}..; max=200"
    assert first.headers["Content-Range"].startswith(f"id {first.json()[0]['id']}..{last_id}")
    collected = fetch_day(shared, day, page_max=1000)
    assert len(collected) == 450 == len({event["id"] for event in collected})
    assert by_id(collected) == by_id(shared.events_for_day(day))


def test_range_max_and_start_are_honoured(shared: Simulator) -> None:
    day = utc_today() - timedelta(days=3)
    truth = by_id(shared.events_for_day(day))
    seven = get(shared, events_path(shared, f"?day={day}"), Range="id ..; max=7")
    assert seven.status_code == 206 and seven.json() == truth[:7]
    assert seven.headers["Next-Range"] == f"]{truth[6]['id']}..; max=7"
    following = get(shared, events_path(shared, f"?day={day}"), Range=seven.headers["Next-Range"])
    assert following.json() == truth[7:14]
    inclusive = get(
        shared, events_path(shared, f"?day={day}"), Range=f"id {truth[6]['id']}..; max=2"
    )
    assert inclusive.json() == truth[6:8]
    heroku3 = get(shared, events_path(shared, f"?day={day}"), Range="id ..; order=desc,max=10;")
    assert len(heroku3.json()) == 10
    everything = get(shared, events_path(shared, f"?day={day}"), Range="id ..; max=1000")
    assert everything.status_code == 200 and everything.json() == truth
    assert len(fetch_day(shared, day, page_max=97)) == len(truth)


@pytest.mark.parametrize(
    "bad",
    [
        "id ..; max=1001",
        "id ..; max=0",
        "id ..; max=abc",
        "bogus",
        "name ..; max=10",
        "id ..; colour=blue",
        "id ..12..; max=5",
    ],
)
def test_bad_range_is_416(shared: Simulator, bad: str) -> None:
    response = get(shared, events_path(shared), Range=bad)
    assert response.status_code == 416
    assert response.json()["id"] == "requested_range_not_satisfiable"


def test_etag_and_304(small: Simulator) -> None:
    day = utc_today() - timedelta(days=1)
    first = get(small, events_path(small, f"?day={day}"))
    etag = first.headers["ETag"]
    assert etag == f'"{hashlib.sha256(first.content).hexdigest()}"'  # strong, of the body
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = get(small, events_path(small, f"?day={day}"), If_None_Match=header)
        assert again.status_code == 304 and again.content == b""
        assert again.headers["ETag"] == etag and "RateLimit-Remaining" in again.headers
    assert get(small, events_path(small, f"?day={day}"), If_None_Match='"other"').status_code == 200
    small.add_events(day, 1)
    changed = get(small, events_path(small, f"?day={day}"), If_None_Match=etag)
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert small.request_log[-1]["if_none_match"] == etag


# -- rate limits ---------------------------------------------------------------------------


def test_rate_limit_bucket_429_and_retry_after() -> None:
    config = SimulatorConfig(rate_limit_capacity=3, refill_per_minute=0.001)
    with Simulator(config) as sim:
        remaining = [
            int(get(sim, "/enterprise-accounts/acme").headers["RateLimit-Remaining"])
            for _ in range(3)
        ]
        assert remaining == [2, 1, 0]
        limited = get(sim, "/enterprise-accounts/acme")
        assert limited.status_code == 429 and "Retry-After" not in limited.headers
        assert limited.json() == {
            "id": "rate_limit",
            "message": "Your account reached the API rate limit\n"
            "Please wait a few minutes before making new requests",
            "url": "https://devcenter.heroku.com/articles/platform-api-reference#rate-limits",
        }
        sim.faults.retry_after = 7
        assert get(sim, "/enterprise-accounts/acme").headers["Retry-After"] == "7"
        sim.faults.retry_after = 0.5
        assert get(sim, events_path(sim)).headers["Retry-After"] == "0.5"
        for _ in range(3):  # free, and answered even when the bucket is empty
            free = get(sim, "/account/rate-limits")
            assert free.status_code == 200 and free.json() == {"remaining": 0}


def test_the_bucket_refills_continuously() -> None:
    with Simulator(SimulatorConfig(rate_limit_capacity=2, refill_per_minute=600)) as sim:
        statuses = [get(sim, "/enterprise-accounts/acme").status_code for _ in range(3)]
        assert statuses[:2] == [200, 200]
        time.sleep(0.3)  # 10 tokens a second
        assert get(sim, "/enterprise-accounts/acme").status_code == 200
        assert get(sim, "/account/rate-limits", token=DEMO_TOKEN).json()["remaining"] <= 2


def test_rate_limit_remaining_override_reports_without_limiting(small: Simulator) -> None:
    small.faults.rate_limit_remaining = 10
    response = get(small, "/enterprise-accounts/acme")
    assert response.status_code == 200 and response.headers["RateLimit-Remaining"] == "10"
    assert get(small, "/account/rate-limits").json() == {"remaining": 10}


# -- faults --------------------------------------------------------------------------------


def test_error_rate_and_status(small: Simulator) -> None:
    small.faults.error_rate = 1.0
    failed = get(small, events_path(small))
    assert failed.status_code == 503 and failed.json()["id"] == "service_unavailable"
    small.faults.error_status = 500
    failed = get(small, "/enterprise-accounts/acme")
    assert failed.status_code == 500 and failed.json()["id"] == "internal_server_error"
    assert get(small, "/account/rate-limits").status_code == 200  # faults spare it


def test_fault_decisions_are_reproducible_for_a_seed() -> None:
    def statuses() -> list[int]:
        with Simulator(SimulatorConfig(seed=9, events_per_day=5), Faults(error_rate=0.5)) as sim:
            return [get(sim, events_path(sim)).status_code for _ in range(30)]

    first = statuses()
    assert first == statuses() and set(first) == {200, 503}


def test_rate_limit_burst_counts_down(small: Simulator) -> None:
    small.faults.rate_limit_burst = 2
    statuses = [get(small, events_path(small)).status_code for _ in range(3)]
    assert statuses == [429, 429, 200] and small.faults.rate_limit_burst == 0


def test_latency_slows_api_answers_but_not_rate_limits(small: Simulator) -> None:
    small.faults.latency = 0.3
    started = time.monotonic()
    get(small, "/enterprise-accounts/acme")
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    get(small, "/account/rate-limits")
    assert time.monotonic() - started < 0.25


def test_cut_responses_promise_more_than_they_send(small: Simulator) -> None:
    yesterday = events_path(small, f"?day={utc_today() - timedelta(days=1)}")
    small.faults.cut_rate = 1.0
    host, port = small.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    headers = {"Accept": ACCEPT, "Authorization": f"Bearer {DEMO_TOKEN}"}
    connection.request("GET", yesterday, headers=headers)
    response = connection.getresponse()
    assert response.status == 200 and int(response.headers["Content-Length"]) > 100
    with pytest.raises(http.client.IncompleteRead):
        response.read()
    connection.close()
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        get(small, yesterday)
    assert get(small, "/enterprise-accounts/acme").status_code == 200  # only /events is cut


def test_invalid_json_and_envelope(small: Simulator) -> None:
    small.faults.invalid_json_rate = 1.0
    broken = get(small, events_path(small))
    assert broken.status_code == 200 and broken.headers["Content-Type"] == JSON
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(broken.content)
    small.faults.invalid_json_rate = 0.0
    small.faults.envelope = True
    wrapped = get(small, events_path(small)).json()
    assert set(wrapped) == {"data"}
    assert by_id(wrapped["data"]) == by_id(small.events_for_day(utc_today()))


def test_late_events_arrive_once_after_n_requests(small: Simulator) -> None:
    late_day = utc_today() - timedelta(days=2)
    before = {event["id"] for event in small.events_for_day(late_day)}
    small.faults.late_day, small.faults.late_count = late_day, 4
    small.faults.late_after_requests = 2
    for _ in range(2):
        get(small, events_path(small, f"?day={late_day}"))
    assert len(small.events_for_day(late_day)) == len(before)
    third = get(small, events_path(small, f"?day={late_day}")).json()
    assert len(third) == len(before) + 4 and small.faults.late_after_requests is None
    get(small, events_path(small, f"?day={late_day}"))
    assert len(small.events_for_day(late_day)) == len(before) + 4  # once per arming
    late = [event for event in third if event["id"] not in before]
    assert all(event["created_at"].startswith(str(late_day)) for event in late)
    assert small.events_requests() == 4


def test_late_events_default_to_yesterday(small: Simulator) -> None:
    yesterday = utc_today() - timedelta(days=1)
    before = len(small.events_for_day(yesterday))
    small.faults.late_after_requests = 0
    get(small, events_path(small))
    assert len(small.events_for_day(yesterday)) == before + 3


def test_add_events_are_new_inside_the_day_and_never_in_the_future(small: Simulator) -> None:
    today = utc_today()
    known = {event["id"] for event in small.all_events()}
    added = small.add_events(today, 25) + small.add_events(today - timedelta(days=3), 5)
    assert len(added) == 30 and not known & {event["id"] for event in added}
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    assert all(event["created_at"][:19] <= now for event in added[:25])
    served = {event["id"] for event in get(small, events_path(small)).json()}
    assert {event["id"] for event in added[:25]} <= served


# -- archives ------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["array", "entries"])
def test_archives_list_info_and_download(layout: str) -> None:
    config = SimulatorConfig(seed=4, events_per_day=6, history_days=40, archive_layout=layout)
    with Simulator(config) as sim:
        today = utc_today()
        listing = get(sim, "/enterprise-accounts/acme/archives").json()
        months = {(today - timedelta(days=n)).strftime("%Y-%m") for n in range(1, 41)}
        assert [f"{item['year']}-{item['month']}" for item in listing] == sorted(months)
        for item in listing:
            assert set(item) == {"year", "month", "created_at", "url", "checksum", "size"}
            assert isinstance(item["year"], int) and re.fullmatch(r"\d\d", item["month"])
            assert STAMP.fullmatch(item["created_at"])
            path = f"/enterprise-accounts/{sim.config.enterprise_id}/archives"
            assert get(sim, f"{path}/{item['year']}/{item['month']}").json() == item
            content = requests.get(item["url"], timeout=5).content  # no auth, like S3
            assert hashlib.sha256(content).hexdigest() == item["checksum"]
            assert len(content) == item["size"]
            body = orjson.loads(gzip.decompress(content))
            events = body["entries"] if layout == "entries" else body
            month = f"{item['year']}-{item['month']}"
            expected = [
                event
                for event in sim.all_events()
                if event["created_at"].startswith(month) and event["created_at"][:10] < str(today)
            ]
            assert by_id(events) == by_id(expected)
        times = [event["created_at"] for event in events]  # the last month's, a few days at least
        assert times != sorted(times)  # "doesn't always list entries in chronological order"
        assert get(sim, "/enterprise-accounts/acme/archives", token=None).status_code == 401


def test_missing_and_bad_checksum_months() -> None:
    yesterday = utc_today() - timedelta(days=1)
    month = yesterday.strftime("%Y-%m")
    older = (yesterday - timedelta(days=40)).strftime("%Y-%m")
    config = SimulatorConfig(
        events_per_day=3,
        history_days=41,
        missing_archive_months=(older,),
        bad_checksum_months=(month,),
    )
    with Simulator(config) as sim:
        listing = get(sim, "/enterprise-accounts/acme/archives").json()
        listed = {f"{item['year']}-{item['month']}" for item in listing}
        assert month in listed and older not in listed
        year, number = older.split("-")
        assert get(sim, f"/enterprise-accounts/acme/archives/{year}/{number}").status_code == 404
        bad = next(item for item in listing if f"{item['year']}-{item['month']}" == month)
        assert (
            hashlib.sha256(requests.get(bad["url"], timeout=5).content).hexdigest()
            != bad["checksum"]
        )
        for path in ("2017/01", f"{yesterday.year}/{yesterday.month:03d}", "abcd/ef", "2026/01/x"):
            assert get(sim, f"/enterprise-accounts/acme/archives/{path}").status_code == 404
        assert (
            requests.get(sim.url + f"/archive-files/0/{month}.json.gz", timeout=5).status_code
            == 404
        )


def test_no_archive_holds_today_events(small: Simulator) -> None:
    today = str(utc_today())
    for item in get(small, "/enterprise-accounts/acme/archives").json():
        body = orjson.loads(gzip.decompress(requests.get(item["url"], timeout=5).content))
        assert all(event["created_at"][:10] < today for event in body)


# -- the generator -------------------------------------------------------------------------


def test_same_seed_same_events_other_seed_other_events() -> None:
    day = utc_today() - timedelta(days=1)
    with Simulator(SimulatorConfig(seed=5)) as first, Simulator(SimulatorConfig(seed=5)) as second:
        assert first.events_for_day(day) == second.events_for_day(day)
        assert first.config.enterprise_id == second.config.enterprise_id
        other = Simulator(SimulatorConfig(seed=6))
        assert other.events_for_day(day) != first.events_for_day(day)
        assert other.config.enterprise_id != first.config.enterprise_id


def test_today_holds_only_events_up_to_the_start(small: Simulator) -> None:
    started = small.started_at.strftime("%Y-%m-%dT%H:%M:%S.%f")
    assert all(
        event["created_at"].rstrip("Z") <= started for event in small.events_for_day(utc_today())
    )


def test_events_are_realistic_and_varied() -> None:
    day = date(2026, 11, 23)
    events = generate_day(1, day, 3000, {"id": str(uuid.uuid4()), "name": "acme"})
    assert {(event["type"], event["action"]) for event in events} == set(EVENT_TYPES)
    assert len({event["id"] for event in events}) == 3000
    assert all(str(uuid.UUID(event["id"])) == event["id"] for event in events)
    assert all(STAMP.fullmatch(event["created_at"]) for event in events)
    assert all(event["created_at"].startswith("2026-11-23T") for event in events)
    with_ms = [event for event in events if "." in event["created_at"]]
    assert 0.1 < len(with_ms) / len(events) < 0.5
    assert any("app" not in event for event in events)
    assert all("app" not in event for event in events if event["type"] == "team_membership")
    assert any(event.get("request") is None and "request" in event for event in events)
    assert any("request" not in event for event in events)
    assert any(":" in (event.get("request") or {}).get("ip_address", "") for event in events)
    assert any(event["actor"]["email"] == "zoë@example.com" for event in events)
    assert any((event.get("app") or {}).get("name") == "café-prod" for event in events)
    assert any(len(orjson.dumps(event.get("data"))) > 4096 for event in events)
    assert generate_day(1, day, 50, {"id": "x", "name": "acme"}) == generate_day(
        1, day, 50, {"id": "x", "name": "acme"}
    )


@pytest.mark.slow
def test_a_hundred_thousand_events_a_day_is_quick() -> None:
    with Simulator(SimulatorConfig(events_per_day=100_000, history_days=1)) as sim:
        started = time.monotonic()
        day = utc_today() - timedelta(days=1)
        page = get(sim, events_path(sim, f"?day={day}"), Range="id ..; max=1000")
        assert page.status_code == 206 and len(page.json()) == 1000
        assert time.monotonic() - started < 10


# -- request log and the `simulate` command ------------------------------------------------


def test_the_request_log_never_holds_the_token(small: Simulator) -> None:
    yesterday = str(utc_today() - timedelta(days=1))
    get(small, events_path(small, f"?day={yesterday}"), Range="id ..; max=5", If_None_Match='"x"')
    requests.get(
        small.url + "/enterprise-accounts/acme",
        headers={"Accept": ACCEPT},
        auth=("me@example.com", DEMO_TOKEN),
        timeout=5,
    )
    get(small, "/enterprise-accounts/acme", token="HRKU-some-wrong-token")
    entry = small.request_log[0]
    assert entry == {
        "method": "GET",
        "path": events_path(small),
        "query": {"day": yesterday},
        "status": 206,
        "range": "id ..; max=5",
        "if_none_match": '"x"',
        "credentials": True,  # that some came, never what they were
    }
    logged = repr(small.request_log)
    for secret in (
        DEMO_TOKEN,
        "HRKU-some-wrong-token",
        base64.b64encode(f"me@example.com:{DEMO_TOKEN}".encode()).decode(),
    ):
        assert secret not in logged
    assert small.events_requests() == 1


def test_simulate_flags_validate_their_values() -> None:
    parser = argparse.ArgumentParser()
    simulator_module.add_arguments(parser)
    args = parser.parse_args(
        ["--port", "0", "--error-rate", "0.5", "--envelope", "--late-day", "2026-01-02"]
    )
    assert args.port == 0 and args.error_rate == 0.5 and args.envelope is True
    assert args.late_day == date(2026, 1, 2)
    assert parser.parse_args([]).port == 8765
    for bad in (["--error-rate", "2"], ["--port", "-1"], ["--archive-layout", "csv"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


@pytest.mark.e2e
def test_simulate_prints_the_exports_and_stops_on_sigint() -> None:
    program = (
        "import argparse, sys\n"
        "from heroku_audit_trail import simulator\n"
        "parser = argparse.ArgumentParser()\n"
        "simulator.add_arguments(parser)\n"
        "sys.exit(simulator.run(parser.parse_args(sys.argv[1:])))\n"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", program, "--port", "0", "--enterprise-name", "globex"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        banner = [server.stdout.readline().decode().strip() for _ in range(4)]
        url = banner[0].split()[-1]
        assert banner[1:] == [
            f"export HEROKU_API_URL={url}",
            f"export HEROKU_API_KEY={DEMO_TOKEN}",
            "export HEROKU_ENTERPRISE=globex",
        ]
        response = requests.get(
            url + "/enterprise-accounts/globex",
            headers={"Accept": ACCEPT, "Authorization": f"Bearer {DEMO_TOKEN}"},
            timeout=5,
        )
        assert response.status_code == 200
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=10) == 0
