ALTER TABLE room_events RESET (fillfactor);
