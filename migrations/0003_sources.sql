-- imgstore index, schema version 3.
-- Files an ACI was imported from, by identity. An ACI's key is the hash of
-- its whole uncompressed tar, so without this a re-import must decompress
-- and hash everything again; with it, an unchanged file costs a stat.
-- Any write to a file changes its ctime, and any replacement its inode, so
-- a matching row means the same bytes as before.
CREATE TABLE sources (
    dev      INTEGER NOT NULL,
    ino      INTEGER NOT NULL,
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    PRIMARY KEY (dev, ino)
);
CREATE INDEX sources_by_image ON sources(image_id);
