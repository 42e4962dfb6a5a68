"""Events planted in a simulated month for the detection tests (examples/detections.sql in
ClickHouse, examples/sigma/ through pySigma): each tagged with the detection that must find it,
or that must not (a near-miss)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from heroku_audit_trail.simulator import Simulator, SimulatorConfig

from .conftest import Cli

NOW = datetime.now(timezone.utc).replace(microsecond=0)


class Plan:
    """Events to plant, each tagged with the detection that must find it (or must not)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.found: dict[str, set[str]] = {}
        self.missed: dict[str, set[str]] = {}
        # Near-misses only for being older than the SQL's 24-hour window: a Sigma rule has no
        # window (the SIEM schedules it over one), so for it they are finds.
        self.window_missed: dict[str, set[str]] = {}

    def add(
        self,
        actor: str,
        type_action: str,
        ago: timedelta,
        *,
        finds: str | tuple[str, ...] | None = None,
        misses: str | None = None,
        window_misses: str | None = None,
        ip: str | None = None,
        **parts: Any,
    ) -> None:
        event_id = f"planted-{len(self.events):03d}"
        object_type, action = type_action.split(".")
        stamp = (NOW - ago).strftime("%Y-%m-%dT%H:%M:%SZ")
        event: dict[str, Any] = {
            "id": event_id,
            "type": object_type,
            "action": action,
            "created_at": stamp,
            "actor": {"id": f"id-{actor}", "email": actor},
            "enterprise_account": {"id": "e1", "name": "acme"},
            **parts,
        }
        if ip:
            event["request"] = {"ip_address": ip}
        self.events.append(event)
        for key in (finds,) if isinstance(finds, str) else finds or ():
            self.found.setdefault(key, set()).add(event_id)
        if misses:
            self.missed.setdefault(misses, set()).add(event_id)
        if window_misses:
            self.missed.setdefault(window_misses, set()).add(event_id)
            self.window_missed.setdefault(window_misses, set()).add(event_id)

    def sigma_found(self, key: str) -> set[str]:
        return self.found.get(key, set()) | self.window_missed.get(key, set())

    def sigma_missed(self, key: str) -> set[str]:
        return self.missed.get(key, set()) - self.window_missed.get(key, set())


def minutes(count: float) -> timedelta:
    return timedelta(minutes=count)


def plan() -> Plan:
    p = Plan()
    day = timedelta(days=1)
    member = {"team": {"name": "core"}}

    # admin_granted: admin role or `manage` permission, created or changed, in the last day.
    p.add(
        "root@acme.example",
        "team_membership.update",
        minutes(120),
        finds="admin_granted",
        data={"user": {"email": "frank@acme.example"}, "role": "admin"},
        **member,
    )
    p.add(
        "root@acme.example",
        "enterprise_account_membership.update",
        minutes(185),
        finds="admin_granted",
        data={"user": {"email": "liz@acme.example"}, "permissions": ["manage"]},
    )
    p.add(
        "root@acme.example",
        "enterprise_account_membership.create",
        minutes(180),
        finds="admin_granted",
        data={"user": {"email": "gus@acme.example"}, "permissions": ["view", "manage"]},
    )
    p.add(
        "root@acme.example",
        "team_membership.update",
        minutes(121),
        misses="admin_granted",
        data={"user": {"email": "hal@acme.example"}, "role": "member"},
        **member,
    )
    p.add(
        "root@acme.example",
        "enterprise_account_membership.update",
        minutes(122),
        misses="admin_granted",
        data={"user": {"email": "ida@acme.example"}, "permissions": ["view", "create"]},
    )
    p.add(
        "root@acme.example",
        "team_membership.create",
        day + minutes(120),
        window_misses="admin_granted",
        data={"user": {"email": "jo@acme.example"}, "role": "admin"},
        **member,
    )

    # collaborator_then_destroy: within the hour after adding a collaborator, same actor.
    app = {"app": {"name": "billing-api"}}
    p.add(
        "gina@acme.example",
        "collaborator.create",
        minutes(180),
        data={"user": {"email": "outsider@evil.example"}},
        **app,
    )
    p.add(
        "gina@acme.example", "app.destroy", minutes(140), finds="collaborator_then_destroy", **app
    )
    # Another actor's transfer (each step of the Sigma rule has an actor of its own).
    p.add(
        "uma@acme.example",
        "collaborator.create",
        minutes(170),
        data={"user": {"email": "buyer@evil.example"}},
        **app,
    )
    p.add(
        "uma@acme.example",
        "app_transfer.create",
        minutes(130),
        finds=("collaborator_then_destroy", "app_transferred"),
        **app,
    )
    p.add(
        "gina@acme.example",
        "app.destroy",
        minutes(60),
        misses="collaborator_then_destroy",
        app={"name": "worker-eu"},
    )
    p.add(
        "hank@acme.example",
        "collaborator.create",
        minutes(360),
        data={"user": {"email": "friend@evil.example"}},
        **app,
    )
    p.add(
        "hank@acme.example", "app.destroy", minutes(180), misses="collaborator_then_destroy", **app
    )
    p.add(
        "hank@acme.example", "app.destroy", minutes(370), misses="collaborator_then_destroy", **app
    )  # before the add

    # prod_config_changed: a config change on an app named with a prod/production word.
    config = {"data": {"config_vars": ["DATABASE_URL", "STRIPE_KEY"]}}
    # The word alone, first, last and between separators, each way once (every pattern of
    # the Sigma rule has its event), and a removal.
    seps = "-_."
    names = ["prod", "production"]
    names += [f"{word}{sep}eu" for word in ("prod", "production") for sep in seps]
    names += [f"eu{sep}{word}" for word in ("prod", "production") for sep in seps]
    names += [f"eu{a}{word}{b}api" for word in ("prod", "production") for a in seps for b in seps]
    for n, name in enumerate(names):
        p.add(
            "lee@acme.example",
            "config_change.remove" if n == 0 else "config_change.set",
            minutes(40 + n / 10),
            finds="prod_config_changed",
            app={"name": name},
            **config,
        )
    p.add(
        "lee@acme.example",
        "config_change.set",
        minutes(30),
        finds="prod_config_changed",
        app={"name": "payments-production"},
        **config,
    )
    p.add(
        "lee@acme.example",
        "heroku_config_change.update",
        minutes(31),
        finds="prod_config_changed",
        app={"name": "Prod-API"},
        **config,
    )
    p.add(
        "lee@acme.example",
        "config_change.set",
        minutes(32),
        misses="prod_config_changed",
        app={"name": "product-catalog"},
        **config,
    )
    p.add(
        "lee@acme.example",
        "app.update",
        minutes(33),
        misses="prod_config_changed",
        app={"name": "acme-prod"},
        data={"maintenance": True},
    )

    # new_ip_for_actor: history from one address; today another (its first event only).
    for days_ago in (20, 15, 12, 10, 9):
        p.add(
            "erin@acme.example",
            "app.update",
            timedelta(days=days_ago),
            ip="192.0.2.10",
            app={"name": "marketing-site"},
        )
    p.add(
        "erin@acme.example",
        "app.update",
        minutes(60),
        ip="192.0.2.99",
        finds="new_ip_for_actor",
        app={"name": "marketing-site"},
    )
    p.add(
        "erin@acme.example",
        "app.update",
        minutes(50),
        ip="192.0.2.99",
        misses="new_ip_for_actor",
        app={"name": "marketing-site"},
    )
    p.add(
        "erin@acme.example",
        "app.update",
        minutes(120),
        ip="192.0.2.10",
        misses="new_ip_for_actor",
        app={"name": "marketing-site"},
    )

    # destroy_burst: five or more deletions by one actor within ten minutes.
    burst = [
        "app.destroy",
        "addon.destroy",
        "addon.detach",
        "domain.destroy",
        "space.destroy",
        "addon.destroy",
    ]
    # A space destroyed is also what the Sigma rule team_or_space_destroyed finds.
    space = ("team_or_space_destroyed",)
    for n, type_action in enumerate(burst[:5]):  # five within 7.5 minutes: not in 5, not six
        p.add(
            "ivan@acme.example",
            type_action,
            minutes(300 - 1.5 * n),
            finds=("destroy_burst", *(space if type_action == "space.destroy" else ())),
            app={"name": f"app-{n}"},
        )
    for n, type_action in enumerate(burst):  # six, but four minutes apart
        p.add(
            "judy@acme.example",
            type_action,
            minutes(300 - 4 * n),
            finds=space if type_action == "space.destroy" else None,
            misses="destroy_burst",
            app={"name": f"app-{n}"},
        )
    for n in range(4):  # four within two minutes
        p.add(
            "kim@acme.example",
            "app.destroy",
            minutes(200 - n / 2),
            misses="destroy_burst",
            app={"name": f"app-{n}"},
        )

    # unusual_hour: a routine of 24 events at eight hours of the day; then an hour outside it.
    odd = (NOW - minutes(30)).hour
    usual = [(odd + 3 + k) % 24 for k in range(8)]
    for n in range(24):
        moment = (NOW - timedelta(days=2 + n)).replace(hour=usual[n % 8], minute=15)
        p.add(
            "dana@acme.example",
            "app.update",
            NOW - moment,
            ip="192.0.2.50",
            app={"name": "acme-staging"},
        )
    p.add(
        "dana@acme.example",
        "app.update",
        minutes(30),
        ip="192.0.2.50",
        finds="unusual_hour",
        app={"name": "acme-staging"},
    )
    in_routine = next(
        hours for hours in range(2, 23) if (NOW - timedelta(hours=hours)).hour in usual
    )
    p.add(
        "dana@acme.example",
        "app.update",
        timedelta(hours=in_routine),
        ip="192.0.2.50",
        misses="unusual_hour",
        app={"name": "acme-staging"},
    )
    return p


def sigma_extras(p: Plan) -> Plan:
    """The patterns of the Sigma rules that examples/detections.sql has no query for."""
    app = {"app": {"name": "billing-api"}}
    p.add("olga@acme.example", "app_transfer.create", minutes(40), finds="app_transferred", **app)
    p.add("olga@acme.example", "app_transfer.update", minutes(41), misses="app_transferred", **app)
    space = {"space": {"name": "eu-private"}}
    for n, verb in enumerate(("create", "update", "destroy")):
        p.add(
            "pete@acme.example",
            f"trusted_ip.{verb}",
            minutes(70 + n),
            finds="trusted_ip_changed",
            data={"source": f"198.51.100.{n}/32"},
            **space,
        )
    p.add("pete@acme.example", "space.update", minutes(75), misses="trusted_ip_changed", **space)
    p.add("quinn@acme.example", "team.destroy", minutes(90), finds="team_or_space_destroyed")
    p.add(
        "quinn@acme.example",
        "space.destroy",
        minutes(95),
        finds="team_or_space_destroyed",
        **space,
    )
    p.add("quinn@acme.example", "team.update", minutes(96), misses="team_or_space_destroyed")
    # collaborators_removed_burst: five removals within ten minutes (eight) by one actor;
    # near-misses:
    # four within a minute, and five spread over twenty minutes.
    for n in range(5):
        p.add(
            "rita@acme.example",
            "collaborator.destroy",
            minutes(400 - 2 * n),
            finds="collaborators_removed_burst",
            data={"user": {"email": f"dev{n}@acme.example"}},
            **app,
        )
    for n in range(4):
        p.add(
            "sam@acme.example",
            "collaborator.destroy",
            minutes(420 - n / 4),
            misses="collaborators_removed_burst",
            data={"user": {"email": f"dev{n}@acme.example"}},
            **app,
        )
    for n in range(5):
        p.add(
            "tess@acme.example",
            "collaborator.destroy",
            minutes(500 - 5 * n),
            misses="collaborators_removed_burst",
            data={"user": {"email": f"dev{n}@acme.example"}},
            **app,
        )
    return p


PLAN = plan()
SIGMA_PLAN = sigma_extras(plan())


def month_printed(
    plan: Plan, seed: int, home: Callable[[str], Path]
) -> tuple[list[bytes], list[bytes]]:
    """A simulated month as the real `events` command prints it, before and after `plan` is
    planted; `home(name)` gives each run a directory."""

    def printed(sim: Simulator, where: Path) -> list[bytes]:
        run = Cli(sim, where).run("events", "--since", "31d", "--output", "jsonl", timeout=180)
        assert run.code == 0, run.stderr
        return run.stdout.splitlines()

    with Simulator(SimulatorConfig(seed=seed, events_per_day=30, history_days=31)) as sim:
        before = printed(sim, home("before"))
        for event in plan.events:
            sim.plant(datetime.fromisoformat(event["created_at"]).date(), [event])
        after = printed(sim, home("after"))
    assert len(after) == len(before) + len(plan.events)
    return before, after
