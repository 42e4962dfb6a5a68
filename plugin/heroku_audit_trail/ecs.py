"""Pure mapping of one Heroku audit-trail event to one ECS line (DESIGN §6). No I/O.

Nothing stalls the feed: an event that cannot be mapped or serialized is still rendered, as a
degraded `pipeline_error` line that says what failed.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, NamedTuple

import orjson

ECS_VERSION = "8.11.0"

# Objects that grant or remove people's access are `iam`; everything else is `configuration`.
# The value is the second, IAM-specific event.type ("user" objects always add "change").
IAM_OBJECTS: dict[str, str] = {
    "collaborator": "user",
    "team_membership": "user",
    "enterprise_account_membership": "user",
    "team": "group",
    "applink_authorization": "admin",
}

# Every documented object (reference §1.1); unknown objects get no category at all.
CONFIGURATION_OBJECTS = frozenset(
    {
        "app",
        "addon",
        "config_change",
        "heroku_config_change",
        "domain",
        "sni_endpoint",
        "space",
        "trusted_ip",
        "code_release",
        "app_transfer",
        "applink_connection",
        "applink_app",
    }
)

VERB_TYPES: dict[str, str] = {
    "create": "creation",
    "attach": "creation",
    "add": "creation",
    "destroy": "deletion",
    "detach": "deletion",
    "remove": "deletion",
    "delete": "deletion",
    "update": "change",
    "set": "change",
    "refresh": "change",
    "publish": "change",
    "rename": "change",
}

_TIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?"
    r"\s*(?:(Z|z|UTC)|([+-])(\d{2})(?::?(\d{2}))?)?"
)


def parse_time(value: object) -> datetime | None:
    """Parse an ISO-8601-ish timestamp (any fraction length, Z, +hh:mm, +hhmm or +hh, none =
    UTC) to UTC; None when it is not one or names an instant outside years 1 to 9999."""
    if not isinstance(value, str):
        return None
    if (
        len(value) in (20, 24)  # Heroku's own shapes, ...:SSZ and ...:SS.sssZ: the C parser
        and value[-1] == "Z"
        and value[10] == "T"
        and value[4] == value[7] == "-"
        and value[13] == value[16] == ":"
    ):
        try:
            return datetime.fromisoformat(value)  # Python 3.11+; 3.10 falls through
        except ValueError:
            pass
    match = _TIME_RE.fullmatch(value.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, _, sign, off_h, off_m = match.groups()
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        parsed = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            micros,
            tzinfo=timezone.utc,
        )
    except ValueError:
        return None
    if sign:
        offset = timedelta(hours=int(off_h), minutes=int(off_m or 0))
        try:
            parsed = parsed - offset if sign == "+" else parsed + offset
        except OverflowError:  # 0001-01-01T00:00:00+01:00 is in year 0
            return None
    return parsed


def _heroku_time(value: object) -> tuple[datetime, str] | None:
    """Heroku's own shapes, ...:SSZ and ...:SS.sssZ, parsed and formatted without the general
    path (most events): None for anything else."""
    if type(value) is not str or value[-1:] != "Z":
        return None
    if len(value) == 24 and value[19] == ".":
        fraction = value[20:23]
    elif len(value) == 20:
        fraction = "000"
    else:
        return None
    if not (
        value[4] == value[7] == "-" and value[10] == "T" and value[13] == value[16] == ":"
    ) or not (fraction.isdigit() and fraction.isascii()):
        return None
    if value[11:13] == "24":  # a newer Python may read 24:00; our output never says it
        return None
    try:
        moment = datetime.fromisoformat(value)  # validates the digits; Python 3.11+
    except ValueError:
        return None
    return moment, f"{value[:19]}.{fraction}000Z"


def format_time(moment: datetime) -> str:
    """The one output shape: YYYY-MM-DDTHH:MM:SS.ffffffZ, always UTC and six fraction digits."""
    # isoformat is several times faster than strftime; "+00:00" becomes "Z".
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")[:-6] + "Z"


# A page element that no parser could read (DESIGN §6: still printed, degraded) is carried as
# a dict with this one key, so every later step handles one type. No API key starts with NUL.
UNPARSED = "\x00unparsed"


@dataclass(frozen=True)
class Unparsed:
    text: str  # the element's JSON text as sent (undecodable bytes as surrogate escapes)
    reason: str


def _canonical(value: Any) -> bytes:
    """Stable bytes for hashing an event, whatever it holds (surrogates, deep nesting)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        pass
    try:
        return json.dumps(value, sort_keys=True, default=repr).encode("utf-8", "surrogatepass")
    except (RecursionError, ValueError, TypeError):  # nested past any limit: its top level
        return repr(sorted((str(key), type(item).__name__) for key, item in value.items())).encode(
            "utf-8", "surrogatepass"
        )


def _is_utf8(text: str) -> bool:
    """False for a lone surrogate (or undecodable bytes kept as one): no JSON writer, state
    file or sink takes it, so such an id is replaced by a digest."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean_text(text: str) -> str:
    """`text` with any lone surrogate written out as `\\udXXX`, so it can go in JSON."""
    return text if _is_utf8(text) else text.encode("utf-8", "backslashreplace").decode("ascii")


def event_key(event: dict[str, Any]) -> str:
    """The dedupe key and `event.id`: the event's id (a non-empty string, or an integer), else
    a stable digest of its content, so two distinct id-less events never share a key."""
    event_id = event.get("id")
    if isinstance(event_id, str) and event_id and (event_id.isascii() or _is_utf8(event_id)):
        return event_id
    if isinstance(event_id, int) and not isinstance(event_id, bool) and event_id.bit_length() < 64:
        return str(event_id)
    unparsed = event.get(UNPARSED)
    content = (
        unparsed.text.encode("utf-8", "surrogateescape")
        if isinstance(unparsed, Unparsed)
        else _canonical(event)
    )
    return f"sha256:{hashlib.sha256(content).hexdigest()[:32]}"


_LATEST = datetime.max.replace(tzinfo=timezone.utc)


def sort_key(event: dict[str, Any]) -> tuple[datetime, str]:
    """created_at order; events without a readable time go last, ties broken by id."""
    return (parse_time(event.get("created_at")) or _LATEST, event_key(event))


def categorize(object_type: object, verb: object) -> tuple[list[str], list[str]]:
    """(event.category, event.type) for a Heroku type and action; empty lists when unknown."""
    if not isinstance(object_type, str):
        return [], []
    verb_type = VERB_TYPES.get(verb) if isinstance(verb, str) else None
    iam_type = IAM_OBJECTS.get(object_type)
    if iam_type is not None:
        if verb_type is None:
            return ["iam"], []
        # A person's access changed; no account was created or deleted.
        return ["iam"], [iam_type, "change" if iam_type == "user" else verb_type]
    if object_type in CONFIGURATION_OBJECTS:
        return ["configuration"], [verb_type] if verb_type else []
    return [], []


def strip_nulls(value: Any) -> Any:
    """Drop nulls at every depth; everything else stays as sent, empty objects included."""
    if isinstance(value, dict):
        return {
            key: strip_nulls(item) if isinstance(item, (dict, list)) else item
            for key, item in value.items()
            if item is not None
        }
    if isinstance(value, list):
        return [
            strip_nulls(item) if isinstance(item, (dict, list)) else item
            for item in value
            if item is not None
        ]
    return value


_NOTHING: dict[str, Any] = {}  # read only: stands in for a missing or malformed object


def as_object(value: object) -> dict[str, Any]:
    """A JSON object as it should be, or an empty one (read only) for anything else."""
    return value if isinstance(value, dict) else _NOTHING


def as_text(value: object) -> str | None:
    """A non-empty string, or None for anything else."""
    return value if isinstance(value, str) and value else None


@lru_cache(maxsize=1024)
def _classified(object_type: str, verb: str) -> tuple[str, list[str], list[str]]:
    """event.action, event.category and event.type of one type.action, computed once."""
    category, event_type = categorize(object_type, verb)
    return f"{object_type}.{verb}", category, event_type


def _related_users(
    actor_email: str | None, actor_id: str | None, owner: dict[str, Any], data: dict[str, Any]
) -> list[str]:
    """Actor, owner and target identities (emails and ids), each once, first seen first."""
    target = as_object(data.get("user"))
    candidates = (
        actor_email,
        actor_id,
        owner.get("email"),
        owner.get("id"),
        target.get("email"),
        target.get("id"),
        data.get("email"),
        data.get("user_email"),
    )
    users = [user for user in candidates if isinstance(user, str) and user]
    return users if len(set(users)) == len(users) else list(dict.fromkeys(users))


def _organization(account: dict[str, Any]) -> dict[str, str] | None:
    """`organization`: the enterprise account's id and name."""
    account_id, name = as_text(account.get("id")), as_text(account.get("name"))
    if account_id and name:
        return {"id": account_id, "name": name}
    if account_id or name:
        return {"id": account_id} if account_id else {"name": name}  # type: ignore[dict-item]
    return None


_TARGETS = (("app", "name"), ("team", "name"), ("owner", "email"), ("enterprise_account", "name"))


def target_name(event: dict[str, Any]) -> str | None:
    """What an event is about, by name: its app, team, owner or enterprise account."""
    get = event.get
    for part_name, field in _TARGETS:
        part = get(part_name)
        if isinstance(part, dict):
            value = part.get(field)
            if isinstance(value, str) and value:
                return value
    return None


def _message(event: dict[str, Any], action: str | None, who: str) -> str:
    target = target_name(event)
    text = f"{who} {action or 'unknown event'}"
    return f"{text} {target}" if target else text


def to_ecs(event: dict[str, Any], read_at: str, include_original: bool = False) -> dict[str, Any]:
    """Map one Heroku event to one ECS object; `read_at` is this run's read time, formatted.
    ValueError when its created_at is present but not a usable time."""
    moment = parse_time(event.get("created_at"))
    timestamp = format_time(moment) if moment is not None else None
    return _to_ecs(event, event_key(event), read_at, include_original, timestamp, False)


_HEROKU_PARTS = ("type", "action", "app", "owner", "team", "enterprise_account", "data")


def _ecs_event(
    key: str, object_type: object, verb: object, read_at: str, original: str | None
) -> dict[str, Any]:
    """The `event` object: what the event is (from its type and action) and when it was read."""
    if isinstance(object_type, str) and isinstance(verb, str):
        action, category, event_type = _classified(object_type, verb)
    else:
        action = None
        category, event_type = categorize(object_type, verb)
    ecs_event: dict[str, Any] = {"kind": "event", "id": key}
    if action:
        ecs_event["action"] = action
    if category:
        ecs_event["category"] = category
    if event_type:
        ecs_event["type"] = event_type
    ecs_event["module"] = "heroku"
    ecs_event["dataset"] = "heroku.audit"
    ecs_event["provider"] = "heroku"
    ecs_event["created"] = read_at
    if original is not None:
        ecs_event["original"] = original
    return ecs_event


@lru_cache(maxsize=1024)
def _ecs_event_around_id(
    object_type: str | None, verb: str | None, read_at: str
) -> tuple[bytes, bytes]:
    """The `event` object's JSON before and after its id's value: the same for every event of
    one type.action in a run, so it is serialized once."""
    head, _, tail = orjson.dumps(_ecs_event("", object_type, verb, read_at, None)).partition(
        b'"id":""'
    )
    return head + b'"id":', tail


def _ecs_event_fragment(
    key: str, object_type: object, verb: object, read_at: str, include_original: bool
) -> orjson.Fragment | dict[str, Any]:
    if include_original:
        return _ecs_event(key, object_type, verb, read_at, None)  # `original` added by caller
    head, tail = _ecs_event_around_id(
        object_type if isinstance(object_type, str) else None,
        verb if isinstance(verb, str) else None,
        read_at,
    )
    return orjson.Fragment(head + orjson.dumps(key) + tail)


def _heroku(event: dict[str, Any], fragments: bool) -> Any:
    """The `heroku` object: the source's own parts as sent, nulls left out at every depth
    (None when there are no parts). The usual event has no null: it is serialized in one call
    and passed to orjson as a Fragment instead of being walked in Python."""
    get = event.get
    parts = {name: part for name in _HEROKU_PARTS if (part := get(name)) is not None}
    if not parts:
        return None
    if not fragments:
        return {name: strip_nulls(part) for name, part in parts.items()}
    try:
        encoded = orjson.dumps(parts)
    except orjson.JSONEncodeError:  # e.g. data nested to orjson's limit: one level less below
        encoded = b"null"
    # Compact JSON: a null is `null`; that text inside a string only sends the event the slow
    # way, part by part.
    if b"null" not in encoded:
        return orjson.Fragment(encoded)
    return {name: _clean_part(part) for name, part in parts.items()}


def _clean_part(value: Any) -> Any:
    """One part of `heroku` as strip_nulls leaves it, serialized on its own as a Fragment
    when it holds no null."""
    if not isinstance(value, (dict, list)):
        return value
    encoded = orjson.dumps(value)
    return orjson.Fragment(encoded) if b"null" not in encoded else strip_nulls(value)


def _to_ecs(
    event: dict[str, Any],
    key: str,
    read_at: str,
    include_original: bool,
    timestamp: str | None,
    fragments: bool = True,
) -> dict[str, Any]:
    """to_ecs; with `fragments`, `event` and `heroku` may be orjson Fragments (for render)."""
    get = event.get
    object_type, verb = get("type"), get("action")
    if fragments:
        ecs_event = _ecs_event_fragment(key, object_type, verb, read_at, include_original)
    else:
        ecs_event = _ecs_event(key, object_type, verb, read_at, None)
    if include_original:
        ecs_event["original"] = orjson.dumps(event).decode()  # type: ignore[index]

    if timestamp is None:
        if get("created_at") is not None:
            raise ValueError(f"created_at {str(get('created_at'))[:60]!r} is not a usable time")
        timestamp = read_at  # absent or null: the read time, so every line has a time
    out: dict[str, Any] = {"@timestamp": timestamp, "ecs": _ECS, "event": ecs_event}

    # The checks of as_object and as_text, inline: this runs for every event.
    actor, owner, data = get("actor"), get("owner"), get("data")
    actor = actor if isinstance(actor, dict) else _NOTHING
    owner = owner if isinstance(owner, dict) else _NOTHING
    data = data if isinstance(data, dict) else _NOTHING
    actor_id, actor_email = actor.get("id"), actor.get("email")
    actor_id = actor_id if isinstance(actor_id, str) and actor_id else None
    actor_email = actor_email if isinstance(actor_email, str) and actor_email else None
    if actor_id and actor_email:
        out["user"] = {"id": actor_id, "email": actor_email}
    elif actor_id or actor_email:
        out["user"] = {"id": actor_id} if actor_id else {"email": actor_email}
    ip_address = as_text(as_object(get("request")).get("ip_address"))
    if ip_address:
        out["source"] = {"ip": ip_address}
    related_users = _related_users(actor_email, actor_id, owner, data)
    if related_users and ip_address:
        out["related"] = {"user": related_users, "ip": [ip_address]}
    elif related_users or ip_address:
        out["related"] = {"user": related_users} if related_users else {"ip": [ip_address]}
    account = as_object(get("enterprise_account"))
    organization = _organization(account)
    if organization is not None:
        out["organization"] = organization

    heroku = _heroku(event, fragments)
    if heroku is not None:
        out["heroku"] = heroku
    action = (
        f"{object_type}.{verb}" if isinstance(object_type, str) and isinstance(verb, str) else None
    )
    who = actor_email or actor_id or "unknown actor"
    out["message"] = _message(event, action, who)
    return out


_ECS = {"version": ECS_VERSION}


class Rendered(NamedTuple):  # a tuple: made once per event, so cheap to make
    line: bytes  # one JSON object and its newline
    order: tuple[datetime, str]  # created_at (unreadable ones last), then id: print order
    warning: str | None = None  # for the log: a degraded line, or a time that was made up


def render(
    event: dict[str, Any],
    output_format: str,
    read_at: str,
    include_original: bool = False,
    key: str | None = None,
) -> Rendered:
    """One output line for one event; never raises (DESIGN §6: nothing stalls the feed).
    `key`: its event_key(), when the caller has it already."""
    created_at = event.get("created_at")
    moment: datetime | None
    timestamp: str | None
    fast = _heroku_time(created_at)
    if fast is not None:
        moment, timestamp = fast
    else:
        moment = parse_time(created_at)
        timestamp = format_time(moment) if moment is not None else None
    key = event_key(event) if key is None else key
    order = (moment or _LATEST, key)
    try:
        if UNPARSED in event:
            raise ValueError(event[UNPARSED].reason)
        if output_format == "heroku":
            return Rendered(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE), order)
        line = orjson.dumps(
            _to_ecs(event, key, read_at, include_original, timestamp),
            option=orjson.OPT_APPEND_NEWLINE,
        )
    except (ValueError, TypeError, RecursionError, orjson.JSONEncodeError) as error:
        return degraded(event, key, moment, read_at, f"{type(error).__name__}: {error}", order)
    if moment is None:
        return Rendered(line, order, f"event {key} has no created_at: @timestamp is the read time")
    return Rendered(line, order)


def _original_text(event: dict[str, Any]) -> str | None:
    """The source event as JSON text, ASCII-escaped so that lone surrogates survive."""
    unparsed = event.get(UNPARSED)
    if isinstance(unparsed, Unparsed):
        return unparsed.text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    try:
        return json.dumps(event, separators=(",", ":"), default=repr)
    except (RecursionError, ValueError, TypeError):
        return None


def degraded(
    event: dict[str, Any],
    key: str,
    moment: datetime | None,
    read_at: str,
    reason: str,
    order: tuple[datetime, str],
) -> Rendered:
    """The `pipeline_error` line of an event that could not be mapped or serialized."""
    ecs_event: dict[str, Any] = {
        "kind": "pipeline_error",
        "id": key,
        "module": "heroku",
        "dataset": "heroku.audit",
        "provider": "heroku",
        "created": read_at,
    }
    original = _original_text(event)
    if original is not None:
        ecs_event["original"] = original
    reason = clean_text(reason)
    message = f"could not map Heroku event {key}: {reason}"
    out = {
        "@timestamp": format_time(moment) if moment is not None else read_at,
        "ecs": {"version": ECS_VERSION},
        "event": ecs_event,
        "error": {"message": reason},
        "message": message,
    }
    line = orjson.dumps(out, option=orjson.OPT_APPEND_NEWLINE)
    return Rendered(line, order, message)
