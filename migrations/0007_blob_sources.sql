-- imgstore index: where blobs were seen in registries.
-- A row says that the registry (host[:port], as references name it) holds
-- the blob in that repository: a pull recorded it, or a push put it there.
-- A push to another repository of the same registry asks the registry to
-- mount the blob from there instead of uploading it again. A hint, not a
-- reference: it holds nothing, and goes away with its blob row.
CREATE TABLE blob_sources (
    blob_id    INTEGER NOT NULL REFERENCES blobs(id) ON DELETE CASCADE,
    registry   TEXT    NOT NULL,
    repository TEXT    NOT NULL,
    seen_at    INTEGER NOT NULL,
    PRIMARY KEY (blob_id, registry, repository)
) WITHOUT ROWID;
