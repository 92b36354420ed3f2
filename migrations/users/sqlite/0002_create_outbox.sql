-- The transactional outbox: events written with the change they describe,
-- published to NATS JetStream by the relay, then kept a day for inspection.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT   NOT NULL CONSTRAINT outbox_event_id_key UNIQUE,
    kind            TEXT   NOT NULL,
    payload         TEXT   NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    published_at_ms INTEGER
);
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at_ms IS NULL;
