"""The simulator behaves like the Platform API as the reference records it (real HTTP)."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator
from datetime import timedelta

import orjson
import pytest
import requests

from heroku_audit_trail.simulator import (
    DEMO_TOKEN,
    NO_ACCESS_TOKEN,
    Faults,
    Simulator,
    SimulatorConfig,
)

from .conftest import utc_today

ACCEPT = "application/vnd.heroku+json; version=3"


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig(seed=2, events_per_day=450, history_days=40)) as sim:
        yield sim


def get(sim: Simulator, path: str, token: str = DEMO_TOKEN, **headers: str) -> requests.Response:
    merged = {"Accept": ACCEPT, "Authorization": f"Bearer {token}"}
    merged.update({key.replace("_", "-"): value for key, value in headers.items()})
    return requests.get(sim.url + path, headers=merged, timeout=10)


def events_path(sim: Simulator, query: str = "") -> str:
    return f"/enterprise-accounts/{sim.config.enterprise_id}/events{query}"


def test_auth_accept_and_errors(simulator: Simulator) -> None:
    wrong = get(simulator, "/enterprise-accounts/acme", token="HRKU-nope")
    assert wrong.status_code == 401 and wrong.json()["id"] == "unauthorized"
    assert set(wrong.json()) == {"id", "message", "url"}
    forbidden = get(simulator, "/enterprise-accounts/acme", token=NO_ACCESS_TOKEN)
    assert forbidden.status_code == 403 and forbidden.json()["id"] == "forbidden"
    no_accept = requests.get(
        simulator.url + "/enterprise-accounts/acme",
        headers={"Authorization": f"Bearer {DEMO_TOKEN}"},
        timeout=10,
    )
    assert no_accept.status_code == 406
    for name in ("nope", "..%2Fx", "a%20b", "a" * 300):
        assert get(simulator, f"/enterprise-accounts/{name}").status_code == 404
    assert all(entry.get("authorization") is None for entry in simulator.request_log)
    assert DEMO_TOKEN not in repr(simulator.request_log)


def test_account_by_name_and_by_id(simulator: Simulator) -> None:
    by_name = get(simulator, "/enterprise-accounts/acme").json()
    by_id = get(simulator, f"/enterprise-accounts/{by_name['id']}").json()
    assert by_name == by_id and "manage" in by_name["permissions"]


def test_pages_cover_the_day_exactly(simulator: Simulator) -> None:
    day = utc_today() - timedelta(days=1)
    first = get(simulator, events_path(simulator, f"?day={day}"))
    assert first.status_code == 206 and len(first.json()) == 200
    assert first.headers["Accept-Ranges"] == "id"
    collected = first.json()
    next_range = first.headers["Next-Range"]
    while next_range:
        page = get(simulator, events_path(simulator, f"?day={day}"), Range=next_range)
        assert page.status_code in (200, 206)
        collected += page.json()
        next_range = page.headers.get("Next-Range", "").replace("max=200", "max=1000")
    ids = [event["id"] for event in collected]
    assert sorted(ids) == sorted(e["id"] for e in simulator.events_for_day(day))
    assert len(ids) == len(set(ids))


def test_bad_range_is_416(simulator: Simulator) -> None:
    for bad in ("id ..; max=5000", "bogus"):
        response = get(simulator, events_path(simulator), Range=bad)
        assert response.status_code == 416
        assert response.json()["id"] == "requested_range_not_satisfiable"


def test_filters_and_bad_day(simulator: Simulator) -> None:
    day = utc_today() - timedelta(days=2)
    apps = get(simulator, events_path(simulator, f"?day={day}&type=app&action=create")).json()
    truth = simulator.events_for_day(day)
    expected = [e for e in truth if e["type"] == "app" and e["action"] == "create"]
    assert sorted(e["id"] for e in apps) == sorted(e["id"] for e in expected)
    assert get(simulator, events_path(simulator, "?day=yesterday")).status_code == 422


def test_etag_and_304(simulator: Simulator) -> None:
    day = utc_today() - timedelta(days=40)
    first = get(simulator, events_path(simulator, f"?day={day}"))
    assert first.status_code in (200, 206)
    again = get(
        simulator, events_path(simulator, f"?day={day}"), If_None_Match=first.headers["ETag"]
    )
    assert again.status_code == 304 and again.content == b""


def test_rate_limit_bucket_and_retry_after() -> None:
    config = SimulatorConfig(rate_limit_capacity=3, refill_per_minute=0.001)
    with Simulator(config) as sim:
        remaining = [
            int(get(sim, "/enterprise-accounts/acme").headers["RateLimit-Remaining"])
            for _ in range(3)
        ]
        assert remaining == sorted(remaining, reverse=True)
        limited = get(sim, "/enterprise-accounts/acme")
        assert limited.status_code == 429 and limited.json()["id"] == "rate_limit"
        assert "Retry-After" not in limited.headers
        sim.faults.retry_after = 7
        assert get(sim, "/enterprise-accounts/acme").headers["Retry-After"] == "7"
        free = get(sim, "/account/rate-limits")
        assert free.status_code == 200 and free.json() == {"remaining": 0}


def test_fault_switches() -> None:
    with Simulator(SimulatorConfig(events_per_day=20), Faults(error_rate=1.0)) as sim:
        assert get(sim, events_path(sim)).status_code == 503
        sim.faults.error_rate = 0
        sim.faults.rate_limit_burst = 1
        assert get(sim, events_path(sim)).status_code == 429
        assert get(sim, events_path(sim)).status_code == 200
        sim.faults.envelope = True
        assert isinstance(get(sim, events_path(sim)).json()["data"], list)
        sim.faults.envelope = False
        sim.faults.invalid_json_rate = 1.0
        with pytest.raises(ValueError):
            orjson.loads(get(sim, events_path(sim)).content)
        sim.faults.invalid_json_rate = 0
        sim.faults.cut_rate = 1.0
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            get(sim, events_path(sim))
        sim.faults.cut_rate = 0
        yesterday = utc_today() - timedelta(days=1)
        before = len(sim.events_for_day(yesterday))
        sim.faults.late_after_requests = 0
        sim.faults.late_count = 4
        get(sim, events_path(sim))
        assert len(sim.events_for_day(yesterday)) == before + 4


def test_archives_both_layouts_and_checksums() -> None:
    for layout in ("array", "entries"):
        config = SimulatorConfig(events_per_day=5, history_days=40, archive_layout=layout)
        with Simulator(config) as sim:
            listing = get(sim, "/enterprise-accounts/acme/archives").json()
            assert listing and all(isinstance(item["month"], str) for item in listing)
            item = listing[-1]
            one = get(sim, f"/enterprise-accounts/acme/archives/{item['year']}/{item['month']}")
            content = requests.get(one.json()["url"], timeout=10).content  # no auth needed
            assert hashlib.sha256(content).hexdigest() == one.json()["checksum"]
            assert len(content) == one.json()["size"]
            body = orjson.loads(gzip.decompress(content))
            events = body["entries"] if layout == "entries" else body
            month = f"{item['year']}-{item['month']}"
            expected = [
                e
                for e in sim.all_events()
                if e["created_at"].startswith(month) and e["created_at"][:10] < str(utc_today())
            ]
            assert sorted(e["id"] for e in events) == sorted(e["id"] for e in expected)


def test_same_seed_same_events() -> None:
    with Simulator(SimulatorConfig(seed=5)) as first, Simulator(SimulatorConfig(seed=5)) as second:
        day = utc_today() - timedelta(days=1)
        assert first.events_for_day(day) == second.events_for_day(day)
        assert first.config.enterprise_id == second.config.enterprise_id
