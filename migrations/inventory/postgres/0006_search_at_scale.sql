-- Searches at a million products (docs/search.md, "Measured").
--
-- Whether a query word matches anything as typed is asked of the words
-- table rather than of the products: for a word that matches nothing the
-- planner read every product (357 ms at 1,000,000). A word matches as a
-- prefix, so the probe is the first word at or after it in byte order,
-- one descent of this index whatever the database's collation.
CREATE INDEX product_words_prefix_idx ON product_words (word COLLATE "C");

-- So the table now holds every word of the catalogue, those with digits
-- too (a query word "500" must find "500ml" as typed). Typo correction
-- still offers only words without digits (a code near another is another
-- product): its length index covers just those.
DROP INDEX product_words_length_idx;
CREATE INDEX product_words_length_idx ON product_words (length(word)) WHERE word !~ '[0-9]';

CREATE OR REPLACE FUNCTION product_words_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO product_words AS w (word, products)
    SELECT u.lexeme, COUNT(*) FROM new_products n, unnest(n.search) AS u
    GROUP BY u.lexeme ORDER BY u.lexeme
    ON CONFLICT (word) DO UPDATE SET products = w.products + excluded.products;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION product_words_updated() RETURNS trigger LANGUAGE plpgsql AS $$
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
    ORDER BY added.lexeme
    ON CONFLICT (word) DO UPDATE SET products = w.products + 1;
    RETURN NULL;
END $$;

-- The deletion trigger already subtracts every word it finds; the words
-- with digits of existing products are added here.
INSERT INTO product_words (word, products)
SELECT u.lexeme, COUNT(*) FROM products p, unnest(p.search) AS u
WHERE u.lexeme ~ '[0-9]' GROUP BY u.lexeme
ON CONFLICT (word) DO NOTHING;
