-- Detections over heroku_logs (the table of examples/heroku_logs.sql), for ClickHouse.
--
-- Each query looks at the last 24 hours (change `INTERVAL 1 DAY` to match how often you run
-- it; the history queries look at the 30 days before that) and returns one row per event to
-- look at: when, who, what, on what, from where, the event id, and why it was picked.
-- FINAL: a line delivered twice (at-least-once delivery) is counted once.
-- Run one: clickhouse-client --queries-file detections.sql, or paste a query into a
-- scheduled query / alert of your SIEM. tests/test_detections.py runs every query in a real
-- ClickHouse engine (chdb) on a month of simulated events, with the pattern it must find and
-- a near-miss it must not.

-- detection: admin_granted
-- Someone was made an administrator: an enterprise-account membership given the `manage`
-- permission, or a team membership given the `admin` role, whether created or changed.
-- Admins add people, change billing and delete anything: every grant should match a ticket.
SELECT
    `@timestamp`,
    user.email AS actor,
    event.action AS action,
    heroku.data.user.email::String AS target,
    source.ip AS ip,
    event.id AS event_id,
    if(heroku.type::String = 'team_membership', 'team role admin', 'enterprise permission manage')
        AS why
FROM heroku_logs FINAL
WHERE `@timestamp` >= now() - INTERVAL 1 DAY
  AND event.action IN ('enterprise_account_membership.create',
                       'enterprise_account_membership.update',
                       'team_membership.create', 'team_membership.update')
  AND (heroku.data.role::String = 'admin'
       OR has(heroku.data.permissions::Array(String), 'manage'))
ORDER BY `@timestamp`;

-- detection: collaborator_then_destroy
-- A collaborator is added to an app, and within the hour the same actor destroys or transfers
-- an app: a taken-over account giving itself (or an accomplice) a foothold, then deleting or
-- moving what it reached. One row per destroy or transfer.
SELECT
    d.ts AS `@timestamp`,
    d.actor AS actor,
    d.action AS action,
    d.target AS target,
    d.ip AS ip,
    d.event_id AS event_id,
    concat('added collaborator ', a.collaborator, ' to ', a.app, ' at ', toString(a.ts)) AS why
FROM
(
    SELECT `@timestamp` AS ts, user.email AS actor,
           heroku.data.user.email::String AS collaborator, heroku.app.name::String AS app
    FROM heroku_logs FINAL
    WHERE event.action = 'collaborator.create' AND user.email != ''
      AND `@timestamp` >= now() - INTERVAL 1 DAY - INTERVAL 1 HOUR
) AS a
INNER JOIN
(
    SELECT `@timestamp` AS ts, user.email AS actor, event.action AS action,
           heroku.app.name::String AS target, source.ip AS ip, event.id AS event_id
    FROM heroku_logs FINAL
    WHERE event.action IN ('app.destroy', 'app_transfer.create')
      AND `@timestamp` >= now() - INTERVAL 1 DAY
) AS d ON d.actor = a.actor
WHERE d.ts > a.ts AND d.ts <= a.ts + INTERVAL 1 HOUR
ORDER BY `@timestamp`
LIMIT 1 BY event_id;

-- detection: prod_config_changed
-- Config vars set or removed on a production app: one whose name has a `prod` or
-- `production` word (acme-prod, prod-api, billing_production; not product-catalog). Config
-- vars hold database URLs and API keys: a change outside a release can leak or break them.
SELECT
    `@timestamp`,
    user.email AS actor,
    event.action AS action,
    heroku.app.name::String AS target,
    source.ip AS ip,
    event.id AS event_id,
    concat(toString(length(heroku.data.config_vars::Array(String))), ' variable(s): ',
           arrayStringConcat(arraySlice(heroku.data.config_vars::Array(String), 1, 5), ', '))
        AS why
FROM heroku_logs FINAL
WHERE `@timestamp` >= now() - INTERVAL 1 DAY
  AND event.action IN ('config_change.set', 'config_change.remove',
                       'heroku_config_change.update')
  AND match(lower(heroku.app.name::String), '(^|[-_.])prod(uction)?($|[-_.])')
ORDER BY `@timestamp`;

-- detection: new_ip_for_actor
-- An actor acting from an IP address never seen for them in the 30 days before: a stolen
-- token or session used from somewhere new. Actors with no history in those days (new
-- people) are left out. One row per new (actor, address): its first event.
SELECT
    e.`@timestamp` AS `@timestamp`,
    e.user.email AS actor,
    e.event.action AS action,
    coalesce(nullIf(e.heroku.app.name::String, ''), e.heroku.team.name::String) AS target,
    e.source.ip AS ip,
    e.event.id AS event_id,
    concat('first seen from ', e.source.ip, '; known: ', arrayStringConcat(h.known_ips, ', '))
        AS why
FROM heroku_logs AS e FINAL
INNER JOIN
(
    SELECT user.email AS actor, groupUniqArray(source.ip) AS known_ips
    FROM heroku_logs FINAL
    WHERE `@timestamp` >= now() - INTERVAL 31 DAY AND `@timestamp` < now() - INTERVAL 1 DAY
      AND user.email != '' AND source.ip != ''
    GROUP BY actor
) AS h ON e.user.email = h.actor
WHERE e.`@timestamp` >= now() - INTERVAL 1 DAY
  AND e.source.ip != ''
  AND NOT has(h.known_ips, e.source.ip)
ORDER BY `@timestamp`
LIMIT 1 BY actor, ip;

-- detection: destroy_burst
-- One actor deleting five or more things (apps, add-ons, domains, spaces, teams: ECS
-- event.type `deletion`) within ten minutes: a script gone wrong, or someone wiping the
-- account. One row per deletion in the burst.
WITH deletions AS
(
    SELECT `@timestamp` AS ts, user.email AS actor, event.action AS action,
           coalesce(nullIf(heroku.app.name::String, ''), heroku.team.name::String) AS target,
           source.ip AS ip, event.id AS event_id
    FROM heroku_logs FINAL
    WHERE `@timestamp` >= now() - INTERVAL 1 DAY
      AND has(event.type, 'deletion') AND user.email != ''
),
burst_starts AS
(
    SELECT actor, started
    FROM
    (
        SELECT actor, ts AS started,
               count() OVER (PARTITION BY actor ORDER BY toUnixTimestamp(ts)
                             RANGE BETWEEN CURRENT ROW AND 600 FOLLOWING) AS within_ten_minutes
        FROM deletions
    )
    WHERE within_ten_minutes >= 5
)
SELECT
    d.ts AS `@timestamp`,
    d.actor AS actor,
    d.action AS action,
    d.target AS target,
    d.ip AS ip,
    d.event_id AS event_id,
    concat('burst of deletions from ', toString(s.started)) AS why
FROM deletions AS d
INNER JOIN burst_starts AS s ON d.actor = s.actor
WHERE d.ts >= s.started AND d.ts <= s.started + INTERVAL 10 MINUTE
ORDER BY `@timestamp`
LIMIT 1 BY event_id;

-- detection: unusual_hour
-- An actor active at an hour of the day (UTC) in which they did nothing in the 30 days
-- before, among actors with a routine (20 or more events in those days): a credential used
-- while its owner sleeps. Round-the-clock automation never matches. One row per actor and
-- hour: its first event.
SELECT
    e.`@timestamp` AS `@timestamp`,
    e.user.email AS actor,
    e.event.action AS action,
    coalesce(nullIf(e.heroku.app.name::String, ''), e.heroku.team.name::String) AS target,
    e.source.ip AS ip,
    e.event.id AS event_id,
    concat('active at ', toString(toHour(e.`@timestamp`)), ':00 UTC; usual hours: ',
           arrayStringConcat(arraySort(r.usual_hours), ',')) AS why
FROM heroku_logs AS e FINAL
INNER JOIN
(
    SELECT user.email AS actor, groupUniqArray(toHour(`@timestamp`)) AS usual_hours
    FROM heroku_logs FINAL
    WHERE `@timestamp` >= now() - INTERVAL 31 DAY AND `@timestamp` < now() - INTERVAL 1 DAY
      AND user.email != ''
    GROUP BY actor
    HAVING count() >= 20
) AS r ON e.user.email = r.actor
WHERE e.`@timestamp` >= now() - INTERVAL 1 DAY
  AND NOT has(r.usual_hours, toHour(e.`@timestamp`))
ORDER BY `@timestamp`
LIMIT 1 BY actor, toHour(`@timestamp`);
