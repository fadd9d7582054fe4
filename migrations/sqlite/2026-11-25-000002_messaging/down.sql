DROP TABLE room_events;
DROP TABLE reactions;
DROP TABLE message_versions;
DROP TABLE messages;
DROP TABLE attachments;
DROP TABLE room_keys;
DROP TABLE room_members;
DROP TABLE rooms;
