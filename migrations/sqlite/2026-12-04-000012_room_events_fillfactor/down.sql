-- PostgreSQL only: room_events gets a fillfactor so the sweeper's rewrites stay on their
-- page (HOT). SQLite has no fillfactor; this keeps the two migration lists aligned.
SELECT 1;
