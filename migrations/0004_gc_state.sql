-- imgstore index, schema version 4.
-- gc finds orphan files (files no row names) through the intent files that
-- writers leave in intents/, not by walking the whole blob tree. Versions
-- before this one wrote no intents, so a store they made may hold orphans
-- nothing records: such a store needs one walk of the tree, which the first
-- gc does and then clears the flag. A new store starts with the flag clear
-- (set by Index::open when it creates the schema from nothing). fsck
-- --repair sets it in its repair transaction when it is about to delete
-- files from the tree, so a repair cut short is finished by the next gc.
-- One row, always.
CREATE TABLE gc_state (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    full_sweep_needed INTEGER NOT NULL
);
INSERT INTO gc_state (id, full_sweep_needed) VALUES (1, 1);
