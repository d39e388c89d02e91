//! Tar members applied to the root: files, directories, links, devices,
//! whiteouts, owners, modes, times and xattrs.
//!
//! What a member becomes:
//!
//! | member | result |
//! |---|---|
//! | file | created `O_CREAT\|O_EXCL\|O_NOFOLLOW` (whatever was there is removed first, a directory with all it holds); data, owner, mode, xattrs, times |
//! | directory | kept if one is there, else made (replacing a non-directory, a symlink included: appc and umoci's rule); owner, mode and times set at the very end |
//! | symlink | `symlinkat`, target verbatim (it is resolved in the root by whoever follows it); owner and times without following it |
//! | hard link | the target is resolved in the root and must be a non-directory; `linkat` without following, so a link to a symlink links the symlink |
//! | device | `mknodat` as root; skipped (and counted) without privilege |
//! | FIFO | `mknodat` |
//! | `.wh.NAME` | NAME removed from the layers below |
//! | `.wh..wh..opq` | the directory emptied of what the layers below put in it |
//!
//! A whiteout never removes what its own layer wrote, wherever the two sit
//! in the tar (OCI image spec, "whiteouts"; umoci's rule): the layer's
//! writes are remembered as (parent directory inode, name) and the
//! directories above them by inode, and a whiteout removes only what is
//! neither, descending into what it must keep.
//!
//! Directory metadata waits for the end of the render: a directory's mtime
//! changes with every member written into it, and a directory made
//! read-only by one layer must still take the files of the next (for an
//! ordinary user, who has no `CAP_DAC_OVERRIDE`). The last entry for a
//! directory wins, as the layers say; the directory is found again by its
//! path and checked by its inode.
//!
//! Without privilege (`rootless`, as `umoci unpack --rootless`): no chown,
//! no device nodes, no setuid or setgid bits.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::hash::{BuildHasher, RandomState};
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::rc::Rc;

use rustix::fs::Timespec;
use rustix::fs::{
    AtFlags, FileType, Mode, OFlags, Timestamps, XattrFlags, chownat, fchmod, fchown, fsetxattr,
    fstat, futimens, linkat, makedev, mkdirat, mknodat, openat, statat, symlinkat, unlinkat,
    utimensat,
};
use rustix::fs::{Gid, Uid};
use rustix::io::Errno;

use super::appc::PathFilter;
use super::archive::{Kind, Member, TarError, TarReader, Time};
use super::error::MemberProblem;
use super::names::{self, NameProblem, Whiteout};
use super::root::{self, MAX_PATH, Root, file_type, lstat_at, remove_all, split};

/// Parent directories kept open at once.
const CACHE_LIMIT: usize = 256;

/// How one layer's members are read.
pub(super) struct Rules<'a> {
    /// Whether `.wh.` names are whiteouts (OCI) or plain names (appc).
    pub whiteouts: bool,
    /// Only members under this top directory are applied, with it
    /// stripped (an ACI's `rootfs`); others are skipped.
    pub prefix: Option<&'a [u8]>,
    /// Only members this filter allows are applied (appc pathWhitelist).
    pub filter: Option<&'a PathFilter>,
}

/// Why a member could not be applied.
#[derive(Debug)]
pub(super) enum Failure {
    Tar(TarError),
    Member {
        member: Vec<u8>,
        problem: MemberProblem,
    },
    Io {
        member: Vec<u8>,
        action: &'static str,
        cause: io::Error,
    },
}

/// What a render wrote, for its report.
#[derive(Debug, Default, Clone)]
pub(super) struct Counts {
    pub members: u64,
    pub files: u64,
    pub bytes: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub specials: u64,
    pub whiteouts: u64,
    pub skipped_devices: u64,
    pub skipped_xattrs: u64,
    pub filtered: u64,
}

/// An open parent directory (`O_PATH`), with what its members inherit.
struct Parent {
    fd: OwnedFd,
    ino: u64,
    gid: u32,
    setgid: bool,
    /// The layer generation whose writes have marked this directory's
    /// ancestors already.
    marked: Cell<u64>,
}

/// Metadata of a directory, applied at the end.
struct DirMeta {
    path: Vec<u8>,
    mode: u32,
    owner: (u32, u32),
    atime: Time,
    mtime: Time,
}

/// What the current layer wrote, for its own whiteouts.
struct Upper {
    written: HashSet<u64>,
    ancestors: HashSet<u64>,
    generation: u64,
    keys: RandomState,
}

impl Upper {
    fn key(&self, parent: u64, name: &[u8]) -> u64 {
        self.keys.hash_one((parent, name))
    }

    fn wrote(&self, parent: u64, name: &[u8]) -> bool {
        !self.written.is_empty() && self.written.contains(&self.key(parent, name))
    }
}

pub(super) struct Applier<'r> {
    root: &'r Root,
    rootless: bool,
    euid: u32,
    egid: u32,
    cache: HashMap<Vec<u8>, Rc<Parent>>,
    dirs: HashMap<u64, DirMeta>,
    upper: Upper,
    pub counts: Counts,
}

/// The member being applied, for error messages.
struct At<'m>(&'m [u8]);

impl At<'_> {
    fn io(&self, action: &'static str) -> impl FnOnce(io::Error) -> Failure + '_ {
        move |cause| Failure::Io {
            member: self.0.to_vec(),
            action,
            cause,
        }
    }

    fn errno(&self, action: &'static str) -> impl FnOnce(Errno) -> Failure + '_ {
        move |e| self.io(action)(e.into())
    }

    fn problem(&self, problem: MemberProblem) -> Failure {
        Failure::Member {
            member: self.0.to_vec(),
            problem,
        }
    }
}

impl<'r> Applier<'r> {
    pub fn new(root: &'r Root, rootless: bool) -> Applier<'r> {
        Applier {
            root,
            rootless,
            euid: rustix::process::geteuid().as_raw(),
            egid: rustix::process::getegid().as_raw(),
            cache: HashMap::new(),
            dirs: HashMap::new(),
            upper: Upper {
                written: HashSet::new(),
                ancestors: HashSet::new(),
                generation: 0,
                keys: RandomState::new(),
            },
            counts: Counts::default(),
        }
    }

    /// Applies every member of one layer.
    pub fn apply_layer(&mut self, tar: &mut TarReader, rules: &Rules) -> Result<(), Failure> {
        self.upper.written.clear();
        self.upper.ancestors.clear();
        self.upper.generation += 1;
        while let Some(member) = tar.next().map_err(Failure::Tar)? {
            self.apply(tar, &member, rules)?;
        }
        Ok(())
    }

    fn apply(&mut self, tar: &mut TarReader, m: &Member, rules: &Rules) -> Result<(), Failure> {
        let at = At(&m.name);
        self.counts.members += 1;
        let mut path = names::normalize(&m.name).map_err(|p| at.problem(name_problem(p)))?;
        if let Some(prefix) = rules.prefix {
            match strip_prefix(&path, prefix) {
                Some(rest) => path = rest,
                None => return Ok(()),
            }
        }
        if let Some(filter) = rules.filter
            && !filter.allows(&path, m.kind == Kind::Dir)
        {
            self.counts.filtered += 1;
            return Ok(());
        }
        let (parent_path, name) = split(&path);
        if name.is_empty() {
            if m.kind != Kind::Dir {
                return Err(at.problem(MemberProblem::RootNotDirectory));
            }
            let owner = self.owner(m, &at)?;
            self.dirs.insert(
                self.root.ino(),
                DirMeta {
                    path: Vec::new(),
                    mode: self.mode(m.mode),
                    owner,
                    atime: m.atime.unwrap_or(m.mtime),
                    mtime: m.mtime,
                },
            );
            return Ok(());
        }
        if rules.whiteouts {
            match names::whiteout(name) {
                Err(()) => return Err(at.problem(MemberProblem::MalformedWhiteout)),
                Ok(Whiteout::No) => {}
                Ok(Whiteout::Meta) => return Ok(()),
                Ok(Whiteout::Opaque) => {
                    return self
                        .whiteout(parent_path, None)
                        .map_err(at.io("apply the opaque whiteout"));
                }
                Ok(Whiteout::Remove(target)) => {
                    return self
                        .whiteout(parent_path, Some(target))
                        .map_err(at.io("apply the whiteout"));
                }
            }
        }
        let parent = self
            .parent(parent_path, true)
            .map_err(at.io("open its parent directory"))?;
        match m.kind {
            Kind::File => self.file(tar, &parent, name, m, &at)?,
            Kind::Dir => self.dir(&parent, name, &path, m, &at)?,
            Kind::Symlink => self.symlink(&parent, name, m, &at)?,
            Kind::Hardlink => self.hardlink(&parent, name, m, rules, &at)?,
            Kind::CharDevice | Kind::BlockDevice | Kind::Fifo => {
                if !self.special(&parent, name, m, &at)? {
                    return Ok(());
                }
            }
        }
        if rules.whiteouts {
            self.mark_written(&parent, name)
                .map_err(at.io("find the directories above it"))?;
        }
        Ok(())
    }

    /// The permission bits to set: setuid and setgid only with privilege.
    fn mode(&self, mode: u32) -> u32 {
        if self.rootless {
            mode & 0o1777
        } else {
            mode & 0o7777
        }
    }

    fn owner(&self, m: &Member, at: &At) -> Result<(u32, u32), Failure> {
        match (u32::try_from(m.uid), u32::try_from(m.gid)) {
            (Ok(u), Ok(g)) => Ok((u, g)),
            _ => Err(at.problem(MemberProblem::OwnerOutOfRange {
                uid: m.uid,
                gid: m.gid,
            })),
        }
    }

    /// The owner to give a new member, if it differs from the one it gets
    /// by being created in `parent`.
    fn chown_needed(
        &self,
        m: &Member,
        parent: &Parent,
        at: &At,
    ) -> Result<Option<(u32, u32)>, Failure> {
        if self.rootless {
            return Ok(None);
        }
        let (uid, gid) = self.owner(m, at)?;
        let born = (
            self.euid,
            if parent.setgid { parent.gid } else { self.egid },
        );
        Ok(((uid, gid) != born).then_some((uid, gid)))
    }

    fn parent(&mut self, path: &[u8], create: bool) -> io::Result<Rc<Parent>> {
        if let Some(p) = self.cache.get(path) {
            return Ok(p.clone());
        }
        let (fd, replaced) = self.root.open_dir(path, create)?;
        if replaced {
            self.cache.clear();
        }
        let st = fstat(&fd)?;
        let parent = Rc::new(Parent {
            fd,
            ino: st.st_ino,
            gid: st.st_gid,
            setgid: st.st_mode & libc::S_ISGID != 0,
            marked: Cell::new(0),
        });
        if self.cache.len() >= CACHE_LIMIT {
            self.cache.clear();
        }
        self.cache.insert(path.to_vec(), parent.clone());
        Ok(parent)
    }

    /// Removes whatever is at `name` so that a new member can take it.
    /// Removing a directory or a symlink can change where cached paths
    /// lead, so the cache goes with it.
    fn clear(&mut self, parent: &Parent, name: &[u8]) -> io::Result<()> {
        let Some(st) = lstat_at(&parent.fd, name)? else {
            return Ok(());
        };
        match file_type(&st) {
            FileType::Directory => {
                let dirs = &mut self.dirs;
                remove_all(parent.fd.as_fd(), name, &mut |ino| {
                    dirs.remove(&ino);
                })?;
                self.cache.clear();
            }
            kind => {
                unlinkat(&parent.fd, name, AtFlags::empty())?;
                if kind == FileType::Symlink {
                    self.cache.clear();
                }
            }
        }
        Ok(())
    }

    fn file(
        &mut self,
        tar: &mut TarReader,
        parent: &Parent,
        name: &[u8],
        m: &Member,
        at: &At,
    ) -> Result<(), Failure> {
        let mode = self.mode(m.mode);
        let born = Mode::from_raw_mode(mode & 0o777);
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match openat(&parent.fd, name, flags, born) {
            Err(Errno::EXIST) => {
                self.clear(parent, name)
                    .map_err(at.io("replace what was there"))?;
                openat(&parent.fd, name, flags, born)
            }
            other => other,
        }
        .map_err(at.errno("create"))?;
        let mut file = File::from(fd);
        tar.data(&mut |bytes| file.write_all(bytes))
            .map_err(Failure::Tar)?
            .map_err(at.io("write"))?;
        self.counts.files += 1;
        self.counts.bytes += m.size;
        let chowned = self.chown_needed(m, parent, at)?;
        if let Some((uid, gid)) = chowned {
            fchown(&file, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                .map_err(at.errno("set the owner"))?;
        }
        if mode != (mode & 0o777 & !self.root.umask()) {
            fchmod(&file, Mode::from_raw_mode(mode)).map_err(at.errno("set the mode"))?;
        }
        self.xattrs(file.as_fd(), m, at)?;
        futimens(&file, &times(m)).map_err(at.errno("set the times"))?;
        Ok(())
    }

    fn dir(
        &mut self,
        parent: &Parent,
        name: &[u8],
        path: &[u8],
        m: &Member,
        at: &At,
    ) -> Result<(), Failure> {
        let owner = self.owner(m, at)?;
        let made = Mode::from_raw_mode(root::IMPLIED_DIR_MODE);
        match mkdirat(&parent.fd, name, made) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let st = lstat_at(&parent.fd, name).map_err(at.io("look at what is there"))?;
                if st.is_none_or(|st| file_type(&st) != FileType::Directory) {
                    self.clear(parent, name)
                        .map_err(at.io("replace what was there"))?;
                    mkdirat(&parent.fd, name, made).map_err(at.errno("create"))?;
                }
            }
            Err(e) => return Err(at.errno("create")(e)),
        }
        if root::IMPLIED_DIR_MODE & self.root.umask() & 0o700 != 0 {
            // The umask would keep even us out until the end; a directory
            // was just made or found here (no symlink to follow).
            rustix::fs::chmodat(&parent.fd, name, made, AtFlags::empty())
                .map_err(at.errno("set the mode"))?;
        }
        let st = statat(&parent.fd, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(at.errno("look at what is there"))?;
        if !m.xattrs.is_empty() {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let fd = openat(&parent.fd, name, flags, Mode::empty()).map_err(at.errno("open"))?;
            self.xattrs(fd.as_fd(), m, at)?;
        }
        self.counts.dirs += 1;
        self.dirs.insert(
            st.st_ino,
            DirMeta {
                path: path.to_vec(),
                mode: self.mode(m.mode),
                owner,
                atime: m.atime.unwrap_or(m.mtime),
                mtime: m.mtime,
            },
        );
        Ok(())
    }

    fn symlink(
        &mut self,
        parent: &Parent,
        name: &[u8],
        m: &Member,
        at: &At,
    ) -> Result<(), Failure> {
        if m.link.is_empty() {
            return Err(at.problem(MemberProblem::EmptyLinkTarget));
        }
        if m.link.len() > MAX_PATH {
            return Err(at.problem(MemberProblem::NameTooLong));
        }
        if m.link.contains(&0) {
            return Err(at.problem(MemberProblem::NulInName));
        }
        match symlinkat(m.link.as_slice(), &parent.fd, name) {
            Err(Errno::EXIST) => {
                self.clear(parent, name)
                    .map_err(at.io("replace what was there"))?;
                symlinkat(m.link.as_slice(), &parent.fd, name)
            }
            other => other,
        }
        .map_err(at.errno("create"))?;
        self.counts.symlinks += 1;
        self.set_meta_at(parent, name, m, None, at)
    }

    fn hardlink(
        &mut self,
        parent: &Parent,
        name: &[u8],
        m: &Member,
        rules: &Rules,
        at: &At,
    ) -> Result<(), Failure> {
        let shown = || String::from_utf8_lossy(&m.link).into_owned();
        let mut target = names::normalize(&m.link).map_err(|p| at.problem(name_problem(p)))?;
        if let Some(prefix) = rules.prefix {
            target = strip_prefix(&target, prefix).ok_or_else(|| {
                at.problem(MemberProblem::HardLinkOutsideRootfs { target: shown() })
            })?;
        }
        let (target_parent, target_name) = split(&target);
        if target_name.is_empty() {
            return Err(at.problem(MemberProblem::HardLinkToDirectory { target: shown() }));
        }
        let missing = || at.problem(MemberProblem::HardLinkTargetMissing { target: shown() });
        let from = match self.parent(target_parent, false) {
            Ok(p) => p,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                return Err(missing());
            }
            Err(e) => return Err(at.io("resolve the link target")(e)),
        };
        let Some(st) = lstat_at(&from.fd, target_name).map_err(at.io("look at the link target"))?
        else {
            return Err(missing());
        };
        if file_type(&st) == FileType::Directory {
            return Err(at.problem(MemberProblem::HardLinkToDirectory { target: shown() }));
        }
        match linkat(&from.fd, target_name, &parent.fd, name, AtFlags::empty()) {
            Err(Errno::EXIST) => {
                let same = lstat_at(&parent.fd, name)
                    .map_err(at.io("look at what is there"))?
                    .is_some_and(|here| here.st_ino == st.st_ino && here.st_dev == st.st_dev);
                if same {
                    Ok(())
                } else {
                    self.clear(parent, name)
                        .map_err(at.io("replace what was there"))?;
                    linkat(&from.fd, target_name, &parent.fd, name, AtFlags::empty())
                }
            }
            other => other,
        }
        .map_err(at.errno("create the hard link"))?;
        // A hard link shares its target's inode: it has no metadata of its
        // own to set (and setting it would change the target).
        self.counts.hardlinks += 1;
        Ok(())
    }

    /// A device node or FIFO; `false` if it was skipped.
    fn special(
        &mut self,
        parent: &Parent,
        name: &[u8],
        m: &Member,
        at: &At,
    ) -> Result<bool, Failure> {
        let (kind, dev) = match m.kind {
            Kind::CharDevice => (FileType::CharacterDevice, makedev(m.device.0, m.device.1)),
            Kind::BlockDevice => (FileType::BlockDevice, makedev(m.device.0, m.device.1)),
            _ => (FileType::Fifo, 0),
        };
        if kind != FileType::Fifo && self.rootless {
            self.counts.skipped_devices += 1;
            return Ok(false);
        }
        let mode = self.mode(m.mode);
        let born = Mode::from_raw_mode(mode & 0o777);
        let made = match mknodat(&parent.fd, name, kind, born, dev) {
            Err(Errno::EXIST) => {
                self.clear(parent, name)
                    .map_err(at.io("replace what was there"))?;
                mknodat(&parent.fd, name, kind, born, dev)
            }
            other => other,
        };
        match made {
            Ok(()) => {}
            // Root without CAP_MKNOD (a user namespace, a container).
            Err(Errno::PERM) if kind != FileType::Fifo => {
                self.counts.skipped_devices += 1;
                return Ok(false);
            }
            Err(e) => return Err(at.errno("create")(e)),
        }
        self.counts.specials += 1;
        self.set_meta_at(parent, name, m, Some(mode), at)?;
        Ok(true)
    }

    /// Owner, mode and times of something just created in `parent` that
    /// cannot be opened safely (a symlink, a device): by name, never
    /// following it. `mode` is `None` for a symlink, which has none.
    fn set_meta_at(
        &mut self,
        parent: &Parent,
        name: &[u8],
        m: &Member,
        mode: Option<u32>,
        at: &At,
    ) -> Result<(), Failure> {
        if let Some((uid, gid)) = self.chown_needed(m, parent, at)? {
            chownat(
                &parent.fd,
                name,
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(at.errno("set the owner"))?;
        }
        if let Some(mode) = mode
            && mode != (mode & 0o777 & !self.root.umask())
        {
            // Just made with mknodat: a device or FIFO, not a symlink, is
            // there (Linux cannot chmod without following).
            rustix::fs::chmodat(
                &parent.fd,
                name,
                Mode::from_raw_mode(mode),
                AtFlags::empty(),
            )
            .map_err(at.errno("set the mode"))?;
        }
        utimensat(&parent.fd, name, &times(m), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(at.errno("set the times"))?;
        Ok(())
    }

    fn xattrs(&mut self, fd: BorrowedFd, m: &Member, at: &At) -> Result<(), Failure> {
        for (name, value) in &m.xattrs {
            // The host's SELinux labels are the host's business.
            if name.as_slice() == b"security.selinux" {
                continue;
            }
            if name.as_slice() == root::DEFAULT_ACL.as_bytes() {
                self.root.distrust_umask();
            }
            match fsetxattr(fd, name.as_slice(), value, XattrFlags::empty()) {
                Ok(()) => {}
                // The filesystem takes no xattrs, or not this one, or not
                // from us: left out, and counted for one warning.
                Err(Errno::NOTSUP | Errno::PERM | Errno::ACCESS) => self.counts.skipped_xattrs += 1,
                Err(e) => return Err(at.errno("set an extended attribute")(e)),
            }
        }
        Ok(())
    }

    /// Removes `target` (or, for an opaque whiteout, everything) from the
    /// directory `parent_path`, but what this layer wrote. Nothing to
    /// remove is not an error: a whiteout may name what an earlier
    /// whiteout removed already.
    fn whiteout(&mut self, parent_path: &[u8], target: Option<&[u8]>) -> io::Result<()> {
        self.counts.whiteouts += 1;
        let dir = match self.parent(parent_path, false) {
            Ok(dir) => dir,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let result = match target {
            Some(name) => self.remove_lower(dir.fd.as_fd(), dir.ino, name),
            None => root::list(&dir.fd)?
                .iter()
                .try_for_each(|child| self.remove_lower(dir.fd.as_fd(), dir.ino, child)),
        };
        self.cache.clear();
        result
    }

    fn remove_lower(&mut self, parent: BorrowedFd, parent_ino: u64, name: &[u8]) -> io::Result<()> {
        let Some(st) = lstat_at(parent, name)? else {
            return Ok(());
        };
        let is_dir = file_type(&st) == FileType::Directory;
        let keep = self.upper.wrote(parent_ino, name)
            || (is_dir && self.upper.ancestors.contains(&st.st_ino));
        if !keep {
            let dirs = &mut self.dirs;
            return remove_all(parent, name, &mut |ino| {
                dirs.remove(&ino);
            });
        }
        if is_dir {
            let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let dir = openat(parent, name, flags, Mode::empty())?;
            for child in root::list(&dir)? {
                self.remove_lower(dir.as_fd(), st.st_ino, &child)?;
            }
        }
        Ok(())
    }

    /// Remembers that this layer wrote `name` in `parent`, and marks the
    /// directories from `parent` up to the root (once per directory and
    /// layer: `..` from a directory inside the root stays inside it).
    fn mark_written(&mut self, parent: &Parent, name: &[u8]) -> io::Result<()> {
        let key = self.upper.key(parent.ino, name);
        self.upper.written.insert(key);
        let generation = self.upper.generation;
        if parent.marked.get() == generation {
            return Ok(());
        }
        parent.marked.set(generation);
        if !self.upper.ancestors.insert(parent.ino) || parent.ino == self.root.ino() {
            return Ok(());
        }
        let up = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let mut dir = openat(&parent.fd, c"..", up, Mode::empty())?;
        for _ in 0..MAX_PATH {
            let st = fstat(&dir)?;
            if !self.upper.ancestors.insert(st.st_ino) || st.st_ino == self.root.ino() {
                break;
            }
            dir = openat(&dir, c"..", up, Mode::empty())?;
        }
        Ok(())
    }

    /// Sets the metadata of every directory the layers named, deepest
    /// first (so that a read-only directory does not shut out the ones
    /// below it). A directory that is gone, or that its path now leads past
    /// (a later layer replaced what was above it), keeps what it has.
    pub fn finish(&mut self) -> Result<(), Failure> {
        let mut dirs: Vec<(u64, DirMeta)> = self.dirs.drain().collect();
        dirs.sort_by_key(|(_, d)| {
            std::cmp::Reverse(
                d.path.iter().filter(|&&b| b == b'/').count() + usize::from(!d.path.is_empty()),
            )
        });
        for (ino, meta) in dirs {
            let at = At(&meta.path);
            let fd = match self.root.open_dir_rdonly(&meta.path) {
                Ok(fd) => fd,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(at.io("open the directory")(e)),
            };
            let st = fstat(&fd).map_err(at.errno("look at the directory"))?;
            if st.st_ino != ino {
                continue;
            }
            if !self.rootless && (st.st_uid, st.st_gid) != meta.owner {
                fchown(
                    &fd,
                    Some(Uid::from_raw(meta.owner.0)),
                    Some(Gid::from_raw(meta.owner.1)),
                )
                .map_err(at.errno("set the owner of the directory"))?;
            }
            fchmod(&fd, Mode::from_raw_mode(meta.mode))
                .map_err(at.errno("set the mode of the directory"))?;
            let t = Timestamps {
                last_access: timespec(meta.atime),
                last_modification: timespec(meta.mtime),
            };
            futimens(&fd, &t).map_err(at.errno("set the times of the directory"))?;
        }
        Ok(())
    }
}

fn name_problem(p: NameProblem) -> MemberProblem {
    match p {
        NameProblem::Nul => MemberProblem::NulInName,
        NameProblem::TooLong => MemberProblem::NameTooLong,
    }
}

/// `path` without its top directory `prefix`; `None` if it is not under
/// it (the top directory itself gives `""`, the root).
fn strip_prefix(path: &[u8], prefix: &[u8]) -> Option<Vec<u8>> {
    let rest = path.strip_prefix(prefix)?;
    match rest {
        [] => Some(Vec::new()),
        [b'/', rest @ ..] => Some(rest.to_vec()),
        _ => None,
    }
}

fn timespec(t: Time) -> Timespec {
    Timespec {
        tv_sec: t.secs,
        tv_nsec: i64::from(t.nanos),
    }
}

fn times(m: &Member) -> Timestamps {
    Timestamps {
        last_access: timespec(m.atime.unwrap_or(m.mtime)),
        last_modification: timespec(m.mtime),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(
            strip_prefix(b"rootfs/etc", b"rootfs"),
            Some(b"etc".to_vec())
        );
        assert_eq!(strip_prefix(b"rootfs", b"rootfs"), Some(Vec::new()));
        assert_eq!(strip_prefix(b"rootfsx/etc", b"rootfs"), None);
        assert_eq!(strip_prefix(b"manifest", b"rootfs"), None);
    }
}
