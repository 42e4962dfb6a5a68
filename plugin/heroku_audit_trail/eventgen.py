"""Seeded generator of realistic Heroku audit-trail events for the simulator (no I/O)."""

from __future__ import annotations

import random
import uuid
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

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
ACCOUNT_LEVEL = {"enterprise_account_membership", "team_membership", "team", "space", "trusted_ip"}

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
IPS = ("203.0.113.7", "198.51.100.23", "192.0.2.41", "2001:db8::1f", "203.0.113.250")


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _identity(rng: random.Random, names: tuple[str, ...], key: str) -> dict[str, str]:
    name = rng.choice(names)
    # Stable ids per name so the same person or app keeps one id across events.
    return {"id": str(uuid.uuid5(uuid.NAMESPACE_DNS, name)), key: name}


def _data(rng: random.Random, object_type: str, action: str) -> dict[str, Any]:
    if object_type in ("config_change", "heroku_config_change"):
        # About one config change in four lists hundreds of variables: lines of 10+ KiB.
        count = 400 if rng.random() < 0.25 else rng.randint(1, 4)
        return {"config_vars": [f"VAR_{number:04d}_NAME_OF_A_SETTING" for number in range(count)]}
    if object_type in ("collaborator", "team_membership", "enterprise_account_membership"):
        data: dict[str, Any] = {"user": _identity(rng, PEOPLE, "email")}
        if action != "destroy":
            data["permissions"] = rng.sample(["view", "deploy", "operate", "manage"], 2)
        return data
    if object_type == "addon":
        return {"plan": rng.choice(["heroku-postgresql:standard-0", "papertrail:choklad"])}
    if object_type == "domain":
        return {"hostname": f"www{rng.randint(1, 9)}.example.com"}
    if object_type == "code_release":
        return {"version": rng.randint(1, 900), "description": "Deploy 1a2b3c4"}
    return {}


def make_event(
    rng: random.Random, created_at: datetime, enterprise: dict[str, str]
) -> dict[str, Any]:
    """One event shaped like the schema, with the optional parts sometimes absent or null."""
    object_type, action = rng.choice(EVENT_TYPES)
    stamp = created_at.strftime("%Y-%m-%dT%H:%M:%S")
    stamp += f".{created_at.microsecond // 1000:03d}Z" if rng.random() < 0.3 else "Z"
    event: dict[str, Any] = {
        "id": _uuid(rng),
        "type": object_type,
        "action": action,
        "actor": _identity(rng, PEOPLE, "email"),
        "enterprise_account": dict(enterprise),
        "created_at": stamp,
    }
    if object_type not in ACCOUNT_LEVEL:
        event["app"] = _identity(rng, APPS, "name")
        event["owner"] = _identity(rng, PEOPLE, "email")
    if rng.random() < 0.7:
        event["team"] = _identity(rng, TEAMS, "name")
    roll = rng.random()
    if roll < 0.85:
        event["request"] = {"ip_address": rng.choice(IPS)}
    elif roll < 0.95:
        event["request"] = None
    data = _data(rng, object_type, action)
    if data or rng.random() < 0.5:
        event["data"] = data
    return event


def generate_day(
    seed: int,
    day: date,
    count: int,
    enterprise: dict[str, str],
    cutoff: datetime | None = None,
) -> list[dict[str, Any]]:
    """`count` events spread over `day` (only those before `cutoff`), same for the same seed."""
    rng = random.Random(f"{seed}:{day.isoformat()}")
    start = datetime.combine(day, time(), tzinfo=timezone.utc)
    events = []
    for _ in range(count):
        created_at = start + timedelta(microseconds=rng.randrange(86_400_000_000))
        event = make_event(rng, created_at, enterprise)
        if cutoff is None or created_at <= cutoff:
            events.append(event)
    return events
