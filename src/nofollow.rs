//! The store's directories, reached without ever following a symbolic link.
//!
//! The store never follows a link out of its own directories (DESIGN.md
//! §2): a `<store>/tmp` that is a link to a home directory must not let gc
//! empty that home directory. So every directory below the store's root is
//! opened relative to its parent's descriptor with `O_NOFOLLOW |
//! O_DIRECTORY` (`openat`), and entries are listed, examined and removed
//! relative to the descriptor of the directory they were found in
//! (`fstatat`, `unlinkat`): a link swapped in after a check is met at the
//! next `openat`, never followed. The root is the one path taken as given:
//! the user chose it, link or not.
//!
//! ```text
//! Dir::open_root("/srv/store")          open("/srv/store", O_DIRECTORY)
//!   .sub("blobs")?.sub("sha256")?       openat(fd, "blobs", O_NOFOLLOW|O_DIRECTORY)…
//!   .remove("e3b0c442…")?               unlinkat(fd, "e3b0c442…", 0)
//! ```
//!
//! One of the store's own directories that is a link is refused with
//! [`Error::StoreLink`], naming it. A link found as an entry *inside* one
//! of them is an entry like any other: removing it removes the link.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::error::Error;

/// An open directory of the store, with the path it was reached by (for
/// messages only: nothing is ever opened by that path again).
#[derive(Debug)]
pub(crate) struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// What an entry is, as `lstat` tells it (a link is a link, whatever it
/// points at).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Link,
    /// A FIFO, socket or device node.
    Other,
}

impl Kind {
    fn of(file_type: FileType) -> Kind {
        match file_type {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Link,
            _ => Kind::Other,
        }
    }
}

/// One entry of a directory.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub name: OsString,
    pub kind: Kind,
}

/// An entry's `lstat`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    pub kind: Kind,
    pub len: u64,
    pub modified: SystemTime,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

impl Dir {
    /// Opens the store's root, following links in `path` (the user's
    /// choice of directory).
    pub fn open_root(path: &Path) -> Result<Dir, Error> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io("open directory", path, e.into()))?;
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The path this directory was reached by.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of an entry, for messages and for readers that take paths.
    pub fn child_path(&self, name: impl AsRef<OsStr>) -> PathBuf {
        self.path.join(name.as_ref())
    }

    /// Opens a subdirectory that must exist; a link there is refused.
    pub fn sub(&self, name: impl AsRef<OsStr>) -> Result<Dir, Error> {
        let name = name.as_ref();
        self.try_sub(name)?.ok_or_else(|| {
            Error::io(
                "open directory",
                &self.child_path(name),
                io::ErrorKind::NotFound.into(),
            )
        })
    }

    /// Opens a subdirectory if there is one; a link there is refused.
    pub fn try_sub(&self, name: impl AsRef<OsStr>) -> Result<Option<Dir>, Error> {
        let name = name.as_ref();
        let path = self.child_path(name);
        match rustix::fs::openat(&self.fd, name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => Ok(Some(Dir { fd, path })),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(self.open_error(name, path, e)),
        }
    }

    /// Opens a subdirectory, creating it first if it is missing; returns
    /// whether it was created (its parent then needs an fsync to make the
    /// new name durable).
    pub fn sub_or_create(&self, name: impl AsRef<OsStr>) -> Result<(Dir, bool), Error> {
        let name = name.as_ref();
        if let Some(dir) = self.try_sub(name)? {
            return Ok((dir, false));
        }
        let created = match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o755)) {
            Ok(()) => true,
            // Made meanwhile by another process.
            Err(Errno::EXIST) => false,
            Err(e) => {
                return Err(Error::io(
                    "create directory",
                    &self.child_path(name),
                    e.into(),
                ));
            }
        };
        Ok((self.sub(name)?, created))
    }

    /// Opens the directory `rel` below this one, one component at a time,
    /// none of them a link.
    pub fn walk(&self, rel: &Path) -> Result<Dir, Error> {
        let mut names = normal_components(rel, &self.path)?;
        let Some(first) = names.next() else {
            return self.reopen();
        };
        let mut dir = self.sub(first)?;
        for name in names {
            dir = dir.sub(name)?;
        }
        Ok(dir)
    }

    /// Another descriptor of this directory.
    pub fn reopen(&self) -> Result<Dir, Error> {
        let fd = rustix::fs::openat(&self.fd, ".", DIR_FLAGS, Mode::empty())
            .map_err(|e| Error::io("open directory", &self.path, e.into()))?;
        Ok(Dir {
            fd,
            path: self.path.clone(),
        })
    }

    fn open_error(&self, name: &OsStr, path: PathBuf, e: Errno) -> Error {
        if e == Errno::LOOP || matches!(self.meta_raw(name), Ok(Some(m)) if m.kind == Kind::Link) {
            return Error::StoreLink { path };
        }
        Error::io("open directory", &path, e.into())
    }

    /// The entries, sorted by name (`.` and `..` left out). An entry whose
    /// kind the directory does not tell is `lstat`ed.
    pub fn entries(&self) -> Result<Vec<Entry>, Error> {
        let read = |e: Errno| Error::io("read directory", &self.path, e.into());
        let mut dir = rustix::fs::Dir::read_from(&self.fd).map_err(read)?;
        let mut entries = Vec::new();
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(read)?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            let kind = match entry.file_type() {
                FileType::Unknown => match self.meta(name)? {
                    Some(meta) => meta.kind,
                    None => continue,
                },
                t => Kind::of(t),
            };
            entries.push(Entry {
                name: name.to_os_string(),
                kind,
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// An entry's `lstat`, or `None` if there is no such entry.
    pub fn meta(&self, name: impl AsRef<OsStr>) -> Result<Option<Meta>, Error> {
        let name = name.as_ref();
        self.meta_raw(name)
            .map_err(|e| Error::io("examine", &self.child_path(name), e.into()))
    }

    fn meta_raw(&self, name: &OsStr) -> Result<Option<Meta>, Errno> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(Meta {
                kind: Kind::of(FileType::from_raw_mode(st.st_mode as _)),
                len: st.st_size.max(0) as u64,
                modified: time(st.st_mtime as _, st.st_mtime_nsec as _),
            })),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Opens a regular file for reading; a link is refused.
    pub fn open_file(&self, name: impl AsRef<OsStr>) -> Result<File, Error> {
        let name = name.as_ref();
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => Ok(File::from(fd)),
            Err(Errno::LOOP) => Err(Error::StoreLink {
                path: self.child_path(name),
            }),
            Err(e) => Err(Error::io("open", &self.child_path(name), e.into())),
        }
    }

    /// Creates a new file (never one that exists, never through a link),
    /// open for reading and writing, mode 0600.
    pub fn create_file(&self, name: impl AsRef<OsStr>) -> io::Result<File> {
        let flags =
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.fd, name.as_ref(), flags, Mode::from_raw_mode(0o600))?;
        Ok(File::from(fd))
    }

    /// Removes an entry: a file or link is unlinked (a link, never what it
    /// points at), a directory removed with everything in it, each level
    /// opened without following links. An entry already gone is not an
    /// error.
    pub fn remove(&self, name: impl AsRef<OsStr>) -> Result<(), Error> {
        let name = name.as_ref();
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(Errno::ISDIR) | Err(Errno::PERM) if self.is_dir(name) => self.remove_tree(name),
            Err(e) => Err(Error::io("remove", &self.child_path(name), e.into())),
        }
    }

    fn is_dir(&self, name: &OsStr) -> bool {
        matches!(self.meta_raw(name), Ok(Some(m)) if m.kind == Kind::Dir)
    }

    /// Removes the directory `name` and everything below it. Depth-first
    /// with a stack of its own, so a deep tree costs descriptors, not the
    /// call stack.
    fn remove_tree(&self, name: &OsStr) -> Result<(), Error> {
        // (directory, its name in the parent below it on the stack)
        let mut stack: Vec<(Dir, OsString)> = Vec::new();
        match self.try_sub(name) {
            Ok(Some(dir)) => stack.push((dir, name.to_os_string())),
            Ok(None) => return Ok(()),
            // Turned into a link meanwhile: unlink the link.
            Err(Error::StoreLink { .. }) => return self.remove(name),
            Err(e) => return Err(e),
        }
        while let Some((dir, _)) = stack.last() {
            let mut descended = None;
            for entry in dir.entries()? {
                if entry.kind == Kind::Dir {
                    match dir.try_sub(&entry.name) {
                        Ok(Some(sub)) => {
                            descended = Some((sub, entry.name));
                            break;
                        }
                        Ok(None) => {}
                        Err(Error::StoreLink { .. }) => dir.remove(&entry.name)?,
                        Err(e) => return Err(e),
                    }
                } else {
                    dir.remove(&entry.name)?;
                }
            }
            match descended {
                Some(next) => stack.push(next),
                None => {
                    let (dir, name) = stack.pop().expect("the loop saw it");
                    let parent = stack.last().map_or(self, |(d, _)| d);
                    drop(dir);
                    match rustix::fs::unlinkat(&parent.fd, &name, AtFlags::REMOVEDIR) {
                        Ok(()) | Err(Errno::NOENT) => {}
                        Err(e) => {
                            return Err(Error::io("remove", &parent.child_path(&name), e.into()));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes the entry at `rel` below this directory (as
    /// [`remove`](Self::remove)), reaching its parent through
    /// [`walk`](Self::walk). A parent already gone is not an error.
    pub fn remove_at(&self, rel: &Path) -> Result<(), Error> {
        let (parent, name) = split_last(rel, &self.path)?;
        match self.walk(parent) {
            Ok(dir) => dir.remove(name),
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Renames the entry `from` of this directory to `to` in `dest`.
    pub fn rename(
        &self,
        from: impl AsRef<OsStr>,
        dest: &Dir,
        to: impl AsRef<OsStr>,
    ) -> io::Result<()> {
        rustix::fs::renameat(&self.fd, from.as_ref(), &dest.fd, to.as_ref())?;
        Ok(())
    }

    /// Gives the entry `from` of this directory a second name `to` in
    /// `dest`, failing if `to` exists: an atomic create-if-absent.
    pub fn link(
        &self,
        from: impl AsRef<OsStr>,
        dest: &Dir,
        to: impl AsRef<OsStr>,
    ) -> io::Result<()> {
        rustix::fs::linkat(
            &self.fd,
            from.as_ref(),
            &dest.fd,
            to.as_ref(),
            AtFlags::empty(),
        )?;
        Ok(())
    }

    /// fsyncs the directory, making the names in it durable.
    pub fn sync(&self) -> Result<(), Error> {
        rustix::fs::fsync(&self.fd).map_err(|e| Error::io("fsync directory", &self.path, e.into()))
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn time(secs: i64, nanos: u32) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos)
    } else {
        UNIX_EPOCH
    }
}

/// The names of a relative path, refusing `..`, `/` and the like: such a
/// path would leave the directory.
fn normal_components<'a>(
    rel: &'a Path,
    base: &Path,
) -> Result<impl Iterator<Item = &'a OsStr>, Error> {
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(Error::Internal(format!(
            "{} is not a path inside {}",
            rel.display(),
            base.display()
        )));
    }
    Ok(rel.components().filter_map(|c| match c {
        Component::Normal(name) => Some(name),
        _ => None,
    }))
}

fn split_last<'a>(rel: &'a Path, base: &Path) -> Result<(&'a Path, &'a OsStr), Error> {
    let names: Vec<&OsStr> = normal_components(rel, base)?.collect();
    match (rel.parent(), names.last()) {
        (Some(parent), Some(name)) => Ok((parent, name)),
        _ => Err(Error::Internal(format!(
            "{} names no entry inside {}",
            rel.display(),
            base.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_linked_directory_is_refused_and_nothing_is_removed_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let canary = dir.path().join("canary");
        std::fs::create_dir_all(canary.join("deep")).unwrap();
        std::fs::write(canary.join("deep/file"), b"keep").unwrap();
        let store = dir.path().join("store");
        std::fs::create_dir(&store).unwrap();
        symlink(&canary, store.join("tmp")).unwrap();
        let root = Dir::open_root(&store).unwrap();
        assert!(
            matches!(root.sub("tmp"), Err(Error::StoreLink { path }) if path == store.join("tmp"))
        );
        assert!(matches!(
            root.walk(Path::new("tmp/deep")),
            Err(Error::StoreLink { .. })
        ));
        assert!(matches!(
            root.remove_at(Path::new("tmp/deep/file")),
            Err(Error::StoreLink { .. })
        ));
        // Removing the link itself leaves what it points at.
        let kinds: Vec<_> = root
            .entries()
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.kind))
            .collect();
        assert_eq!(kinds, vec![(OsString::from("tmp"), Kind::Link)]);
        root.remove("tmp").unwrap();
        assert_eq!(std::fs::read(canary.join("deep/file")).unwrap(), b"keep");
    }

    #[test]
    fn a_tree_is_removed_without_following_links_inside_it() {
        let dir = tempfile::tempdir().unwrap();
        let canary = dir.path().join("canary");
        std::fs::create_dir(&canary).unwrap();
        std::fs::write(canary.join("file"), b"keep").unwrap();
        let top = dir.path().join("top");
        let mut deep = top.clone();
        for i in 0..50 {
            deep = deep.join(format!("d{i}"));
        }
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("f"), b"x").unwrap();
        symlink(&canary, deep.join("link")).unwrap();
        symlink(&canary, top.join("link")).unwrap();
        let root = Dir::open_root(dir.path()).unwrap();
        root.remove("top").unwrap();
        assert!(!top.exists());
        assert_eq!(std::fs::read(canary.join("file")).unwrap(), b"keep");
        root.remove("top").unwrap();
    }
}
