-- Nothing changes on SQLite: its typo probe and vocabulary are the FTS5
-- index's own (docs/search.md). The number keeps both backends' migrations
-- in step.
SELECT 1;
