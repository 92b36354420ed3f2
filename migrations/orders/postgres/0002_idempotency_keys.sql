-- Idempotency keys of CreateOrder, per user. `request` is the order's lines
-- in a canonical form ("product:quantity,..."), so a retry with other items
-- can be told apart and refused.
CREATE TABLE idempotency_keys (
    user_id         BIGINT NOT NULL,
    idempotency_key TEXT   NOT NULL,
    request         TEXT   NOT NULL,
    order_id        BIGINT NOT NULL REFERENCES orders (id),
    created_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (user_id, idempotency_key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at_ms);

-- Why inventory refused a rejected order, to answer its retries the same way.
ALTER TABLE orders ADD COLUMN rejection_reason TEXT;
ALTER TABLE orders ADD COLUMN rejection_code INTEGER;
