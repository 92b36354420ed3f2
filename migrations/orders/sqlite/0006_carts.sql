-- The cart kept for a signed-in customer (guests keep theirs in the
-- gateway's session until they sign in). One row per product; every change
-- is one statement (an upsert adding to `quantity`), so concurrent adds are
-- all counted. `product_name` is the name when the line was last changed,
-- to name a product that is deleted later. The bounds are shop-order-lines':
-- a cart holds what one order may hold.
CREATE TABLE cart_items (
    user_id       INTEGER NOT NULL,
    product_id    INTEGER NOT NULL,
    quantity      INTEGER NOT NULL CONSTRAINT cart_items_quantity_check CHECK (quantity BETWEEN 1 AND 10000),
    product_name  TEXT   NOT NULL DEFAULT '',
    added_at_ms   INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (user_id, product_id)
);

-- An order placed from the cart (CheckoutCart) takes what it ordered out of
-- the cart in the transaction that confirms it; 1 marks such an order.
ALTER TABLE orders ADD COLUMN from_cart INTEGER NOT NULL DEFAULT 0 CONSTRAINT orders_from_cart_check CHECK (from_cart IN (0, 1));
