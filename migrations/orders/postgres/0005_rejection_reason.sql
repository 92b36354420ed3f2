-- Why a rejected order was rejected, as the order service's own reason
-- rather than inventory's message and a gRPC status code: `rejection` is the
-- domain's Rejection (backend/orders/src/domain.rs), `rejected_product_id`
-- the product it concerns. Both stay NULL unless the order is rejected.
ALTER TABLE orders ADD COLUMN rejection TEXT CONSTRAINT orders_rejection_check
    CHECK (rejection IN ('stock_short', 'product_not_found'));
ALTER TABLE orders ADD COLUMN rejected_product_id BIGINT;

-- Orders rejected before: inventory said NOT_FOUND (code 5) for an unknown
-- product and FAILED_PRECONDITION for short stock; orders rejected before
-- codes were kept (NULL) were all short of stock. Which product it was is
-- only in the old message, and is left unknown.
UPDATE orders SET rejection = CASE WHEN rejection_code = 5 THEN 'product_not_found' ELSE 'stock_short' END
    WHERE status = 'rejected';

ALTER TABLE orders DROP COLUMN rejection_reason;
ALTER TABLE orders DROP COLUMN rejection_code;
