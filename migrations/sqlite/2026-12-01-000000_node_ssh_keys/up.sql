-- A node's ssh host key (`KEYTYPE BASE64`), put in teuthology's targets; '' for none.
ALTER TABLE nodes ADD COLUMN ssh_key TEXT NOT NULL DEFAULT '';
