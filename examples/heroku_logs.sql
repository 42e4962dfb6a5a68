-- ClickHouse table for heroku-audit-trail's ECS lines (ClickHouse >= 25.3 for the JSON type).
-- Both examples insert with JSONEachRow: Fluent Bit's http output posts
--   INSERT INTO heroku_logs FORMAT JSONEachRow
--   SETTINGS date_time_input_format='best_effort', input_format_skip_unknown_fields=1
-- and Vector's clickhouse sink sets the same two settings.
-- Nested ECS objects land in named tuples (JSON objects map onto them by key; missing keys
-- take defaults, unknown keys are skipped), so `event.action`, `user.email`, `source.ip`
-- read like the ECS field names. Everything Heroku-specific stays whole in `heroku` (JSON).
-- ReplacingMergeTree on event.id: delivery is at-least-once, so a line printed twice (the
-- program killed between printing a day and saving its cursor) is kept once; query with
-- FINAL (or GROUP BY event.id) to see each event once before merges run.
CREATE TABLE IF NOT EXISTS heroku_logs
(
    `@timestamp`  DateTime64(6, 'UTC'),
    event Tuple(
        id       String,
        action   LowCardinality(String),
        category Array(LowCardinality(String)),
        type     Array(LowCardinality(String)),
        kind     LowCardinality(String),
        module   LowCardinality(String),
        dataset  LowCardinality(String),
        provider LowCardinality(String),
        created  DateTime64(6, 'UTC'),
        original String
    ),
    user         Tuple(id String, email String),
    source       Tuple(ip String),
    related      Tuple(user Array(String), ip Array(String)),
    organization Tuple(id String, name LowCardinality(String)),
    ecs          Tuple(version LowCardinality(String)),
    heroku       JSON,
    message      String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(`@timestamp`)
ORDER BY (toDate(`@timestamp`), event.id);
