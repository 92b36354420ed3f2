-- Categories: a product is in zero or more. The slug is derived from the
-- name by the service and unique, which also makes names unique
-- case-insensitively (two names that differ only in case share a slug).
CREATE TABLE categories (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          TEXT   NOT NULL,
    slug          TEXT   NOT NULL CONSTRAINT categories_slug_key UNIQUE,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE product_categories (
    product_id  BIGINT NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    category_id BIGINT NOT NULL REFERENCES categories (id) ON DELETE CASCADE,
    PRIMARY KEY (product_id, category_id)
);
CREATE INDEX product_categories_category_idx ON product_categories (category_id);

-- Search: words of the name weigh more (A) than words of the description
-- (B). The 'simple' configuration lower-cases without stemming, so the
-- words searched and the words offered as corrections are words people
-- wrote. A generated column fills itself for existing products.
ALTER TABLE products ADD COLUMN search tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('simple', name), 'A') || setweight(to_tsvector('simple', description), 'B')
) STORED;
CREATE INDEX products_search_idx ON products USING GIN (search);

-- Trigram similarity of the query to a name adds to the rank (a trusted
-- extension: the database owner may create it).
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- Pictures: each variant's bytes once, named by the hex SHA-256 of them.
CREATE TABLE image_blobs (
    hash          TEXT   PRIMARY KEY,
    content_type  TEXT   NOT NULL,
    data          BYTEA  NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE product_images (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product_id     BIGINT NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    position       BIGINT NOT NULL,
    alt            TEXT   NOT NULL,
    content_type   TEXT   NOT NULL,
    thumbnail_hash TEXT   NOT NULL REFERENCES image_blobs (hash),
    thumbnail_width  BIGINT NOT NULL,
    thumbnail_height BIGINT NOT NULL,
    large_hash     TEXT   NOT NULL REFERENCES image_blobs (hash),
    large_width    BIGINT NOT NULL,
    large_height   BIGINT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    CONSTRAINT product_images_position_key UNIQUE (product_id, position)
);
CREATE INDEX product_images_thumbnail_idx ON product_images (thumbnail_hash);
CREATE INDEX product_images_large_idx ON product_images (large_hash);
