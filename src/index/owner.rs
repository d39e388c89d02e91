//! Who holds a blob: the `owner_kind` column of `refs`, as a type.
//!
//! Every reference edge `(owner_kind, owner, blob_id)` says that some owner
//! holds a blob; the blob's `refcount` is the sum of the edges pointing at
//! it (kept by the schema's triggers) and gc removes what no edge holds.
//! The numbers are part of the on-disk format: migration 0001 fixes them
//! in its `CHECK` and in the triggers that release an owner's edges when
//! its row goes (migration 0006 for trees), so they never change; the test
//! below holds them to it.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

/// The kind of thing that holds a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Owner {
    /// An image row (`owner` = `images.id`): what the image holds directly.
    Image = 1,
    /// Another blob (`owner` = `blobs.id`): an index holds its manifests, a
    /// manifest its config and layers.
    Blob = 2,
    /// A remote row (`owner` = `remotes.id`): what a URL was fetched as.
    Remote = 3,
    /// A pin from outside any image (`owner` = 0): the library's
    /// `ref_blob`/`deref_blob`, counted in `n`.
    Pin = 4,
    /// A rendered tree the store keeps (`owner` = the tree's id).
    Tree = 5,
}

impl Owner {
    pub const ALL: [Owner; 5] = [
        Owner::Image,
        Owner::Blob,
        Owner::Remote,
        Owner::Pin,
        Owner::Tree,
    ];

    /// The owner's name in reports (`fsck`).
    pub fn name(self) -> &'static str {
        match self {
            Owner::Image => "image",
            Owner::Blob => "blob",
            Owner::Remote => "remote",
            Owner::Pin => "pin",
            Owner::Tree => "tree",
        }
    }

    /// The table whose rows own edges of this kind, if there is one (a pin
    /// has no row to lose).
    pub fn table(self) -> Option<&'static str> {
        match self {
            Owner::Image => Some("images"),
            Owner::Blob => Some("blobs"),
            Owner::Remote => Some("remotes"),
            Owner::Pin => None,
            Owner::Tree => Some("trees"),
        }
    }

    fn from_i64(n: i64) -> Option<Owner> {
        Owner::ALL.into_iter().find(|o| *o as i64 == n)
    }
}

impl ToSql for Owner {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(*self as i64))
    }
}

impl FromSql for Owner {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let n = value.as_i64()?;
        Owner::from_i64(n).ok_or(FromSqlError::OutOfRange(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema's triggers release an owner's edges by number when its
    /// row is deleted; the enum must name the same numbers.
    #[test]
    fn the_numbers_are_the_schemas() {
        let schema = concat!(
            include_str!("../../migrations/0001_initial.sql"),
            include_str!("../../migrations/0006_trees.sql")
        );
        for (owner, trigger) in [
            (Owner::Image, "images_release"),
            (Owner::Blob, "blobs_release"),
            (Owner::Remote, "remotes_release"),
            (Owner::Tree, "trees_release"),
        ] {
            let body = schema
                .split(&format!("CREATE TRIGGER {trigger}"))
                .nth(1)
                .expect("trigger in the schema");
            let body = body.split("END;").next().unwrap();
            assert!(
                body.contains(&format!("owner_kind = {}", owner as i64)),
                "{trigger} releases another kind than {owner:?}"
            );
        }
        assert!(schema.contains("CHECK (owner_kind BETWEEN 1 AND 5)"));
        for n in 1..=5 {
            assert_eq!(Owner::from_i64(n).map(|o| o as i64), Some(n));
        }
        assert_eq!(Owner::from_i64(6), None);
    }
}
