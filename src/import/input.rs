//! What an import reads: the file at its path, or a download that is still
//! arriving ([`Arriving`]), so that `fetch` imports while it downloads
//! instead of after.
//!
//! An arriving input is read through [`ArrivingReader`], whose reads wait
//! for the bytes to come and end only when the download is complete; a
//! download that starts over or fails makes the read fail, so that an
//! import never parses bytes of two different bodies. Everything else the
//! importers do is the same for both: the streaming pipeline reads either
//! (the seek-based parallel reader of plain archives needs a whole file,
//! so it takes local files only), and the input's name in errors is the
//! path given, which for a download is its URL.
//!
//! A download's images are committed with its remote row in one commit
//! ([`Importer::rows`]): the row names the image the URL stands for, the
//! archive's first root image (one that no other image of the archive
//! holds: an ACI, the single manifest, or the index of a multi-platform
//! set).

use std::collections::HashSet;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use super::Importer;
use crate::compression::{self, Compression};
use crate::digest::Digest;
use crate::error::Error;
use crate::index::{Commit, NewImage, NewRemote};
use crate::input::open_input;

/// A download an import reads as it arrives.
pub(crate) trait Arriving: Send + Sync {
    /// Reads bytes at `pos`, waiting until some are there. `Ok(0)` only at
    /// the end of the complete body; an error if the download failed,
    /// started over or was cancelled.
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;

    /// The URL and cache facts to record with the images: asked at commit
    /// time, once the body has been read to its end.
    fn remote(&self) -> Option<RemoteFacts>;
}

/// What a remote row records of a download, besides the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteFacts {
    pub url: String,
    pub etag: Option<String>,
    pub max_age: Option<u64>,
}

/// A `Read` over an arriving download, from its first byte.
pub(crate) struct ArrivingReader {
    input: Arc<dyn Arriving>,
    pos: u64,
}

impl ArrivingReader {
    pub fn new(input: Arc<dyn Arriving>) -> ArrivingReader {
        ArrivingReader { input, pos: 0 }
    }
}

impl Read for ArrivingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.input.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Buffer for reading a compressed input on the calling thread.
const READ_BUFFER: usize = 1 << 20;

impl Importer<'_> {
    /// The input's bytes from the start: the file at `path`, or the
    /// download being imported.
    pub(super) fn open(&self, path: &Path) -> Result<Box<dyn Read + Send>, Error> {
        match &self.download {
            Some(download) => Ok(Box::new(ArrivingReader::new(Arc::clone(download)))),
            None => Ok(Box::new(open_input(path)?)),
        }
    }

    /// The first `n` bytes of the input (fewer if it is shorter), for
    /// sniffing its compression.
    pub(super) fn read_head(&self, path: &Path, n: usize) -> Result<Vec<u8>, Error> {
        if self.download.is_none() {
            return compression::read_head(path, n);
        }
        let mut head = Vec::with_capacity(n);
        self.open(path)?
            .take(n as u64)
            .read_to_end(&mut head)
            .map_err(|e| super::members::stream_error(path, e))?;
        Ok(head)
    }

    /// The input, decompressed as its magic bytes say, on the calling
    /// thread (for sniffing the archive format).
    pub(super) fn open_decompressed(
        &self,
        path: &Path,
    ) -> Result<(Compression, Box<dyn Read + Send>), Error> {
        if self.download.is_none() {
            return compression::open_decompressed(path);
        }
        let compression = Compression::sniff(&self.read_head(path, 8)?);
        let reader = compression
            .decoder(BufReader::with_capacity(READ_BUFFER, self.open(path)?))
            .map_err(|e| super::members::stream_error(path, e))?;
        Ok((compression, reader))
    }

    /// The rows to commit for an import's images: for a download, with
    /// its remote row, which names the first root image.
    pub(super) fn rows(&self, images: Vec<NewImage>) -> Result<Commit, Error> {
        let mut remotes = Vec::new();
        if let Some(download) = &self.download {
            let facts = download.remote().ok_or_else(|| {
                Error::Internal("a download was committed before it was complete".into())
            })?;
            let root = first_root(&images)
                .ok_or_else(|| Error::Internal("a download was committed with no image".into()))?;
            remotes.push(NewRemote {
                url: facts.url,
                etag: facts.etag,
                max_age: facts.max_age,
                blob: root.clone(),
                image: Some(root),
            });
        }
        Ok(Commit {
            images,
            remotes,
            ..Commit::default()
        })
    }
}

/// The first image that no other image of the set holds (an index holds
/// its platforms' manifests).
fn first_root(images: &[NewImage]) -> Option<Digest> {
    let held: HashSet<&Digest> = images
        .iter()
        .flat_map(|i| i.links.iter().map(|(_, child)| child))
        .collect();
    images
        .iter()
        .map(|i| &i.key)
        .find(|k| !held.contains(k))
        .or_else(|| images.first().map(|i| &i.key))
        .cloned()
}
