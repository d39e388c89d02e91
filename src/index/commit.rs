//! The rows a writer commits once its blobs are durable: images with their
//! closures, pins, remotes, rendered trees — all in one transaction, so
//! that either all of them are visible or none is (invariant 3), and a
//! remote never names an image that is not there.

use std::collections::HashSet;

use super::blobs::{NewBlob, add_pin, upsert_blob};
use super::images::insert_image;
use super::remotes::{NewRemote, insert_remote};
use super::tags::set_tag;
use super::trees::{NewTree, insert_tree};
use super::{Index, now_micros};
use crate::digest::Digest;
use crate::error::Error;
use crate::image::ImageInfo;
use crate::index::NewImage;

/// What one commit records.
#[derive(Debug, Clone, Default)]
pub(crate) struct Commit {
    /// Images, in the order they are recorded: an index after the
    /// manifests it holds, so that it is the newest of its name.
    pub images: Vec<NewImage>,
    /// Blobs outside any image, each pinned once.
    pub pins: Vec<NewBlob>,
    /// Blobs outside any image that only the remotes hold (the index a
    /// pull chose one platform from): rows without a reference of their own.
    pub blobs: Vec<NewBlob>,
    /// Where images came from, recorded after them.
    pub remotes: Vec<NewRemote>,
    /// Tags `NAME:TAG` to point at images (set, or moved), after them.
    pub tags: Vec<(String, Digest)>,
    /// Rendered trees whose directories are in place, after the images.
    pub trees: Vec<NewTree>,
}

impl Commit {
    /// Every blob the rows name: what must be durable in the tree before
    /// they are committed.
    pub fn blobs(&self) -> HashSet<&Digest> {
        self.images
            .iter()
            .flat_map(|i| i.blobs.iter().map(|b| &b.digest))
            .chain(self.pins.iter().map(|b| &b.digest))
            .chain(self.blobs.iter().map(|b| &b.digest))
            .chain(self.trees.iter().flat_map(|t| &t.blobs))
            .collect()
    }
}

impl Index {
    /// Commits the rows in one transaction; returns the images as recorded
    /// (a re-imported image keeps its first import time).
    ///
    /// With `durable`, the commit is on disk when this returns (see
    /// [`Index::durable_conn`]): a writer that published files asks for it
    /// before it drops its intent.
    pub fn commit(&self, rows: &Commit, durable: bool) -> Result<Vec<ImageInfo>, Error> {
        let (mut plain, mut synced);
        let conn: &mut rusqlite::Connection = if durable {
            synced = self.durable_conn()?;
            &mut synced
        } else {
            plain = self.conn()?;
            &mut plain
        };
        let tx = conn.transaction().map_err(Error::sql("begin import"))?;
        let now = now_micros();
        let mut ids = Vec::with_capacity(rows.images.len());
        for image in &rows.images {
            ids.push(insert_image(&tx, image, now)?);
        }
        for blob in &rows.pins {
            upsert_blob(&tx, blob, now)?;
            add_pin(&tx, &blob.digest, 1)?;
        }
        for blob in &rows.blobs {
            upsert_blob(&tx, blob, now)?;
        }
        for remote in &rows.remotes {
            insert_remote(&tx, remote, now)?;
        }
        for (tag, key) in &rows.tags {
            set_tag(&tx, tag, key, now)?;
        }
        for tree in &rows.trees {
            insert_tree(&tx, tree, now)?;
        }
        crate::failpoint::hit("import-before-commit");
        tx.commit().map_err(Error::sql("commit import"))?;
        crate::failpoint::hit("import-after-commit");
        ids.into_iter()
            .map(|id| self.image_by_id(conn, id))
            .collect()
    }
}
