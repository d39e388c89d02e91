-- imgstore index, schema version 5.
-- The store this index belongs to: the id in the marker file `imgstore.id`
-- that a store writes in its directory when it is created (or when a store
-- made before markers is first opened). A store refuses an index that names
-- another store's id, so that an index.db linked or copied from another
-- store is never repaired against the wrong blob tree. One row, written
-- once by the first open after this migration, never changed.
CREATE TABLE store_identity (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    store_id TEXT    NOT NULL
);
CREATE TRIGGER store_identity_fixed BEFORE UPDATE ON store_identity BEGIN
    SELECT RAISE(ABORT, 'the store id of an index never changes');
END;
CREATE TRIGGER store_identity_kept BEFORE DELETE ON store_identity BEGIN
    SELECT RAISE(ABORT, 'the store id of an index never changes');
END;
