-- Customers' address books: at most 20 each (checked by the service), gone
-- with their account. Orders keep their own copy of the address they were
-- sent to, so editing or deleting one here changes no order.
CREATE TABLE addresses (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       BIGINT NOT NULL
                  CONSTRAINT addresses_user_id_fkey REFERENCES users (id) ON DELETE CASCADE,
    name          TEXT    NOT NULL,
    line1         TEXT    NOT NULL,
    line2         TEXT    NOT NULL DEFAULT '',
    postcode      TEXT    NOT NULL,
    city          TEXT    NOT NULL,
    country       TEXT    NOT NULL CONSTRAINT addresses_country_check CHECK (length(country) = 2),
    phone         TEXT    NOT NULL DEFAULT '',
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX addresses_user_id_idx ON addresses (user_id, updated_at_ms);

-- Password reset links: only the SHA-256 of each token is kept, so a copy of
-- the database gives no working link. A token is used at most once
-- (used_at_ms), expires, and a new request deletes the account's older ones.
CREATE TABLE password_reset_tokens (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       BIGINT NOT NULL
                  CONSTRAINT password_reset_tokens_user_id_fkey REFERENCES users (id) ON DELETE CASCADE,
    token_hash    TEXT    NOT NULL CONSTRAINT password_reset_tokens_token_hash_key UNIQUE,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    used_at_ms    BIGINT
);
CREATE INDEX password_reset_tokens_user_id_idx ON password_reset_tokens (user_id);
