-- Orders. `status` is the customer-facing state machine; `stock_state` is
-- what inventory holds for the order, so a recovery pass can tell an order
-- whose stock must still be reserved or given back.
CREATE TABLE orders (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       INTEGER NOT NULL,
    status        TEXT   NOT NULL CONSTRAINT orders_status_check
                  CHECK (status IN ('pending', 'confirmed', 'shipped', 'delivered', 'cancelled', 'rejected')),
    stock_state   TEXT   NOT NULL DEFAULT 'none' CONSTRAINT orders_stock_state_check
                  CHECK (stock_state IN ('none', 'reserved', 'released')),
    total_minor   INTEGER NOT NULL DEFAULT 0 CONSTRAINT orders_total_nonnegative CHECK (total_minor >= 0),
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
CREATE INDEX orders_user_id_idx ON orders (user_id, id);
CREATE INDEX orders_status_idx ON orders (status);

-- Name and price are copied from inventory when the stock is reserved; they
-- stay NULL while the order is pending.
CREATE TABLE order_items (
    order_id         INTEGER NOT NULL REFERENCES orders (id),
    product_id       INTEGER NOT NULL,
    quantity         INTEGER NOT NULL CONSTRAINT order_items_quantity_positive CHECK (quantity > 0),
    product_name     TEXT,
    unit_price_minor INTEGER CONSTRAINT order_items_price_nonnegative CHECK (unit_price_minor >= 0),
    PRIMARY KEY (order_id, product_id)
);

-- Every status an order has had, who set it and when.
CREATE TABLE order_status_changes (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id INTEGER NOT NULL REFERENCES orders (id),
    status   TEXT   NOT NULL,
    actor    TEXT   NOT NULL,
    at_ms    INTEGER NOT NULL
);
CREATE INDEX order_status_changes_order_idx ON order_status_changes (order_id, id);
