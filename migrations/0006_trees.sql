-- imgstore index, rendered trees (migration 0006).
-- A tree the store keeps: an image rendered into trees/<name>/ by
-- `imgstore render IMAGE` without a DIR. `name` is derived from what was
-- rendered (the image key, the image manifest a platform chose, the rootless
-- flag), so the same render asked twice finds the same row. A row exists
-- only for a tree that is complete and durable under its final name: the
-- directory is renamed into place and fsynced before this row commits, and
-- a directory without a row is garbage for gc.
CREATE TABLE trees (
    id          INTEGER PRIMARY KEY,
    -- The directory under trees/ (32 hex digits).
    name        TEXT    NOT NULL UNIQUE,
    image_id    INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    -- The image manifest whose layers were applied ('alg:hex'): for an OCI
    -- index, the one the platform chose; for appc, the image's manifest.
    manifest    TEXT    NOT NULL,
    -- 'os/arch[/variant]' of an OCI tree; NULL for appc.
    platform    TEXT,
    rootless    INTEGER NOT NULL CHECK (rootless IN (0, 1)),
    rendered_at INTEGER NOT NULL,
    last_used   INTEGER NOT NULL,
    -- Bytes of file data (hard links counted once).
    size        INTEGER NOT NULL CHECK (size >= 0),
    -- sha256 of the tree's walk (paths, types, modes, owners, link
    -- targets, devices, file contents), as rendered; fsck --trees compares.
    hash        TEXT    NOT NULL
);
-- rm and fsck --repair delete images: each delete looks up the image's trees.
CREATE INDEX trees_by_image ON trees(image_id);
CREATE INDEX trees_by_last_used ON trees(last_used);

-- A tree holds the blobs it was rendered from (owner_kind 5 in refs, owner =
-- trees.id), so gc keeps them, and lets go of them when its row goes (also
-- when its image's delete cascades to it).
CREATE TRIGGER trees_release AFTER DELETE ON trees BEGIN
    DELETE FROM refs WHERE owner_kind = 5 AND owner = OLD.id;
END;
