//! The fingerprint of a rendered tree: one sha256 over a walk of it that
//! any two equal trees make alike, taken when a kept tree is rendered and
//! taken again by `fsck --trees` (rkt kept such a tree hash too).
//!
//! The walk goes depth first, names in byte order, from the tree's own
//! directory (path `""`) down, and never follows a symbolic link: every
//! entry is opened relative to its parent's descriptor with `O_NOFOLLOW`.
//! Each entry adds one record to the hash:
//!
//! ```text
//! kind (1 byte: d f l c b p s)  path (bytes) 0  mode & 0o7777, uid, gid (u32 LE each)
//!   f: size (u64 LE), sha256 of the contents (32 bytes)
//!   l: link target (bytes) 0
//!   c, b: device number (u64 LE)
//! ```
//!
//! Times are left out (a render sets them from the layers, but reading a
//! file or a directory may change its atime, and nothing a runtime does
//! depends on them), and so are extended attributes and which files are
//! hard links of each other: the fingerprint is of what a program in the
//! tree reads. Contents are hashed on every core, a batch of files at a
//! time, so memory stays bounded by the batch, not the tree.
//!
//! An ordinary user may have rendered entries it cannot read (a file of
//! mode 0, a directory of mode 0o311): they are its own, so the walk adds
//! the owner's read (and search) permission for as long as it reads them
//! and puts the mode back.

use std::collections::HashSet;
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, Stat, chmodat, fstat, openat, statat};
use rustix::io::Errno;

use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::Error;

/// Files whose contents are hashed together, at most.
const BATCH_FILES: usize = 128;
/// Bytes of contents hashed together, at most (more only for one big file).
const BATCH_BYTES: u64 = 256 << 20;
/// Read buffer per hashing thread.
const READ_BUFFER: usize = 1 << 20;
/// Most threads hashing contents at once.
const MAX_WORKERS: usize = 8;

/// What a walk found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    /// The sha256 of the walk's records.
    pub hash: Digest,
    /// Bytes of file data, hard links counted once.
    pub size: u64,
    /// Entries walked, the tree's own directory included.
    pub entries: u64,
}

/// Walks the tree at `dir` (a directory, not followed if it is a link).
pub(crate) fn fingerprint(dir: &Path) -> Result<Fingerprint, Error> {
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dir
        .file_name()
        .ok_or_else(|| Error::io("read", dir, Errno::INVAL.into()))?;
    let parent_fd = openat(
        rustix::fs::CWD,
        parent,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("open", parent, e.into()))?;
    let mut walk = Walk {
        root: dir.to_path_buf(),
        hasher: Algorithm::Sha256.hasher(),
        pending: Vec::new(),
        pending_bytes: 0,
        linked: HashSet::new(),
        size: 0,
        entries: 0,
        caller: rustix::process::geteuid(),
    };
    let name = name.as_encoded_bytes();
    let st = statat(&parent_fd, name, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| Error::io("read", dir, e.into()))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return Err(Error::io("walk", dir, Errno::NOTDIR.into()));
    }
    walk.entry(parent_fd.as_fd(), name, b"", &st)?;
    walk.flush()?;
    Ok(Fingerprint {
        hash: walk.hasher.finish(),
        size: walk.size,
        entries: walk.entries,
    })
}

struct Walk {
    root: PathBuf,
    hasher: Hasher,
    /// Records not hashed yet, in walk order: they wait for the contents
    /// of the files among them.
    pending: Vec<Record>,
    pending_bytes: u64,
    /// Inodes with more than one link met so far (for the size).
    linked: HashSet<(u64, u64)>,
    size: u64,
    entries: u64,
    caller: rustix::process::Uid,
}

struct Record {
    head: Vec<u8>,
    /// A regular file whose contents' hash ends the record.
    file: Option<(OwnedFd, Vec<u8>)>,
}

impl Walk {
    fn path(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            return self.root.clone();
        }
        self.root.join(std::ffi::OsStr::from_bytes(rel))
    }

    fn io(&self, action: &'static str, rel: &[u8], e: impl Into<io::Error>) -> Error {
        Error::io(action, &self.path(rel), e.into())
    }

    /// Adds the entry `name` of `parent` (at `rel` in the tree, lstat
    /// `st`), and what is under it.
    fn entry(
        &mut self,
        parent: rustix::fd::BorrowedFd<'_>,
        name: &[u8],
        rel: &[u8],
        st: &Stat,
    ) -> Result<(), Error> {
        self.entries += 1;
        let kind = FileType::from_raw_mode(st.st_mode);
        let mut head = Vec::with_capacity(rel.len() + 32);
        head.push(match kind {
            FileType::Directory => b'd',
            FileType::RegularFile => b'f',
            FileType::Symlink => b'l',
            FileType::CharacterDevice => b'c',
            FileType::BlockDevice => b'b',
            FileType::Fifo => b'p',
            FileType::Socket => b's',
            FileType::Unknown => b'?',
        });
        head.extend_from_slice(rel);
        head.push(0);
        head.extend_from_slice(&(st.st_mode & 0o7777).to_le_bytes());
        head.extend_from_slice(&st.st_uid.to_le_bytes());
        head.extend_from_slice(&st.st_gid.to_le_bytes());
        match kind {
            FileType::Directory => {
                self.pending.push(Record { head, file: None });
                self.directory(parent, name, rel, st)?;
            }
            FileType::RegularFile => {
                let size = st.st_size as u64;
                head.extend_from_slice(&size.to_le_bytes());
                if st.st_nlink <= 1 || self.linked.insert((st.st_dev, st.st_ino)) {
                    self.size += size;
                }
                let fd = self.open_readable(parent, name, rel, st, OFlags::RDONLY)?;
                if self.pending_bytes + size > BATCH_BYTES
                    || self.pending.iter().filter(|r| r.file.is_some()).count() >= BATCH_FILES
                {
                    self.flush()?;
                }
                self.pending_bytes += size;
                self.pending.push(Record {
                    head,
                    file: Some((fd, rel.to_vec())),
                });
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(parent, name, Vec::new())
                    .map_err(|e| self.io("read link", rel, e))?;
                head.extend_from_slice(target.as_bytes());
                head.push(0);
                self.pending.push(Record { head, file: None });
            }
            FileType::CharacterDevice | FileType::BlockDevice => {
                head.extend_from_slice(&st.st_rdev.to_le_bytes());
                self.pending.push(Record { head, file: None });
            }
            _ => self.pending.push(Record { head, file: None }),
        }
        Ok(())
    }

    /// Adds what the directory holds, by name.
    fn directory(
        &mut self,
        parent: rustix::fd::BorrowedFd<'_>,
        name: &[u8],
        rel: &[u8],
        st: &Stat,
    ) -> Result<(), Error> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY;
        let restore = self.needs_access(st, 0o500);
        let dir = self.open_readable(parent, name, rel, st, flags)?;
        let result = (|| {
            let listing = openat(&dir, c".", flags | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| self.io("read directory", rel, e))?;
            let mut names: Vec<Vec<u8>> = Vec::new();
            for entry in Dir::new(listing).map_err(|e| self.io("read directory", rel, e))? {
                let entry = entry.map_err(|e| self.io("read directory", rel, e))?;
                let n: &CStr = entry.file_name();
                let n = n.to_bytes();
                if n != b"." && n != b".." {
                    names.push(n.to_vec());
                }
            }
            names.sort_unstable();
            for child in names {
                let mut child_rel = rel.to_vec();
                if !child_rel.is_empty() {
                    child_rel.push(b'/');
                }
                child_rel.extend_from_slice(&child);
                let st = statat(&dir, child.as_slice(), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| self.io("read", &child_rel, e))?;
                self.entry(dir.as_fd(), &child, &child_rel, &st)?;
            }
            Ok(())
        })();
        if restore {
            // Back to the mode the render gave it (its own: no link here).
            if let Err(e) = chmodat(
                parent,
                name,
                Mode::from_raw_mode(st.st_mode & 0o7777),
                AtFlags::empty(),
            ) {
                tracing::warn!(
                    "cannot restore the mode of {}: {e}",
                    self.path(rel).display()
                );
            }
        }
        result
    }

    /// Whether the caller must lend itself `bits` (of 0o700) to read an
    /// entry it owns.
    fn needs_access(&self, st: &Stat, bits: u32) -> bool {
        !self.caller.is_root() && st.st_uid == self.caller.as_raw() && st.st_mode & bits != bits
    }

    /// Opens an entry for reading, never following a link, lending the
    /// owner read (and, for a directory, search) permission if it lacks
    /// them. A file's mode is put back at once (the descriptor stays
    /// readable); a directory's by [`Walk::directory`], once it is read.
    fn open_readable(
        &self,
        parent: rustix::fd::BorrowedFd<'_>,
        name: &[u8],
        rel: &[u8],
        st: &Stat,
        flags: OFlags,
    ) -> Result<OwnedFd, Error> {
        let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY;
        let is_dir = flags.contains(OFlags::DIRECTORY);
        let bits = if is_dir { 0o500 } else { 0o400 };
        let lend = self.needs_access(st, bits);
        let mode = st.st_mode & 0o7777;
        if lend {
            // lstat said it is no symlink: chmodat has nothing to follow.
            chmodat(
                parent,
                name,
                Mode::from_raw_mode(mode | bits),
                AtFlags::empty(),
            )
            .map_err(|e| self.io("make readable", rel, e))?;
        }
        let opened = openat(parent, name, flags, Mode::empty());
        if lend && !is_dir {
            let _ = chmodat(parent, name, Mode::from_raw_mode(mode), AtFlags::empty());
        }
        let fd = opened.map_err(|e| self.io("open", rel, e))?;
        // The entry must still be what lstat saw (nothing renders in a
        // kept tree, but a user may have changed it meanwhile).
        let now = fstat(&fd).map_err(|e| self.io("read", rel, e))?;
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
            return Err(self.io("read", rel, Errno::STALE));
        }
        Ok(fd)
    }

    /// Hashes the contents of the pending files on every core, then adds
    /// the pending records in walk order.
    fn flush(&mut self) -> Result<(), Error> {
        let records = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let files: Vec<usize> = (0..records.len())
            .filter(|&i| records[i].file.is_some())
            .collect();
        // Largest first, so that no thread is left with a big file at the end.
        let mut order: Vec<usize> = (0..files.len()).collect();
        let sizes: Vec<u64> = files
            .iter()
            .map(|&i| {
                let (fd, _) = records[i].file.as_ref().expect("a file");
                fstat(fd).map_or(0, |s| s.st_size as u64)
            })
            .collect();
        order.sort_by_key(|&k| std::cmp::Reverse(sizes[k]));
        let digests = crate::parallel::run(
            &files,
            order,
            crate::parallel::workers(MAX_WORKERS),
            || vec![0u8; READ_BUFFER],
            |buf, &i| {
                let (fd, rel) = records[i].file.as_ref().expect("a file");
                hash_contents(fd, buf).map_err(|e| self.io("read", rel, e))
            },
        );
        let mut digests = digests.into_iter();
        for record in records {
            self.hasher.update(&record.head);
            if record.file.is_some() {
                match digests.next().flatten() {
                    Some(Ok(d)) => self.hasher.update(d.hex().as_bytes()),
                    Some(Err(e)) => return Err(e),
                    // Not taken: another file failed, and its error follows.
                    None => continue,
                }
            }
        }
        Ok(())
    }
}

fn hash_contents(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<Digest> {
    let mut hasher = Algorithm::Sha256.hasher();
    loop {
        match rustix::io::read(fd, &mut *buf) {
            Ok(0) => return Ok(hasher.finish()),
            Ok(n) => hasher.update(&buf[..n]),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    fn tree(dir: &Path) {
        std::fs::create_dir_all(dir.join("etc/sub")).unwrap();
        std::fs::write(dir.join("etc/passwd"), b"root:x:0:0\n").unwrap();
        std::fs::write(dir.join("etc/sub/big"), vec![7u8; (1 << 20) + 17]).unwrap();
        std::fs::hard_link(dir.join("etc/passwd"), dir.join("passwd")).unwrap();
        symlink("/etc/passwd", dir.join("link")).unwrap();
        symlink("../../outside", dir.join("etc/out")).unwrap();
    }

    #[test]
    fn equal_trees_fingerprint_alike_and_every_change_shows() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        tree(&a);
        tree(&b);
        let fa = fingerprint(&a).unwrap();
        assert_eq!(fa, fingerprint(&b).unwrap());
        assert_eq!(fa.entries, 8);
        assert_eq!(fa.size, 11 + (1 << 20) + 17, "a hard link counts once");
        // Reading changes nothing.
        assert_eq!(fa, fingerprint(&a).unwrap());

        type Change = Box<dyn Fn(&Path)>;
        let changes: Vec<(&str, Change)> = vec![
            (
                "content",
                Box::new(|d| {
                    std::fs::write(d.join("etc/sub/big"), vec![8u8; (1 << 20) + 17]).unwrap()
                }),
            ),
            (
                "mode",
                Box::new(|d| {
                    std::fs::set_permissions(d.join("etc/passwd"), PermissionsExt::from_mode(0o600))
                        .unwrap()
                }),
            ),
            (
                "link target",
                Box::new(|d| {
                    std::fs::remove_file(d.join("link")).unwrap();
                    symlink("/etc/shadow", d.join("link")).unwrap();
                }),
            ),
            (
                "new file",
                Box::new(|d| std::fs::write(d.join("etc/new"), b"").unwrap()),
            ),
            (
                "removed file",
                Box::new(|d| std::fs::remove_file(d.join("passwd")).unwrap()),
            ),
            (
                "type",
                Box::new(|d| {
                    std::fs::remove_file(d.join("passwd")).unwrap();
                    std::fs::create_dir(d.join("passwd")).unwrap();
                }),
            ),
        ];
        for (what, change) in changes {
            let c = tmp.path().join(what);
            tree(&c);
            change(&c);
            assert_ne!(fingerprint(&c).unwrap().hash, fa.hash, "{what}");
        }
    }

    #[test]
    fn the_walk_follows_no_link() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t");
        std::fs::create_dir(&dir).unwrap();
        std::fs::create_dir(tmp.path().join("outside")).unwrap();
        symlink(tmp.path().join("outside"), dir.join("out")).unwrap();
        let before = fingerprint(&dir).unwrap();
        std::fs::write(tmp.path().join("outside/file"), b"x").unwrap();
        assert_eq!(fingerprint(&dir).unwrap(), before);
        // The tree itself given as a link is refused.
        symlink(&dir, tmp.path().join("alias")).unwrap();
        assert!(fingerprint(&tmp.path().join("alias")).is_err());
    }
}
