//! `imgstore render IMAGE DIR`: breakouts (containerd's `TestBreakouts` and
//! umoci's scoping tests, ported to a table of our own and run with both
//! path resolvers), whiteouts and layers, interop with `umoci raw unpack`,
//! appc dependencies and path whitelists, multi-platform images, bad input,
//! and what root may do that an ordinary user may not.
//!
//! umoci must be installed (`.ci/run` installs it); a missing umoci fails
//! the interop tests with a message saying so.

#[path = "common/oci_builder.rs"]
mod builder;
mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use builder::{LayerCompression, Layout, desc, named, sha256};
use common::layers::{Layer, Node, aci, aci_manifest, comparable, scan};
use common::{TestStore, noise, store};

// ---------------------------------------------------------------- helpers

/// An OCI layout holding one amd64 image of these layer tars, named
/// `ref_name`.
fn image_of(layers: &[Vec<u8>], compression: LayerCompression, ref_name: &str) -> Layout {
    image_for(layers, compression, ref_name, "amd64")
}

fn image_for(
    layers: &[Vec<u8>],
    compression: LayerCompression,
    ref_name: &str,
    arch: &str,
) -> Layout {
    let mut l = Layout::new();
    let (config, manifest) = add_image(&mut l, layers, compression, arch);
    let _ = config;
    l.index.push(named(manifest, ref_name));
    l
}

/// Adds an image's blobs to a layout; returns its config digest and its
/// manifest's descriptor.
fn add_image(
    l: &mut Layout,
    layers: &[Vec<u8>],
    compression: LayerCompression,
    arch: &str,
) -> (String, serde_json::Value) {
    let mut diff_ids = Vec::new();
    let mut descs = Vec::new();
    for tar in layers {
        diff_ids.push(sha256(tar));
        let (bytes, media_type) = match compression {
            LayerCompression::None => (tar.clone(), builder::LAYER),
            LayerCompression::Gzip => (builder::gzip(tar), builder::LAYER_GZ),
            LayerCompression::Zstd => (zstd::encode_all(&tar[..], 3).unwrap(), builder::LAYER_ZSTD),
        };
        let d = l.blob("sha256", &bytes);
        descs.push(desc(media_type, &d, bytes.len()));
    }
    let config = builder::config_json(arch, &diff_ids, &[]);
    let c = l.blob("sha256", &config);
    let manifest = builder::manifest_json(desc(builder::CONFIG, &c, config.len()), descs);
    let m = l.blob("sha256", &manifest);
    (c, desc(builder::MANIFEST, &m, manifest.len()))
}

/// Imports a layout; returns the first key printed.
fn import_layout(s: &TestStore, layout: &Layout) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("layout");
    layout.write_dir(&dir);
    let out = s.ok(&["import", dir.to_str().unwrap()]);
    out.lines().next().unwrap().to_string()
}

fn import_file(s: &TestStore, bytes: &[u8]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let path = common::write_file(tmp.path(), "image", bytes);
    s.ok(&["import", path.to_str().unwrap()]).trim().to_string()
}

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Which path resolver a render uses.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Resolver {
    Openat2,
    Walk,
}

fn render_cmd(s: &TestStore, key: &str, dir: &Path, resolver: Resolver) -> assert_cmd::Command {
    let mut cmd = s.cmd(&["render", "--json", key, arg(dir)]);
    if resolver == Resolver::Walk {
        cmd.env("IMGSTORE_RENDER_NO_OPENAT2", "1");
    }
    cmd
}

/// Renders, which must succeed; returns the report.
fn render(s: &TestStore, key: &str, dir: &Path) -> serde_json::Value {
    render_with(s, key, dir, Resolver::Openat2)
}

fn render_with(s: &TestStore, key: &str, dir: &Path, resolver: Resolver) -> serde_json::Value {
    let out = render_cmd(s, key, dir, resolver).output().unwrap();
    assert!(
        out.status.success(),
        "render {key} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected = if resolver == Resolver::Walk {
        "walk"
    } else {
        "openat2"
    };
    assert_eq!(
        report["resolver"], expected,
        "the resolver asked for was used"
    );
    report
}

/// Renders, which must fail with one error line; returns it.
fn render_fails(s: &TestStore, key: &str, dir: &Path, resolver: Resolver) -> String {
    let out = render_cmd(s, key, dir, resolver).output().unwrap();
    common::assert_error(&out, &["render", key]);
    String::from_utf8(out.stderr)
        .unwrap()
        .trim_end()
        .to_string()
}

fn read(dir: &Path, rel: &str) -> Vec<u8> {
    std::fs::read(dir.join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

fn lstat(dir: &Path, rel: &str) -> std::fs::Metadata {
    std::fs::symlink_metadata(dir.join(rel)).unwrap_or_else(|e| panic!("lstat {rel}: {e}"))
}

fn exists(dir: &Path, rel: &str) -> bool {
    std::fs::symlink_metadata(dir.join(rel)).is_ok()
}

fn same_file(dir: &Path, a: &str, b: &str) -> bool {
    let (a, b) = (lstat(dir, a), lstat(dir, b));
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

fn link_target(dir: &Path, rel: &str) -> String {
    std::fs::read_link(dir.join(rel))
        .unwrap_or_else(|e| panic!("readlink {rel}: {e}"))
        .to_string_lossy()
        .into_owned()
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

// -------------------------------------------------------------- breakouts

/// A place to render into, with a canary directory beside it: the render
/// goes to `out/`, and nothing else under the sandbox may change.
struct Sandbox {
    tmp: tempfile::TempDir,
}

const SECRET: &[u8] = b"the canary's secret, which must never be read into a render";

impl Sandbox {
    fn new() -> Sandbox {
        let tmp = tempfile::tempdir().unwrap();
        let canary = tmp.path().join("canary");
        std::fs::create_dir_all(canary.join("imgstore-etc")).unwrap();
        std::fs::create_dir_all(canary.join("dir/sub")).unwrap();
        std::fs::write(canary.join("secret"), SECRET).unwrap();
        std::fs::write(canary.join("imgstore-etc/passwd"), b"root:x:0:0").unwrap();
        std::fs::write(canary.join("dir/sub/file"), b"deep").unwrap();
        std::os::unix::fs::symlink("../secret", canary.join("dir/link")).unwrap();
        std::fs::set_permissions(
            canary.join("imgstore-etc/passwd"),
            std::os::unix::fs::PermissionsExt::from_mode(0o400),
        )
        .unwrap();
        Sandbox { tmp }
    }

    fn out(&self) -> PathBuf {
        self.tmp.path().join("out")
    }

    /// The canary's absolute path.
    fn canary(&self) -> String {
        self.tmp.path().join("canary").to_str().unwrap().to_string()
    }

    /// The canary's absolute path as a path inside the render.
    fn canary_inside(&self) -> String {
        self.canary().trim_start_matches('/').to_string()
    }

    /// Everything under the sandbox but the render: names, kinds, modes,
    /// owners, sizes, contents, link counts and mtimes.
    fn outside(&self) -> BTreeMap<String, Node> {
        let mut tree = scan(self.tmp.path());
        tree.retain(|path, _| !path.is_empty() && path != "out" && !path.starts_with("out/"));
        tree
    }
}

type Check = Box<dyn Fn(&Path)>;

enum Expect {
    Renders(Check),
    Fails(&'static str),
}

struct Breakout {
    name: &'static str,
    layers: Vec<Vec<u8>>,
    expect: Expect,
}

fn renders(check: impl Fn(&Path) + 'static) -> Expect {
    Expect::Renders(Box::new(check))
}

/// The table: containerd's `TestBreakouts` (archive/tar_test.go) and
/// umoci's `TestUnpackEntrySanitiseScoping`, `…SymlinkScoping`,
/// `…NonDirParent` and hard-link cases, as layers. Where containerd applies
/// files before the tar (`apply`), that is a lower layer here. `c` is the
/// canary's absolute path, `ci` the same path inside the render. Their
/// `/etc` is `/imgstore-etc` here: run as root, a regression would
/// otherwise write into the host's `/etc` before the test could say so.
fn breakouts(c: &str, ci: &str, tag: &str) -> Vec<Breakout> {
    let ci = ci.to_string();
    let unbroken = |dir: &Path| assert_eq!(read(dir, "imgstore-etc/unbroken"), b"unbroken");
    let host_file = format!("imgstore-breakout-{tag}");
    vec![
        Breakout {
            name: "symlink_absolute",
            layers: vec![
                Layer::new()
                    .dir("imgstore-etc")
                    .symlink("localetc", "/imgstore-etc")
                    .file("/localetc/unbroken", b"unbroken")
                    .build(),
            ],
            expect: renders(unbroken),
        },
        Breakout {
            name: "symlink_up_and_out",
            layers: vec![
                Layer::new()
                    .dir("imgstore-etc")
                    .dir("dummy")
                    .symlink("localetc", "/dummy/../imgstore-etc")
                    .file("/localetc/unbroken", b"unbroken")
                    .build(),
            ],
            expect: renders(unbroken),
        },
        Breakout {
            name: "symlink_multiple_absolute",
            layers: vec![
                Layer::new()
                    .dir("imgstore-etc")
                    .dir("dummy")
                    .symlink("/dummy/imgstore-etc", "/imgstore-etc")
                    .symlink("localetc", "/dummy/imgstore-etc")
                    .file("/dummy/imgstore-etc/unbroken", b"unbroken")
                    .build(),
            ],
            expect: renders(unbroken),
        },
        Breakout {
            name: "symlink_multiple_relative",
            layers: vec![
                Layer::new()
                    .dir("imgstore-etc")
                    .dir("dummy")
                    .symlink("/dummy/imgstore-etc", "/imgstore-etc")
                    .symlink("localetc", "./dummy/imgstore-etc")
                    .file("/dummy/imgstore-etc/unbroken", b"unbroken")
                    .build(),
            ],
            expect: renders(unbroken),
        },
        Breakout {
            name: "symlink_empty_file",
            layers: vec![
                Layer::new()
                    .dir("imgstore-etc")
                    .file("imgstore-etc/emptied", b"notempty")
                    .symlink("localetc", "/imgstore-etc")
                    .file("/localetc/emptied", b"")
                    .build(),
            ],
            expect: renders(|dir| assert_eq!(read(dir, "imgstore-etc/emptied"), b"")),
        },
        Breakout {
            name: "symlink_to_the_canary_by_host_path",
            layers: vec![
                Layer::new()
                    .symlink("c", c)
                    .file("c/secret", b"pwned")
                    .file("c/imgstore-etc/passwd", b"pwned")
                    .build(),
            ],
            expect: renders({
                let ci = ci.clone();
                move |dir| {
                    assert_eq!(read(dir, &format!("{ci}/secret")), b"pwned");
                    assert_eq!(read(dir, &format!("{ci}/imgstore-etc/passwd")), b"pwned");
                }
            }),
        },
        Breakout {
            name: "symlink_up_to_the_canary",
            layers: vec![
                Layer::new()
                    .symlink("up", "../../../../../../../..")
                    .file("up/canary/secret", b"pwned")
                    .build(),
            ],
            expect: renders(|dir| assert_eq!(read(dir, "canary/secret"), b"pwned")),
        },
        Breakout {
            name: "symlink_to_slash_then_written_through",
            layers: vec![
                Layer::new()
                    .dir("foo")
                    .dir("foo/tmp")
                    .file(&format!("foo/tmp/{host_file}"), &[0, 1, 2])
                    .symlink("foo", "/")
                    .file(&format!("foo/tmp/{host_file}"), &[3, 4, 5])
                    .dir("foo")
                    .dir("foo/tmp")
                    .file(&format!("foo/tmp/{host_file}"), &[6, 7, 8])
                    .build(),
            ],
            expect: renders({
                let host_file = host_file.clone();
                move |dir| {
                    assert_eq!(read(dir, &format!("foo/tmp/{host_file}")), [6, 7, 8]);
                    assert_eq!(read(dir, &format!("tmp/{host_file}")), [3, 4, 5]);
                    assert!(
                        !Path::new("/tmp").join(&host_file).exists(),
                        "written to the host's /tmp"
                    );
                }
            }),
        },
        Breakout {
            name: "symlink_planted_by_a_lower_layer",
            layers: vec![
                Layer::new()
                    .symlink("link", "../canary")
                    .symlink("abs", c)
                    .build(),
                Layer::new()
                    .file("link/secret", b"pwned")
                    .dir("abs/newdir")
                    .file("abs/newdir/x", b"x")
                    .build(),
            ],
            expect: renders({
                let ci = ci.clone();
                move |dir| {
                    assert_eq!(read(dir, "canary/secret"), b"pwned");
                    assert_eq!(read(dir, &format!("{ci}/newdir/x")), b"x");
                }
            }),
        },
        Breakout {
            name: "dot_dot_in_names",
            layers: vec![
                Layer::new()
                    .file("../canary/secret", b"pwned")
                    .file("/../../canary/x", b"x")
                    .file("a/../../../canary/y", b"y")
                    .file("../../../../../../../canary/imgstore-etc/passwd", b"pwned")
                    .build(),
            ],
            expect: renders(|dir| {
                assert_eq!(read(dir, "canary/secret"), b"pwned");
                assert_eq!(read(dir, "canary/x"), b"x");
                assert_eq!(read(dir, "canary/y"), b"y");
                assert_eq!(read(dir, "canary/imgstore-etc/passwd"), b"pwned");
            }),
        },
        Breakout {
            name: "garbage_prefixes",
            layers: vec![
                Layer::new()
                    .file("/./.././.././.././../canary/z", b"z")
                    .file(&format!("/{}/../{c}/w", "x".repeat(120)), b"w")
                    .build(),
            ],
            expect: renders({
                let ci = ci.clone();
                move |dir| {
                    assert_eq!(read(dir, "canary/z"), b"z");
                    assert_eq!(read(dir, &format!("{ci}/w")), b"w");
                }
            }),
        },
        Breakout {
            name: "symlink_scoping_prefixes",
            layers: vec![
                Layer::new()
                    .symlink("l1", "/")
                    .symlink("l2", "/../")
                    .symlink("l3", "/../../../../../../../../../../../../../../../")
                    .symlink("l4", "/./.././.././.././.././.././.././.././.././../")
                    .symlink("l5", "..")
                    .build(),
                Layer::new()
                    .file("l1/imgstore-breakout-f1", b"1")
                    .file("l2/imgstore-breakout-f2", b"2")
                    .file("l3/imgstore-breakout-f3", b"3")
                    .file("l4/imgstore-breakout-f4", b"4")
                    .file("l5/imgstore-breakout-f5", b"5")
                    .build(),
            ],
            expect: renders(|dir| {
                for i in 1..=5 {
                    assert_eq!(
                        read(dir, &format!("imgstore-breakout-f{i}")),
                        i.to_string().as_bytes()
                    );
                }
            }),
        },
        Breakout {
            name: "hardlink_to_the_canary_by_dot_dot",
            layers: vec![Layer::new().hardlink("passwd", "../canary/secret").build()],
            expect: Expect::Fails("does not exist"),
        },
        Breakout {
            name: "hardlink_to_the_canary_by_host_path",
            layers: vec![Layer::new().hardlink("h", &format!("{c}/secret")).build()],
            expect: Expect::Fails("does not exist"),
        },
        Breakout {
            name: "hardlink_through_a_symlink_to_the_canary",
            layers: vec![
                Layer::new()
                    .symlink("l", c)
                    .hardlink("h", "l/secret")
                    .build(),
            ],
            expect: Expect::Fails("does not exist"),
        },
        Breakout {
            name: "hardlink_through_a_dot_dot_symlink_stays_inside",
            layers: vec![
                Layer::new()
                    .dir_with("imgstore-etc", 0o770)
                    .file("/imgstore-etc/passwd", b"inside")
                    .dir("breakouts")
                    .symlink("breakouts/d1", "../../imgstore-etc")
                    .hardlink("breakouts/mypasswd", "/breakouts/d1/passwd")
                    .build(),
            ],
            expect: renders(|dir| {
                assert!(same_file(dir, "breakouts/mypasswd", "imgstore-etc/passwd"))
            }),
        },
        Breakout {
            name: "hardlink_down_and_out",
            layers: vec![
                Layer::new()
                    .dir("imgstore-etc")
                    .file("/imgstore-etc/passwd", b"inside")
                    .dir("breakouts")
                    .dir("downandout")
                    .symlink("breakouts/d1", "../downandout/../../imgstore-etc")
                    .hardlink("breakouts/mypasswd", "/breakouts/d1/passwd")
                    .build(),
            ],
            expect: renders(|dir| {
                assert!(same_file(dir, "breakouts/mypasswd", "imgstore-etc/passwd"))
            }),
        },
        Breakout {
            name: "hardlink_relative_long",
            layers: vec![
                Layer::new()
                    .dir("imgstore-etc")
                    .file("/imgstore-etc/passwd", b"inside")
                    .symlink("localetc", "../../../../../../../imgstore-etc")
                    .hardlink("localpasswd", "/localetc/passwd")
                    .build(),
            ],
            expect: renders(|dir| assert!(same_file(dir, "localpasswd", "imgstore-etc/passwd"))),
        },
        // containerd cleans symlink targets as strings and lets this pass;
        // the kernel (and so the container, later) needs `upandout` to
        // exist before it can go up from it, and so do we.
        Breakout {
            name: "hardlink_relative_up_and_out",
            layers: vec![
                Layer::new()
                    .dir("imgstore-etc")
                    .file("/imgstore-etc/passwd", b"inside")
                    .symlink("localetc", "upandout/../../../imgstore-etc")
                    .hardlink("localpasswd", "/localetc/passwd")
                    .build(),
            ],
            expect: Expect::Fails("does not exist"),
        },
        Breakout {
            name: "hardlink_direct_relative_and_absolute",
            layers: vec![
                Layer::new()
                    .dir("imgstore-etc")
                    .file("/imgstore-etc/passwd", b"inside")
                    .hardlink("localpasswd", "../../../../../imgstore-etc/passwd")
                    .hardlink("abspasswd", "/imgstore-etc/passwd")
                    .build(),
            ],
            expect: renders(|dir| {
                assert!(same_file(dir, "localpasswd", "imgstore-etc/passwd"));
                assert!(same_file(dir, "abspasswd", "imgstore-etc/passwd"));
            }),
        },
        Breakout {
            name: "hardlink_to_a_symlink_to_the_canary_links_the_symlink",
            layers: vec![
                Layer::new()
                    .symlink("passwdlink", &format!("{c}/imgstore-etc/passwd"))
                    .hardlink("localpasswd", "/passwdlink")
                    .symlink(&format!("{c}/also"), &format!("{c}/imgstore-etc/passwd"))
                    .hardlink("sketchylink", &format!("{c}/also"))
                    .build(),
            ],
            expect: renders({
                let (c, ci) = (c.to_string(), ci.clone());
                move |dir| {
                    assert!(lstat(dir, "localpasswd").file_type().is_symlink());
                    assert!(same_file(dir, "localpasswd", "passwdlink"));
                    assert_eq!(
                        link_target(dir, "localpasswd"),
                        format!("{c}/imgstore-etc/passwd")
                    );
                    assert!(same_file(dir, "sketchylink", &format!("{ci}/also")));
                }
            }),
        },
        Breakout {
            name: "hardlink_to_a_symlink_before_its_target_exists",
            layers: vec![
                Layer::new()
                    .dir("imgstore-etc")
                    .symlink("localpasswd", "/imgstore-etc/passwd")
                    .hardlink("localpasswd-dup", "localpasswd")
                    .file("/imgstore-etc/passwd", b"after")
                    .build(),
            ],
            expect: renders(|dir| {
                assert!(same_file(dir, "localpasswd-dup", "localpasswd"));
                assert_eq!(link_target(dir, "localpasswd-dup"), "/imgstore-etc/passwd");
            }),
        },
        Breakout {
            name: "hardlink_to_a_directory",
            layers: vec![Layer::new().dir("d").hardlink("h", "d").build()],
            expect: Expect::Fails("is a directory"),
        },
        Breakout {
            name: "directory_replaces_a_symlink",
            layers: vec![
                Layer::new()
                    .symlink("localetc", c)
                    .symlink("up", "../canary")
                    .build(),
                Layer::new()
                    .dir("localetc")
                    .file("localetc/x", b"x")
                    .dir("up")
                    .file("up/secret", b"pwned")
                    .build(),
            ],
            expect: renders(|dir| {
                assert!(lstat(dir, "localetc").is_dir());
                assert_eq!(read(dir, "localetc/x"), b"x");
                assert!(lstat(dir, "up").is_dir());
                assert_eq!(read(dir, "up/secret"), b"pwned");
            }),
        },
        Breakout {
            name: "directory_replaces_a_symlink_with_a_hardlink_under_it",
            layers: vec![
                Layer::new()
                    .dir("imgstore-etc")
                    .file("imgstore-etc/passwd", b"inside")
                    .symlink("localetc", "imgstore-etc")
                    .hardlink("localetc/localpasswd", "imgstore-etc/passwd")
                    .build(),
                Layer::new()
                    .dir("localetc")
                    .file("localetc/localpasswd", b"different")
                    .build(),
            ],
            expect: renders(|dir| {
                assert!(!same_file(
                    dir,
                    "localetc/localpasswd",
                    "imgstore-etc/passwd"
                ));
                assert_eq!(read(dir, "imgstore-etc/passwd"), b"inside");
                assert!(same_file(
                    dir,
                    "imgstore-etc/localpasswd",
                    "imgstore-etc/passwd"
                ));
            }),
        },
        Breakout {
            name: "symlink_replaces_a_directory",
            layers: vec![
                Layer::new()
                    .dir("imgstore-etc")
                    .file("imgstore-etc/passwd", b"inside")
                    .dir("localetc")
                    .build(),
                Layer::new()
                    .symlink("localetc", "/imgstore-etc")
                    .hardlink("/localetc/localpasswd", "/imgstore-etc/passwd")
                    .build(),
            ],
            expect: renders(|dir| {
                assert_eq!(link_target(dir, "localetc"), "/imgstore-etc");
                assert!(same_file(
                    dir,
                    "imgstore-etc/localpasswd",
                    "imgstore-etc/passwd"
                ));
            }),
        },
        Breakout {
            name: "symlink_named_through_dot_dot",
            layers: vec![
                Layer::new()
                    .dir("imgstore-etc")
                    .file("/imgstore-etc/passwd", b"inside")
                    .symlink("localetc/sub/..", "/imgstore-etc/")
                    .hardlink("/localetc/localpasswd", "/imgstore-etc/passwd")
                    .build(),
            ],
            expect: renders(|dir| {
                assert_eq!(link_target(dir, "localetc"), "/imgstore-etc/");
                assert!(same_file(
                    dir,
                    "imgstore-etc/localpasswd",
                    "imgstore-etc/passwd"
                ));
            }),
        },
        Breakout {
            name: "directory_named_with_a_slash",
            layers: vec![
                Layer::new()
                    .dir("imgstore-etc")
                    .file("/imgstore-etc/passwd", b"inside")
                    .dir("localetc/")
                    .hardlink("/localetc/localpasswd", "/imgstore-etc/passwd")
                    .build(),
            ],
            expect: renders(|dir| {
                assert!(same_file(
                    dir,
                    "localetc/localpasswd",
                    "imgstore-etc/passwd"
                ))
            }),
        },
        // containerd lets these two pass by ignoring the member; umoci
        // refuses to change the type of the root, and so do we.
        Breakout {
            name: "symlink_named_dot_dot",
            layers: vec![
                Layer::new()
                    .dir("imgstore-etc")
                    .symlink("..", "/imgstore-etc/")
                    .build(),
            ],
            expect: Expect::Fails("root directory"),
        },
        Breakout {
            name: "symlink_with_an_empty_name",
            layers: vec![Layer::new().symlink("", c).build()],
            expect: Expect::Fails("root directory"),
        },
        Breakout {
            name: "file_named_dot",
            layers: vec![Layer::new().file("./", b"x").build()],
            expect: Expect::Fails("root directory"),
        },
        Breakout {
            name: "whiteout_dot",
            layers: vec![
                Layer::new()
                    .dir("imgstore-etc")
                    .file("imgstore-etc/passwd", b"x")
                    .build(),
                Layer::new().file(".wh..", b"").build(),
            ],
            expect: Expect::Fails("\".wh..\": a whiteout must name a file"),
        },
        Breakout {
            name: "whiteout_dot_dot",
            layers: vec![
                Layer::new().dir("imgstore-etc").build(),
                Layer::new().file(".wh...", b"").build(),
            ],
            expect: Expect::Fails("\".wh...\": a whiteout must name a file"),
        },
        Breakout {
            name: "whiteout_dot_in_a_directory",
            layers: vec![
                Layer::new().dir("imgstore-etc").build(),
                Layer::new().file("imgstore-etc/.wh..", b"").build(),
            ],
            expect: Expect::Fails("\"imgstore-etc/.wh..\": a whiteout must name a file"),
        },
        Breakout {
            name: "whiteout_dot_dot_in_a_directory",
            layers: vec![
                Layer::new().dir("imgstore-etc").build(),
                Layer::new().file("imgstore-etc/.wh...", b"").build(),
            ],
            expect: Expect::Fails("\"imgstore-etc/.wh...\": a whiteout must name a file"),
        },
        Breakout {
            name: "whiteout_of_nothing",
            layers: vec![Layer::new().file("imgstore-etc/.wh.", b"").build()],
            expect: Expect::Fails("a whiteout must name a file"),
        },
        Breakout {
            name: "whiteout_of_a_symlink_removes_the_symlink",
            layers: vec![
                Layer::new()
                    .dir("imgstore-etc")
                    .file("imgstore-etc/passwd", b"all users")
                    .symlink("localetc", "/imgstore-etc")
                    .symlink("canarylink", c)
                    .build(),
                Layer::new()
                    .whiteout("localetc")
                    .whiteout("canarylink")
                    .build(),
            ],
            expect: renders(|dir| {
                assert_eq!(read(dir, "imgstore-etc/passwd"), b"all users");
                assert!(!exists(dir, "localetc"));
                assert!(!exists(dir, "canarylink"));
            }),
        },
        Breakout {
            name: "whiteout_through_a_symlink_stays_inside",
            layers: vec![
                Layer::new()
                    .dir("imgstore-etc")
                    .file("imgstore-etc/passwd", b"all users")
                    .file("imgstore-etc/whitedout", b"gone soon")
                    .symlink("localetc", "/imgstore-etc")
                    .build(),
                Layer::new().whiteout("localetc/whitedout").build(),
            ],
            expect: renders(|dir| {
                assert_eq!(read(dir, "imgstore-etc/passwd"), b"all users");
                assert!(!exists(dir, "imgstore-etc/whitedout"));
            }),
        },
        Breakout {
            name: "whiteouts_through_symlinks_to_the_canary",
            layers: vec![
                Layer::new()
                    .symlink("abs", c)
                    .symlink("up", "../canary")
                    .symlink("dot", "..")
                    .build(),
                Layer::new()
                    .whiteout("abs/secret")
                    .whiteout("up/secret")
                    .whiteout("dot/canary")
                    .opaque("abs")
                    .opaque("up")
                    .opaque("abs/imgstore-etc")
                    .opaque("up/dir")
                    .whiteout("up/dir/sub")
                    .build(),
            ],
            expect: renders(|dir| {
                assert!(lstat(dir, "abs").file_type().is_symlink());
                assert!(lstat(dir, "up").file_type().is_symlink());
            }),
        },
        Breakout {
            name: "whiteout_under_a_dead_symlink",
            layers: vec![
                Layer::new()
                    .dir("imgstore-etc")
                    .file("imgstore-etc/passwd", b"all users")
                    .symlink("localetc", "/dne")
                    .build(),
                Layer::new().whiteout("localetc/imgstore-etc").build(),
            ],
            expect: renders(|dir| assert_eq!(read(dir, "imgstore-etc/passwd"), b"all users")),
        },
        Breakout {
            name: "whiteout_named_through_dot_dot",
            layers: vec![
                Layer::new()
                    .dir("imgstore-etc")
                    .file("imgstore-etc/passwd", b"all users")
                    .build(),
                Layer::new().file("dne/../.wh.imgstore-etc", b"").build(),
            ],
            expect: renders(|dir| assert!(!exists(dir, "imgstore-etc"))),
        },
        Breakout {
            name: "whiteout_prefix_on_a_directory_is_a_name",
            layers: vec![
                Layer::new()
                    .dir("imgstore-etc")
                    .file("imgstore-etc/passwd", b"all users")
                    .build(),
                Layer::new()
                    .file(".wh.imgstore-etc/somefile", b"non-empty")
                    .build(),
            ],
            expect: renders(|dir| {
                assert_eq!(read(dir, "imgstore-etc/passwd"), b"all users");
                assert_eq!(read(dir, ".wh.imgstore-etc/somefile"), b"non-empty");
            }),
        },
        Breakout {
            name: "symlink_loop",
            layers: vec![
                Layer::new()
                    .symlink("a", "b")
                    .symlink("b", "a")
                    .file("a/x", b"x")
                    .build(),
            ],
            expect: Expect::Fails("\"a/x\": cannot open its parent directory"),
        },
        Breakout {
            name: "file_under_a_file",
            layers: vec![
                Layer::new()
                    .file("nondir", b"file")
                    .file("nondir/foo/bar/baz", b"baz")
                    .build(),
            ],
            expect: renders(|dir| {
                assert!(lstat(dir, "nondir/foo/bar").is_dir());
                assert_eq!(read(dir, "nondir/foo/bar/baz"), b"baz");
            }),
        },
        Breakout {
            name: "file_over_a_symlink_replaces_it",
            layers: vec![
                Layer::new()
                    .symlink("secret", &format!("{c}/secret"))
                    .symlink("rel", "../canary/secret")
                    .build(),
                Layer::new()
                    .file("secret", b"mine")
                    .file("rel", b"mine too")
                    .build(),
            ],
            expect: renders(|dir| {
                assert!(lstat(dir, "secret").is_file());
                assert_eq!(read(dir, "secret"), b"mine");
                assert_eq!(read(dir, "rel"), b"mine too");
            }),
        },
        Breakout {
            name: "device_and_fifo_through_a_symlink",
            layers: vec![
                Layer::new().symlink("dev", c).build(),
                Layer::new()
                    .fifo("dev/fifo")
                    .char_device("dev/null", 1, 3)
                    .build(),
            ],
            expect: renders({
                let ci = ci.clone();
                move |dir| assert!(exists(dir, &format!("{ci}/fifo")))
            }),
        },
    ]
}

#[test]
fn breakouts_stay_inside_the_target() {
    let s = store();
    let tag = std::process::id().to_string();
    let host_etc = Path::new("/imgstore-etc");
    assert!(
        !host_etc.exists(),
        "{} exists before the test",
        host_etc.display()
    );
    let mut failures = Vec::new();
    let count = breakouts("/c", "c", &tag).len();
    for i in 0..count {
        for resolver in [Resolver::Openat2, Resolver::Walk] {
            let sandbox = Sandbox::new();
            let case = breakouts(&sandbox.canary(), &sandbox.canary_inside(), &tag).swap_remove(i);
            let layout = image_of(
                &case.layers,
                LayerCompression::Gzip,
                &format!("breakout:{}", case.name),
            );
            let key = import_layout(&s, &layout);
            let before = sandbox.outside();
            let out = sandbox.out();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                match &case.expect {
                    Expect::Renders(check) => {
                        render_with(&s, &key, &out, resolver);
                        check(&out);
                        for (path, node) in scan(&out) {
                            assert_ne!(
                                node.hash.as_deref(),
                                Some(sha256(SECRET).as_str()),
                                "the canary's secret was read into {path}"
                            );
                        }
                    }
                    Expect::Fails(needle) => {
                        let err = render_fails(&s, &key, &out, resolver);
                        assert!(err.contains(needle), "expected {needle:?} in: {err}");
                        assert!(!out.exists(), "a failed render left its directory");
                    }
                }
                assert_eq!(
                    before,
                    sandbox.outside(),
                    "something outside the target changed"
                );
            }));
            if let Err(e) = outcome {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{} ({resolver:?}): {msg}", case.name));
            }
        }
    }
    assert!(
        !host_etc.exists(),
        "a breakout wrote {}",
        host_etc.display()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        count * 2,
        failures.join("\n")
    );
}

// -------------------------------------------------- whiteouts and layers

/// The whiteout images: each a list of layers, with what the result holds.
fn whiteout_images() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    vec![
        (
            "deletions",
            vec![
                Layer::new()
                    .dir("etc")
                    .file("etc/a", b"a")
                    .file("etc/b", b"b")
                    .dir("var/lib/gone")
                    .file("var/lib/gone/x", b"x")
                    .file("top", b"top")
                    .build(),
                Layer::new()
                    .whiteout("etc/a")
                    .whiteout("var/lib/gone")
                    .whiteout("top")
                    .whiteout("never-there")
                    .build(),
            ],
        ),
        (
            "opaque",
            vec![
                Layer::new()
                    .dir("d")
                    .file("d/x", b"x")
                    .file("d/y", b"y")
                    .dir("d/sub")
                    .file("d/sub/z", b"z")
                    .dir("keep")
                    .file("keep/k", b"k")
                    .build(),
                Layer::new()
                    .dir("d")
                    .opaque("d")
                    .file("d/new", b"new")
                    .build(),
                Layer::new().file("d/later", b"later").build(),
            ],
        ),
        (
            "opaque_after_its_own_files",
            vec![
                Layer::new()
                    .dir("d")
                    .file("d/old", b"old")
                    .dir("d/sub")
                    .file("d/sub/old", b"old")
                    .build(),
                Layer::new()
                    .dir("d")
                    .file("d/new", b"new")
                    .dir("d/sub")
                    .file("d/sub/new", b"new")
                    .opaque("d")
                    .build(),
            ],
        ),
        (
            "replaced_types",
            vec![
                Layer::new()
                    .file("p", b"a file")
                    .dir("q")
                    .file("q/in", b"in")
                    .symlink("r", "p")
                    .build(),
                Layer::new()
                    .dir("p")
                    .file("p/in", b"now a dir")
                    .file("q", b"now a file")
                    .file("r", b"now a file")
                    .build(),
                Layer::new()
                    .symlink("p", "q")
                    .dir("r")
                    .file("r/in", b"now a dir")
                    .build(),
            ],
        ),
        (
            "hardlinks_across_layers",
            vec![
                Layer::new()
                    .dir("bin")
                    .file_with("bin/tool", b"tool v1", 0o755, 0, 0)
                    .build(),
                Layer::new()
                    .hardlink("bin/alias", "bin/tool")
                    .hardlink("bin/alias2", "/bin/alias")
                    .build(),
                Layer::new()
                    .file_with("bin/tool", b"tool v2", 0o755, 0, 0)
                    .hardlink("bin/new", "bin/tool")
                    .build(),
            ],
        ),
        (
            "whiteout_and_file_in_one_layer",
            vec![
                Layer::new()
                    .file("x", b"lower x")
                    .file("y", b"lower y")
                    .dir("d")
                    .file("d/old", b"old")
                    .build(),
                Layer::new()
                    .file("x", b"upper x")
                    .whiteout("x")
                    .whiteout("y")
                    .file("y", b"upper y")
                    .file("d/new", b"new")
                    .whiteout("d")
                    .build(),
            ],
        ),
        (
            "opaque_root",
            vec![
                Layer::new()
                    .file("a", b"a")
                    .dir("b")
                    .file("b/c", b"c")
                    .build(),
                Layer::new().file("fresh", b"fresh").opaque("").build(),
            ],
        ),
        (
            "modes_and_links",
            vec![
                Layer::new()
                    .dir_with("private", 0o700)
                    .file_with("private/key", b"k", 0o600, 0, 0)
                    .dir_with("ro", 0o555)
                    .file_with("ro/file", b"r", 0o444, 0, 0)
                    .file_with("script", b"#!/bin/sh\n", 0o750, 0, 0)
                    .symlink("abs", "/etc/hostname")
                    .symlink("rel", "private/key")
                    .symlink("dangling", "nowhere")
                    .file("empty", b"")
                    .file(&format!("long/{}", "n".repeat(150)), b"long name")
                    .file("unicode/ünïcødé ✓", b"u")
                    .file("big", &noise(300_000, 7))
                    .build(),
                Layer::new()
                    .file_with("ro/added", b"added under a read-only dir", 0o644, 0, 0)
                    .build(),
            ],
        ),
    ]
}

#[test]
fn whiteouts_and_layers() {
    let s = store();
    let tmp = tempfile::tempdir().unwrap();
    let images = whiteout_images();
    let mut keys = BTreeMap::new();
    for (name, layers) in &images {
        keys.insert(
            *name,
            import_layout(
                &s,
                &image_of(layers, LayerCompression::Gzip, &format!("wh:{name}")),
            ),
        );
    }
    let out = |name: &str| tmp.path().join(name);
    for (name, key) in &keys {
        render(&s, key, &out(name));
    }

    let d = out("deletions");
    assert_eq!(read(&d, "etc/b"), b"b");
    for gone in ["etc/a", "var/lib/gone", "top", "never-there", "etc/.wh.a"] {
        assert!(!exists(&d, gone), "{gone}");
    }
    assert!(lstat(&d, "var/lib").is_dir());

    let d = out("opaque");
    let mut names: Vec<_> = std::fs::read_dir(d.join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["later", "new"]);
    assert_eq!(read(&d, "keep/k"), b"k");

    let d = out("opaque_after_its_own_files");
    assert_eq!(read(&d, "d/new"), b"new");
    assert_eq!(read(&d, "d/sub/new"), b"new");
    assert!(!exists(&d, "d/old"));
    assert!(
        !exists(&d, "d/sub/old"),
        "the opaque directory hides the lower files of its subdirectories too"
    );

    let d = out("replaced_types");
    assert_eq!(link_target(&d, "p"), "q");
    assert_eq!(read(&d, "q"), b"now a file");
    assert!(lstat(&d, "r").is_dir());
    assert_eq!(read(&d, "r/in"), b"now a dir");

    let d = out("hardlinks_across_layers");
    assert!(same_file(&d, "bin/alias", "bin/alias2"));
    assert_eq!(
        read(&d, "bin/alias"),
        b"tool v1",
        "a lower hard link keeps the old inode"
    );
    assert_eq!(read(&d, "bin/tool"), b"tool v2");
    assert!(same_file(&d, "bin/new", "bin/tool"));
    assert!(!same_file(&d, "bin/alias", "bin/tool"));

    let d = out("whiteout_and_file_in_one_layer");
    assert_eq!(
        read(&d, "x"),
        b"upper x",
        "a whiteout never removes what its own layer wrote"
    );
    assert_eq!(read(&d, "y"), b"upper y");
    assert_eq!(read(&d, "d/new"), b"new");
    assert!(!exists(&d, "d/old"));

    let d = out("opaque_root");
    let names: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["fresh"]);

    let d = out("modes_and_links");
    assert_eq!(lstat(&d, "private").mode() & 0o7777, 0o700);
    assert_eq!(lstat(&d, "ro").mode() & 0o7777, 0o555);
    assert_eq!(lstat(&d, "ro/added").mode() & 0o7777, 0o644);
    assert_eq!(lstat(&d, "script").mode() & 0o7777, 0o750);
    assert_eq!(link_target(&d, "abs"), "/etc/hostname");
    assert_eq!(read(&d, "big"), noise(300_000, 7));
    assert_eq!(lstat(&d, "big").mtime(), common::layers::MTIME as i64);
    assert_eq!(
        lstat(&d, "private").mtime(),
        common::layers::MTIME as i64,
        "directories' times are set last"
    );
}

#[test]
fn renders_plain_gzip_and_zstd_layers_alike() {
    let s = store();
    let tmp = tempfile::tempdir().unwrap();
    let (_, layers) = whiteout_images().swap_remove(7);
    let mut trees = Vec::new();
    for (i, c) in [
        LayerCompression::None,
        LayerCompression::Gzip,
        LayerCompression::Zstd,
    ]
    .into_iter()
    .enumerate()
    {
        let key = import_layout(&s, &image_of(&layers, c, &format!("comp:{i}")));
        let dir = tmp.path().join(i.to_string());
        render(&s, &key, &dir);
        trees.push(comparable(&scan(&dir)));
    }
    assert_eq!(trees[0], trees[1]);
    assert_eq!(trees[0], trees[2]);
}

// ----------------------------------------------------------------- interop

fn umoci_unpack(layout: &Path, tag: &str, dest: &Path) {
    // umoci makes implied directories 0777 less the umask; ours are 0755.
    let script = format!(
        "umask 022 && exec umoci raw unpack --rootless --image '{}:{tag}' '{}'",
        layout.display(),
        dest.display()
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .output()
        .unwrap_or_else(|e| panic!("cannot run sh for umoci: {e}"));
    assert!(
        out.status.success(),
        "umoci raw unpack failed (is umoci installed? apt-get install umoci): {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Renders the layout's image `tag` with imgstore and with umoci; the
/// trees must agree on every path's kind, mode, size, content and link
/// target, and on the hard-link groups.
fn assert_same_as_umoci(s: &TestStore, layout_dir: &Path, tag: &str) {
    // The layout's ref.name is a bare tag, so it is the version (issue
    // 13, defect 12); the name comes from --name.
    s.ok(&["import", "--name", "compared", arg(layout_dir)]);
    let key = s.ok(&["resolve", &format!("compared:{tag}")]);
    let key = key.trim();
    let tmp = tempfile::tempdir().unwrap();
    let ours = tmp.path().join("ours");
    let theirs = tmp.path().join("theirs");
    render(s, key, &ours);
    umoci_unpack(layout_dir, tag, &theirs);
    let (ours, theirs) = (comparable(&scan(&ours)), comparable(&scan(&theirs)));
    if ours != theirs {
        let only = |a: &[String], b: &[String]| {
            a.iter()
                .filter(|l| !b.contains(l))
                .cloned()
                .collect::<Vec<_>>()
        };
        panic!(
            "{tag}: imgstore and umoci disagree\nonly imgstore:\n{}\nonly umoci:\n{}\nhard links: {:?} vs {:?}",
            only(&ours.0, &theirs.0).join("\n"),
            only(&theirs.0, &ours.0).join("\n"),
            ours.1,
            theirs.1
        );
    }
}

#[test]
fn renders_as_umoci_does() {
    let s = store();
    let tmp = tempfile::tempdir().unwrap();
    let mut images: Vec<(String, Layout)> = Vec::new();
    // The images the other tests build.
    let (simple, _) = Layout::simple("simple", b"hello");
    images.push(("simple".into(), simple));
    let mut staged = Layout::new();
    let big = noise(2 << 20, 3);
    let first: [(&str, &[u8]); 2] = [("a/one", b"1"), ("a/two", &big[..])];
    let second: [(&str, &[u8]); 1] = [("b/three", b"3")];
    let files: Vec<&[(&str, &[u8])]> = vec![&first, &second];
    let built = staged.image("sha256", "amd64", &files, LayerCompression::Gzip, &[]);
    staged.index.push(named(built.desc, "staged"));
    images.push(("staged".into(), staged));
    // The whiteout images, plain and gzip.
    for (name, layers) in whiteout_images() {
        images.push((
            format!("{name}-gz"),
            image_of(&layers, LayerCompression::Gzip, &format!("{name}-gz")),
        ));
        images.push((
            format!("{name}-tar"),
            image_of(&layers, LayerCompression::None, &format!("{name}-tar")),
        ));
    }
    for (tag, layout) in &images {
        let dir = tmp.path().join(tag);
        layout.write_dir(&dir);
        assert_same_as_umoci(&s, &dir, tag);
    }
}

/// An image umoci builds from real files of this machine and of the test
/// (modes, symlinks, hard links), rendered by both.
#[test]
fn renders_a_umoci_built_image_as_umoci_does() {
    let s = store();
    let tmp = tempfile::tempdir().unwrap();
    let t = |p: &str| tmp.path().join(p);
    let files = t("files");
    std::fs::create_dir_all(files.join("etc/conf.d")).unwrap();
    std::fs::create_dir_all(files.join("usr/bin")).unwrap();
    std::fs::write(files.join("etc/hostname"), b"render\n").unwrap();
    std::fs::write(files.join("etc/conf.d/big"), noise(1 << 20, 9)).unwrap();
    std::fs::write(files.join("usr/bin/tool"), b"#!/bin/sh\necho tool\n").unwrap();
    std::fs::set_permissions(
        files.join("usr/bin/tool"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::hard_link(files.join("usr/bin/tool"), files.join("usr/bin/tool2")).unwrap();
    std::os::unix::fs::symlink("tool", files.join("usr/bin/link")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", files.join("etc/abs")).unwrap();
    let layout = t("layout");
    let run = |args: &[&str]| {
        let out = Command::new("umoci")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run umoci (apt-get install umoci): {e}"));
        assert!(
            out.status.success(),
            "umoci {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let image = format!("{}:v1", layout.display());
    run(&["init", "--layout", arg(&layout)]);
    run(&["new", "--image", &image]);
    run(&["insert", "--image", &image, arg(&files.join("etc")), "/etc"]);
    run(&["insert", "--image", &image, arg(&files.join("usr")), "/usr"]);
    run(&["insert", "--image", &image, "--whiteout", "/etc/conf.d/big"]);
    run(&[
        "insert",
        "--image",
        &image,
        "--opaque",
        arg(&files.join("etc/conf.d")),
        "/usr/bin",
    ]);
    assert_same_as_umoci(&s, &layout, "v1");
}

// -------------------------------------------------------------------- appc

#[test]
fn a_chain_of_three_acis_with_labels_and_a_whitelist() {
    let s = store();
    let base1 = aci(
        &aci_manifest(
            "example.com/base",
            &[("version", "1.0.0"), ("os", "linux")],
            &[],
            &[],
        ),
        |r| {
            r.dir("bin")
                .file("bin/sh", b"base sh")
                .dir("etc")
                .file("etc/os-release", b"base")
                .file("etc/base-only", b"b")
                .dir("lib")
                .file("lib/libc", b"libc")
                .symlink("lib64", "lib")
        },
    );
    let base2 = aci(
        &aci_manifest(
            "example.com/base",
            &[("version", "2.0.0"), ("os", "linux")],
            &[],
            &[],
        ),
        |r| r.file("bin/sh", b"base v2 sh"),
    );
    let mid = aci(
        &aci_manifest(
            "example.com/mid",
            &[("version", "1")],
            &[("example.com/base", &[("version", "1.0.0")], None)],
            &[],
        ),
        |r| {
            r.dir("etc")
                .file("etc/os-release", b"mid")
                .file("etc/mid-only", b"m")
                .dir("usr/bin")
                .file("usr/bin/tool", b"tool")
                .hardlink("usr/bin/tool-alias", "usr/bin/tool")
        },
    );
    let top_manifest = aci_manifest(
        "example.com/top",
        &[("version", "3")],
        &[("example.com/mid", &[], None)],
        &[
            "/bin/sh",
            "/etc/os-release",
            "/usr/bin/tool",
            "/usr/bin/tool-alias",
            "/usr/bin/app",
            "/lib/libc",
            "/lib64",
        ],
    );
    let top = aci(&top_manifest, |r| {
        r.dir("usr/bin")
            .file("usr/bin/app", b"app")
            .file("etc/top-extra", b"t")
    });
    let k_base1 = import_file(&s, &base1);
    let _k_base2 = import_file(&s, &base2);
    let k_mid = import_file(&s, &mid);
    let k_top = import_file(&s, &top);

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tree");
    let report = render(&s, &k_top, &dir);
    assert_eq!(report["format"], "aci");
    assert_eq!(
        report["layers"],
        serde_json::json!([k_base1, k_mid, k_top]),
        "dependencies first, v1 by its label"
    );
    assert_eq!(report["rootfs"], arg(&dir.join("rootfs")));
    assert_eq!(
        std::fs::read(dir.join("manifest")).unwrap(),
        top_manifest.as_bytes()
    );
    let root = dir.join("rootfs");
    assert_eq!(read(&root, "bin/sh"), b"base sh");
    assert_eq!(
        read(&root, "etc/os-release"),
        b"mid",
        "a later image overwrites an earlier one"
    );
    assert_eq!(read(&root, "usr/bin/tool"), b"tool");
    assert!(same_file(&root, "usr/bin/tool", "usr/bin/tool-alias"));
    assert_eq!(read(&root, "usr/bin/app"), b"app");
    assert_eq!(read(&root, "lib/libc"), b"libc");
    assert_eq!(link_target(&root, "lib64"), "lib");
    for absent in ["etc/base-only", "etc/mid-only", "etc/top-extra", "manifest"] {
        assert!(!exists(&root, absent), "{absent} is not in the whitelist");
    }
    let mut top_level: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    top_level.sort();
    assert_eq!(top_level, ["manifest", "rootfs"]);
}

#[test]
fn an_aci_dependency_by_image_id_and_a_diamond() {
    let s = store();
    let base = |v: &str| {
        aci(
            &aci_manifest("example.com/base", &[("version", v)], &[], &[]),
            |r| {
                r.file("version", v.as_bytes())
                    .file(&format!("only-{v}"), b"x")
            },
        )
    };
    let k1 = import_file(&s, &base("1"));
    let _k2 = import_file(&s, &base("2"));
    // Both sides of the diamond need the base; the right side overrides a
    // file of it, and the base must not come back over it.
    let left = aci(
        &aci_manifest(
            "example.com/left",
            &[],
            &[("example.com/base", &[], Some(&k1))],
            &[],
        ),
        |r| r.file("left", b"l"),
    );
    let right = aci(
        &aci_manifest(
            "example.com/right",
            &[],
            &[("example.com/base", &[], Some(&k1))],
            &[],
        ),
        |r| r.file("version", b"right"),
    );
    import_file(&s, &left);
    import_file(&s, &right);
    let top = aci(
        &aci_manifest(
            "example.com/top",
            &[],
            &[
                ("example.com/left", &[], None),
                ("example.com/right", &[], None),
            ],
            &[],
        ),
        |r| r.file("top", b"t"),
    );
    let k_top = import_file(&s, &top);
    let tmp = tempfile::tempdir().unwrap();
    let report = render(&s, &k_top, &tmp.path().join("t"));
    assert_eq!(
        report["layers"].as_array().unwrap().len(),
        4,
        "the common base once"
    );
    let root = tmp.path().join("t/rootfs");
    assert_eq!(read(&root, "version"), b"right");
    assert!(
        exists(&root, "only-1"),
        "the image ID chose version 1 over the newer 2"
    );
    assert!(!exists(&root, "only-2"));
    assert_eq!(read(&root, "left"), b"l");
}

#[test]
fn a_missing_dependency_is_named() {
    let s = store();
    let top = aci(
        &aci_manifest(
            "example.com/top",
            &[],
            &[("example.com/nothere", &[("version", "9")], None)],
            &[],
        ),
        |r| r.file("x", b"x"),
    );
    let key = import_file(&s, &top);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t");
    let before = s.snapshot();
    let err = render_fails(&s, &key, &dir, Resolver::Openat2);
    assert!(
        err.contains("example.com/nothere with labels version=9"),
        "{err}"
    );
    assert!(err.contains("example.com/top"), "{err}");
    assert!(!dir.exists());
    assert_eq!(
        before,
        s.snapshot(),
        "a failed render changes nothing in the store"
    );
}

// -------------------------------------------------------- multi-platform

#[test]
fn a_multi_platform_image_renders_the_asked_platform() {
    let s = store();
    let mut l = Layout::new();
    let (_, amd) = add_image(
        &mut l,
        &[Layer::new().file("arch", b"amd64").build()],
        LayerCompression::Gzip,
        "amd64",
    );
    let (_, arm) = add_image(
        &mut l,
        &[Layer::new().file("arch", b"arm64").build()],
        LayerCompression::Gzip,
        "arm64",
    );
    let index_digest = l.platform_index(vec![(amd, "amd64"), (arm, "arm64")], "multi:1");
    import_layout(&s, &l);
    assert_eq!(s.ok(&["resolve", "multi:1"]).trim(), index_digest);
    let tmp = tempfile::tempdir().unwrap();
    let arm_dir = tmp.path().join("arm");
    let out = s.ok(&[
        "render",
        "--platform",
        "linux/arm64",
        "multi:1",
        arg(&arm_dir),
    ]);
    assert_eq!(out.trim(), arg(&arm_dir));
    assert_eq!(read(&arm_dir, "arch"), b"arm64");
    if std::env::consts::ARCH == "x86_64" {
        let host = tmp.path().join("host");
        s.ok(&["render", "multi:1", arg(&host)]);
        assert_eq!(
            read(&host, "arch"),
            b"amd64",
            "the host's platform by default"
        );
    }
    let err = s.fails(&[
        "render",
        "--platform",
        "linux/s390x",
        "multi:1",
        arg(&tmp.path().join("x")),
    ]);
    assert!(
        err.contains("no manifest for linux/s390x (it has linux/amd64, linux/arm64/v8)"),
        "{err}"
    );
    let out = s
        .cmd(&[
            "render",
            "--platform",
            "linux",
            "multi:1",
            arg(&tmp.path().join("x")),
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a malformed platform is a usage error"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected OS/ARCH"));
    // A single image asked for another platform.
    let single = import_layout(
        &s,
        &image_of(
            &[Layer::new().file("a", b"a").build()],
            LayerCompression::Gzip,
            "single:1",
        ),
    );
    let err = s.fails(&[
        "render",
        "--platform",
        "linux/arm64",
        &single,
        arg(&tmp.path().join("y")),
    ]);
    assert!(err.contains("is for linux/amd64, not linux/arm64"), "{err}");
    assert!(!tmp.path().join("x").exists() && !tmp.path().join("y").exists());
}

// --------------------------------------------------------------- bad input

/// A layout whose one layer is given as blob bytes with its own media type
/// and the diff_id the config claims.
fn layout_with_layer(blob: &[u8], media_type: &str, diff_id: &str) -> (Layout, String) {
    let mut l = Layout::new();
    let good = Layer::new()
        .file("first", b"the first layer is fine")
        .build();
    let good_gz = builder::gzip(&good);
    let g = l.blob("sha256", &good_gz);
    let layer = l.blob("sha256", blob);
    let config = builder::config_json("amd64", &[sha256(&good), diff_id.to_string()], &[]);
    let c = l.blob("sha256", &config);
    let manifest = builder::manifest_json(
        desc(builder::CONFIG, &c, config.len()),
        vec![
            desc(builder::LAYER_GZ, &g, good_gz.len()),
            desc(media_type, &layer, blob.len()),
        ],
    );
    let m = l.blob("sha256", &manifest);
    l.index
        .push(named(desc(builder::MANIFEST, &m, manifest.len()), "bad:1"));
    (l, layer)
}

#[test]
fn bad_layers_fail_naming_the_layer_and_leave_nothing() {
    let tar = Layer::new()
        .dir("data")
        .file("data/one", &noise(200_000, 1))
        .file("data/two", &noise(200_000, 2))
        .build();
    let gz = builder::gzip(&tar);
    let cases: Vec<(&str, Vec<u8>, &str, String, &str)> = vec![
        (
            "wrong diff_id",
            gz.clone(),
            builder::LAYER_GZ,
            sha256(b"not this layer"),
            "uncompressed bytes hash to",
        ),
        (
            "truncated gzip",
            gz[..gz.len() / 2].to_vec(),
            builder::LAYER_GZ,
            sha256(&tar),
            "truncated or corrupt",
        ),
        (
            "tar cut inside a member",
            builder::gzip(&tar[..tar.len() / 2]),
            builder::LAYER_GZ,
            sha256(&tar),
            "truncated: its tar ends inside a member",
        ),
        (
            "not a tar",
            builder::gzip(&noise(10_000, 5)),
            builder::LAYER_GZ,
            sha256(b"x"),
            "not a valid tar archive",
        ),
        (
            "unknown media type",
            gz.clone(),
            "application/vnd.example.unknown",
            sha256(&tar),
            "media type \"application/vnd.example.unknown\"",
        ),
        (
            "unsupported member",
            builder::gzip(&Layer::new().typed("weird", b'Z').build()),
            builder::LAYER_GZ,
            sha256(b"x"),
            "\"weird\": a member of an unknown type is not supported",
        ),
    ];
    for (what, blob, media_type, diff_id, needle) in cases {
        let s = store();
        let (layout, layer) = layout_with_layer(&blob, media_type, &diff_id);
        let key = import_layout(&s, &layout);
        let before = s.snapshot();
        let tmp = tempfile::tempdir().unwrap();
        for resolver in [Resolver::Openat2, Resolver::Walk] {
            let dir = tmp.path().join("new/deeper/out");
            let err = render_fails(&s, &key, &dir, resolver);
            assert!(
                err.contains(needle),
                "{what}: expected {needle:?} in: {err}"
            );
            assert!(err.contains(&layer), "{what}: the layer is named: {err}");
            assert!(err.contains("layer 2 of 2"), "{what}: {err}");
            assert!(
                !tmp.path().join("new").exists(),
                "{what}: the directories the render made are removed"
            );
            // Into an existing empty directory: emptied again, kept.
            let empty = tmp.path().join("empty");
            std::fs::create_dir_all(&empty).unwrap();
            render_fails(&s, &key, &empty, resolver);
            assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0, "{what}");
        }
        assert_eq!(
            before,
            s.snapshot(),
            "{what}: a failed render changes nothing in the store"
        );
    }
}

#[test]
fn the_target_must_be_new_or_empty() {
    let s = store();
    let key = import_layout(
        &s,
        &image_of(
            &[Layer::new().file("a", b"a").build()],
            LayerCompression::Gzip,
            "t:1",
        ),
    );
    let tmp = tempfile::tempdir().unwrap();
    let full = tmp.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("keep"), b"mine").unwrap();
    let err = render_fails(&s, &key, &full, Resolver::Openat2);
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(std::fs::read(full.join("keep")).unwrap(), b"mine");
    let file = tmp.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let err = render_fails(&s, &key, &file, Resolver::Openat2);
    assert!(err.contains("not a directory"), "{err}");
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    render(&s, &key, &empty);
    assert_eq!(read(&empty, "a"), b"a");
    let err = s.fails(&["render", "nothing:here", arg(&tmp.path().join("n"))]);
    assert!(err.contains("nothing"), "{err}");
}

#[test]
fn a_layer_missing_from_the_store_is_named() {
    let s = store();
    let tmp = tempfile::tempdir().unwrap();
    let mut layout = image_of(
        &[Layer::new().file("a", b"a").build()],
        LayerCompression::Gzip,
        "m:1",
    );
    let manifest: serde_json::Value = serde_json::from_slice(
        &layout.files[&Layout::blob_path(layout.index[0]["digest"].as_str().unwrap())],
    )
    .unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    layout.files.remove(&Layout::blob_path(&layer));
    let dir = tmp.path().join("layout");
    layout.write_dir(&dir);
    let key = s
        .ok(&["import", "--allow-missing", arg(&dir)])
        .trim()
        .to_string();
    let err = render_fails(&s, &key, &tmp.path().join("out"), Resolver::Openat2);
    assert!(
        err.contains(&layer) && err.contains("not in the store"),
        "{err}"
    );
}

// ------------------------------------------------ privileges and metadata

fn privileged_layer() -> Vec<u8> {
    Layer::new()
        .dir("dev")
        .char_device("dev/null", 1, 3)
        .block_device("dev/loop7", 7, 7)
        .fifo("run/fifo")
        .file_with("usr/bin/su", b"setuid", 0o4755, 0, 0)
        .file_with("usr/bin/wall", b"setgid", 0o2755, 0, 5)
        .file_with("home/user/file", b"mine", 0o640, 1000, 1001)
        .dir_with("tmp", 0o1777)
        .build()
}

#[test]
fn root_makes_devices_owners_and_setuid_and_others_do_not() {
    let s = store();
    let key = import_layout(
        &s,
        &image_of(&[privileged_layer()], LayerCompression::Gzip, "priv:1"),
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("out");
    let out = s
        .cmd(&["render", "--json", &key, arg(&dir)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tree = scan(&dir);
    assert_eq!(tree["run/fifo"].kind, 'p');
    assert_eq!(tree["tmp"].mode, 0o1777);
    if is_root() {
        assert_eq!(report["rootless"], false);
        assert_eq!(tree["dev/null"].kind, 'c');
        assert_eq!(tree["dev/null"].rdev, libc::makedev(1, 3));
        assert_eq!(tree["dev/loop7"].kind, 'b');
        assert_eq!(tree["dev/loop7"].rdev, libc::makedev(7, 7));
        assert_eq!(tree["usr/bin/su"].mode, 0o4755);
        assert_eq!(tree["usr/bin/wall"].mode, 0o2755);
        assert_eq!(tree["usr/bin/wall"].gid, 5);
        assert_eq!(
            (tree["home/user/file"].uid, tree["home/user/file"].gid),
            (1000, 1001)
        );
        assert!(stderr.is_empty(), "{stderr}");
    } else {
        // An ordinary user renders as `umoci unpack --rootless`.
        assert_eq!(report["rootless"], true);
        assert!(!tree.contains_key("dev/null") && !tree.contains_key("dev/loop7"));
        assert!(
            stderr.contains("warning: left out 2 device nodes"),
            "{stderr}"
        );
        assert_eq!(tree["usr/bin/su"].mode, 0o755);
        assert_eq!(tree["home/user/file"].uid, unsafe { libc::geteuid() });
    }
}

#[test]
fn the_rootless_option_skips_devices_owners_and_setuid() {
    let s = store();
    let key = import_layout(
        &s,
        &image_of(&[privileged_layer()], LayerCompression::Gzip, "priv:1"),
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("out");
    let store = s.open();
    let key = store.resolve(&key).unwrap();
    let options = imgstore::RenderOptions {
        rootless: true,
        ..Default::default()
    };
    let report = store.render(&key, &dir, &options).unwrap();
    assert!(report.rootless);
    assert_eq!(report.skipped_devices, 2);
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(
        report.warnings[0].contains("2 device nodes"),
        "{:?}",
        report.warnings
    );
    let tree = scan(&dir);
    assert!(!tree.contains_key("dev/null") && !tree.contains_key("dev/loop7"));
    assert_eq!(tree["run/fifo"].kind, 'p', "FIFOs need no privilege");
    assert_eq!(
        tree["usr/bin/su"].mode, 0o755,
        "no setuid bit without privilege"
    );
    assert_eq!(tree["usr/bin/wall"].mode, 0o755);
    let me = (unsafe { libc::geteuid() }, unsafe { libc::getegid() });
    for path in ["home/user/file", "usr/bin/wall", "tmp"] {
        assert_eq!(
            (tree[path].uid, tree[path].gid),
            me,
            "{path} belongs to the caller"
        );
    }
    assert_eq!(tree["tmp"].mode, 0o1777);
}

#[test]
fn xattrs_are_set_where_the_filesystem_takes_them() {
    let s = store();
    let layer = Layer::new()
        .file_with_xattrs(
            "f",
            b"x",
            &[
                ("user.imgstore.test", b"value"),
                ("security.selinux", b"system_u:object_r:x"),
            ],
        )
        .build();
    let key = import_layout(&s, &image_of(&[layer], LayerCompression::Gzip, "xattr:1"));
    let tmp = tempfile::tempdir().unwrap();
    // Does this filesystem take user xattrs at all?
    let probe = tmp.path().join("probe");
    std::fs::write(&probe, b"").unwrap();
    let takes = xattr_set(&probe, "user.probe", b"1");
    let dir = tmp.path().join("out");
    let out = s
        .cmd(&["render", "--json", &key, arg(&dir)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    if takes {
        assert_eq!(
            xattr_get(&dir.join("f"), "user.imgstore.test").as_deref(),
            Some(&b"value"[..])
        );
        assert!(stderr.is_empty(), "{stderr}");
    } else {
        assert!(stderr.contains("extended attribute"), "{stderr}");
    }
    let label = xattr_get(&dir.join("f"), "security.selinux");
    assert_ne!(
        label.as_deref(),
        Some(&b"system_u:object_r:x"[..]),
        "the image's SELinux label is not the host's business"
    );
}

/// A default ACL giving others nothing: under it, new files lose their
/// other bits whatever the umask says.
fn closed_default_acl() -> Vec<u8> {
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm) in [(0x01u16, 7u16), (0x04, 5), (0x20, 0)] {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&u32::MAX.to_le_bytes());
    }
    acl
}

#[test]
fn modes_are_exact_under_a_default_acl() {
    let s = store();
    let acl = closed_default_acl();
    let layer = Layer::new()
        .file("top", b"t")
        .xattrs(&[("system.posix_acl_default", &acl)])
        .dir("shared")
        .file("shared/f", b"f")
        .file("implied/g", b"g")
        .build();
    let key = import_layout(&s, &image_of(&[layer], LayerCompression::Gzip, "acl:1"));
    let tmp = tempfile::tempdir().unwrap();
    let parent = tmp.path().join("acl");
    std::fs::create_dir(&parent).unwrap();
    assert!(
        xattr_set(&parent, "system.posix_acl_default", &acl),
        "this filesystem must take POSIX ACLs for the test (ext4 does)"
    );
    let dir = parent.join("out");
    render(&s, &key, &dir);
    let tree = scan(&dir);
    for path in ["top", "shared/f", "implied/g"] {
        assert_eq!(tree[path].mode, 0o644, "{path}");
    }
    assert_eq!(tree["implied"].mode, 0o755);
}

fn xattr_set(path: &Path, name: &str, value: &[u8]) -> bool {
    let p = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        ) == 0
    }
}

fn xattr_get(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (len >= 0).then(|| {
        buf.truncate(len as usize);
        buf
    })
}

#[test]
fn a_render_records_the_use_of_its_image() {
    let s = store();
    let key = import_layout(
        &s,
        &image_of(
            &[Layer::new().file("a", b"a").build()],
            LayerCompression::Gzip,
            "u:1",
        ),
    );
    let conn = rusqlite::Connection::open(s.path().join("index.db")).unwrap();
    conn.execute("UPDATE images SET last_used = 0", []).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    render(&s, &key, &tmp.path().join("out"));
    let used: i64 = conn
        .query_row("SELECT last_used FROM images", [], |r| r.get(0))
        .unwrap();
    assert!(used > 0);
}
