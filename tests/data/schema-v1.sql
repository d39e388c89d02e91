-- imgstore index, schema version 1.
-- Times are unix microseconds (UTC). Digests are full length, 'alg:hex'.

CREATE TABLE blobs (
    id          INTEGER PRIMARY KEY,
    digest      TEXT    NOT NULL UNIQUE,
    size        INTEGER NOT NULL CHECK (size >= 0),
    media_type  TEXT,
    -- Sum of `n` over the edges in `refs` that point here; kept by triggers.
    refcount    INTEGER NOT NULL DEFAULT 0 CHECK (refcount >= 0),
    created_at  INTEGER NOT NULL,
    -- Digest of the uncompressed bytes of a layer, once known.
    diff_id     TEXT
);
-- gc reads only the garbage, never the whole table.
CREATE INDEX blobs_garbage ON blobs(id) WHERE refcount = 0;

CREATE TABLE images (
    id          INTEGER PRIMARY KEY,
    -- Digest of the ACI tar (appc image ID) or of the OCI manifest.
    key         TEXT    NOT NULL UNIQUE,
    format      TEXT    NOT NULL CHECK (format IN ('aci', 'oci')),
    name        TEXT    NOT NULL,
    -- The manifest bytes exactly as imported.
    manifest    INTEGER NOT NULL REFERENCES blobs(id),
    imported_at INTEGER NOT NULL,
    last_used   INTEGER NOT NULL,
    latest      INTEGER NOT NULL DEFAULT 0 CHECK (latest IN (0, 1)),
    size        INTEGER NOT NULL CHECK (size >= 0)
);
CREATE INDEX images_by_name ON images(name, latest, imported_at);
CREATE INDEX images_by_last_used ON images(last_used);

CREATE TABLE labels (
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    name     TEXT    NOT NULL,
    value    TEXT    NOT NULL,
    PRIMARY KEY (image_id, name)
) WITHOUT ROWID;
CREATE INDEX labels_by_value ON labels(name, value);

CREATE TABLE tags (
    -- 'NAME:TAG'
    name       TEXT    PRIMARY KEY,
    image_id   INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    updated_at INTEGER NOT NULL
);
CREATE INDEX tags_by_image ON tags(image_id);

CREATE TABLE remotes (
    id            INTEGER PRIMARY KEY,
    url           TEXT    NOT NULL UNIQUE,
    etag          TEXT,
    -- Seconds, from Cache-Control: max-age.
    max_age       INTEGER,
    downloaded_at INTEGER NOT NULL,
    blob_id       INTEGER NOT NULL REFERENCES blobs(id),
    image_id      INTEGER REFERENCES images(id) ON DELETE CASCADE
);
CREATE INDEX remotes_by_image ON remotes(image_id);

-- Reference edges: an owner holds a blob `n` times.
--   owner_kind 1 = image (owner = images.id)
--              2 = blob  (owner = blobs.id: index -> manifest -> config, layers)
--              3 = remote (owner = remotes.id)
--              4 = pin   (owner = 0; the library's ref/deref)
--              5 = rendered tree (owner = trees id)
CREATE TABLE refs (
    owner_kind INTEGER NOT NULL CHECK (owner_kind BETWEEN 1 AND 5),
    owner      INTEGER NOT NULL,
    blob_id    INTEGER NOT NULL REFERENCES blobs(id),
    n          INTEGER NOT NULL DEFAULT 1 CHECK (n > 0),
    PRIMARY KEY (owner_kind, owner, blob_id)
) WITHOUT ROWID;
CREATE INDEX refs_by_blob ON refs(blob_id);

-- Reference counts move in the same statement as their edges (invariant 4).
CREATE TRIGGER refs_insert AFTER INSERT ON refs BEGIN
    UPDATE blobs SET refcount = refcount + NEW.n WHERE id = NEW.blob_id;
END;
CREATE TRIGGER refs_delete AFTER DELETE ON refs BEGIN
    UPDATE blobs SET refcount = refcount - OLD.n WHERE id = OLD.blob_id;
END;
CREATE TRIGGER refs_update AFTER UPDATE OF n ON refs BEGIN
    UPDATE blobs SET refcount = refcount - OLD.n WHERE id = OLD.blob_id;
    UPDATE blobs SET refcount = refcount + NEW.n WHERE id = NEW.blob_id;
END;

-- An owner that goes away lets go of what it held.
CREATE TRIGGER images_release AFTER DELETE ON images BEGIN
    DELETE FROM refs WHERE owner_kind = 1 AND owner = OLD.id;
END;
CREATE TRIGGER blobs_release AFTER DELETE ON blobs BEGIN
    DELETE FROM refs WHERE owner_kind = 2 AND owner = OLD.id;
END;
CREATE TRIGGER remotes_release AFTER DELETE ON remotes BEGIN
    DELETE FROM refs WHERE owner_kind = 3 AND owner = OLD.id;
END;
