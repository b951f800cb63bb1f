-- `verify` asks, a batch of listed directories at a time, which of them belong to a
-- recording (issue 16: its memory no longer grows with the table); each answer is one
-- lookup in this index instead of a read of every row's directory.
CREATE INDEX recordings_object_prefix ON recordings (object_prefix);
