//! The target directory as a root that nothing escapes (invariant 9).
//!
//! Every path a layer names is resolved inside the target as if the target
//! were `/`: `..` stops at the top, an absolute symlink starts again at the
//! top, and the final component is never followed. [`Root`] does the
//! resolving; the caller creates the final component itself with `*at`
//! calls relative to the parent it got (`O_CREAT|O_EXCL|O_NOFOLLOW`,
//! `mkdirat`, `symlinkat`, `linkat` without `AT_SYMLINK_FOLLOW`,
//! `mknodat`, `unlinkat`), so no string check stands between a hostile
//! archive and the host.
//!
//! Parents are opened by the kernel: `openat2(2)` with `RESOLVE_IN_ROOT`
//! (`..` and absolute symlinks scoped to the root), `RESOLVE_NO_MAGICLINKS`
//! (no `/proc/self/fd/N` tricks) and `RESOLVE_NO_XDEV` (no mount point
//! crossed). Where `openat2` is missing (a kernel older than 5.6, or a
//! seccomp filter that refuses it, seen as `ENOSYS` or `EPERM` on a probe at
//! open time), the same resolution is done one component at a time in
//! [`Root::walk`]: each component opened with `O_PATH|O_NOFOLLOW`, a
//! symlink read with `readlinkat` and its target pushed back onto the walk
//! from the top (absolute) or from where it sits (relative), `..` popped
//! off a stack that never goes below the root, at most [`MAX_HOPS`]
//! symlinks per path, as the kernel allows. The walk also creates missing
//! parents (the kernel walk cannot), so a path through a dangling symlink
//! creates its target inside the root, as containerd and umoci do.
//!
//! The set `IMGSTORE_RENDER_NO_OPENAT2=1` makes a [`Root`] behave as on a
//! kernel without `openat2`, so that the tests run both resolvers.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{
    AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags, Stat, fstat, mkdirat, openat, openat2,
    readlinkat, statat, unlinkat,
};
use rustix::io::Errno;
use serde::Serialize;

/// Symlinks followed while resolving one path (the kernel's `MAXSYMLINKS`).
pub(super) const MAX_HOPS: usize = 40;

/// The longest member name (or link target) accepted, as the kernel's
/// `PATH_MAX`: it bounds the depth of any tree a layer can build.
pub(super) const MAX_PATH: usize = 4096;

/// The mode of directories a layer implies without naming them (as docker
/// and umoci make them; later entries for them set their real mode).
pub(super) const IMPLIED_DIR_MODE: u32 = 0o755;

/// How paths are resolved inside the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Resolver {
    /// The kernel's `openat2(RESOLVE_IN_ROOT)`.
    Openat2,
    /// A walk of one `O_NOFOLLOW` component at a time (no `openat2`).
    Walk,
}

/// The target directory, opened once; every path is taken relative to it.
pub(super) struct Root {
    fd: OwnedFd,
    ino: u64,
    dev: u64,
    resolver: Resolver,
    /// What the kernel takes off the mode of what is created; 0o777 (so
    /// that every mode is set explicitly) once that is not known.
    umask: std::cell::Cell<u32>,
}

impl Root {
    /// Opens `dir` (an existing directory the caller made) as the root.
    pub fn open(dir: &Path) -> io::Result<Root> {
        let fd = openat(
            rustix::fs::CWD,
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = fstat(&fd)?;
        let forced_walk = std::env::var_os("IMGSTORE_RENDER_NO_OPENAT2").is_some_and(|v| v == "1");
        let resolver = if forced_walk {
            Resolver::Walk
        } else {
            match openat2(&fd, c".", path_flags(), Mode::empty(), resolve_flags()) {
                Ok(_) => Resolver::Openat2,
                // No openat2 in this kernel, or a seccomp filter refuses it.
                Err(Errno::NOSYS | Errno::PERM | Errno::INVAL | Errno::OPNOTSUPP) => {
                    tracing::debug!(
                        "openat2 is not available: resolving paths component by component"
                    );
                    Resolver::Walk
                }
                Err(e) => return Err(e.into()),
            }
        };
        // A default ACL, not the umask, shapes new modes under it.
        let umask = if has_default_acl(&fd) {
            0o777
        } else {
            process_umask()
        };
        Ok(Root {
            fd,
            ino: st.st_ino,
            dev: st.st_dev,
            resolver,
            umask: std::cell::Cell::new(umask),
        })
    }

    pub fn ino(&self) -> u64 {
        self.ino
    }

    pub fn resolver(&self) -> Resolver {
        self.resolver
    }

    /// The process umask, read once (the kernel applies it to every mode
    /// passed at creation; the caller fixes modes up only when it matters).
    pub fn umask(&self) -> u32 {
        self.umask.get()
    }

    /// From now on every mode is set explicitly: a layer gave a directory
    /// a default ACL, which shapes the modes of what is made in it.
    pub fn distrust_umask(&self) {
        self.umask.set(0o777);
    }

    /// Opens the directory `rel` (a normalized relative path, `""` for the
    /// root) with `O_PATH`, resolving symlinks inside the root. With
    /// `create`, missing directories are made and a non-directory in the
    /// way is replaced by one (umoci's rule for archives whose later
    /// entries put files under what an earlier one made a file); the
    /// returned flag says whether anything was removed that way.
    pub fn open_dir(&self, rel: &[u8], create: bool) -> io::Result<(OwnedFd, bool)> {
        if self.resolver == Resolver::Openat2 {
            match self.openat2(rel, path_flags()) {
                Ok(fd) => return Ok((fd, false)),
                Err(e)
                    if create && matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                }
                Err(e) => return Err(e),
            }
        }
        let mut replaced = false;
        let fd = self.walk(rel, create, &mut replaced)?;
        Ok((fd, replaced))
    }

    /// Opens the directory `rel` itself for reading and changing its
    /// metadata (`O_RDONLY`): its parents resolved in the root, the final
    /// component not followed.
    pub fn open_dir_rdonly(&self, rel: &[u8]) -> io::Result<OwnedFd> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        if rel.is_empty() {
            return Ok(openat(&self.fd, c".", flags, Mode::empty())?);
        }
        if self.resolver == Resolver::Openat2 {
            return self.openat2(rel, flags);
        }
        let (parent, name) = split(rel);
        let mut replaced = false;
        let parent = self.walk(parent, false, &mut replaced)?;
        Ok(openat(&parent, name, flags, Mode::empty())?)
    }

    fn openat2(&self, rel: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
        let path: &[u8] = if rel.is_empty() { b"." } else { rel };
        // The kernel answers EAGAIN when a rename raced the scoped lookup;
        // nothing else renames inside a render's target, so a few tries do.
        let mut tries = 0;
        loop {
            match openat2(&self.fd, path, flags, Mode::empty(), resolve_flags()) {
                Err(Errno::AGAIN) if tries < 8 => tries += 1,
                Err(Errno::INTR) => {}
                other => return Ok(other?),
            }
        }
    }

    /// Resolves `rel` one component at a time (see the module doc).
    fn walk(&self, rel: &[u8], create: bool, replaced: &mut bool) -> io::Result<OwnedFd> {
        let mut stack: Vec<OwnedFd> = vec![openat(&self.fd, c".", path_flags(), Mode::empty())?];
        // Components still to walk, the next one last.
        let mut todo: Vec<Vec<u8>> = components(rel).rev().map(<[u8]>::to_vec).collect();
        let mut hops = 0;
        while let Some(component) = todo.pop() {
            match component.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    if stack.len() > 1 {
                        stack.pop();
                    }
                    continue;
                }
                _ => {}
            }
            let top = stack.last().expect("the root is never popped");
            let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match openat(top, component.as_slice(), flags, Mode::empty()) {
                Ok(fd) => {
                    let st = fstat(&fd)?;
                    match FileType::from_raw_mode(st.st_mode) {
                        FileType::Directory => {
                            self.check_same_device(&st)?;
                            stack.push(fd);
                        }
                        FileType::Symlink => {
                            hops += 1;
                            if hops > MAX_HOPS {
                                return Err(Errno::LOOP.into());
                            }
                            let target = readlinkat(&fd, c"", Vec::new())?;
                            let target = target.as_bytes();
                            if target.first() == Some(&b'/') {
                                stack.truncate(1);
                            }
                            todo.extend(components(target).rev().map(<[u8]>::to_vec));
                        }
                        _ if create => {
                            unlinkat(top, component.as_slice(), AtFlags::empty())?;
                            *replaced = true;
                            let fd = self.make_dir(top, &component)?;
                            stack.push(fd);
                        }
                        _ => return Err(Errno::NOTDIR.into()),
                    }
                }
                Err(Errno::NOENT) if create => {
                    let fd = self.make_dir(top, &component)?;
                    stack.push(fd);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(stack.pop().expect("the root is never popped"))
    }

    /// A directory the layers imply: mode [`IMPLIED_DIR_MODE`] whatever the
    /// umask.
    fn make_dir(&self, parent: &OwnedFd, name: &[u8]) -> io::Result<OwnedFd> {
        mkdirat(parent, name, Mode::from_raw_mode(IMPLIED_DIR_MODE))?;
        if IMPLIED_DIR_MODE & self.umask() != 0 {
            // Just made as a directory: there is no symlink here to follow.
            rustix::fs::chmodat(
                parent,
                name,
                Mode::from_raw_mode(IMPLIED_DIR_MODE),
                AtFlags::empty(),
            )?;
        }
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        Ok(openat(parent, name, flags, Mode::empty())?)
    }

    /// The walk never crosses into another filesystem (as
    /// `RESOLVE_NO_XDEV`): nothing in a fresh target is mounted.
    fn check_same_device(&self, st: &Stat) -> io::Result<()> {
        if st.st_dev != self.dev {
            return Err(Errno::XDEV.into());
        }
        Ok(())
    }
}

fn path_flags() -> OFlags {
    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC
}

fn resolve_flags() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV
}

/// The parts of a path between slashes (empty ones included; callers skip
/// them).
fn components(path: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    path.split(|&b| b == b'/')
}

/// Splits a normalized path into its parent and its last component.
pub(super) fn split(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&[], rel),
    }
}

/// Whether a directory has a default POSIX ACL.
fn has_default_acl(dir: &OwnedFd) -> bool {
    let mut empty: [u8; 0] = [];
    rustix::fs::fgetxattr(dir, DEFAULT_ACL, &mut empty[..]).is_ok()
}

pub(super) const DEFAULT_ACL: &str = "system.posix_acl_default";

/// The process umask, from `/proc/self/status` (reading it with `umask(2)`
/// would change it for a moment under every other thread). Assumes the
/// strictest mask when it cannot be read, so that modes are always fixed
/// up.
fn process_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o777)
}

/// `lstat` of a name in a directory, `None` if there is nothing there.
pub(super) fn lstat_at(dir: impl AsFd, name: &[u8]) -> io::Result<Option<Stat>> {
    match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub(super) fn file_type(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// The names in a directory (an `O_PATH` or `O_RDONLY` descriptor), but
/// `.` and `..`.
pub(super) fn list(dir: impl AsFd) -> io::Result<Vec<Vec<u8>>> {
    let fd = openat(
        dir,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut out = Vec::new();
    for entry in Dir::new(fd)? {
        let entry = entry?;
        let name: &CStr = entry.file_name();
        let name = name.to_bytes();
        if name != b"." && name != b".." {
            out.push(name.to_vec());
        }
    }
    Ok(out)
}

/// Removes `name` from `parent` and, for a directory, everything under
/// it, never following a symlink. `removed_dir` hears of every directory
/// removed (its inode), so that metadata waiting for it is dropped.
///
/// A directory the caller cannot enter (mode 0 after a render, for an
/// ordinary user) is made accessible first: it is ours to remove.
pub(super) fn remove_all(
    parent: BorrowedFd<'_>,
    name: &[u8],
    removed_dir: &mut dyn FnMut(u64),
) -> io::Result<()> {
    let Some(st) = lstat_at(parent, name)? else {
        return Ok(());
    };
    if file_type(&st) != FileType::Directory {
        return match unlinkat(parent, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        };
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let dir = match openat(parent, name, flags, Mode::empty()) {
        Err(Errno::ACCESS) => {
            // A directory (lstat said so, not a symlink): chmod does not
            // follow anything here.
            rustix::fs::chmodat(parent, name, Mode::RWXU, AtFlags::empty())?;
            openat(parent, name, flags, Mode::empty())?
        }
        other => other?,
    };
    if st.st_mode & 0o300 != 0o300 && !rustix::process::geteuid().is_root() {
        rustix::fs::fchmod(&dir, Mode::from_raw_mode((st.st_mode & 0o7777) | 0o700))?;
    }
    for entry in list(&dir)? {
        remove_all(dir.as_fd(), &entry, removed_dir)?;
    }
    match unlinkat(parent, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    removed_dir(st.st_ino);
    Ok(())
}

/// Removes the file or directory tree at `path` (a path of the caller's,
/// not of a layer), never following a symlink inside it.
pub(super) fn remove_path(path: &Path) -> io::Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().ok_or(Errno::INVAL)?;
    let dir = openat(rustix::fs::CWD, parent, path_flags(), Mode::empty())?;
    remove_all(dir.as_fd(), name.as_encoded_bytes(), &mut |_| {})
}

/// Removes everything in the directory at `path`, but the directory.
pub(super) fn empty_dir(path: &Path) -> io::Result<()> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let dir = openat(rustix::fs::CWD, path, flags, Mode::empty())?;
    if !rustix::process::geteuid().is_root() {
        let st = fstat(&dir)?;
        rustix::fs::fchmod(&dir, Mode::from_raw_mode((st.st_mode & 0o7777) | 0o700))?;
    }
    for name in list(&dir)? {
        remove_all(dir.as_fd(), &name, &mut |_| {})?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn roots(dir: &Path) -> Vec<Root> {
        let mut kernel = Root::open(dir).unwrap();
        kernel.resolver = Resolver::Openat2;
        let mut walk = Root::open(dir).unwrap();
        walk.resolver = Resolver::Walk;
        vec![kernel, walk]
    }

    fn ino_of(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).unwrap().ino()
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(tmp.path().join("outside")).unwrap();
        symlink("/etc", root.join("abs")).unwrap();
        symlink("../../../../etc", root.join("up")).unwrap();
        symlink("/", root.join("top")).unwrap();
        symlink("../outside", root.join("out")).unwrap();
        symlink(tmp.path().join("outside"), root.join("host")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        let etc = ino_of(&root.join("etc"));
        for r in roots(&root) {
            for path in [
                &b"abs"[..],
                b"up",
                b"top/etc",
                b"top/top/abs",
                b"../etc",
                b"up/../etc",
            ] {
                let (fd, _) = r.open_dir(path, false).unwrap();
                assert_eq!(fstat(&fd).unwrap().st_ino, etc, "{:?}", r.resolver);
            }
            // Links that lead out lead to places inside that do not exist.
            for path in [&b"out"[..], b"host"] {
                let err = r.open_dir(path, false).unwrap_err();
                assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{path:?}");
            }
            let err = r.open_dir(b"loop1", false).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
        }
    }

    #[test]
    fn the_walk_creates_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(tmp.path().join("outside")).unwrap();
        symlink("../outside/new", root.join("out")).unwrap();
        std::fs::write(root.join("file"), b"x").unwrap();
        for r in roots(&root) {
            let (fd, _) = r.open_dir(b"out/a/b", true).unwrap();
            assert_eq!(
                fstat(&fd).unwrap().st_ino,
                ino_of(&root.join("outside/new/a/b"))
            );
        }
        assert!(!tmp.path().join("outside/new").exists());
        let r = Root::open(&root).unwrap();
        let (_, replaced) = r.open_dir(b"file/sub", true).unwrap();
        assert!(replaced);
        assert!(root.join("file/sub").is_dir());
    }
}
