//! Builders for layer tars (any member, hostile ones included: names with
//! `..`, absolute names, links anywhere, whiteouts, devices, xattrs), for
//! ACIs with dependencies and path whitelists, and a scan of a directory
//! tree for comparing renders with each other and with umoci's.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A layer tar, member by member, written exactly as asked (no name
/// checks): the way to build what a hostile archive holds.
pub struct Layer {
    builder: tar::Builder<Vec<u8>>,
    mtime: u64,
}

impl Default for Layer {
    fn default() -> Self {
        Layer::new()
    }
}

/// The default mtime of members (a fixed time, so renders compare).
pub const MTIME: u64 = 1_700_000_000;

impl Layer {
    pub fn new() -> Layer {
        Layer {
            builder: tar::Builder::new(Vec::new()),
            mtime: MTIME,
        }
    }

    fn header(&self, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(self.mtime);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    /// Appends a member whose name and link target go in as given: in the
    /// header fields when they fit, else in PAX records.
    fn raw(mut self, mut h: tar::Header, name: &str, link: Option<&str>, data: &[u8]) -> Layer {
        let mut pax: Vec<(&str, &[u8])> = Vec::new();
        if name.len() < 100 {
            let field = &mut h.as_old_mut().name;
            field.fill(0);
            field[..name.len()].copy_from_slice(name.as_bytes());
        } else {
            pax.push(("path", name.as_bytes()));
        }
        if let Some(link) = link {
            if link.len() < 100 {
                let field = &mut h.as_old_mut().linkname;
                field.fill(0);
                field[..link.len()].copy_from_slice(link.as_bytes());
            } else {
                pax.push(("linkpath", link.as_bytes()));
            }
        }
        if !pax.is_empty() {
            self.builder.append_pax_extensions(pax).unwrap();
        }
        h.set_cksum();
        self.builder.append(&h, data).unwrap();
        self
    }

    /// A regular file, mode 0644, owned by root.
    pub fn file(self, name: &str, data: &[u8]) -> Layer {
        self.file_with(name, data, 0o644, 0, 0)
    }

    pub fn file_with(self, name: &str, data: &[u8], mode: u32, uid: u64, gid: u64) -> Layer {
        let mut h = self.header(tar::EntryType::Regular, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        self.raw(h, name, None, data)
    }

    /// A regular file with PAX `SCHILY.xattr.*` records.
    pub fn file_with_xattrs(self, name: &str, data: &[u8], xattrs: &[(&str, &[u8])]) -> Layer {
        self.xattrs(xattrs).file(name, data)
    }

    /// PAX `SCHILY.xattr.*` records for the next member.
    pub fn xattrs(mut self, xattrs: &[(&str, &[u8])]) -> Layer {
        let keys: Vec<String> = xattrs
            .iter()
            .map(|(k, _)| format!("SCHILY.xattr.{k}"))
            .collect();
        let records: Vec<(&str, &[u8])> = keys
            .iter()
            .map(String::as_str)
            .zip(xattrs.iter().map(|(_, v)| *v))
            .collect();
        self.builder.append_pax_extensions(records).unwrap();
        self
    }

    /// A directory, mode 0755.
    pub fn dir(self, name: &str) -> Layer {
        self.dir_with(name, 0o755)
    }

    pub fn dir_with(self, name: &str, mode: u32) -> Layer {
        let h = self.header(tar::EntryType::Directory, mode, 0);
        self.raw(h, name, None, &[])
    }

    pub fn symlink(self, name: &str, target: &str) -> Layer {
        let h = self.header(tar::EntryType::Symlink, 0o777, 0);
        self.raw(h, name, Some(target), &[])
    }

    pub fn hardlink(self, name: &str, target: &str) -> Layer {
        let h = self.header(tar::EntryType::Link, 0o644, 0);
        self.raw(h, name, Some(target), &[])
    }

    pub fn char_device(self, name: &str, major: u32, minor: u32) -> Layer {
        let mut h = self.header(tar::EntryType::Char, 0o666, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.raw(h, name, None, &[])
    }

    pub fn block_device(self, name: &str, major: u32, minor: u32) -> Layer {
        let mut h = self.header(tar::EntryType::Block, 0o660, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.raw(h, name, None, &[])
    }

    pub fn fifo(self, name: &str) -> Layer {
        let h = self.header(tar::EntryType::Fifo, 0o644, 0);
        self.raw(h, name, None, &[])
    }

    /// A member of any type flag (for unsupported kinds).
    pub fn typed(self, name: &str, flag: u8) -> Layer {
        let h = self.header(tar::EntryType::new(flag), 0o644, 0);
        self.raw(h, name, None, &[])
    }

    /// The whiteout of `path` (`dir/.wh.name`).
    pub fn whiteout(self, path: &str) -> Layer {
        let name = match path.rsplit_once('/') {
            Some((dir, name)) => format!("{dir}/.wh.{name}"),
            None => format!(".wh.{path}"),
        };
        self.file(&name, b"")
    }

    /// The opaque whiteout of a directory (`""` for the root).
    pub fn opaque(self, dir: &str) -> Layer {
        if dir.is_empty() {
            self.file(".wh..wh..opq", b"")
        } else {
            self.file(&format!("{dir}/.wh..wh..opq"), b"")
        }
    }

    pub fn build(self) -> Vec<u8> {
        self.builder.into_inner().unwrap()
    }
}

/// An appc dependency: image name, labels, optional image ID.
pub type AciDependency<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<&'a str>);

/// An appc image manifest: name, labels, dependencies and a path
/// whitelist.
pub fn aci_manifest(
    name: &str,
    labels: &[(&str, &str)],
    dependencies: &[AciDependency],
    whitelist: &[&str],
) -> String {
    let labels_json = |labels: &[(&str, &str)]| {
        serde_json::Value::Array(
            labels
                .iter()
                .map(|(k, v)| serde_json::json!({ "name": k, "value": v }))
                .collect(),
        )
    };
    let deps: Vec<serde_json::Value> = dependencies
        .iter()
        .map(|(dep, labels, id)| {
            let mut d = serde_json::json!({ "imageName": dep, "labels": labels_json(labels) });
            if let Some(id) = id {
                d["imageID"] = serde_json::json!(id);
            }
            d
        })
        .collect();
    let mut m = serde_json::json!({
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": name,
        "labels": labels_json(labels),
        "dependencies": deps,
    });
    if !whitelist.is_empty() {
        m["pathWhitelist"] = serde_json::json!(whitelist);
    }
    m.to_string()
}

/// An ACI: `manifest`, then `rootfs/` holding what `rootfs` adds (its
/// member names are prefixed with `rootfs/`).
pub fn aci(manifest: &str, rootfs: impl FnOnce(AciRootfs) -> AciRootfs) -> Vec<u8> {
    let layer = Layer::new()
        .file("manifest", manifest.as_bytes())
        .dir("rootfs");
    rootfs(AciRootfs(layer)).0.build()
}

/// The members of an ACI's rootfs, named as inside it.
pub struct AciRootfs(Layer);

impl AciRootfs {
    pub fn file(self, name: &str, data: &[u8]) -> AciRootfs {
        AciRootfs(self.0.file(&format!("rootfs/{name}"), data))
    }

    pub fn dir(self, name: &str) -> AciRootfs {
        AciRootfs(self.0.dir(&format!("rootfs/{name}")))
    }

    pub fn symlink(self, name: &str, target: &str) -> AciRootfs {
        AciRootfs(self.0.symlink(&format!("rootfs/{name}"), target))
    }

    pub fn hardlink(self, name: &str, target: &str) -> AciRootfs {
        AciRootfs(
            self.0
                .hardlink(&format!("rootfs/{name}"), &format!("rootfs/{target}")),
        )
    }

    /// A member under any name, `rootfs/` not added.
    pub fn raw_file(self, name: &str, data: &[u8]) -> AciRootfs {
        AciRootfs(self.0.file(name, data))
    }
}

/// One thing in a scanned tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `f`ile, `d`irectory, `l`ink (symlink), `c`har, `b`lock, `p`ipe.
    pub kind: char,
    /// Permission bits, setuid/setgid/sticky included.
    pub mode: u32,
    pub size: u64,
    /// sha256 of a file's bytes.
    pub hash: Option<String>,
    /// A symlink's target.
    pub link: Option<String>,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub nlink: u64,
    pub ino: u64,
    pub rdev: u64,
}

/// Every path under `dir` (relative, `""` for `dir` itself), never
/// following a symlink.
pub fn scan(dir: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    scan_into(dir, dir, &mut out);
    out
}

fn scan_into(root: &Path, path: &Path, out: &mut BTreeMap<String, Node>) {
    let meta =
        std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
    let ft = meta.file_type();
    use std::os::unix::fs::FileTypeExt;
    let kind = if ft.is_dir() {
        'd'
    } else if ft.is_symlink() {
        'l'
    } else if ft.is_file() {
        'f'
    } else if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else {
        'p'
    };
    let rel = path
        .strip_prefix(root)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let node = Node {
        kind,
        mode: meta.mode() & 0o7777,
        size: if kind == 'f' || kind == 'l' {
            meta.len()
        } else {
            0
        },
        hash: (kind == 'f').then(|| {
            imgstore::Digest::of(imgstore::Algorithm::Sha256, &std::fs::read(path).unwrap())
                .to_string()
        }),
        link: (kind == 'l').then(|| {
            std::fs::read_link(path)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        }),
        uid: meta.uid(),
        gid: meta.gid(),
        mtime: meta.mtime(),
        nlink: meta.nlink(),
        ino: meta.ino(),
        rdev: meta.rdev(),
    };
    out.insert(rel, node);
    if kind == 'd' {
        let mut names: Vec<_> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for child in names {
            scan_into(root, &child, out);
        }
    }
}

/// The paths that share an inode, group by group (non-directories only).
pub fn hardlink_groups(tree: &BTreeMap<String, Node>) -> Vec<Vec<String>> {
    let mut by_ino: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (path, node) in tree {
        if node.kind != 'd' {
            by_ino.entry(node.ino).or_default().push(path.clone());
        }
    }
    let mut groups: Vec<Vec<String>> = by_ino.into_values().filter(|g| g.len() > 1).collect();
    groups.sort();
    groups
}

/// What two renders must agree on (as umoci's and ours): per path its
/// kind, mode, size, content and link target, then the hard-link groups.
pub fn comparable(tree: &BTreeMap<String, Node>) -> (Vec<String>, Vec<Vec<String>>) {
    let lines = tree
        .iter()
        .map(|(path, n)| {
            format!(
                "{path:?} {} {:04o} {} {} {}",
                n.kind,
                n.mode,
                n.size,
                n.hash.as_deref().unwrap_or("-"),
                n.link.as_deref().unwrap_or("-")
            )
        })
        .collect();
    (lines, hardlink_groups(tree))
}
