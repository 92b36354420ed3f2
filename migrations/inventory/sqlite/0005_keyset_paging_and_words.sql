-- Keyset paging: one index per order a list can take, each ending on the
-- id, so a page is one range read of an index whatever its depth
-- (docs/search.md). Newest first is the rowid read backwards. The
-- catalogue's words for typo correction are the FTS index's own
-- (products_search_words, from 0004).
CREATE INDEX products_price_low_idx ON products (price_minor, id DESC);
CREATE INDEX products_price_high_idx ON products (price_minor, id);
CREATE INDEX products_name_idx ON products (lower(name), id);

-- A category's products in id order: its newest first is one range read.
DROP INDEX product_categories_category_idx;
CREATE INDEX product_categories_category_idx ON product_categories (category_id, product_id);
