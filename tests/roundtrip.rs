//! imgstore with itself: one store served by `imgstore serve` (a child
//! process on a free port of 127.0.0.1, plain HTTP as loopback is), a
//! second store that pulls from it, pushes back under another name and
//! pulls that again; and the same behind `--htpasswd`, with the
//! credentials kept by `imgstore login` in a private auth file
//! (`REGISTRY_AUTH_FILE`). The image keeps its key and every blob its
//! bytes, names and tags are those of the references, and no command
//! prints an error.

#[path = "common/mod.rs"]
mod common;
#[path = "common/oci_builder.rs"]
mod oci_builder;
// Shared with serve.rs and the registry tests; this file uses part of each.
#[allow(dead_code)]
#[path = "serve/server.rs"]
mod server;
#[allow(dead_code)]
#[path = "registry/support.rs"]
mod support;

use std::process::Command;

use serde_json::Value;

use common::TestStore;
use oci_builder::{Built, Layout};
use server::Served;
use support::Env;

const USER: &str = "tester";
const PASSWORD: &str = "s3cret";

/// Runs `imgstore ARGS` in `env`, with `stdin` when given: it must succeed
/// and print nothing that is an error or a warning. Returns stdout.
fn clean(env: &Env, args: &[&str], stdin: Option<&str>) -> String {
    let mut cmd = env.cmd(args);
    if let Some(input) = stdin {
        cmd.write_stdin(input);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "imgstore {args:?} failed: {stderr}");
    assert!(
        !stderr
            .lines()
            .any(|l| l.starts_with("error") || l.starts_with("warning")),
        "imgstore {args:?} printed: {stderr}"
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `imgstore COMMAND --json ARGS…`, parsed.
fn json(env: &Env, command: &str, args: &[&str]) -> Value {
    let mut all = vec![command, "--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&clean(env, &all, None)).unwrap()
}

/// `pull --json REF` of one image; returns its key.
fn pull(env: &Env, reference: &str) -> String {
    let pulled = json(env, "pull", &[reference]);
    let pulled = pulled.as_array().expect("one answer per reference");
    assert_eq!(pulled.len(), 1, "{pulled:?}");
    pulled[0]["image"]["key"]
        .as_str()
        .unwrap_or_else(|| panic!("no key in {}", pulled[0]))
        .to_string()
}

/// `push --json KEY REF`: the key the registry took it under, and how
/// many blobs were uploaded and found there already.
fn push(env: &Env, key: &str, reference: &str) -> (String, u64, u64) {
    let pushed = json(env, "push", &[key, reference]);
    let count = |field: &str| {
        pushed[field]
            .as_u64()
            .unwrap_or_else(|| panic!("no {field} in {pushed}"))
    };
    (
        pushed["key"].as_str().unwrap().to_string(),
        count("blobs_uploaded"),
        count("blobs_present"),
    )
}

/// An image of two gzip layers and a config, imported into `store` under
/// `name`.
fn image(store: &TestStore, name: &str, seed: u64) -> Built {
    let mut layout = Layout::new();
    let built = layout.image(
        "sha256",
        "amd64",
        &[
            &[("etc/hello.txt", name.as_bytes())],
            &[("data", &common::noise(200_000, seed))],
        ],
        oci_builder::LayerCompression::Gzip,
        &[("maintainer", "tests")],
    );
    layout
        .index
        .push(oci_builder::named(built.desc.clone(), name));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layout");
    layout.write_dir(&path);
    store.ok(&["import", path.to_str().unwrap()]);
    built
}

/// A blob's bytes, by `cat DIGEST`.
fn cat(store: &TestStore, digest: &str) -> Vec<u8> {
    let out = store.cmd(&["cat", digest]).output().unwrap();
    assert!(
        out.status.success(),
        "cat {digest}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Every blob of the image is in both stores, byte for byte the same.
fn assert_same_blobs(a: &TestStore, b: &TestStore, built: &Built) {
    let mut digests = vec![built.manifest.as_str(), built.config.as_str()];
    digests.extend(built.layers.iter().map(String::as_str));
    for digest in digests {
        assert!(cat(a, digest) == cat(b, digest), "{digest} differs");
    }
}

/// The image's name and tags, as `inspect` shows them.
fn name_and_tags(store: &TestStore, key: &str) -> (String, Vec<String>) {
    let v = common::inspect(store, key);
    let mut tags: Vec<String> = v["tags"]
        .as_array()
        .unwrap_or_else(|| panic!("no tags in {v}"))
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    tags.sort();
    (v["name"].as_str().unwrap().to_string(), tags)
}

/// Pull from the server, push back under another name, pull that again:
/// the key and bytes stay, and each store names the image as it was asked.
fn round_trip(
    served: &Served,
    first: &TestStore,
    second: &Env,
    third: &Env,
    built: &Built,
    seed: u64,
) {
    let host = served.host();
    let key = pull(second, &format!("{host}/example.com/app:1"));
    assert_eq!(key, built.manifest);
    assert_same_blobs(first, &second.store, built);
    assert_eq!(
        name_and_tags(&second.store, &key),
        (
            format!("{host}/example.com/app"),
            vec![format!("{host}/example.com/app:1")]
        )
    );

    // Back under another name: the server has every blob already.
    let copy = format!("{host}/copy/app:2");
    assert_eq!(push(second, &key, &copy), (key.clone(), 0, 3));
    // The served store has one image still, its name as imported, and the
    // pushed name as a tag.
    assert_eq!(
        name_and_tags(first, &key),
        (
            "example.com/app".to_string(),
            vec!["copy/app:2".to_string()]
        )
    );
    assert_eq!(pull(third, &copy), key);
    assert_same_blobs(first, &third.store, built);
    assert_eq!(
        name_and_tags(&third.store, &key),
        (format!("{host}/copy/app"), vec![copy.clone()])
    );

    // An image the server has none of: every blob is uploaded.
    let own = image(&second.store, "example.com/own:3", seed + 100);
    let mine = format!("{host}/own/app:3");
    assert_eq!(
        push(second, &own.manifest, &mine),
        (own.manifest.clone(), 3, 0)
    );
    assert_same_blobs(&second.store, first, &own);
    assert_eq!(
        name_and_tags(first, &own.manifest),
        ("own/app".to_string(), vec!["own/app:3".to_string()])
    );
    assert_eq!(pull(third, &mine), own.manifest);
    assert_same_blobs(&second.store, &third.store, &own);
    assert_eq!(
        name_and_tags(&third.store, &own.manifest),
        (format!("{host}/own/app"), vec![mine])
    );
}

#[test]
fn pull_from_serve_push_back_under_another_name_and_pull_again() {
    let first = common::store();
    let built = image(&first, "example.com/app:1", 1);
    let served = Served::start(&first, &[]);
    round_trip(&served, &first, &Env::new(), &Env::new(), &built, 1);
}

#[test]
fn the_same_behind_htpasswd_with_credentials_from_login() {
    let first = common::store();
    let built = image(&first, "example.com/app:1", 2);
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let program = testkit::require_program("/usr/bin/htpasswd", "apache2-utils");
    let entry = common::run(Command::new(program).args(["-Bbn", USER, PASSWORD]));
    std::fs::write(&htpasswd, entry).unwrap();
    let served = Served::start(&first, &["--htpasswd", htpasswd.to_str().unwrap()]);
    let host = served.host();

    // Without credentials: one error line naming the registry, and nothing
    // pulled.
    let second = Env::new();
    let err = second.fails_unchanged(&["pull", &format!("{host}/example.com/app:1")]);
    assert!(
        err.contains(&format!("registry {host} refused: 401")),
        "{err}"
    );
    // A wrong password is refused and kept nowhere.
    let login = ["login", &host, "-u", USER, "--password-stdin"];
    let out = second.cmd(&login).write_stdin("wrong\n").output().unwrap();
    common::assert_error(&out, &login);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("registry {host} refused: 401")),
        "{err}"
    );
    assert!(!second.auth_file().exists());

    let third = Env::new();
    for env in [&second, &third] {
        clean(env, &login, Some(&format!("{PASSWORD}\n")));
        let file: Value = serde_json::from_slice(&std::fs::read(env.auth_file()).unwrap()).unwrap();
        use base64::Engine as _;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
        assert_eq!(file["auths"][&host]["auth"], auth.as_str(), "{file}");
    }
    round_trip(&served, &first, &second, &third, &built, 2);

    // A push without credentials is refused and leaves the served store as
    // it was.
    let anonymous = Env::new();
    let stray = image(&anonymous.store, "example.com/stray:1", 3);
    let before = first.snapshot();
    let err = anonymous.fails(&["push", &stray.manifest, &format!("{host}/stray/app:1")]);
    assert!(
        err.contains(&format!("registry {host} refused: 401")),
        "{err}"
    );
    assert_eq!(first.snapshot(), before);

    let log = served.log();
    assert!(
        log.contains(&format!("{USER} \"PUT /v2/copy/app/manifests/2\" 201")),
        "{log}"
    );
}
