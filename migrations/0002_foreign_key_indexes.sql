-- imgstore index, schema version 2.
-- Deleting a blob row makes SQLite check every foreign key that points at
-- blobs; without these indexes each check scans the whole table, and a gc
-- of N garbage blobs costs N × (images + remotes).
CREATE INDEX images_by_manifest ON images(manifest);
CREATE INDEX remotes_by_blob ON remotes(blob_id);
