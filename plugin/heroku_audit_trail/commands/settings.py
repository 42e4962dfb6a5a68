"""From flags and environment to Settings, and the token and client every API command uses."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heroku_audit_trail.commands.options import Number, number
from heroku_audit_trail.config import (
    CONCURRENCY,
    DEFAULT_API_URL,
    MAX_STOP_GRACE,
    RETRY_BUDGET,
    STOP_GRACE_SECONDS,
    Secret,
    Settings,
    default_state_dir,
    load_token,
    parse_enterprises,
    validate_api_url,
)
from heroku_audit_trail.deadline import Deadline
from heroku_audit_trail.ecs import CONFIGURATION_OBJECTS, IAM_OBJECTS, VERB_TYPES
from heroku_audit_trail.errors import ConfigError, UsageError
from heroku_audit_trail.logs import Log
from heroku_audit_trail.output import StopGuard

if TYPE_CHECKING:  # requests costs a fifth of a second to import: not on poll's skip path
    from heroku_audit_trail.heroku.api import HerokuClient

# The documented objects and verbs (reference §1.1), for a warning on a likely typo.
DOCUMENTED: dict[str, frozenset[str]] = {
    "type": frozenset(IAM_OBJECTS) | CONFIGURATION_OBJECTS,
    "action": frozenset(VERB_TYPES),
}


def _env_number(
    env: Mapping[str, str],
    name: str,
    kind: Callable[[str], Number],
    minimum: Number,
    maximum: Number | None = None,
) -> Number | None:
    text = env.get(name, "").strip()
    if not text:
        return None
    try:
        return number(kind, minimum, maximum)(text)
    except argparse.ArgumentTypeError as error:
        raise ConfigError(f"{name}: {error}") from None


def _surrogates(text: str) -> bool:
    """Bytes that are not UTF-8 reach argv as lone surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def state_dir_of(args: argparse.Namespace, env: Mapping[str, str]) -> Path:
    state_dir = getattr(args, "state_dir", None) or env.get("HEROKU_AUDIT_STATE_DIR")
    return Path(state_dir).expanduser() if state_dir else default_state_dir()


def build_settings(
    args: argparse.Namespace,
    env: Mapping[str, str],
    log: Log | None = None,
    max_runtime: float | None = 50.0,
) -> Settings:
    """The flag, else its environment variable, else the default. `max_runtime` is the
    command's default (poll's 50 s; a person's commands, none)."""

    def flag(name: str) -> Any:
        return getattr(args, name, None)  # None: not given, or not this command's

    def pick(
        given: Number | None, name: str, low: Number, default: Number, high: Number | None = None
    ) -> Number:
        value = given if given is not None else _env_number(env, name, type(default), low, high)
        return default if value is None else value

    api_url = validate_api_url(flag("api_url") or env.get("HEROKU_API_URL") or DEFAULT_API_URL)
    filters = tuple(
        (name, value)
        for name, value in (
            ("action", flag("action")),
            ("actor", flag("actor")),
            ("type", flag("event_type")),
        )
        if value
    )
    if flag("output_format") == "heroku" and flag("include_original"):
        raise UsageError(
            "--include-original adds event.original to ECS lines; --format heroku already "
            "prints each event as the API sent it: use one or the other"
        )
    for name, value in filters:
        if not value.isprintable() or _surrogates(value):
            raise UsageError(f"--{name}: {value!r} is not a printable UTF-8 value")
    for name, value in filters:
        if name in ("type", "action") and value not in DOCUMENTED[name]:
            (log or Log()).warning(
                f"--{name} {value!r} is not a documented Heroku audit-trail {name} "
                f"(e.g. {', '.join(sorted(DOCUMENTED[name])[:4])}); the API may return nothing"
            )
    metrics = flag("metrics_file") or env.get("HEROKU_AUDIT_METRICS_FILE")
    runtime = flag("max_runtime")
    if runtime is None and max_runtime is not None:
        runtime = pick(None, "HEROKU_AUDIT_MAX_RUNTIME", 1.0, max_runtime)
    return Settings(
        enterprises=parse_enterprises(flag("enterprise"), env),
        api_url=api_url,
        state_dir=state_dir_of(args, env),
        lookback_days=pick(flag("lookback_days"), "HEROKU_AUDIT_LOOKBACK_DAYS", 0, 1),
        min_interval=pick(flag("min_interval"), "HEROKU_AUDIT_MIN_INTERVAL", 0.0, 60.0),
        filters=filters,
        output_format=flag("output_format") or "ecs",
        include_original=bool(flag("include_original")),
        rate_limit_floor=pick(flag("rate_limit_floor"), "HEROKU_AUDIT_RATE_LIMIT_FLOOR", 0, 500),
        max_runtime=runtime,
        token_file=flag("token_file"),
        metrics_file=Path(metrics).expanduser() if metrics else None,
        retry_budget=pick(flag("retry_budget"), "HEROKU_AUDIT_RETRY_BUDGET", 0.0, RETRY_BUDGET),
        concurrency=min(pick(flag("concurrency"), "HEROKU_AUDIT_CONCURRENCY", 1, CONCURRENCY), 64),
        stop_grace=pick(
            flag("stop_grace"), "HEROKU_AUDIT_STOP_GRACE", 0.1, STOP_GRACE_SECONDS, MAX_STOP_GRACE
        ),
    )


def command_settings(
    args: argparse.Namespace,
    env: Mapping[str, str],
    log: Log,
    guard: StopGuard,
    max_runtime: float | None = 50.0,
) -> Settings:
    """build_settings for a command that reads and prints: its stop guard takes --stop-grace
    at once, so a stop anywhere after (a stalled write, a state save, the run records) has the
    grace asked for."""
    settings = build_settings(args, env, log, max_runtime)
    guard.grace = settings.stop_grace
    return settings


def read_token(settings: Settings, env: Mapping[str, str], log: Log) -> Secret:
    token = load_token(settings.token_file, env, settings.api_url)
    log.add_secret(token.reveal())
    if token.warning:
        log.warning(token.warning)
    return token


def make_client(
    settings: Settings,
    env: Mapping[str, str],
    log: Log,
    token: Secret | None = None,
    deadline: Deadline | None = None,
) -> HerokuClient:
    from heroku_audit_trail.heroku.api import HerokuClient

    token = token or read_token(settings, env, log)
    return HerokuClient(
        settings.api_url,
        token,
        deadline=deadline or Deadline(settings.max_runtime),
        rate_limit_floor=settings.rate_limit_floor,
        retry_budget=settings.retry_budget,
        connections=settings.concurrency,
    )


def arm_deadline(settings: Settings, guard: StopGuard) -> Deadline:
    """--max-runtime bounds the whole run by the clock, whatever the server or the reader do:
    the one deadline of the run, for the stop guard's alarm and for the client."""
    deadline = Deadline(settings.max_runtime)
    guard.arm_deadline(deadline)
    return deadline
