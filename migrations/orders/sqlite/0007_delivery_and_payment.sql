-- Delivery methods, kept by admins. Never deleted (deactivated instead):
-- orders keep a snapshot of the method they were placed with anyway.
CREATE TABLE delivery_methods (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    name             TEXT   NOT NULL CONSTRAINT delivery_methods_name_check CHECK (length(name) BETWEEN 1 AND 100),
    price_minor      INTEGER NOT NULL CONSTRAINT delivery_methods_price_check CHECK (price_minor >= 0),
    free_above_minor INTEGER CONSTRAINT delivery_methods_free_above_check CHECK (free_above_minor >= 0),
    active           INTEGER NOT NULL DEFAULT 1 CONSTRAINT delivery_methods_active_check CHECK (active IN (0, 1)),
    created_at_ms    INTEGER NOT NULL,
    updated_at_ms    INTEGER NOT NULL
);

-- The delivery address as given at checkout, copied onto the order and never
-- changed. All NULL for an order without delivery (every order placed before
-- this migration, and CreateOrder without one): collected in store.
ALTER TABLE orders ADD COLUMN delivery_name TEXT;
ALTER TABLE orders ADD COLUMN delivery_line1 TEXT;
ALTER TABLE orders ADD COLUMN delivery_line2 TEXT;
ALTER TABLE orders ADD COLUMN delivery_postcode TEXT;
ALTER TABLE orders ADD COLUMN delivery_city TEXT;
ALTER TABLE orders ADD COLUMN delivery_country TEXT;
ALTER TABLE orders ADD COLUMN delivery_phone TEXT;

-- The delivery method as it was when the order was placed: its id, name,
-- price and free-above threshold (the cost is decided when the items are
-- priced, at confirmation, into delivery_minor).
ALTER TABLE orders ADD COLUMN delivery_method_id INTEGER REFERENCES delivery_methods (id);
ALTER TABLE orders ADD COLUMN delivery_method_name TEXT;
ALTER TABLE orders ADD COLUMN delivery_price_minor INTEGER;
ALTER TABLE orders ADD COLUMN delivery_free_above_minor INTEGER;
ALTER TABLE orders ADD COLUMN delivery_minor INTEGER NOT NULL DEFAULT 0 CONSTRAINT orders_delivery_nonnegative CHECK (delivery_minor >= 0);

-- The items' sum; total_minor = subtotal_minor + delivery_minor. Orders
-- before this had no delivery, so their subtotal is their total.
ALTER TABLE orders ADD COLUMN subtotal_minor INTEGER NOT NULL DEFAULT 0 CONSTRAINT orders_subtotal_nonnegative CHECK (subtotal_minor >= 0);
UPDATE orders SET subtotal_minor = total_minor;

-- The VAT rate the order was placed at, in hundredths of a percent; NULL for
-- orders placed before (they read the shop's rate today).
ALTER TABLE orders ADD COLUMN vat_rate_bp INTEGER CONSTRAINT orders_vat_rate_check CHECK (vat_rate_bp BETWEEN 0 AND 10000);

-- Payment, beside the status: NULL method is "not said" (older orders,
-- CreateOrder without one). Every order, old ones too, starts unpaid.
ALTER TABLE orders ADD COLUMN payment_method TEXT CONSTRAINT orders_payment_method_check
    CHECK (payment_method IN ('bank_transfer', 'cash_on_delivery'));
ALTER TABLE orders ADD COLUMN payment_state TEXT NOT NULL DEFAULT 'unpaid' CONSTRAINT orders_payment_state_check
    CHECK (payment_state IN ('unpaid', 'paid', 'refunded'));

-- The carrier's reference given when the order was shipped.
ALTER TABLE orders ADD COLUMN tracking_reference TEXT CONSTRAINT orders_tracking_reference_check
    CHECK (length(tracking_reference) <= 100);

-- Every payment state an order moved to, who moved it and when.
CREATE TABLE order_payment_changes (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id INTEGER NOT NULL REFERENCES orders (id),
    state    TEXT   NOT NULL,
    actor    TEXT   NOT NULL,
    at_ms    INTEGER NOT NULL
);
CREATE INDEX order_payment_changes_order_idx ON order_payment_changes (order_id, id);
