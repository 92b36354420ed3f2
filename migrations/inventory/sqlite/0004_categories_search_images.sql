-- Categories: a product is in zero or more. The slug is derived from the
-- name by the service and unique, which also makes names unique
-- case-insensitively (two names that differ only in case share a slug).
CREATE TABLE categories (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL,
    slug          TEXT    NOT NULL CONSTRAINT categories_slug_key UNIQUE,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE product_categories (
    product_id  INTEGER NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    category_id INTEGER NOT NULL REFERENCES categories (id) ON DELETE CASCADE,
    PRIMARY KEY (product_id, category_id)
);
CREATE INDEX product_categories_category_idx ON product_categories (category_id);

-- Search: an FTS5 index over the products table (external content), kept
-- in step by triggers. Diacritics are folded ("the" finds "thé"); prefix
-- indexes keep short prefix queries quick.
CREATE VIRTUAL TABLE products_search USING fts5 (
    name, description,
    content = 'products', content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '2 3'
);
CREATE TRIGGER products_search_insert AFTER INSERT ON products BEGIN
    INSERT INTO products_search (rowid, name, description) VALUES (new.id, new.name, new.description);
END;
CREATE TRIGGER products_search_delete AFTER DELETE ON products BEGIN
    INSERT INTO products_search (products_search, rowid, name, description)
    VALUES ('delete', old.id, old.name, old.description);
END;
-- Only when the words change: stock moves (every reservation) leave the index alone.
CREATE TRIGGER products_search_update AFTER UPDATE OF name, description ON products BEGIN
    INSERT INTO products_search (products_search, rowid, name, description)
    VALUES ('delete', old.id, old.name, old.description);
    INSERT INTO products_search (rowid, name, description) VALUES (new.id, new.name, new.description);
END;
-- Existing products.
INSERT INTO products_search (products_search) VALUES ('rebuild');

-- The index's words, for correcting a misspelt query word.
CREATE VIRTUAL TABLE products_search_words USING fts5vocab (products_search, 'row');

-- Pictures: each variant's bytes once, named by the hex SHA-256 of them.
CREATE TABLE image_blobs (
    hash          TEXT    PRIMARY KEY,
    content_type  TEXT    NOT NULL,
    data          BLOB    NOT NULL,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE product_images (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    product_id     INTEGER NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    position       INTEGER NOT NULL,
    alt            TEXT    NOT NULL,
    content_type   TEXT    NOT NULL,
    thumbnail_hash TEXT    NOT NULL REFERENCES image_blobs (hash),
    thumbnail_width  INTEGER NOT NULL,
    thumbnail_height INTEGER NOT NULL,
    large_hash     TEXT    NOT NULL REFERENCES image_blobs (hash),
    large_width    INTEGER NOT NULL,
    large_height   INTEGER NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    CONSTRAINT product_images_position_key UNIQUE (product_id, position)
);
CREATE INDEX product_images_thumbnail_idx ON product_images (thumbnail_hash);
CREATE INDEX product_images_large_idx ON product_images (large_hash);
