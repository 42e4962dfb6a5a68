"""The simulator's data, pure and seeded: audit-trail events, the API's filters, archive files.

The same seed and day always give the same events. Shapes follow the schema
(`reference/heroku-platform-api/audit-trail-event.json`); `data` is free-form there, so its
contents are plausible inventions, one small shape per object type.
"""

from __future__ import annotations

import gzip
import random
import uuid
from collections.abc import Callable, Iterator
from datetime import date, datetime, timezone
from typing import Any

import orjson

# Every documented type.action (reference §1.1), with the 2026 applink additions.
EVENT_TYPES: tuple[tuple[str, str], ...] = (
    ("addon", "attach"),
    ("addon", "create"),
    ("addon", "destroy"),
    ("addon", "detach"),
    ("addon", "update"),
    ("app", "create"),
    ("app", "destroy"),
    ("app", "update"),
    ("app_transfer", "create"),
    ("app_transfer", "update"),
    ("code_release", "create"),
    ("collaborator", "create"),
    ("collaborator", "destroy"),
    ("config_change", "remove"),
    ("config_change", "set"),
    ("domain", "create"),
    ("domain", "destroy"),
    ("enterprise_account_membership", "create"),
    ("enterprise_account_membership", "destroy"),
    ("enterprise_account_membership", "update"),
    ("heroku_config_change", "update"),
    ("sni_endpoint", "create"),
    ("sni_endpoint", "destroy"),
    ("sni_endpoint", "update"),
    ("space", "create"),
    ("space", "destroy"),
    ("space", "update"),
    ("team_membership", "create"),
    ("team_membership", "destroy"),
    ("team_membership", "update"),
    ("team", "destroy"),
    ("team", "update"),
    ("trusted_ip", "update"),
    ("applink_connection", "create"),
    ("applink_connection", "destroy"),
    ("applink_authorization", "create"),
    ("applink_authorization", "destroy"),
    ("applink_app", "publish"),
)

# Objects that are not about one app: no app or owner on the event.
ACCOUNT_LEVEL = frozenset(
    {"enterprise_account_membership", "team_membership", "team", "space", "trusted_ip"}
)

PEOPLE = (
    "alice@example.com",
    "bob@example.com",
    "carol@example.org",
    "zoë@example.com",
    "dmitri.ivanov@example.net",
    "ops-bot@example.com",
)
APPS = ("acme-prod", "acme-staging", "billing-api", "café-prod", "worker-eu", "marketing-site")
TEAMS = ("core", "platform", "data-science", "sécurité")
# IPv4 and IPv6 from the documentation ranges: the schema says ipv4, real values may not be.
IPS = ("203.0.113.7", "198.51.100.23", "192.0.2.41", "2001:db8::1f", "203.0.113.250")

DAY_MICROSECONDS = 86_400_000_000


def _stable_ids(names: tuple[str, ...]) -> dict[str, str]:
    """One id per name, so a person, app or team keeps its id across events and runs."""
    return {name: str(uuid.uuid5(uuid.NAMESPACE_URL, f"heroku-sim:{name}")) for name in names}


_IDS = _stable_ids(PEOPLE + APPS + TEAMS)


def new_id(rng: random.Random) -> str:
    """A version-4 UUID drawn from `rng` (uuid.uuid4 would not be reproducible)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _person(rng: random.Random) -> dict[str, str]:
    email = rng.choice(PEOPLE)
    return {"id": _IDS[email], "email": email}


def _named(rng: random.Random, names: tuple[str, ...]) -> dict[str, str]:
    name = rng.choice(names)
    return {"id": _IDS[name], "name": name}


# -- `data` per object type ----------------------------------------------------------------

_VAR_NAMES = tuple(f"VAR_{number:04d}_NAME_OF_A_SETTING" for number in range(400))


def _config_data(rng: random.Random, action: str) -> dict[str, Any]:
    # About one config change in four lists hundreds of variable names (never values): lines of
    # 10+ KiB, longer than Fluent Bit's default 4 KiB buffer, so every busy day has some.
    count = 400 if rng.random() < 0.25 else rng.randint(1, 4)
    return {"config_vars": list(_VAR_NAMES[:count])}


def _membership_data(rng: random.Random, action: str) -> dict[str, Any]:
    data: dict[str, Any] = {"user": _person(rng)}
    if action != "destroy":
        data["permissions"] = rng.sample(["view", "deploy", "operate", "manage"], 2)
    return data


def _addon_data(rng: random.Random, action: str) -> dict[str, Any]:
    plan = rng.choice(["heroku-postgresql:standard-0", "papertrail:choklad", "heroku-redis:mini"])
    data: dict[str, Any] = {"addon": {"name": f"{plan.split(':')[0]}-{rng.randint(1, 99999)}"}}
    data["plan"] = {"name": plan}
    if action in ("attach", "detach"):
        data["attachment"] = {"name": rng.choice(["DATABASE", "REDIS", "HEROKU_POSTGRESQL_RED"])}
    return data


def _app_data(rng: random.Random, action: str) -> dict[str, Any]:
    if action == "update":
        return rng.choice([{"maintenance": rng.random() < 0.5}, {"stack": "heroku-24"}])
    return {"region": rng.choice(["us", "eu"]), "stack": "heroku-24"}


def _transfer_data(rng: random.Random, action: str) -> dict[str, Any]:
    return {"recipient": _person(rng), "state": "pending" if action == "create" else "accepted"}


def _release_data(rng: random.Random, action: str) -> dict[str, Any]:
    return {"version": rng.randint(1, 900), "description": f"Deploy {rng.getrandbits(28):07x}"}


def _domain_data(rng: random.Random, action: str) -> dict[str, Any]:
    return {"hostname": f"www{rng.randint(1, 9)}.example.com", "kind": "custom"}


def _sni_data(rng: random.Random, action: str) -> dict[str, Any]:
    return {"name": f"tokyo-{rng.randint(10000, 99999)}", "domains": ["www.example.com"]}


def _space_data(rng: random.Random, action: str) -> dict[str, Any]:
    return {"name": rng.choice(["acme-eu", "acme-shield"]), "region": rng.choice(["eu", "us"])}


def _team_membership_data(rng: random.Random, action: str) -> dict[str, Any]:
    return {"user": _person(rng), "role": rng.choice(["admin", "member", "viewer"])}


def _team_data(rng: random.Random, action: str) -> dict[str, Any]:
    return {"name": rng.choice(TEAMS)} if action == "update" else {}


def _trusted_ip_data(rng: random.Random, action: str) -> dict[str, Any]:
    return {"ip_ranges": ["203.0.113.0/24", rng.choice(["198.51.100.0/24", "2001:db8::/32"])]}


def _applink_data(rng: random.Random, action: str) -> dict[str, Any]:
    return {"org_url": "https://acme.my.salesforce.com", "name": f"conn-{rng.randint(1, 99)}"}


_DATA: dict[str, Callable[[random.Random, str], dict[str, Any]]] = {
    "addon": _addon_data,
    "app": _app_data,
    "app_transfer": _transfer_data,
    "code_release": _release_data,
    "collaborator": _membership_data,
    "config_change": _config_data,
    "domain": _domain_data,
    "enterprise_account_membership": _membership_data,
    "heroku_config_change": _config_data,
    "sni_endpoint": _sni_data,
    "space": _space_data,
    "team": _team_data,
    "team_membership": _team_membership_data,
    "trusted_ip": _trusted_ip_data,
    "applink_connection": _applink_data,
    "applink_authorization": _applink_data,
    "applink_app": _applink_data,
}


# -- events --------------------------------------------------------------------------------


def _stamp(rng: random.Random, day: str, offset: int) -> str:
    """Heroku style `2026-11-23T10:11:12Z`; about one in three with milliseconds (`.870Z`).

    Truncated, never rounded: a stamp is never later than the moment it stands for.
    """
    seconds, micro = divmod(offset, 1_000_000)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    stamp = f"{day}T{hours:02d}:{minutes:02d}:{seconds:02d}"
    return stamp + (f".{micro // 1000:03d}Z" if rng.random() < 0.3 else "Z")


def make_event(
    rng: random.Random, day: date, offset: int, enterprise: dict[str, str]
) -> dict[str, Any]:
    """One event `offset` microseconds into `day`, with the optional parts sometimes absent or
    null (the schema lists no required field)."""
    object_type, action = rng.choice(EVENT_TYPES)
    event: dict[str, Any] = {
        "id": new_id(rng),
        "type": object_type,
        "action": action,
        "actor": _person(rng),
        "enterprise_account": dict(enterprise),
        "created_at": _stamp(rng, day.isoformat(), offset),
    }
    if object_type not in ACCOUNT_LEVEL:
        event["app"] = _named(rng, APPS)
        event["owner"] = _person(rng)
    roll = rng.random()
    if roll < 0.7 or object_type in ("team", "team_membership"):
        event["team"] = _named(rng, TEAMS)
    elif roll < 0.75:
        event["team"] = None
    roll = rng.random()
    if roll < 0.85:
        event["request"] = {"ip_address": rng.choice(IPS)}
    elif roll < 0.95:
        event["request"] = None
    roll = rng.random()
    if roll < 0.9:
        event["data"] = _DATA[object_type](rng, action)
    elif roll < 0.95:
        event["data"] = None
    return event


def _stream(
    rng: random.Random, day: date, count: int, span: int, enterprise: dict[str, str]
) -> Iterator[tuple[int, dict[str, Any]]]:
    for _ in range(count):
        offset = rng.randrange(span)
        yield offset, make_event(rng, day, offset, enterprise)


def generate_day(
    seed: int | str,
    day: date,
    count: int,
    enterprise: dict[str, str],
    cutoff: datetime | None = None,
) -> list[dict[str, Any]]:
    """`count` events spread over `day`, keeping only those not later than `cutoff`.

    Every event is drawn even when it is then dropped, so a simulator started later in the day
    sees a superset of the events one started earlier saw, same ids.
    """
    rng = random.Random(f"{seed}:{day.isoformat()}")
    limit = DAY_MICROSECONDS if cutoff is None else _offset(day, cutoff)
    return [
        event
        for offset, event in _stream(rng, day, count, DAY_MICROSECONDS, enterprise)
        if offset <= limit
    ]


def generate_late(
    seed: int | str,
    day: date,
    count: int,
    enterprise: dict[str, str],
    now: datetime,
) -> list[dict[str, Any]]:
    """Exactly `count` new events inside `day` and not after `now` (late, not future, events)."""
    rng = random.Random(f"late:{seed}:{day.isoformat()}")
    span = max(1, min(DAY_MICROSECONDS, _offset(day, now) + 1))
    return [event for _, event in _stream(rng, day, count, span, enterprise)]


def _offset(day: date, moment: datetime) -> int:
    """Microseconds from the start of `day` (UTC) to `moment`."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    delta = moment - midnight
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def matches(event: dict[str, Any], kind: str | None, action: str | None, actor: str | None) -> bool:
    """The API's filters: `type`, `action` and `actor` (the actor's email), when given."""
    return (
        (kind is None or event.get("type") == kind)
        and (action is None or event.get("action") == action)
        and (actor is None or (event.get("actor") or {}).get("email") == actor)
    )


def archive_file(
    events: list[dict[str, Any]],
    layout: str,
    seed: int | str,
    filler: tuple[int, str] = (0, ""),
) -> bytes:
    """A monthly archive file: gzip of `[...]` or `{"entries": [...]}`, in no particular order
    ("The exported archive doesn't always list audit trail entries in chronological order").
    `filler`: (count, day) small events of that day appended, for a big archive."""
    shuffled = list(events)
    random.Random(f"archive:{seed}").shuffle(shuffled)
    text = orjson.dumps(shuffled)
    count, day = filler
    if count:
        template = (
            '{"id":"filler-%08d","created_at":"' + day + 'T00:00:00Z","type":"app",'
            '"action":"create","actor":{"email":"filler@example.com"},"data":{"note":"'
            + "x" * 120
            + '"}}'
        ).encode()
        padding = b",".join(template % number for number in range(count))
        text = text[:-1] + (b"," if shuffled else b"") + padding + b"]"
    if layout == "entries":
        text = b'{"entries":' + text + b"}"
    level = 1 if count else 9  # a big archive is made quickly
    return gzip.compress(text, compresslevel=level, mtime=0)  # mtime=0: same bytes, same sum


def archive_created_at(month: str, today: date) -> str:
    """Minutes after the month ended, like the CLI's test data; this month's: after midnight."""
    year, number = (int(part) for part in month.split("-"))
    if (year, number) == (today.year, today.month):
        return f"{today}T00:02:24.870Z"
    return f"{date(year + number // 12, number % 12 + 1, 1)}T00:02:24.870Z"
