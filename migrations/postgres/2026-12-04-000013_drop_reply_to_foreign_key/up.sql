-- The self-reference messages.reply_to_id -> messages.id cost the sweeper more than the
-- three child tables' keys together: one trigger per destroyed message, each an index
-- probe for replies, about 10 ms of a 16 ms delete of 500 messages. What it guarded is
-- guarded elsewhere: `messages::destroy`, the only path that deletes a message, nulls
-- every reply's reference in the same transaction, and a send accepts a reply only to a
-- message its sender can still see, which the sweeper destroys only a grace period
-- after its end was announced. The index on reply_to_id stays (destroy finds replies
-- through it). SQLite keeps its constraint: dropping it means rebuilding the table, and
-- there the check is an in-process index probe.
ALTER TABLE messages DROP CONSTRAINT messages_reply_to_id_fkey;
