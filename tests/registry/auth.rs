//! Authentication: a Bearer token realm (the Debian registry has no token
//! server, so a fault server plays it, and a proxy in front of the registry
//! demands its tokens), Basic against a registry with htpasswd, and
//! `login`/`logout` writing the auth file podman and skopeo read.

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::Value;
use testkit::Registry;
use testkit::fault::{FaultServer, Reply, SeenRequest, forward};

use crate::support::{Env, Proxy, image_layout, skopeo, skopeo_push};

const SERVICE: &str = "testkit-registry";

/// A token server: answers every request with a token, logging what it
/// was asked, with the `Authorization` it came with.
fn token_server(tokens: &'static [&'static str]) -> FaultServer {
    let served = Arc::new(Mutex::new(0usize));
    FaultServer::start(move |_req| {
        let mut n = served.lock().unwrap();
        let token = tokens[(*n).min(tokens.len() - 1)];
        *n += 1;
        Reply::ok(format!(r#"{{"token":"{token}","expires_in":300}}"#))
            .header("Content-Type", "application/json")
    })
}

fn query(req: &SeenRequest) -> Vec<(String, String)> {
    let q = req.path.split_once('?').map_or("", |(_, q)| q);
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace("%3A", ":").replace("%2F", "/")))
        .collect()
}

/// A proxy that wants `Bearer <accepted>` on every request to the registry,
/// answering others with a challenge naming `realm`; blob GETs that carry
/// the token are redirected to `storage`.
fn bearer_proxy(
    upstream: &str,
    realm: String,
    accepted: &'static str,
    storage: Option<String>,
) -> Proxy {
    Proxy::start(upstream, move |req, fwd| {
        if req.header("authorization") != Some(&format!("Bearer {accepted}")) {
            let repo = req
                .path
                .strip_prefix("/v2/")
                .and_then(|p| p.split_once("/manifests/").or(p.split_once("/blobs/")))
                .map_or("", |(r, _)| r);
            let error = if req.header("authorization").is_some() {
                ",error=\"invalid_token\""
            } else {
                ""
            };
            return Reply::new(401)
                .header(
                    "WWW-Authenticate",
                    format!(
                        "Bearer realm=\"{realm}\",service=\"{SERVICE}\",scope=\"repository:{repo}:pull\"{error}"
                    ),
                )
                .body(r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#);
        }
        if let Some(storage) = &storage
            && req.method == "GET"
            && req.path.contains("/blobs/")
        {
            return Reply::new(307).header("Location", format!("{storage}{}", req.path));
        }
        fwd(req)
    })
}

#[test]
fn bearer_tokens_come_from_the_realm_once_per_scope_and_stay_home_on_redirects() {
    let registry = Registry::start();
    let (dir, _, built) = image_layout(30, 16 * 1024);
    skopeo_push(
        dir.path(),
        "v1",
        &format!("{}/auth/app:v1", registry.host()),
    );
    let realm = token_server(&["token-1"]);
    // Blob storage on another origin (another port): what it is sent
    // must carry no credentials.
    let upstream = registry.url("");
    let storage = FaultServer::start(move |req| forward(&upstream, req));
    let storage_url = format!("http://127.0.0.1:{}", storage.port());
    let proxy = bearer_proxy(
        &registry.url(""),
        realm.url("/token?from=realm"),
        "token-1",
        Some(storage_url),
    );
    let env = Env::new();
    let reference = format!("{}/auth/app:v1", proxy.host());

    // Anonymous: a token without credentials.
    let pulled = env.pull_json(&[&reference]);
    assert_eq!(pulled[0]["image"]["key"], built.manifest.as_str());
    let asked = realm.requests();
    assert_eq!(asked.len(), 1, "one token for the whole pull: {asked:#?}");
    let q = query(&asked[0]);
    assert!(
        q.contains(&("from".into(), "realm".into())),
        "the realm's own query kept"
    );
    assert!(q.contains(&("service".into(), SERVICE.into())), "{q:?}");
    assert!(
        q.contains(&("scope".into(), "repository:auth/app:pull".into())),
        "{q:?}"
    );
    assert_eq!(asked[0].header("authorization"), None);
    let log = proxy.log();
    assert_eq!(log[0].status, 401, "the first request goes out bare");
    assert!(
        log[1..]
            .iter()
            .all(|e| e.header("authorization") == Some("Bearer token-1"))
    );
    let redirected: Vec<_> = log.iter().filter(|e| e.status == 307).collect();
    assert_eq!(redirected.len(), 3, "every blob went to storage");
    let stored = storage.requests();
    assert_eq!(stored.len(), 3);
    assert!(
        stored.iter().all(|r| r.header("authorization").is_none()),
        "credentials followed a redirect to another host: {stored:#?}"
    );

    // With credentials: Basic to the realm, with the account.
    let auth = format!(
        r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
        proxy.host(),
        base64::engine::general_purpose::STANDARD.encode("carol:s3cret")
    );
    std::fs::write(env.auth_file(), auth).unwrap();
    env.ok(&["rm", &built.manifest]);
    let pulled = env.pull_json(&[&reference]);
    assert_eq!(pulled[0]["image"]["key"], built.manifest.as_str());
    let asked = realm.requests();
    assert_eq!(asked.len(), 2);
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("carol:s3cret")
    );
    assert_eq!(asked[1].header("authorization"), Some(basic.as_str()));
    assert!(query(&asked[1]).contains(&("account".into(), "carol".into())));
}

#[test]
fn a_refused_token_is_fetched_again_once_and_a_refusal_names_the_registry() {
    let registry = Registry::start();
    let (dir, _, built) = image_layout(31, 8 * 1024);
    skopeo_push(
        dir.path(),
        "v1",
        &format!("{}/auth/app:v1", registry.host()),
    );
    // The first token is stale: the proxy takes only the second.
    let realm = token_server(&["stale", "fresh"]);
    let proxy = bearer_proxy(&registry.url(""), realm.url("/token"), "fresh", None);
    let env = Env::new();
    let pulled = env.pull_json(&[&format!("{}/auth/app:v1", proxy.host())]);
    assert_eq!(pulled[0]["image"]["key"], built.manifest.as_str());
    assert_eq!(realm.requests().len(), 2);

    // A realm that refuses: the error says which registry and why.
    let refusing = FaultServer::start(|_| {
        Reply::new(401).body(r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#)
    });
    let proxy = bearer_proxy(&registry.url(""), refusing.url("/token"), "never", None);
    let err = env.fails_unchanged(&["pull", &format!("{}/auth/app:v2", proxy.host())]);
    assert!(
        err.contains(&format!(
            "registry {} (its token server 127.0.0.1:{}) refused: 401 UNAUTHORIZED: bad credentials",
            proxy.host(),
            refusing.port()
        )),
        "{err}"
    );
}

#[test]
fn basic_auth_login_pull_push_and_logout_against_htpasswd() {
    let registry = Registry::with_htpasswd("alice", "wonderland");
    let host = registry.host();
    let env = Env::new();
    let (dir, _, built) = image_layout(32, 8 * 1024);
    env.ok(&["import", dir.path().to_str().unwrap()]);
    let reference = format!("{host}/private/app:v1");

    // Without credentials: refused, saying by whom and why.
    let err = env.fails(&["push", &built.manifest, &reference]);
    assert!(
        err.contains(&format!("registry {host} refused: 401")),
        "{err}"
    );

    // A wrong password is not written anywhere.
    let out = env
        .cmd(&["login", &host, "-u", "alice", "--password-stdin"])
        .write_stdin("looking-glass\n")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("registry {host} refused: 401")),
        "{err}"
    );
    assert!(!env.auth_file().exists());

    let out = env
        .cmd(&["login", &host, "-u", "alice", "--password-stdin"])
        .write_stdin("wonderland\n")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(env.auth_file())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let file: Value = serde_json::from_slice(&std::fs::read(env.auth_file()).unwrap()).unwrap();
    let expected = base64::engine::general_purpose::STANDARD.encode("alice:wonderland");
    assert_eq!(file["auths"][&host]["auth"], expected.as_str());

    // The file is skopeo's too.
    env.ok(&["push", &built.manifest, &reference]);
    skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--authfile",
        env.auth_file().to_str().unwrap(),
        &format!("docker://{reference}"),
    ]);
    let fresh = Env::new();
    std::fs::copy(env.auth_file(), fresh.auth_file()).unwrap();
    let pulled = fresh.pull_json(&[&reference]);
    assert_eq!(pulled[0]["image"]["key"], built.manifest.as_str());

    // Wrong credentials in the file: the error says where they came from.
    let wrong = format!(
        r#"{{"auths":{{"{host}":{{"auth":"{}"}}}}}}"#,
        base64::engine::general_purpose::STANDARD.encode("alice:queen")
    );
    let other = Env::new();
    std::fs::write(other.auth_file(), wrong).unwrap();
    let err = other.fails(&["pull", &reference]);
    assert!(
        err.contains(&format!(
            "with credentials from {}",
            other.auth_file().display()
        )) && err.contains("401"),
        "{err}"
    );

    let out = env.ok(&["logout", &host]);
    assert!(out.contains(&format!("logged out of {host}")), "{out}");
    let file: Value = serde_json::from_slice(&std::fs::read(env.auth_file()).unwrap()).unwrap();
    assert!(file["auths"].get(&host).is_none(), "{file}");
    let err = env.fails(&["logout", &host]);
    assert!(err.contains(&format!("not logged in to {host}")), "{err}");
    env.ok(&["rm", &built.manifest]);
    let err = env.fails(&["pull", &reference]);
    assert!(err.contains("401"), "{err}");
}

#[test]
fn insufficient_scope_widens_the_token_once() {
    let registry = Registry::start();
    let (dir, _, built) = image_layout(33, 8 * 1024);
    skopeo_push(
        dir.path(),
        "v1",
        &format!("{}/auth/app:v1", registry.host()),
    );
    // Tokens say which scopes they were asked with.
    let realm = FaultServer::start(|req| {
        let wide = req.path.contains("extra%2Fthing");
        let token = if wide { "wide" } else { "narrow" };
        Reply::ok(format!(r#"{{"token":"{token}"}}"#))
    });
    let realm_url = realm.url("/token");
    let proxy = Proxy::start(&registry.url(""), move |req, fwd| {
        let challenge = |extra: &str| {
            Reply::new(401).header(
                "WWW-Authenticate",
                format!(
                    "Bearer realm=\"{realm_url}\",service=\"{SERVICE}\",scope=\"repository:auth/app:pull{extra}\""
                ),
            )
        };
        match req.header("authorization") {
            Some("Bearer wide") => fwd(req),
            Some("Bearer narrow") => {
                challenge(" repository:extra/thing:pull\",error=\"insufficient_scope")
            }
            _ => challenge(""),
        }
    });
    let env = Env::new();
    let pulled = env.pull_json(&[&format!("{}/auth/app:v1", proxy.host())]);
    assert_eq!(pulled[0]["image"]["key"], built.manifest.as_str());
    let asked = realm.requests();
    assert_eq!(asked.len(), 2, "{asked:#?}");
    let scopes: Vec<String> = query(&asked[1])
        .into_iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v)
        .collect();
    assert!(
        scopes.contains(&"repository:auth/app:pull".to_string()),
        "{scopes:?}"
    );
    assert!(
        scopes.contains(&"repository:extra/thing:pull".to_string()),
        "{scopes:?}"
    );
}

#[test]
fn credentials_come_from_the_first_auth_file_that_has_the_registry() {
    let registry = Registry::start();
    let (dir, _, built) = image_layout(34, 8 * 1024);
    skopeo_push(
        dir.path(),
        "v1",
        &format!("{}/auth/app:v1", registry.host()),
    );
    // A registry that wants Basic: the proxy challenges bare requests and
    // forwards the rest, whose Authorization it logs.
    let proxy = Proxy::start(&registry.url(""), |req, fwd| {
        if req.header("authorization").is_none() {
            return Reply::new(401).header("WWW-Authenticate", "Basic realm=\"test\"");
        }
        fwd(req)
    });
    let host = proxy.host();
    let env = Env::new();
    let root = env.home.path();
    let basic = |user: &str| {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:pw"));
        format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#)
    };
    let write = |path: &str, body: String| {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, body).unwrap();
        path
    };
    let registry_auth_file = write("registry-auth.json", basic("registry-auth-file"));
    let runtime = write("run/containers/auth.json", basic("xdg-runtime-dir"));
    let config = write("config/containers/auth.json", basic("xdg-config-home"));
    let docker = write("docker-config/config.json", basic("docker-config"));
    // ~/.docker/config.json names a credential helper for the registry.
    write(
        "bin/docker-credential-imgstoretest",
        "#!/bin/sh\nread url\nprintf '{\"ServerURL\":\"%s\",\"Username\":\"helper\",\"Secret\":\"pw\"}' \"$url\"\n".into(),
    );
    std::fs::set_permissions(
        root.join("bin/docker-credential-imgstoretest"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let home_docker = write(
        ".docker/config.json",
        format!(r#"{{"credHelpers":{{"{host}":"imgstoretest"}}}}"#),
    );
    let path = format!(
        "{}:{}",
        root.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let reference = format!("{host}/auth/app:v1");
    let user_seen = |unset: &[&str]| -> String {
        proxy.clear();
        let mut cmd = env.store.cmd(&["pull", &reference]);
        cmd.env("HOME", root)
            .env("PATH", &path)
            .env("REGISTRY_AUTH_FILE", &registry_auth_file)
            .env("XDG_RUNTIME_DIR", root.join("run"))
            .env("XDG_CONFIG_HOME", root.join("config"))
            .env("DOCKER_CONFIG", root.join("docker-config"));
        for name in unset {
            cmd.env_remove(name);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "without {unset:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let log = proxy.log();
        let sent = log
            .iter()
            .rev()
            .find_map(|e| e.header("authorization"))
            .unwrap_or_else(|| panic!("no credentials sent: {log:#?}"));
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(sent.strip_prefix("Basic ").unwrap())
            .unwrap();
        let decoded = String::from_utf8(decoded).unwrap();
        decoded.split_once(':').unwrap().0.to_string()
    };
    assert_eq!(user_seen(&[]), "registry-auth-file");
    assert_eq!(
        env.ok(&["resolve", &reference]).trim(),
        built.manifest,
        "pulled with them"
    );
    std::fs::remove_file(&registry_auth_file).unwrap();
    assert_eq!(
        user_seen(&[]),
        "xdg-runtime-dir",
        "a missing file is skipped"
    );
    assert_eq!(user_seen(&["REGISTRY_AUTH_FILE"]), "xdg-runtime-dir");
    std::fs::remove_file(&runtime).unwrap();
    assert_eq!(user_seen(&["REGISTRY_AUTH_FILE"]), "xdg-config-home");
    std::fs::remove_file(&config).unwrap();
    assert_eq!(user_seen(&["REGISTRY_AUTH_FILE"]), "docker-config");
    // $DOCKER_CONFIG replaces ~/.docker, whose helper is asked only without it.
    std::fs::remove_file(&docker).unwrap();
    let err = {
        proxy.clear();
        let out = env
            .store
            .cmd(&["pull", &reference])
            .env("HOME", root)
            .env("PATH", &path)
            .env("DOCKER_CONFIG", root.join("docker-config"))
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_RUNTIME_DIR")
            .env("XDG_CONFIG_HOME", root.join("config"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "no credentials, yet it pulled");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    assert!(
        err.contains(&format!("registry {host} refused: 401")),
        "{err}"
    );
    assert_eq!(
        user_seen(&["REGISTRY_AUTH_FILE", "DOCKER_CONFIG"]),
        "helper"
    );
    // credsStore, when no credHelpers entry and no auths entry names it.
    std::fs::write(&home_docker, r#"{"credsStore":"imgstoretest"}"#).unwrap();
    assert_eq!(
        user_seen(&["REGISTRY_AUTH_FILE", "DOCKER_CONFIG"]),
        "helper"
    );
}
