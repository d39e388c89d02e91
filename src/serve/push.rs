//! A pushed manifest or index becomes image rows exactly as a layout's
//! would: it is walked as the one entry of an `index.json`, named by the
//! repository (and the tag it was pushed to), by the walk `import` uses
//! ([`crate::import::graph`]), which reads the config for labels and
//! platform, checks layers against diff_ids where that is free, and builds
//! each image's closure. The blobs it needs come from the store or from
//! finished uploads; one it cannot find is `MANIFEST_BLOB_UNKNOWN`.
//!
//! Then the manifest, the uploads it took and the rows (images and the
//! tag) go through one [`Publication::commit`], under the store lock held
//! shared from the first read of the store to the end of the commit, so gc
//! never sees the blobs half-way and cannot take a stored blob the walk
//! counted on. Manifest pushes run one at a time in a server; a failed one
//! gives the uploads it took back.

use std::path::Path;

use super::State;
use super::reply::ApiError;
use super::route::Reference;
use crate::blobs::StagedBlob;
use crate::digest::{Algorithm, Digest};
use crate::error::{ArchiveErrorKind, Error, IoContext};
use crate::import::graph::{Blobs, Naming, Source, Walk};
use crate::import::{ImportOptions, Importer};
use crate::index::Commit;
use crate::lock::LockMode;
use crate::oci::Descriptor;
use crate::progress::Counter;
use crate::publish::Publication;
use crate::remote::registry::errors::ErrorCode;
use crate::remote::registry::media::{self, ManifestKind};

/// Records a pushed manifest of `repository`, tagged if `reference` is a
/// tag; returns its digest.
pub(super) fn push(
    state: &State,
    repository: &str,
    reference: &Reference,
    content_type: Option<&str>,
    bytes: &[u8],
) -> Result<Digest, ApiError> {
    let kind = media::classify_manifest(content_type, bytes).map_err(|e| {
        ApiError::new(
            ErrorCode::ManifestInvalid,
            format!("the manifest is refused: {e}"),
        )
    })?;
    let (algorithm, tag) = match reference {
        Reference::Digest(d) => (d.algorithm(), None),
        Reference::Tag(t) => (Algorithm::Sha256, Some(t.as_str())),
    };
    let digest = Digest::of(algorithm, bytes);
    if let Reference::Digest(expected) = reference
        && expected != &digest
    {
        return Err(ApiError::new(
            ErrorCode::DigestInvalid,
            format!(
                "the manifest hashes to {digest}, not to the digest {expected} it was pushed to"
            ),
        ));
    }

    let _one_at_a_time = state.commits.lock().unwrap_or_else(|p| p.into_inner());
    let store = &state.store;
    let _lock = store.lock(LockMode::Shared, true)?;
    let mut writer = store.tree.writer(algorithm)?;
    std::io::Write::write_all(&mut writer, bytes)
        .ctx("write temp file in", store.tree.tmp_dir())?;
    let manifest = writer.finish()?;

    let options = ImportOptions::new();
    let importer = Importer {
        tree: &store.tree,
        index: &store.index,
        options: &options,
        progress: Counter::default(),
        download: None,
    };
    let input = format!("{repository}@{digest}");
    let mut source = PushSource {
        state,
        input: Path::new(&input),
        blobs: Blobs::default(),
    };
    source.blobs.staged.insert(digest.clone(), manifest);
    let mut walk = Walk::new(&importer, Path::new(&input), source);
    let desc = Descriptor {
        media_type: kind.media_type().to_string(),
        digest: digest.to_string(),
        size: bytes.len() as u64,
        annotations: None,
        platform: None,
    };
    let naming = Naming {
        name: repository.to_string(),
        tag: tag.map(str::to_string),
    };
    let walked = walk.walk_descriptor(&desc, "the manifest", Some(&naming));
    let Walk { source, images, .. } = walk;
    let mut staged = source.blobs.staged;
    if let Err(e) = walked {
        staged.remove(&digest);
        state.uploads.give_back(staged.into_values());
        return Err(refusal(e, kind));
    }
    let mut publication = Publication::new(&store.tree, &store.index);
    publication.stage_all(staged.into_values());
    publication.commit(&Commit {
        images,
        tags: tag
            .map(|t| vec![(format!("{repository}:{t}"), digest.clone())])
            .unwrap_or_default(),
        ..Commit::default()
    })?;
    Ok(digest)
}

/// The spec's answer to a manifest the walk refused.
fn refusal(e: Error, kind: ManifestKind) -> ApiError {
    match e.archive_kind() {
        Some(ArchiveErrorKind::MissingBlob { what, digest, .. }) => ApiError::new(
            ErrorCode::ManifestBlobUnknown,
            format!("{what} names blob {digest}, which this registry does not have: push it first"),
        )
        .detail(serde_json::json!({ "digest": digest.to_string() })),
        Some(kind_of_error) => ApiError::new(
            ErrorCode::ManifestInvalid,
            format!("the {} is refused: {kind_of_error}", kind_name(kind)),
        ),
        None => e.into(),
    }
}

fn kind_name(kind: ManifestKind) -> &'static str {
    if kind.is_index() { "index" } else { "manifest" }
}

/// Blobs for the walk: the pushed manifest, then the store, then finished
/// uploads (taken out; [`push`] gives them back if the push fails).
struct PushSource<'a> {
    state: &'a State,
    input: &'a Path,
    blobs: Blobs,
}

impl PushSource<'_> {
    fn check_size(&self, digest: &Digest, expected: u64, found: u64) -> Result<(), Error> {
        if expected == found {
            return Ok(());
        }
        Err(Error::archive(
            self.input,
            ArchiveErrorKind::SizeMismatch {
                digest: digest.clone(),
                expected,
                found,
            },
        ))
    }

    fn take_upload(&mut self, digest: &Digest) -> Option<StagedBlob> {
        let blob = self.state.uploads.take_finished(digest)?;
        // gc may have swept it, if it waited longer than its grace.
        if !blob.temp_path().is_file() {
            return None;
        }
        Some(blob)
    }
}

impl Source for PushSource<'_> {
    fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    fn fetch(
        &mut self,
        digest: &Digest,
        size: u64,
        _diff_alg: Option<Algorithm>,
    ) -> Result<bool, Error> {
        if let Some(found) = self.blobs.size(digest) {
            self.check_size(digest, size, found)?;
            return Ok(true);
        }
        let store = &self.state.store;
        if let Some(row) = store.index.blob(digest)?
            && store.tree.contains(digest)
        {
            self.check_size(digest, size, row.size)?;
            self.blobs.present.insert(digest.clone(), row.size);
            // An upload of a blob the store has is not needed any more.
            drop(self.state.uploads.take_finished(digest));
            return Ok(true);
        }
        let Some(blob) = self.take_upload(digest) else {
            return Ok(false);
        };
        let found = blob.size;
        self.blobs.staged.insert(digest.clone(), blob);
        self.check_size(digest, size, found)?;
        Ok(true)
    }
}
