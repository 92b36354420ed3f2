-- A customer's list of their orders leaves out rejected ones (refused
-- checkouts), newest first: `WHERE user_id = $1 AND status <> 'rejected'
-- ORDER BY id DESC`. This index holds exactly those rows in that order, so a
-- page, its neighbour check and its bounded count each read a short range of
-- it (index-only on PostgreSQL), however many rejected orders there are.
-- The admin's lists keep theirs: everyone's by the primary key, one
-- customer's (rejected included) by orders_user_id_idx (user_id, id).
CREATE INDEX orders_user_placed_idx ON orders (user_id, id) WHERE status <> 'rejected';
