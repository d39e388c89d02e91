//! Fetching archives by URL ([`Store::fetch`], `imgstore fetch`) with rkt's
//! cache rules, its bugs fixed (DESIGN.md §5, "Fetching by URL").
//!
//! What a fetch of a URL does, in order:
//! 1. **Fresh row, no request.** The URL's remote row says when its body
//!    was downloaded and for how long it stays fresh ([`cache`]). While it
//!    is fresh and the store still has the image whole, the stored image is
//!    the answer and nothing is sent.
//! 2. **One fetch of a URL at a time.** Otherwise the URL's lock is taken
//!    ([`partial`]), so that concurrent fetches of one URL end with one
//!    image and one row: the later ones find the row the first committed
//!    (step 1 again) or ask with its ETag (step 3).
//! 3. **Conditional request.** With a row whose image is there, the `GET`
//!    carries `If-None-Match`; a `304` refreshes the row's download time,
//!    max-age and ETag in one statement and the stored image is the answer,
//!    with no body transferred.
//! 4. **Download and import at once.** A body goes into the URL's partial
//!    file in `tmp/partial/` on one thread while the importer reads it on
//!    this one, as the bytes arrive (`import::Arriving`): the same
//!    staging, hashing, intent and commit path as `import`, and the remote
//!    row commits in the same transaction as the images. Should the body
//!    start over (a resume the server refused), the import starts over
//!    with it; a body that is not an importable archive stops the download
//!    and is refused with an error naming the URL.
//! 5. **Resume.** A download that breaks is resumed within the run by the
//!    HTTP client (`Range` + `If-Range`, accepted only on an exact `206`).
//!    One that fails for good, or a fetch that is killed, leaves the partial
//!    file and its validator; the next fetch of the URL resumes from them.
//!    Anything else leaves no file behind.
//!
//! `--no-cache` skips steps 1 and 3 (a partial file is still resumed: its
//! validator makes sure the bytes are the current body's).
//!
//! The row holds the image's root blob: the ACI's tar, the OCI manifest,
//! or the index of a multi-platform set. An archive of several unrelated
//! images has one row too, naming the first of them; later fetches answer
//! with that image alone.
//!
//! The store lock is held shared, as an import holds it, from the first
//! byte of a body to the commit, and never while waiting: for the URL's
//! lock, for a `Retry-After`, or for a `304`.

mod cache;
mod partial;
mod userinfo;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use chrono::Utc;

use crate::digest::Digest;
use crate::error::Error;
use crate::image::{ImageInfo, Remote};
use crate::import::{ArchiveFormat, ImportOptions, Importer, RemoteFacts};
use crate::lock::LockMode;
use crate::progress::{Counter, Progress, ProgressTask};
use crate::remote::http::{Client, ClientOptions, Download, DownloadOptions, Op, RemoteError};
use crate::store::Store;

use partial::{End, Growing, PartialFiles, PartialSink};

/// Settings of one fetch.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct FetchOptions {
    /// Ask the server even when the stored download is fresh, and without
    /// `If-None-Match`: always transfer the body.
    pub no_cache: bool,
    /// Flag the images as the latest of their names.
    pub latest: bool,
    /// Which reader to use; told by the contents by default.
    pub format: ArchiveFormat,
    /// Decompress each layer while importing and check its diff_id.
    pub verify_layers: bool,
    /// Where to report the bytes downloaded (one task per URL).
    pub progress: Option<Arc<dyn Progress>>,
}

impl FetchOptions {
    /// The defaults: rkt's cache rules, format told by the contents.
    pub fn new() -> FetchOptions {
        FetchOptions::default()
    }

    /// Skip the cache: no answer from a fresh row, no conditional request.
    pub fn no_cache(mut self, no_cache: bool) -> FetchOptions {
        self.no_cache = no_cache;
        self
    }

    /// Flag the images as the latest of their names.
    pub fn latest(mut self, latest: bool) -> FetchOptions {
        self.latest = latest;
        self
    }

    /// Use this reader instead of telling the format by the contents.
    pub fn format(mut self, format: ArchiveFormat) -> FetchOptions {
        self.format = format;
        self
    }

    /// Decompress each layer and check its diff_id.
    pub fn verify_layers(mut self, verify: bool) -> FetchOptions {
        self.verify_layers = verify;
        self
    }

    /// Report the bytes downloaded to `progress`.
    pub fn progress(mut self, progress: Arc<dyn Progress>) -> FetchOptions {
        self.progress = Some(progress);
        self
    }

    fn import_options(&self) -> ImportOptions {
        ImportOptions::new()
            .latest(self.latest)
            .format(self.format)
            .verify_layers(self.verify_layers)
    }
}

impl fmt::Debug for FetchOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchOptions")
            .field("no_cache", &self.no_cache)
            .field("latest", &self.latest)
            .field("format", &self.format)
            .field("verify_layers", &self.verify_layers)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl Store {
    /// Downloads an archive over `http://` or `https://` and imports it,
    /// with rkt's cache rules (the module header, and DESIGN.md §5): a URL
    /// whose last download is still fresh is not asked again, one that is
    /// unchanged (`304`) transfers no body, and a download that broke is
    /// resumed. Returns the images imported, or, when the stored one is
    /// still current, the image the URL's row names.
    ///
    /// Credentials in the URL (`https://user:secret@host/…`) are sent as
    /// Basic authorization to that host only; the URL is recorded, and
    /// named in errors, without them. Errors name the URL:
    /// `fetch http://…/x.aci: 404 Not Found`, or the archive's problem.
    /// A failed fetch changes nothing but, for a broken download, the
    /// partial file a later fetch resumes from.
    ///
    /// ```no_run
    /// use imgstore::{FetchOptions, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path().join("store"))?;
    /// let url = "https://example.com/images/hello.aci";
    /// let first = store.fetch(url, &FetchOptions::new())?;
    /// // Within the max-age the server gave: no request at all.
    /// let again = store.fetch(url, &FetchOptions::new())?;
    /// assert_eq!(first[0].key, again[0].key);
    /// assert_eq!(store.remote(url)?.unwrap().image, Some(first[0].key.clone()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fetch(&self, url: &str, options: &FetchOptions) -> Result<Vec<ImageInfo>, Error> {
        let userinfo::Split { url, authorization } = userinfo::split(url);
        Fetch {
            store: self,
            client: Client::new(ClientOptions::default()),
            url,
            authorization,
            options,
        }
        .run()
    }
}

/// One URL being fetched.
struct Fetch<'a> {
    store: &'a Store,
    client: Client,
    /// Without credentials.
    url: String,
    authorization: Option<String>,
    options: &'a FetchOptions,
}

/// What a download came to.
enum Fetched {
    Images(Vec<ImageInfo>),
    NotModified(Download),
}

/// Most import attempts of one download: each new one follows a body that
/// started over, which the HTTP client allows a bounded number of times.
const MAX_ATTEMPTS: u32 = 16;

impl Fetch<'_> {
    fn run(&self) -> Result<Vec<ImageInfo>, Error> {
        if let Some(images) = self.fresh()? {
            return Ok(images);
        }
        let dir = self.store.tree.kept_dir("partial")?;
        let files = PartialFiles::new(&dir, &self.url);
        let lock = files.lock()?;
        let result = self.locked(&files);
        // Only a download that broke leaves its bytes, for the next fetch
        // to resume from; whatever else happened, nothing stays.
        let keep = matches!(&result, Err(Error::Remote(_))) && files.resumable();
        let cleaned = if keep { Ok(()) } else { files.remove() };
        lock.release();
        // The directory goes when it is empty, so that a failed fetch
        // leaves the store as it found it (another fetch's files keep it).
        let _ = std::fs::remove_dir(&dir);
        let images = result?;
        cleaned?;
        Ok(images)
    }

    /// The URL's row and its image's key, if the store has that image
    /// whole.
    fn stored(&self) -> Result<Option<(Remote, Digest)>, Error> {
        let Some(remote) = self.store.index.remote(&self.url)? else {
            return Ok(None);
        };
        let Some(key) = remote.image.clone() else {
            return Ok(None);
        };
        let Some(info) = self.store.index.image(&key)? else {
            return Ok(None);
        };
        let tree = &self.store.tree;
        Ok((tree.contains(&info.key) && tree.contains(&info.manifest)).then_some((remote, key)))
    }

    /// The stored image, if the URL's row is fresh (and the cache is not
    /// skipped).
    fn fresh(&self) -> Result<Option<Vec<ImageInfo>>, Error> {
        if self.options.no_cache {
            return Ok(None);
        }
        match self.stored()? {
            Some((remote, key)) if cache::is_fresh(&remote, Utc::now()) => self.reuse(&key),
            _ => Ok(None),
        }
    }

    /// The stored image as the answer: its use recorded, flagged latest if
    /// asked.
    fn reuse(&self, key: &Digest) -> Result<Option<Vec<ImageInfo>>, Error> {
        Ok(self
            .store
            .index
            .reimport(key, self.options.latest)?
            .map(|info| vec![info]))
    }

    /// Steps 3 to 5 of the module header, under the URL's lock.
    fn locked(&self, files: &PartialFiles) -> Result<Vec<ImageInfo>, Error> {
        // Another fetch of the URL may have finished while this one waited.
        if let Some(images) = self.fresh()? {
            return Ok(images);
        }
        let etag = match self.options.no_cache {
            true => None,
            false => self.stored()?.and_then(|(remote, _)| remote.etag),
        };
        let download = match self.download(files, etag)? {
            Fetched::Images(images) => return Ok(images),
            Fetched::NotModified(download) => download,
        };
        let refreshed = self.store.index.refresh_remote(
            &self.url,
            download.etag.as_deref(),
            download.max_age,
        )?;
        if let Some(key) = refreshed.and_then(|r| r.image)
            && let Some(images) = self.reuse(&key)?
        {
            return Ok(images);
        }
        // The image went away between the question and the answer: fetch
        // the body after all.
        match self.download(files, None)? {
            Fetched::Images(images) => Ok(images),
            Fetched::NotModified(_) => Err(Error::Internal(format!(
                "{}: 304 Not Modified to a request that was not conditional",
                self.url
            ))),
        }
    }

    /// Downloads the body (or learns that `etag` is current) and imports it
    /// as it arrives.
    fn download(&self, files: &PartialFiles, etag: Option<String>) -> Result<Fetched, Error> {
        let mut found = files.open()?;
        if found.len > 0 && found.validator.is_some() && found.validator == etag {
            // The bytes held are of the body the store has: ask whether it
            // is still current rather than finish downloading it again.
            files.remove()?;
            found = files.open()?;
        }
        // A whole body already here (a fetch was killed after its download):
        // a range after its end would only be refused, and the body sent
        // again. Ask whether it is current instead, as a cache would.
        let whole = found
            .validator
            .clone()
            .filter(|v| found.complete && v.starts_with('"') && !self.options.no_cache);
        let mut opts = DownloadOptions::new(Op::Fetch);
        opts.credentials = self.authorization.clone();
        let held = match &whole {
            Some(v) => {
                let asked: Vec<&str> = etag.iter().chain([v]).map(String::as_str).collect();
                opts.if_none_match = Some(asked.join(", "));
                0
            }
            None => {
                opts.if_none_match = etag.clone();
                opts.resume_validator = found.validator.clone();
                found.len
            }
        };
        let part = files.part_path().to_path_buf();
        let growing = Growing::new(found.file, part.clone(), held);
        match (self.transfer(files, &growing, &opts, held), whole) {
            // A 304 naming the whole body held (or naming nothing, when that
            // was all that was asked about): import it.
            (Ok(Fetched::NotModified(d)), Some(v))
                if d.etag.as_ref() == Some(&v) || (d.etag.is_none() && etag.is_none()) =>
            {
                let file = std::fs::File::open(&part).map_err(|e| Error::io("open", &part, e))?;
                let facts = RemoteFacts {
                    url: self.url.clone(),
                    etag: Some(v),
                    max_age: d.max_age,
                };
                let growing = Growing::whole(file, part, found.len, facts);
                Ok(Fetched::Images(self.import(&growing)?))
            }
            (fetched, _) => fetched,
        }
    }

    /// Runs the download into the partial file on a thread of its own and
    /// imports the body on this one as it arrives (step 4 of the module
    /// header); `held` bytes are in the file already, to resume from.
    fn transfer(
        &self,
        files: &PartialFiles,
        growing: &Arc<Growing>,
        opts: &DownloadOptions,
        held: u64,
    ) -> Result<Fetched, Error> {
        let mut task = self
            .options
            .progress
            .as_ref()
            .map(|p| p.begin(&self.url, None));
        std::thread::scope(|s| {
            let downloader = s.spawn(|| {
                // However the download ends (a panic included), the importer
                // must learn that it did.
                let _finish = FinishOnDrop(growing);
                let mut sink = PartialSink::new(growing, files, held);
                let progress = task.as_mut().map(|t| &mut **t as &mut dyn ProgressTask);
                let result = self.client.download(&self.url, opts, &mut sink, progress);
                growing.finish(match &result {
                    Ok(d) if d.not_modified => End::NotModified,
                    Ok(d) => End::Complete(RemoteFacts {
                        url: self.url.clone(),
                        etag: d.etag.clone(),
                        max_age: d.max_age,
                    }),
                    Err(_) => End::Failed,
                });
                result
            });
            let imported = growing.wait_for_body().then(|| self.import(growing));
            // An import that gave up while the download runs stops it; one
            // that failed because the download did reports the download.
            let cancelled = matches!(&imported, Some(Err(_))) && growing.end() == End::Running;
            if cancelled {
                growing.cancel();
            }
            let downloaded: Result<Download, RemoteError> = match downloader.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            match (imported, downloaded) {
                (Some(Ok(images)), _) => Ok(Fetched::Images(images)),
                (Some(Err(_)), Err(e)) if !cancelled => Err(e.into()),
                (Some(Err(e)), _) => Err(e),
                (None, Ok(d)) if d.not_modified => Ok(Fetched::NotModified(d)),
                (None, Ok(_)) => Err(Error::Internal(format!(
                    "{}: a download ended without a body",
                    self.url
                ))),
                (None, Err(e)) => Err(e.into()),
            }
        })
    }

    /// Imports the body as it arrives, under the store lock; again from
    /// its start each time the body starts over.
    fn import(&self, growing: &Arc<Growing>) -> Result<Vec<ImageInfo>, Error> {
        let _lock = self.store.lock(LockMode::Shared, true)?;
        let options = self.options.import_options();
        let name = Path::new(&self.url);
        let mut attempts = 0;
        loop {
            let attempt = growing.attempt();
            let generation = attempt.generation();
            let importer = Importer {
                tree: &self.store.tree,
                index: &self.store.index,
                options: &options,
                // The download reports progress: bytes, rate and time left.
                progress: Counter::default(),
                download: Some(attempt),
            };
            let result = importer.import_download(name);
            attempts += 1;
            let restarted = growing.generation() != generation
                && matches!(growing.end(), End::Running | End::Complete(_));
            match result {
                Err(_) if restarted && attempts < MAX_ATTEMPTS => {
                    tracing::debug!("{}: the body started over; so does its import", self.url);
                }
                result => return result,
            }
        }
    }
}

/// Ends the download for the importer when the downloading thread ends,
/// however it does.
struct FinishOnDrop<'a>(&'a Growing);

impl Drop for FinishOnDrop<'_> {
    fn drop(&mut self) {
        self.0.finish(End::Failed);
    }
}
