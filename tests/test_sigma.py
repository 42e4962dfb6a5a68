"""examples/sigma/ through pySigma: every rule loads and converts for Elasticsearch (Lucene and
ES|QL, where the backend supports the rule's kind) and for SQLite, and the SQLite queries run
over a month of simulated events as the real `events` command prints them, before and after
the planted patterns (tests/planted.py): a rule returns exactly its planted events, none of its
near-misses. Each rule is then mutated (a value or a threshold changed) and must fail."""

from __future__ import annotations

import copy
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from .planted import SIGMA_PLAN, month_printed
from .test_examples import EXAMPLES

collection = pytest.importorskip("sigma.collection", reason="pySigma not installed (extra: test)")
elasticsearch = pytest.importorskip("sigma.backends.elasticsearch")
sqlite_backend = pytest.importorskip("sigma.backends.sqlite")

pytestmark = pytest.mark.e2e  # the month comes from the real command

RULES = sorted((EXAMPLES / "sigma").glob("*.yml"))
# The finds/misses key of each rule in tests/planted.py: its file name without heroku_.
KEYS = {path: path.stem.removeprefix("heroku_") for path in RULES}


def load(text: str) -> Any:
    return collection.SigmaCollection.from_yaml(text)


def flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """An ECS line's fields by dotted name, as Sigma names them."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out |= flat(inner, f"{prefix}{key}.")
        return out
    return {prefix[:-1]: value}


# Multi-valued fields a rule selects on: one row per value, as Elasticsearch matches an array
# on any of its values (only where no rule counts rows: a correlation counts them). Every other
# list is one value when it has one, else its JSON text.
EXPLODED = {"heroku.data.permissions"}


def rows_of(line: bytes) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [{}]
    for name, value in flat(orjson.loads(line)).items():
        if isinstance(value, list) and name in EXPLODED and value:
            rows = [{**row, name: each} for row in rows for each in value]
            continue
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if isinstance(value, (dict, list)):
            value = orjson.dumps(value).decode()
        rows = [{**row, name: value} for row in rows]
    return rows


def _regexp(pattern: str, value: object) -> bool:
    return value is not None and re.search(pattern, str(value)) is not None


def database(lines: list[bytes]) -> sqlite3.Connection:
    rows = [row for line in lines for row in rows_of(line)]
    names = sorted({name for row in rows for name in row} | {"timestamp"})
    connection = sqlite3.connect(":memory:")
    connection.create_function(
        "regexp",
        2,
        lambda pattern, value: value is not None and re.search(pattern, str(value)) is not None,
    )
    columns = ", ".join(f"`{name}`" for name in names)
    connection.execute(f"CREATE TABLE logs ({columns})")
    marks = ", ".join("?" for _ in names)
    for row in rows:
        row["timestamp"] = row["@timestamp"]  # the sqlite backend's correlations read it
        connection.execute(
            f"INSERT INTO logs ({columns}) VALUES ({marks})", [row.get(n) for n in names]
        )
    return connection


def matched(connection: sqlite3.Connection, query: str) -> set[str]:
    """What a converted rule returns: the ids of its events, or for a correlation the actors
    (user.email, its group-by) it raised an alert for."""
    cursor = connection.execute(query)
    names = [column[0] for column in cursor.description]
    found: set[str] = set()
    for row in cursor.fetchall():
        record = dict(zip(names, row, strict=True))
        if "event.id" in record:
            found.add(record["event.id"])
        else:
            found.add(orjson.loads(record["group_keys"])["user.email"])
    return found


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, sqlite3.Connection]]:
    before, after = month_printed(SIGMA_PLAN, 32, tmp_path_factory.mktemp)
    yield {"before": database(before), "after": database(after)}


def sqlite_query(text: str) -> str:
    [query] = sqlite_backend.sqliteBackend().convert(load(text))
    return str(query)


def expected(path: Path, text: str) -> tuple[set[str], set[str]]:
    """What the rule must find and must not: planted event ids, or for a correlation the
    actors of its planted events."""
    key = KEYS[path]
    finds, misses = SIGMA_PLAN.sigma_found(key), SIGMA_PLAN.sigma_missed(key)
    if "correlation:" not in text:
        return finds, misses
    actor = {event["id"]: event["actor"]["email"] for event in SIGMA_PLAN.events}
    wanted = {actor[event_id] for event_id in finds}
    return wanted, {actor[event_id] for event_id in misses} - wanted


def verdict(month: dict[str, sqlite3.Connection], path: Path, text: str) -> str | None:
    """None when the rule finds exactly its planted events; else what went wrong."""
    query = sqlite_query(text)
    wanted, near_misses = expected(path, text)
    after = matched(month["after"], query)
    new = after - matched(month["before"], query)
    if new != wanted:
        return f"found {sorted(new)}, wanted {sorted(wanted)}"
    if after & near_misses:
        return f"found its near-misses {sorted(after & near_misses)}"
    return None


@pytest.mark.parametrize("path", RULES, ids=lambda path: path.stem)
def test_every_rule_is_valid_sigma_and_converts(path: Path) -> None:
    rules = load(path.read_text())
    for rule in rules:
        assert not rule.errors, rule.errors
        assert rule.id is not None and rule.title and rule.description
    main = rules[-1]  # the detection itself; the others are the steps it correlates
    assert main.level is not None and main.status is not None
    correlation = type(main).__name__ == "SigmaCorrelationRule"
    if not correlation:
        assert main.logsource.product == "heroku" and main.logsource.service == "audit"
        assert elasticsearch.LuceneBackend().convert(rules)
    kind = str(getattr(main, "type", ""))
    if not correlation or "event_count" in kind:
        assert elasticsearch.ESQLBackend().convert(rules)
    else:  # said in the rule, for a team that reads it before converting
        assert "do not support it" in main.description
    assert sqlite_query(path.read_text()).upper().lstrip().startswith(("SELECT", "WITH"))


@pytest.mark.parametrize("path", RULES, ids=lambda path: path.stem)
def test_every_rule_finds_exactly_its_planted_events(
    month: dict[str, sqlite3.Connection], path: Path
) -> None:
    assert SIGMA_PLAN.sigma_found(KEYS[path]), f"no planted event for {path.name}"
    assert verdict(month, path, path.read_text()) is None


def mutants(text: str) -> Iterator[tuple[str, str]]:
    """(what was changed, the rule's text with it changed): each string value of a detection
    and each correlation threshold and timespan, one at a time."""
    documents = list(yaml.safe_load_all(text))
    for at, document in enumerate(documents):
        for name, block in (document.get("detection") or {}).items():
            if name == "condition":
                continue
            for field, value in _fields(block):
                for index in range(len(value) if isinstance(value, list) else 1):
                    changed = copy.deepcopy(documents)
                    target = _field(changed[at]["detection"][name], field)
                    if isinstance(value, list):
                        target[field][index] = f"{value[index]}x"
                    else:
                        target[field] = f"{value}x"
                    yield f"{field}={value!r}[{index}]", yaml.safe_dump_all(changed)
        correlation = document.get("correlation")
        if correlation:
            if "condition" in correlation:
                changed = copy.deepcopy(documents)
                changed[at]["correlation"]["condition"]["gte"] += 1
                yield "gte+1", yaml.safe_dump_all(changed)
            changed = copy.deepcopy(documents)
            inner = changed[at]["correlation"]
            number, unit = re.fullmatch(r"(\d+)([smhd])", inner["timespan"]).groups()  # type: ignore[union-attr]
            seconds = int(number) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
            inner["timespan"] = f"{seconds // 2}s"
            yield "timespan/2", yaml.safe_dump_all(changed)


def _fields(block: Any) -> Iterator[tuple[str, Any]]:
    for item in block if isinstance(block, list) else [block]:
        yield from item.items()


def _field(block: Any, field: str) -> dict[str, Any]:
    for item in block if isinstance(block, list) else [block]:
        if field in item:
            return item  # type: ignore[no-any-return]
    raise KeyError(field)


def test_every_rule_fails_when_a_value_or_threshold_is_mutated(
    month: dict[str, sqlite3.Connection], capsys: pytest.CaptureFixture[str]
) -> None:
    """Every mutant of every rule is killed: each value and threshold has a planted event or
    near-miss that a change of it turns into a wrong answer."""
    report = []
    for path in RULES:
        results = [
            (what, verdict(month, path, text) is not None)
            for what, text in mutants(path.read_text())
        ]
        killed = sum(kill for _, kill in results)
        report.append(f"{path.stem}: {killed}/{len(results)} mutants killed")
        report += [f"  survived: {what}" for what, kill in results if not kill]
        assert killed == len(results), report
    with capsys.disabled():
        print("\n" + "\n".join(report))
