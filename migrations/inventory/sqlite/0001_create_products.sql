-- The catalogue. Money is integer minor units; stock can never go negative,
-- whatever the code does, because the database refuses it.
CREATE TABLE products (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT   NOT NULL,
    description   TEXT   NOT NULL DEFAULT '',
    price_minor   INTEGER NOT NULL CONSTRAINT products_price_nonnegative CHECK (price_minor >= 0),
    stock         INTEGER NOT NULL CONSTRAINT products_stock_nonnegative CHECK (stock >= 0),
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);

-- One row per order that ever reserved (or released) stock: the key that
-- makes reserve and release idempotent by order id.
CREATE TABLE reservations (
    order_id       INTEGER PRIMARY KEY,
    state          TEXT   NOT NULL CONSTRAINT reservations_state_check CHECK (state IN ('reserved', 'released')),
    created_at_ms  INTEGER NOT NULL,
    released_at_ms INTEGER
);

-- What a reservation took, priced when it was taken. No foreign key to
-- products: deleting a product must not rewrite order history.
CREATE TABLE reservation_items (
    order_id         INTEGER NOT NULL REFERENCES reservations (order_id),
    product_id       INTEGER NOT NULL,
    product_name     TEXT   NOT NULL,
    quantity         INTEGER NOT NULL CONSTRAINT reservation_items_quantity_positive CHECK (quantity > 0),
    unit_price_minor INTEGER NOT NULL CONSTRAINT reservation_items_price_nonnegative CHECK (unit_price_minor >= 0),
    PRIMARY KEY (order_id, product_id)
);
