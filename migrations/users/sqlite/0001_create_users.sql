-- Accounts. Emails are stored trimmed and lower-cased by the service, so the
-- plain UNIQUE constraint makes them unique case-insensitively.
-- AUTOINCREMENT: a deleted user's id is never handed to someone else.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    email         TEXT    NOT NULL CONSTRAINT users_email_key UNIQUE,
    name          TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL DEFAULT 'customer'
                  CONSTRAINT users_role_check CHECK (role IN ('customer', 'admin')),
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
