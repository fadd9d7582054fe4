-- PostgreSQL only: it drops the messages.reply_to_id foreign key (see its up.sql).
-- SQLite keeps it; this keeps the two migration lists aligned.
SELECT 1;
