//! `Store`: the one public entry point. It ties the blob tree, the index and
//! the importers together and keeps the order that makes them safe: bytes
//! durable in the tree first, index commit second; index rows removed first,
//! files second.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use std::sync::Arc;

use crate::blobs::{BlobTree, VerifiedReader};
use crate::digest::{Algorithm, Digest, KeyPrefix};
use crate::error::{Error, IoContext, ResolveError};
use crate::identity::{self, Found, StoreId};
use crate::image::{DiskUsage, ImageDetails, ImageInfo, Label, NameSelector, Remote};
use crate::import::{ImportOptions, Importer};
use crate::index::{Commit, ImageFilter, Index, NewBlob, NewRemote};
use crate::lock::{self, LockMode};
use crate::nofollow::Dir;
use crate::progress::Counter;
use crate::publish::Publication;
use crate::reserve;

/// A content-addressable image store in one directory.
pub struct Store {
    pub(crate) root: PathBuf,
    pub(crate) tree: BlobTree,
    pub(crate) index: Index,
}

impl Store {
    /// Opens the store at `root`, creating it if the directory is missing
    /// or empty. A store written by a newer imgstore is refused without
    /// being modified, and so is a directory that is not a store: one that
    /// holds something, but neither a store's marker nor the index of a
    /// store made by an earlier imgstore ([`Error::NotAStore`]). A store
    /// whose own directories are links is refused ([`Error::StoreLink`]),
    /// and so is an index that belongs to another store
    /// ([`Error::ForeignIndex`]).
    ///
    /// On a disk too full to open the index this fails with
    /// [`Error::DiskFull`]; [`Store::open_for_cleanup`] may spend the
    /// store's reserve to open it.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let store = imgstore::Store::open(dir.path().join("store"))?;
    /// assert!(store.images(None, &[])?.is_empty());
    ///
    /// // A directory with something in it is no store.
    /// let home = dir.path().join("home");
    /// std::fs::create_dir_all(home.join("tmp"))?;
    /// std::fs::write(home.join("tmp/notes.txt"), "mine")?;
    /// assert!(matches!(
    ///     imgstore::Store::open(&home),
    ///     Err(imgstore::Error::NotAStore { .. })
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(root: impl AsRef<Path>) -> Result<Store, Error> {
        Store::open_with(root.as_ref(), false)
    }

    /// Opens the store like [`Store::open`], for a session that frees
    /// space (removing images, gc, prune): on a disk too full to open the
    /// index, the store's reserve is released to make room for it (gc puts
    /// it back). Writers through this store still need the reserve in
    /// place, so an import never spends it.
    pub fn open_for_cleanup(root: impl AsRef<Path>) -> Result<Store, Error> {
        Store::open_with(root.as_ref(), true)
    }

    fn open_with(root: &Path, cleanup: bool) -> Result<Store, Error> {
        let root = root.to_path_buf();
        fs::create_dir_all(&root).ctx("create store directory", &root)?;
        let dir = Arc::new(Dir::open_root(&root)?);
        // Nothing is written before the directory is known to be a store
        // (or empty) and none of its own entries is a link.
        let found = identity::examine(&dir)?;
        BlobTree::check(&dir)?;
        let marked = match found {
            Found::Store(id) => Some(id),
            Found::Empty => Some(identity::write_marker(&dir)?),
            Found::Unmarked => None,
        };
        let index_path = root.join("index.db");
        let new = dir.meta("index.db")?.is_none();
        let open = || Index::open_as(&index_path, marked.as_ref().map(StoreId::as_str));
        let index = if cleanup {
            reserve::retry_when_full(&dir, open)?
        } else {
            open().map_err(|e| disk_full(&root, e))?
        };
        if marked.is_none() {
            // A store made before markers, its index now migrated: it gets
            // its marker, and its index the same id.
            let id = identity::write_marker(&dir)?;
            index.claim(&index_path, id.as_str())?;
        }
        let tree = BlobTree::open(dir)?;
        if new {
            // Afterwards only gc (and writers, when there is room) put the
            // reserve back.
            reserve::try_ensure(&tree);
        }
        Ok(Store { root, tree, index })
    }

    /// `$IMGSTORE_DIR`, else the platform data directory
    /// (`~/.local/share/imgstore` on Linux).
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("IMGSTORE_DIR").filter(|d| !d.is_empty()) {
            return PathBuf::from(dir);
        }
        dirs::data_dir()
            .unwrap_or_else(|| PathBuf::from(".local/share"))
            .join("imgstore")
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn lock(&self, mode: LockMode, wait: bool) -> Result<lock::StoreLock, Error> {
        lock::acquire(&self.root.join("lock"), mode, wait)
    }

    /// Imports an archive or OCI layout directory; returns its images. Bad
    /// input changes nothing: the error names the input and what is wrong.
    ///
    /// ```
    /// use imgstore::{ArchiveErrorKind, ImportOptions, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path().join("store"))?;
    /// let images = store.import("tests/data/hello.aci", &ImportOptions::new().latest(true))?;
    /// assert_eq!(images[0].name, "example.com/hello");
    ///
    /// let empty = dir.path().join("empty.tar");
    /// std::fs::write(&empty, b"")?;
    /// let err = store.import(&empty, &ImportOptions::new()).unwrap_err();
    /// assert_eq!(err.archive_kind(), Some(&ArchiveErrorKind::Empty));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn import(
        &self,
        path: impl AsRef<Path>,
        options: &ImportOptions,
    ) -> Result<Vec<ImageInfo>, Error> {
        let _lock = self.lock(LockMode::Shared, true)?;
        let path = path.as_ref();
        // A file's length is what will be read; a layout directory's is
        // not known ahead.
        let total = std::fs::metadata(path)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        let label = path
            .file_name()
            .unwrap_or(path.as_os_str())
            .to_string_lossy();
        Importer {
            tree: &self.tree,
            index: &self.index,
            options,
            progress: Counter::begin(options.progress.as_deref(), &label, total),
            download: None,
        }
        .import(path)
        .map_err(|e| disk_full(&self.root, e))
    }

    /// Resolves an IMAGE argument (DESIGN.md §4): an existing tag
    /// `NAME:TAG`, else a key or key prefix, else
    /// `name[:version][,label=value]…` by the latest-by-name rule.
    ///
    /// ```
    /// use imgstore::{ImportOptions, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path().join("store"))?;
    /// let key = store.import("tests/data/hello.aci", &ImportOptions::new())?[0].key.clone();
    /// store.tag(&key, "hello:stable", None)?;
    /// assert_eq!(store.resolve("hello:stable")?, key);
    /// assert_eq!(store.resolve(&key.hex()[..8])?, key);
    /// assert_eq!(store.resolve("example.com/hello:1.0.0")?, key);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn resolve(&self, arg: &str) -> Result<Digest, Error> {
        if arg.contains(':')
            && let Some(key) = self.index.tag_target(arg)?
        {
            return Ok(key);
        }
        let mut key_error = None;
        if KeyPrefix::looks_like_key(arg) {
            let explicit = arg.contains([':', '-']);
            match KeyPrefix::parse(arg)
                .map_err(Error::from)
                .and_then(|p| self.index.resolve_image_prefix(&p))
            {
                Ok(key) => return Ok(key),
                Err(Error::Resolve(ResolveError::NotFound(p))) if !explicit => {
                    key_error = Some(ResolveError::NotFound(p));
                }
                Err(e) => return Err(e),
            }
        }
        let selector = NameSelector::parse(arg)?;
        match self.latest_image(&selector.name, &selector.labels) {
            Ok(info) => Ok(info.key),
            Err(e) => Err(key_error.map_or(e, Error::from)),
        }
    }

    /// Resolves a key or key prefix against image keys only.
    pub fn resolve_key(&self, prefix: &str) -> Result<Digest, Error> {
        self.index.resolve_image_prefix(&KeyPrefix::parse(prefix)?)
    }

    /// Resolves a key or key prefix against all blobs.
    pub fn resolve_blob(&self, prefix: &str) -> Result<Digest, Error> {
        self.index.resolve_blob_prefix(&KeyPrefix::parse(prefix)?)
    }

    fn latest_image(&self, name: &str, labels: &[Label]) -> Result<ImageInfo, Error> {
        self.index.latest_by_name(name, labels)?.ok_or_else(|| {
            ResolveError::NoSuchName {
                name: name.to_string(),
                labels: labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect(),
            }
            .into()
        })
    }

    /// The best image of a name with every given label (DESIGN.md §4), and
    /// records its use.
    ///
    /// ```
    /// use imgstore::{ImportOptions, Label, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path().join("store"))?;
    /// store.import("tests/data/hello.aci", &ImportOptions::new())?;
    /// store.import("tests/data/hello-2.0.0.aci", &ImportOptions::new())?;
    /// let newest = store.latest("example.com/hello", &[])?;
    /// assert_eq!(newest.label("version"), Some("2.0.0"));
    /// let one = store.latest("example.com/hello", &[Label::new("version", "1.0.0")])?;
    /// assert_eq!(one.label("version"), Some("1.0.0"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn latest(&self, name: &str, labels: &[Label]) -> Result<ImageInfo, Error> {
        let info = self.latest_image(name, labels)?;
        self.index.touch_image(&info)?;
        Ok(info)
    }

    /// Images, optionally of one name and with given labels, by name then
    /// import time.
    pub fn images(&self, name: Option<&str>, labels: &[Label]) -> Result<Vec<ImageInfo>, Error> {
        self.index.images(&ImageFilter {
            name: name.map(str::to_string),
            labels: labels.to_vec(),
        })
    }

    /// The record of an image by its full key.
    pub fn image(&self, key: &Digest) -> Result<ImageInfo, Error> {
        self.index
            .image(key)?
            .ok_or_else(|| ResolveError::NotFound(full_prefix(key)).into())
    }

    /// An image with its tags and every blob it needs.
    pub fn inspect(&self, key: &Digest) -> Result<ImageDetails, Error> {
        Ok(ImageDetails {
            info: self.image(key)?,
            tags: self.index.tags_of(key)?,
            blobs: self.index.image_blobs(key)?,
        })
    }

    /// Opens a blob for reading; the reader fails at the end if the bytes do
    /// not match the digest.
    pub fn open_blob(&self, digest: &Digest) -> Result<VerifiedReader<File>, Error> {
        if !self.index.has_blob(digest)? {
            return Err(Error::BlobNotFound(digest.clone()));
        }
        // Last use is a hint for prune: a read must not fail for want of
        // recording it (a read-only or full disk).
        if let Err(e) = self.index.touch_users(digest) {
            tracing::debug!("cannot record the use of {digest}: {e}");
        }
        self.tree.read(digest)
    }

    /// Reads a whole (small) blob, verified.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, Error> {
        let mut bytes = Vec::new();
        let path = self.tree.path(digest);
        self.open_blob(digest)?
            .read_to_end(&mut bytes)
            .ctx("read blob", &path)?;
        Ok(bytes)
    }

    /// The manifest of an image, byte for byte as imported; records its use.
    pub fn manifest(&self, key: &Digest) -> Result<Vec<u8>, Error> {
        let info = self.image(key)?;
        let bytes = self.read_blob(&info.manifest)?;
        self.index.touch_image(&info)?;
        Ok(bytes)
    }

    /// Points a tag `NAME:TAG` at an image. With `expect`, only if the tag
    /// now points at that image (compare-and-set; `Some(None)`: only if the
    /// tag does not exist yet).
    pub fn tag(
        &self,
        key: &Digest,
        tag: &str,
        expect: Option<Option<&Digest>>,
    ) -> Result<(), Error> {
        check_tag(tag)?;
        self.image(key)?;
        self.index.set_tag(tag, key, expect)
    }

    /// Removes a tag `NAME:TAG`; its image stays.
    pub fn untag(&self, tag: &str) -> Result<(), Error> {
        check_tag(tag)?;
        if self.index.remove_tag(tag)? {
            Ok(())
        } else {
            Err(Error::TagNotFound(tag.to_string()))
        }
    }

    /// Removes an image with its tags, remotes and kept trees (rows first,
    /// then the trees' directories). Its blobs lose a reference; those left
    /// with none are removed by the next gc.
    pub fn remove(&self, key: &Digest) -> Result<(), Error> {
        match reserve::retry_when_full(self.tree.root(), || self.index.remove_image_and_trees(key))?
        {
            Some(trees) => self.remove_tree_dirs(&trees),
            None => Err(ResolveError::NotFound(full_prefix(key)).into()),
        }
    }

    /// Stores a blob from outside any image and pins it once, so that gc
    /// keeps it until [`Store::deref_blob`] releases it.
    pub fn put_blob(&self, algorithm: Algorithm, bytes: impl Read) -> Result<Digest, Error> {
        let _lock = self.lock(LockMode::Shared, true)?;
        self.stage_and_pin(algorithm, bytes)
            .map_err(|e| disk_full(&self.root, e))
    }

    fn stage_and_pin(&self, algorithm: Algorithm, mut bytes: impl Read) -> Result<Digest, Error> {
        let mut publication = Publication::new(&self.tree, &self.index);
        let mut writer = publication.writer(algorithm)?;
        let tmp = self.tree.tmp_dir().to_path_buf();
        io::copy(&mut bytes, &mut writer).ctx("write temp file in", &tmp)?;
        let staged = writer.finish()?;
        let blob = NewBlob {
            digest: staged.digest.clone(),
            size: staged.size,
            media_type: None,
            diff_id: None,
        };
        publication.stage(staged);
        publication.commit(&Commit {
            pins: vec![blob.clone()],
            ..Commit::default()
        })?;
        Ok(blob.digest)
    }

    /// One more pin on a blob; returns its reference count.
    pub fn ref_blob(&self, digest: &Digest) -> Result<u64, Error> {
        self.index.pin(digest, 1)
    }

    /// One pin fewer; a blob whose count reaches zero is garbage.
    pub fn deref_blob(&self, digest: &Digest) -> Result<u64, Error> {
        self.index.pin(digest, -1)
    }

    /// Makes `parent` hold `child`, as a manifest holds its layers.
    pub fn link_blobs(&self, parent: &Digest, child: &Digest) -> Result<(), Error> {
        self.index.link(parent, child, true)
    }

    /// Removes an edge made by [`Store::link_blobs`].
    pub fn unlink_blobs(&self, parent: &Digest, child: &Digest) -> Result<(), Error> {
        self.index.link(parent, child, false)
    }

    /// The reference count of a blob, if the store has it.
    pub fn refcount(&self, digest: &Digest) -> Result<Option<u64>, Error> {
        Ok(self.index.blob(digest)?.map(|b| b.refcount))
    }

    /// Records where a blob (and the image imported from it) came from, with
    /// the HTTP cache facts for the next fetch. The remote holds the blob
    /// until it is replaced or its image removed.
    pub fn set_remote(
        &self,
        url: &str,
        etag: Option<&str>,
        max_age: Option<u64>,
        blob: &Digest,
        image: Option<&Digest>,
    ) -> Result<(), Error> {
        self.index.set_remote(&NewRemote {
            url: url.to_string(),
            etag: etag.map(str::to_string),
            max_age,
            blob: blob.clone(),
            image: image.cloned(),
        })
    }

    /// The remote of a URL, if it was fetched.
    pub fn remote(&self, url: &str) -> Result<Option<Remote>, Error> {
        self.index.remote(url)
    }

    /// Every remote, by URL.
    pub fn remotes(&self) -> Result<Vec<Remote>, Error> {
        self.index.remotes()
    }

    /// Disk use by images, shared blobs and garbage.
    pub fn du(&self) -> Result<DiskUsage, Error> {
        let mut du = self.index.disk_usage()?;
        // Temp files, and one level down the files kept on purpose
        // (partial downloads, upload sessions). No link is followed.
        let tmp = self.tree.tmp_dir();
        for entry in fs::read_dir(tmp).ctx("read directory", tmp)? {
            let entry = entry.ctx("read directory", tmp)?;
            match entry.metadata() {
                Ok(meta) if meta.is_dir() => {
                    let kept = entry.path();
                    for file in fs::read_dir(&kept).ctx("read directory", &kept)? {
                        let file = file.ctx("read directory", &kept)?;
                        du.temp_bytes += file.metadata().map_or(0, |m| m.len());
                    }
                }
                Ok(meta) => du.temp_bytes += meta.len(),
                Err(_) => {}
            }
        }
        for name in ["index.db", "index.db-wal", "index.db-shm"] {
            du.index_bytes += fs::metadata(self.root.join(name))
                .map(|m| m.len())
                .unwrap_or(0);
        }
        Ok(du)
    }
}

/// A write that failed for want of space (not a file-size limit) as
/// [`Error::DiskFull`]; any other error as it is.
fn disk_full(store: &Path, e: Error) -> Error {
    let out_of_space = match &e {
        Error::DiskFull { .. } => return e,
        Error::Io { source, .. } => {
            matches!(
                source.raw_os_error(),
                Some(libc::ENOSPC) | Some(libc::EDQUOT)
            )
        }
        Error::Index(i) => i.is_disk_full(),
        _ => false,
    };
    if out_of_space {
        Error::DiskFull {
            store: store.to_path_buf(),
            source: Box::new(e),
        }
    } else {
        e
    }
}

fn full_prefix(key: &Digest) -> KeyPrefix {
    KeyPrefix::from(key)
}

/// A tag is `NAME:TAG` with both parts non-empty and no spaces or commas.
fn check_tag(tag: &str) -> Result<(), Error> {
    let bad = |reason| Error::BadTag {
        input: tag.to_string(),
        reason,
    };
    let (name, t) = tag
        .rsplit_once(':')
        .ok_or_else(|| bad("expected NAME:TAG"))?;
    if name.is_empty() || t.is_empty() {
        return Err(bad("expected NAME:TAG with both parts non-empty"));
    }
    if t.contains('/') {
        return Err(bad("the tag part may not contain '/'"));
    }
    if tag.contains([',', ' ', '\n', '\t']) {
        return Err(bad("a tag may not contain spaces or commas"));
    }
    Ok(())
}
