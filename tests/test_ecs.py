"""The pure ECS mapping: field map, categorization table, times, hostile shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heroku_audit_trail.ecs import (
    UNPARSED,
    Unparsed,
    categorize,
    event_key,
    format_time,
    parse_time,
    render,
    to_ecs,
)

READ_AT = "2026-11-24T22:00:00.000000Z"

EVENT: dict[str, Any] = {
    "id": "0b7b6f52-8f0c-4d7e-9d55-2b8b0a4a7f11",
    "type": "app",
    "action": "create",
    "actor": {"id": "a1", "email": "alice@example.com"},
    "app": {"id": "p1", "name": "acme-prod"},
    "owner": {"id": "o1", "email": "owner@example.com"},
    "enterprise_account": {"id": "e1", "name": "acme"},
    "team": {"id": "t1", "name": "core"},
    "request": {"ip_address": "203.0.113.7"},
    "data": {"stack": "heroku-24", "region": None},
    "created_at": "2026-11-23T10:11:12Z",
}

# Every documented type.action (reference §1.1) and its (category, type).
TABLE = {
    "addon.attach": (["configuration"], ["creation"]),
    "addon.create": (["configuration"], ["creation"]),
    "addon.destroy": (["configuration"], ["deletion"]),
    "addon.detach": (["configuration"], ["deletion"]),
    "addon.update": (["configuration"], ["change"]),
    "app.create": (["configuration"], ["creation"]),
    "app.destroy": (["configuration"], ["deletion"]),
    "app.update": (["configuration"], ["change"]),
    "app_transfer.create": (["configuration"], ["creation"]),
    "app_transfer.update": (["configuration"], ["change"]),
    "code_release.create": (["configuration"], ["creation"]),
    "collaborator.create": (["iam"], ["user", "change"]),
    "collaborator.destroy": (["iam"], ["user", "change"]),
    "config_change.remove": (["configuration"], ["deletion"]),
    "config_change.set": (["configuration"], ["change"]),
    "domain.create": (["configuration"], ["creation"]),
    "domain.destroy": (["configuration"], ["deletion"]),
    "enterprise_account_membership.create": (["iam"], ["user", "change"]),
    "enterprise_account_membership.destroy": (["iam"], ["user", "change"]),
    "enterprise_account_membership.update": (["iam"], ["user", "change"]),
    "heroku_config_change.update": (["configuration"], ["change"]),
    "sni_endpoint.create": (["configuration"], ["creation"]),
    "sni_endpoint.destroy": (["configuration"], ["deletion"]),
    "sni_endpoint.update": (["configuration"], ["change"]),
    "space.create": (["configuration"], ["creation"]),
    "space.destroy": (["configuration"], ["deletion"]),
    "space.update": (["configuration"], ["change"]),
    "team_membership.create": (["iam"], ["user", "change"]),
    "team_membership.destroy": (["iam"], ["user", "change"]),
    "team_membership.update": (["iam"], ["user", "change"]),
    "team.destroy": (["iam"], ["group", "deletion"]),
    "team.update": (["iam"], ["group", "change"]),
    "trusted_ip.update": (["configuration"], ["change"]),
    "applink_connection.create": (["configuration"], ["creation"]),
    "applink_authorization.create": (["iam"], ["admin", "creation"]),
    "applink_authorization.destroy": (["iam"], ["admin", "deletion"]),
    "applink_app.publish": (["configuration"], ["change"]),
}

# ECS 8.x allowed event.type values per category.
ALLOWED = {
    "iam": {"admin", "change", "creation", "deletion", "group", "info", "user"},
    "configuration": {"access", "change", "creation", "deletion", "info"},
}


@pytest.mark.parametrize(("type_action", "expected"), sorted(TABLE.items()))
def test_every_documented_event_is_categorized(
    type_action: str, expected: tuple[list[str], list[str]]
) -> None:
    object_type, verb = type_action.split(".")
    category, event_type = categorize(object_type, verb)
    assert (category, event_type) == expected
    assert set(event_type) <= ALLOWED[category[0]]


def test_unknown_verb_keeps_category_and_unknown_object_gets_neither() -> None:
    assert categorize("app", "teleport") == (["configuration"], [])
    assert categorize("team", "teleport") == (["iam"], [])
    assert categorize("spaceship", "create") == ([], [])
    mapped = to_ecs({"id": "x", "type": "spaceship", "action": "launch"}, READ_AT)
    assert mapped["event"]["action"] == "spaceship.launch"
    assert "category" not in mapped["event"] and "type" not in mapped["event"]


def test_field_map() -> None:
    mapped = to_ecs(EVENT, READ_AT)
    assert mapped["@timestamp"] == "2026-11-23T10:11:12.000000Z"
    assert mapped["ecs"]["version"].startswith("8.")
    assert mapped["event"] == {
        "kind": "event",
        "id": EVENT["id"],
        "action": "app.create",
        "category": ["configuration"],
        "type": ["creation"],
        "module": "heroku",
        "dataset": "heroku.audit",
        "provider": "heroku",
        "created": READ_AT,
    }
    assert mapped["user"] == {"id": "a1", "email": "alice@example.com"}
    assert mapped["source"] == {"ip": "203.0.113.7"}
    assert mapped["related"]["ip"] == ["203.0.113.7"]
    assert {"alice@example.com", "owner@example.com"} <= set(mapped["related"]["user"])
    assert mapped["organization"] == {"id": "e1", "name": "acme"}
    assert mapped["heroku"]["app"] == {"id": "p1", "name": "acme-prod"}
    assert mapped["heroku"]["data"] == {"stack": "heroku-24"}  # null dropped
    assert mapped["message"] == "alice@example.com app.create acme-prod"
    for forbidden in ("host", "pid", "command", "stream", "source_type", "timestamp"):
        assert forbidden not in mapped


def test_include_original_is_the_source_as_compact_json() -> None:
    mapped = to_ecs(EVENT, READ_AT, include_original=True)
    assert orjson.loads(mapped["event"]["original"]) == EVENT
    assert "\n" not in mapped["event"]["original"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-11-23T10:11:12Z", "2026-11-23T10:11:12.000000Z"),
        ("2026-11-23T10:11:12.870Z", "2026-11-23T10:11:12.870000Z"),
        ("2026-11-23T10:11:12.123456789Z", "2026-11-23T10:11:12.123456Z"),
        ("2026-11-23T10:11:12+00:00", "2026-11-23T10:11:12.000000Z"),
        ("2026-11-23T12:11:12.5+02:00", "2026-11-23T10:11:12.500000Z"),
        ("2026-11-23T01:00:00-0300", "2026-11-23T04:00:00.000000Z"),
        ("2026-11-23T12:11:12+02", "2026-11-23T10:11:12.000000Z"),
        ("0001-01-01T01:00:00+01:00", "0001-01-01T00:00:00.000000Z"),
        ("2026-11-23T10:11:12", "2026-11-23T10:11:12.000000Z"),
    ],
)
def test_times_have_one_shape(raw: str, expected: str) -> None:
    parsed = parse_time(raw)
    assert parsed is not None and format_time(parsed) == expected


def line_of(event: dict[str, Any], output_format: str = "ecs") -> dict[str, Any]:
    result: dict[str, Any] = orjson.loads(render(event, output_format, READ_AT).line)
    return result


def test_a_missing_time_is_the_read_time_with_a_warning() -> None:
    for event in ({"id": "x"}, {"id": "x", "created_at": None}):
        rendered = render(event, "ecs", READ_AT)
        assert orjson.loads(rendered.line)["@timestamp"] == READ_AT
        assert orjson.loads(rendered.line)["event"]["kind"] == "event"
        assert rendered.warning and "read time" in rendered.warning


@pytest.mark.parametrize(
    "raw",
    [17, "", "yesterday", "2026-13-01T00:00:00Z", ["x"], "0001-01-01T00:00:00+01:00"],
)
def test_an_impossible_time_is_a_degraded_line_not_a_crash(raw: object) -> None:
    assert parse_time(raw) is None
    line = line_of({"id": "x", "type": "app", "created_at": raw})
    assert line["@timestamp"] == READ_AT
    assert line["event"]["kind"] == "pipeline_error" and line["event"]["id"] == "x"
    assert "created_at" in line["error"]["message"]
    assert orjson.loads(line["event"]["original"])["created_at"] == raw


def test_poison_events_are_printed_degraded_with_their_original() -> None:
    deep: Any = "bottom"
    for _ in range(300):  # orjson serializes 254 levels at most
        deep = {"x": deep}
    poisons = [
        {"id": "deep", "created_at": "2026-11-23T10:11:12Z", "data": deep},
        {"id": "surrogate", "created_at": "2026-11-23T10:11:12Z", "data": {"s": "\ud800"}},
        {UNPARSED: Unparsed('{"id": "x", "data": [[[[]]]]}', "nested too deeply to read")},
    ]
    for event in poisons:
        for output_format in ("ecs", "heroku"):
            rendered = render(event, output_format, READ_AT)
            line = orjson.loads(rendered.line)
            assert line["event"]["kind"] == "pipeline_error", event
            assert line["event"]["id"] == event_key(event)
            assert line["@timestamp"] in ("2026-11-23T10:11:12.000000Z", READ_AT)
            assert line["error"]["message"] and rendered.warning
            assert "original" in line["event"]
    # The original keeps a lone surrogate as its JSON escape, so it can be read back.
    assert "\\ud800" in line_of(poisons[1])["event"]["original"]


def test_every_line_has_an_id_and_distinct_id_less_events_keep_distinct_ids() -> None:
    first = {"type": "app", "action": "create", "created_at": "2026-11-23T00:00:00Z"}
    second = {**first, "actor": {"email": "bob@example.com"}}
    ids = {line_of(first)["event"]["id"], line_of(second)["event"]["id"]}
    assert len(ids) == 2 and all(key.startswith("sha256:") for key in ids)
    assert line_of(first)["event"]["id"] == line_of(dict(first))["event"]["id"]  # stable
    assert line_of({"id": 42})["event"]["id"] == "42"


def test_wrong_types_do_not_crash_or_produce_null() -> None:
    hostile = {
        "id": 5,
        "type": ["app"],
        "action": None,
        "actor": "alice",
        "app": None,
        "request": {"ip_address": 12},
        "enterprise_account": {"id": None, "name": "acme"},
        "data": None,
    }
    mapped = to_ecs(hostile, READ_AT)
    assert b"null" not in orjson.dumps(mapped)
    assert mapped["organization"] == {"name": "acme"}
    assert "action" not in mapped["event"] and "user" not in mapped


def test_event_key_falls_back_to_a_digest() -> None:
    assert event_key({"id": "abc"}) == "abc"
    anonymous = {"type": "app", "action": "create", "created_at": "2026-11-23T00:00:00Z"}
    assert event_key(anonymous) == event_key(dict(reversed(list(anonymous.items()))))
    assert event_key(anonymous).startswith("sha256:")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=12,
)
event_keys = st.sampled_from(
    [
        *("id", "type", "action", "actor", "app", "owner", "team", "enterprise_account"),
        *("request", "data", "created_at"),
    ]
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(event_keys, json_values))
def test_any_event_renders_one_line_without_null(event: dict[str, Any]) -> None:
    rendered = render(event, "ecs", READ_AT)
    assert rendered.line.endswith(b"\n") and rendered.line.count(b"\n") == 1
    mapped = orjson.loads(rendered.line)
    assert mapped["@timestamp"] and mapped["event"]["id"]
    assert mapped["event"]["kind"] in ("event", "pipeline_error")

    def walk(value: Any) -> None:
        assert value is not None
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(mapped)
    orjson.dumps(mapped)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(event_keys, json_values))
def test_the_fast_line_is_the_plain_mapping(event: dict[str, Any]) -> None:
    """render() serializes parts once as Fragments; the bytes must mean exactly to_ecs()."""
    rendered = render(event, "ecs", READ_AT)
    try:
        expected = to_ecs(event, READ_AT)
    except (ValueError, TypeError):
        assert b'"pipeline_error"' in rendered.line
        return
    assert orjson.loads(rendered.line) == orjson.loads(orjson.dumps(expected))


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    st.sampled_from(["Z", ".000Z", ".5Z", ".123Z", ".123456Z", "+00:00", "-01:30"]),
)
def test_heroku_shaped_times_take_the_fast_path_to_the_same_answer(
    moment: datetime, suffix: str
) -> None:
    raw = moment.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0") + suffix
    rendered = orjson.loads(render({"id": "x", "created_at": raw}, "ecs", READ_AT).line)
    parsed = parse_time(raw)
    assert parsed is not None and rendered["@timestamp"] == format_time(parsed)


@pytest.mark.parametrize(
    "raw", ["2026-W47-1T10:11:12Z", "2026-11-23T10:11:12,870Z", "2026-11-23T25:11:12.870Z"]
)
def test_look_alike_times_are_not_taken_for_heroku_shapes(raw: str) -> None:
    rendered = orjson.loads(render({"id": "x", "created_at": raw}, "ecs", READ_AT).line)
    parsed = parse_time(raw)
    if parsed is None:
        assert rendered["event"]["kind"] == "pipeline_error"
    else:
        assert rendered["@timestamp"] == format_time(parsed)


@pytest.mark.parametrize("depth", [250, 253, 254])
def test_data_nested_near_orjsons_limit_is_still_a_normal_line(depth: int) -> None:
    """The heroku parts are serialized together (one level deeper than each alone): data
    nested to orjson's limit falls back to part by part, as before, not to a degraded line."""
    data: Any = "deep"
    for _ in range(depth):
        data = {"a": data}
    line = line_of({"id": "d", "type": "app", "action": "create", "data": data})
    assert line["event"]["kind"] == "event"
