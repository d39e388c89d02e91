//! gc's one-row state (migration 0004): whether the next gc must walk the
//! whole blob tree because orphans may exist that no intent file records
//! (a store made by an older imgstore, or an `fsck --repair` cut short).

use rusqlite::Connection;

use super::Index;
use crate::error::Error;

pub(super) fn set_full_sweep_needed(conn: &Connection, needed: bool) -> Result<(), Error> {
    conn.execute(
        "UPDATE gc_state SET full_sweep_needed = ? WHERE id = 1",
        [needed],
    )
    .map_err(Error::sql("record whether gc must walk the tree"))?;
    Ok(())
}

impl Index {
    /// Whether orphans may exist that no intent file records.
    pub fn full_sweep_needed(&self) -> Result<bool, Error> {
        let conn = self.conn()?;
        conn.query_row(
            "SELECT full_sweep_needed FROM gc_state WHERE id = 1",
            [],
            |r| r.get(0),
        )
        .map_err(Error::sql("read gc state"))
    }

    /// Records after a walk of the whole tree whether another is needed.
    pub fn set_full_sweep_needed(&self, needed: bool) -> Result<(), Error> {
        let conn = self.conn()?;
        set_full_sweep_needed(&conn, needed)
    }
}
