-- The events whose email went out, so that a redelivered event sends no
-- second one. Written after the send succeeds; kept a little longer than the
-- NATS stream keeps events (7 days), then deleted.
CREATE TABLE sent_emails (
    event_id   TEXT   NOT NULL CONSTRAINT sent_emails_pkey PRIMARY KEY,
    kind       TEXT   NOT NULL,
    sent_at_ms BIGINT NOT NULL
);
CREATE INDEX sent_emails_sent_at_idx ON sent_emails (sent_at_ms);
