//! `fsck`: verify the tree against the index and the counts against the
//! edges; `--repair` brings the store back to a consistent state.

use std::fmt;

use serde::Serialize;

use crate::error::Error;
use crate::store::Store;

#[derive(Debug, Clone, Default)]
pub struct FsckOptions {
    pub repair: bool,
    /// Also decompress layers and check their diff_ids.
    pub layers: bool,
}

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// `corrupt`, `missing`, `orphan`, `size`, `refcount`, `index`…
    pub kind: String,
    /// The blob digest or image key concerned, in full.
    pub key: Option<String>,
    pub detail: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FsckReport {
    pub blobs_checked: u64,
    pub bytes_checked: u64,
    pub problems: Vec<Problem>,
    /// Whether `--repair` ran (and fixed what it lists).
    pub repaired: bool,
}

impl FsckReport {
    /// Whether the store is consistent now (after any repair).
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() || self.repaired
    }
}

impl fmt::Display for FsckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.problems {
            writeln!(f, "{}: {} {}", p.kind, p.key.as_deref().unwrap_or("-"), p.detail)?;
        }
        writeln!(
            f,
            "checked {} blobs ({} bytes): {} problems{}",
            self.blobs_checked,
            self.bytes_checked,
            self.problems.len(),
            if self.repaired { ", repaired" } else { "" }
        )
    }
}

impl Store {
    pub fn fsck(&self, options: &FsckOptions) -> Result<FsckReport, Error> {
        let _ = options;
        Err(Error::Other("fsck is not implemented yet".into()))
    }
}
