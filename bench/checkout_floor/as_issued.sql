-- One order's SQL as the shop issues it on PostgreSQL today (one line, no
-- delivery, an idempotency key): the three transactions of checkout, each
-- statement a round trip, copied from insert_pending and confirm_placed
-- (backend/orders/src/store.rs) and reserve (backend/inventory/src/store/mod.rs).
-- The orders tables are in schema ord, inventory's in inv (one database:
-- pgbench has one connection a client). Replayed by bench/checkout_floor.sh.
\set pid random(1, :products)
\set uid random(1, 100000)
\set key random(1, 1000000000000)
BEGIN;
INSERT INTO ord.orders (user_id, status, created_at_ms, updated_at_ms, from_cart, delivery_name, delivery_line1, delivery_line2, delivery_postcode, delivery_city, delivery_country, delivery_phone, delivery_method_id, delivery_method_name, delivery_price_minor, delivery_free_above_minor, vat_rate_bp, payment_method) VALUES (:uid::bigint, 'pending', 1796119298287, 1796119298287, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 2000, NULL) RETURNING id \gset
INSERT INTO ord.order_items (order_id, product_id, quantity) VALUES (:id::bigint, :pid::bigint, 1);
INSERT INTO ord.order_status_changes (order_id, status, actor, at_ms) VALUES (:id::bigint, 'pending', 'user:42', 1796119298287);
INSERT INTO ord.idempotency_keys (user_id, idempotency_key, request, order_id, created_at_ms) VALUES (:uid::bigint, 'bench-12345-postgres-' || :key::bigint, '{"items": [{"product_id": ' || :pid::bigint || ',"quantity": 1}],"delivery": null,"payment": null}', :id::bigint, 1796119298287) ON CONFLICT (user_id, idempotency_key) DO NOTHING;
INSERT INTO ord.outbox (event_id, kind, payload, created_at_ms, trace_parent) VALUES (gen_random_uuid()::text, 'order.created', '{"id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","kind": "order.created","occurred_at_ms": 1796119298287,"trace_parent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","payload": {"order_id": ' || :id::bigint || ',"user_id": ' || :uid::bigint || ',"items": [{"product_id": ' || :pid::bigint || ',"quantity": 1}]}}', 1796119298287, '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
END;
BEGIN;
INSERT INTO inv.reservations (order_id, state, created_at_ms) VALUES (:id::bigint, 'reserved', 1796119298287) ON CONFLICT (order_id) DO NOTHING;
UPDATE inv.products SET stock = stock - 1, updated_at_ms = 1796119298287 WHERE id = :pid::bigint AND stock >= 1 RETURNING name, price_minor, stock;
INSERT INTO inv.outbox (event_id, kind, payload, created_at_ms, trace_parent) VALUES (gen_random_uuid()::text, 'product.changed', '{"id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","kind": "product.changed","occurred_at_ms": 1796119298287,"trace_parent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","payload": {"product_id": ' || :pid::bigint || ',"change": "stock","stock": 99999}}', 1796119298287, '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
INSERT INTO inv.reservation_items (order_id, product_id, product_name, quantity, unit_price_minor) VALUES (:id::bigint, :pid::bigint, 'Product 17', 1, 1017);
END;
BEGIN;
UPDATE ord.orders SET status = 'confirmed', stock_state = CASE WHEN stock_state = 'none' THEN 'reserved' ELSE stock_state END, subtotal_minor = 1017, delivery_minor = CASE WHEN delivery_price_minor IS NULL THEN 0 WHEN delivery_free_above_minor IS NOT NULL AND delivery_free_above_minor <= 1017 THEN 0 ELSE delivery_price_minor END, total_minor = 1017 + CASE WHEN delivery_price_minor IS NULL THEN 0 WHEN delivery_free_above_minor IS NOT NULL AND delivery_free_above_minor <= 1017 THEN 0 ELSE delivery_price_minor END, updated_at_ms = 1796119298290 WHERE id = :id::bigint AND status = 'pending' AND (CASE WHEN delivery_price_minor IS NULL THEN 0 WHEN delivery_free_above_minor IS NOT NULL AND delivery_free_above_minor <= 1017 THEN 0 ELSE delivery_price_minor END) <= 9223372036854774790 RETURNING id, user_id, status, total_minor, subtotal_minor, created_at_ms, updated_at_ms, delivery_name, delivery_line1, delivery_line2, delivery_postcode, delivery_city, delivery_country, delivery_phone, delivery_method_id, delivery_method_name, delivery_minor, vat_rate_bp, payment_method, payment_state, tracking_reference, from_cart;
UPDATE ord.order_items SET product_name = v.column2, unit_price_minor = v.column3, quantity = v.column4 FROM (VALUES (:pid::bigint, 'Product 17', 1017, 1)) AS v WHERE order_items.order_id = :id::bigint AND order_items.product_id = v.column1;
INSERT INTO ord.order_status_changes (order_id, status, actor, at_ms) VALUES (:id::bigint, 'confirmed', 'system', 1796119298290);
INSERT INTO ord.outbox (event_id, kind, payload, created_at_ms, trace_parent) VALUES (gen_random_uuid()::text, 'order.status_changed', '{"id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","kind": "order.status_changed","occurred_at_ms": 1796119298290,"trace_parent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","payload": {"order_id": ' || :id::bigint || ',"user_id": ' || :uid::bigint || ',"from": "pending","to": "confirmed","actor": "system","total_minor": 1017}}', 1796119298290, '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
END;
