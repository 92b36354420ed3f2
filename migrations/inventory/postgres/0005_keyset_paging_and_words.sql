-- Keyset paging: one index per order a list can take, each ending on the
-- id, so a page is one range read of an index whatever its depth
-- (docs/search.md). Newest first is the primary key read backwards. None
-- of them holds stock: a reservation then changes no indexed column and
-- its update stays HOT.
CREATE INDEX products_price_low_idx ON products (price_minor, id DESC);
CREATE INDEX products_price_high_idx ON products (price_minor, id);
CREATE INDEX products_name_idx ON products (lower(name), id);

-- A category's products in id order: its newest first is one range read.
DROP INDEX product_categories_category_idx;
CREATE INDEX product_categories_category_idx ON product_categories (category_id, product_id);

-- The words of the catalogue and how many products have each, for
-- correcting a misspelt query word without reading the products
-- (ts_stat over them reads every row). Triggers keep it in step; words
-- with digits (sizes, codes) are left out: they are not typos' targets.
CREATE TABLE product_words (
    word     TEXT   PRIMARY KEY,
    products BIGINT NOT NULL CONSTRAINT product_words_products_nonnegative CHECK (products >= 0)
);
CREATE INDEX product_words_length_idx ON product_words (length(word));

-- Statement-level, so a bulk insert counts its words once. Words are
-- added in order, so two concurrent inserts lock shared words in the
-- same order and wait rather than deadlock.
CREATE FUNCTION product_words_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO product_words AS w (word, products)
    SELECT u.lexeme, COUNT(*) FROM new_products n, unnest(n.search) AS u
    WHERE u.lexeme !~ '[0-9]' GROUP BY u.lexeme ORDER BY u.lexeme
    ON CONFLICT (word) DO UPDATE SET products = w.products + excluded.products;
    RETURN NULL;
END $$;

CREATE FUNCTION product_words_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE product_words AS w SET products = w.products - gone.products
    FROM (SELECT u.lexeme, COUNT(*) AS products FROM old_products o, unnest(o.search) AS u
          GROUP BY u.lexeme ORDER BY u.lexeme) AS gone
    WHERE w.word = gone.lexeme;
    DELETE FROM product_words
    WHERE products = 0 AND word IN (SELECT u.lexeme FROM old_products o, unnest(o.search) AS u);
    RETURN NULL;
END $$;

-- Per row and only when the words change: stock moves (every
-- reservation) never reach it.
CREATE FUNCTION product_words_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF old.search = new.search THEN
        RETURN NULL;
    END IF;
    UPDATE product_words SET products = products - 1
    WHERE word IN (SELECT lexeme FROM unnest(old.search) EXCEPT SELECT lexeme FROM unnest(new.search));
    DELETE FROM product_words
    WHERE products = 0
      AND word IN (SELECT lexeme FROM unnest(old.search) EXCEPT SELECT lexeme FROM unnest(new.search));
    INSERT INTO product_words AS w (word, products)
    SELECT added.lexeme, 1
    FROM (SELECT lexeme FROM unnest(new.search) EXCEPT SELECT lexeme FROM unnest(old.search)) AS added
    WHERE added.lexeme !~ '[0-9]' ORDER BY added.lexeme
    ON CONFLICT (word) DO UPDATE SET products = w.products + 1;
    RETURN NULL;
END $$;

CREATE TRIGGER product_words_insert AFTER INSERT ON products
    REFERENCING NEW TABLE AS new_products FOR EACH STATEMENT EXECUTE FUNCTION product_words_inserted();
CREATE TRIGGER product_words_delete AFTER DELETE ON products
    REFERENCING OLD TABLE AS old_products FOR EACH STATEMENT EXECUTE FUNCTION product_words_deleted();
CREATE TRIGGER product_words_update AFTER UPDATE OF name, description ON products
    FOR EACH ROW EXECUTE FUNCTION product_words_updated();

-- Existing products.
INSERT INTO product_words (word, products)
SELECT u.lexeme, COUNT(*) FROM products p, unnest(p.search) AS u
WHERE u.lexeme !~ '[0-9]' GROUP BY u.lexeme;
