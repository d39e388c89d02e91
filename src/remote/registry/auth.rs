//! Registry credentials: where podman, skopeo and docker keep them, and the
//! edits `login` and `logout` make.
//!
//! Lookup for a registry reads these files in order and takes the first that
//! has credentials for it (a missing file is skipped; a malformed one is an
//! error naming it):
//!
//! 1. `$REGISTRY_AUTH_FILE`
//! 2. `$XDG_RUNTIME_DIR/containers/auth.json`
//! 3. `$XDG_CONFIG_HOME/containers/auth.json` (default `~/.config/…`), where
//!    `login` writes when `XDG_RUNTIME_DIR` is unset
//! 4. `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`
//!
//! All share docker's format: `{"auths": {KEY: {"auth": base64("user:pass")}}}`
//! (or `identitytoken`), `credHelpers: {HOST: NAME}` and `credsStore: NAME`,
//! where NAME means the program `docker-credential-NAME`, run as
//! `docker-credential-NAME get` with the server URL on stdin, answering
//! `{"Username": …, "Secret": …}`. Within one file a `credHelpers` entry for
//! the host is asked first, then `auths`, then `credsStore`. Keys may be
//! written `HOST`, `https://HOST/v1/` or `http://HOST`, and Docker Hub may
//! appear as `docker.io`, `index.docker.io`, `registry-1.docker.io` or
//! `https://index.docker.io/v1/`; podman's namespaced keys (`HOST/NS/REPO`)
//! win over the bare host.
//!
//! The environment comes in as an [`AuthEnv`] value, so tests never read the
//! real home. Secrets are held in [`Secret`], whose `Debug` prints nothing of
//! them; no error message here contains one.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;

use super::reference::{DOCKER_HUB, DOCKER_HUB_API, DOCKER_HUB_LEGACY, is_valid_registry};

/// The server URL docker's credential helpers know Docker Hub by.
pub(crate) const DOCKER_HUB_HELPER_URL: &str = "https://index.docker.io/v1/";

/// The environment credential lookup depends on, passed in explicitly.
/// Empty variables count as unset, as podman and docker treat them.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuthEnv {
    pub(crate) registry_auth_file: Option<PathBuf>,
    pub(crate) xdg_runtime_dir: Option<PathBuf>,
    pub(crate) xdg_config_home: Option<PathBuf>,
    pub(crate) docker_config: Option<PathBuf>,
    pub(crate) home: Option<PathBuf>,
    /// `PATH`, searched for `docker-credential-*` helpers.
    pub(crate) path: Option<OsString>,
}

impl AuthEnv {
    /// The process's own environment.
    pub(crate) fn from_process() -> AuthEnv {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        AuthEnv {
            registry_auth_file: var("REGISTRY_AUTH_FILE").map(PathBuf::from),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR").map(PathBuf::from),
            xdg_config_home: var("XDG_CONFIG_HOME").map(PathBuf::from),
            docker_config: var("DOCKER_CONFIG").map(PathBuf::from),
            home: dirs::home_dir(),
            path: var("PATH"),
        }
    }

    fn config_home(&self) -> Option<PathBuf> {
        self.xdg_config_home
            .clone()
            .or_else(|| self.home.as_ref().map(|h| h.join(".config")))
    }

    /// The files lookup reads, in order (module docs).
    pub(crate) fn lookup_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        files.extend(self.registry_auth_file.clone());
        if let Some(dir) = &self.xdg_runtime_dir {
            files.push(dir.join("containers/auth.json"));
        }
        if let Some(dir) = self.config_home() {
            files.push(dir.join("containers/auth.json"));
        }
        match (&self.docker_config, &self.home) {
            (Some(dir), _) => files.push(dir.join("config.json")),
            (None, Some(home)) => files.push(home.join(".docker/config.json")),
            (None, None) => {}
        }
        files.dedup();
        files
    }

    /// The file `login` writes and `logout` edits: `$REGISTRY_AUTH_FILE`,
    /// else `$XDG_RUNTIME_DIR/containers/auth.json`, else
    /// `$XDG_CONFIG_HOME/containers/auth.json` (or `~/.config/…`), as podman.
    pub(crate) fn login_file(&self) -> Result<PathBuf, AuthError> {
        if let Some(file) = &self.registry_auth_file {
            return Ok(file.clone());
        }
        if let Some(dir) = &self.xdg_runtime_dir {
            // Creating a missing runtime directory would make one that
            // systemd does not manage and clean up; podman refuses too.
            if !dir.is_dir() {
                return Err(AuthError::RuntimeDirMissing { dir: dir.clone() });
            }
            return Ok(dir.join("containers/auth.json"));
        }
        match self.config_home() {
            Some(dir) => Ok(dir.join("containers/auth.json")),
            None => Err(AuthError::NoHome),
        }
    }
}

/// A secret string: a password, identity token or bearer token. Its `Debug`
/// says only that it is redacted; read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Credentials for one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Credentials {
    /// A user name and password (for Basic auth, or for a token realm).
    Basic { username: String, password: Secret },
    /// An OAuth2 refresh token (docker's `identitytoken`), exchanged at the
    /// token realm with `grant_type=refresh_token`.
    IdentityToken {
        username: Option<String>,
        token: Secret,
    },
}

impl Credentials {
    pub(crate) fn username(&self) -> Option<&str> {
        match self {
            Credentials::Basic { username, .. } => Some(username),
            Credentials::IdentityToken { username, .. } => username.as_deref(),
        }
    }

    /// The `Authorization` header value for Basic auth, when these are a
    /// user name and password.
    pub(crate) fn basic_authorization(&self) -> Option<Secret> {
        match self {
            Credentials::Basic { username, password } => Some(Secret(format!(
                "Basic {}",
                BASE64.encode(format!("{username}:{}", password.expose()))
            ))),
            Credentials::IdentityToken { .. } => None,
        }
    }
}

/// Where credentials were found, for messages ("401 with credentials from …").
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CredentialSource {
    File(PathBuf),
    Helper {
        program: String,
        file: PathBuf,
    },
    /// Given by the caller (`login`'s user name and password).
    Given,
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::File(path) => write!(f, "{}", path.display()),
            CredentialSource::Helper { program, file } => {
                write!(f, "{program} (named in {})", file.display())
            }
            CredentialSource::Given => f.write_str("the arguments given"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FoundCredentials {
    pub(crate) credentials: Credentials,
    pub(crate) source: CredentialSource,
}

/// Why credentials could not be read, written or removed. No message holds
/// a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// An auth file could not be read or written.
    #[error("cannot {action} auth file {}: {cause}", path.display())]
    Io {
        /// `read`, `write`, `replace`…
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error (told in the message).
        cause: io::Error,
    },
    /// An auth file is not the JSON docker and podman write.
    #[error("auth file {} is not valid: {reason}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What the JSON reader said.
        reason: String,
    },
    /// One entry of an auth file is not valid.
    #[error("auth file {}: the entry for {key:?} is not valid: {reason}", path.display())]
    BadEntry {
        /// The file.
        path: PathBuf,
        /// The entry's key.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An auth file names a credential helper that is not installed.
    #[error("credential helper {program} (named in {}) is not on PATH", file.display())]
    HelperMissing {
        /// `docker-credential-NAME`.
        program: String,
        /// The auth file naming it.
        file: PathBuf,
    },
    /// A credential helper failed.
    #[error("credential helper {program} failed for {registry}: {message}")]
    HelperFailed {
        /// `docker-credential-NAME`.
        program: String,
        /// The registry asked about.
        registry: String,
        /// What it said (never a secret: the output of a failure).
        message: String,
    },
    /// A REGISTRY argument is not `host[:port]`.
    #[error("{registry:?} is not a registry host[:port]")]
    BadRegistry {
        /// The argument.
        registry: String,
    },
    /// A user name with a ':' cannot be written in an auth file.
    #[error("a user name for {registry} must not contain ':'")]
    BadUsername {
        /// The registry.
        registry: String,
    },
    /// `logout` of a registry the login file has no entry for.
    #[error("not logged in to {registry}: {} has no entry for it", path.display())]
    NotLoggedIn {
        /// The registry.
        registry: String,
        /// The login file.
        path: PathBuf,
    },
    /// `$XDG_RUNTIME_DIR` names a directory that does not exist.
    #[error(
        "{} (from $XDG_RUNTIME_DIR) does not exist: create it or unset XDG_RUNTIME_DIR",
        dir.display()
    )]
    RuntimeDirMissing {
        /// The directory.
        dir: PathBuf,
    },
    /// No place to write credentials to.
    #[error("no home directory to keep credentials in: set REGISTRY_AUTH_FILE")]
    NoHome,
}

/// One auth file as far as lookup reads it; unknown fields are ignored.
#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: Option<BTreeMap<String, AuthEntry>>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: Option<BTreeMap<String, String>>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// Looks up credentials for `registry` (as in references: `docker.io`,
/// `localhost:5000`), preferring entries for `repository` or one of its
/// namespaces where a file has them. `None` means anonymous.
pub(crate) fn lookup(
    env: &AuthEnv,
    registry: &str,
    repository: Option<&str>,
) -> Result<Option<FoundCredentials>, AuthError> {
    for file in env.lookup_files() {
        let Some(config) = read_config(&file)? else {
            continue;
        };
        if let Some(found) = lookup_in(env, &file, &config, registry, repository)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

fn read_config(path: &Path) -> Result<Option<ConfigFile>, AuthError> {
    let Some(value) = read_json(path)? else {
        return Ok(None);
    };
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| AuthError::BadFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

/// An auth file's JSON; `None` when it is missing, and `{}` when it is
/// empty (as `touch` leaves it).
fn read_json(path: &Path) -> Result<Option<serde_json::Value>, AuthError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(cause) => {
            return Err(AuthError::Io {
                action: "read",
                path: path.to_path_buf(),
                cause,
            });
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Some(serde_json::json!({})));
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| AuthError::BadFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

fn lookup_in(
    env: &AuthEnv,
    file: &Path,
    config: &ConfigFile,
    registry: &str,
    repository: Option<&str>,
) -> Result<Option<FoundCredentials>, AuthError> {
    let host = normalise_host(registry);
    if let Some(helpers) = &config.cred_helpers
        && let Some((_, name)) = helpers.iter().find(|(k, _)| normalise_key(k) == host)
        && let Some(found) = ask_helper(env, file, name, registry)?
    {
        return Ok(Some(found));
    }
    if let Some(auths) = &config.auths {
        for key in candidate_keys(registry, repository) {
            if let Some(entry) = auths.get(&key)
                && let Some(credentials) = decode_entry(file, &key, entry)?
            {
                return Ok(Some(found_in_file(credentials, file)));
            }
        }
        for (key, entry) in auths {
            if normalise_key(key) == host
                && let Some(credentials) = decode_entry(file, key, entry)?
            {
                return Ok(Some(found_in_file(credentials, file)));
            }
        }
    }
    if let Some(name) = &config.creds_store
        && let Some(found) = ask_helper(env, file, name, registry)?
    {
        return Ok(Some(found));
    }
    Ok(None)
}

fn found_in_file(credentials: Credentials, file: &Path) -> FoundCredentials {
    FoundCredentials {
        credentials,
        source: CredentialSource::File(file.to_path_buf()),
    }
}

/// `HOST/NS/REPO`, `HOST/NS`, `HOST`: podman's most specific key first.
fn candidate_keys(registry: &str, repository: Option<&str>) -> Vec<String> {
    let mut keys = Vec::new();
    if let Some(repository) = repository {
        let mut key = format!("{registry}/{repository}");
        loop {
            keys.push(key.clone());
            match key.rfind('/') {
                Some(at) if at > registry.len() => key.truncate(at),
                _ => break,
            }
        }
    }
    keys.push(registry.to_string());
    keys
}

/// Docker Hub has many names; every other host is itself.
fn normalise_host(host: &str) -> &str {
    match host {
        DOCKER_HUB | DOCKER_HUB_LEGACY | DOCKER_HUB_API => DOCKER_HUB,
        other => other,
    }
}

/// The host an auths or credHelpers key names: `https://HOST/v1/` and
/// `http://HOST` are `HOST`.
fn normalise_key(key: &str) -> &str {
    let host = match key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
    {
        Some(rest) => rest.split('/').next().unwrap_or(rest),
        None => key,
    };
    normalise_host(host)
}

/// Credentials of an auths entry; `None` for docker's empty placeholders
/// (`{}` written beside a credential store).
fn decode_entry(
    file: &Path,
    key: &str,
    entry: &AuthEntry,
) -> Result<Option<Credentials>, AuthError> {
    let bad = |reason| AuthError::BadEntry {
        path: file.to_path_buf(),
        key: key.to_string(),
        reason,
    };
    let (username, password) = match entry.auth.as_deref().filter(|a| !a.is_empty()) {
        Some(auth) => {
            let decoded = BASE64
                .decode(auth.trim())
                .map_err(|_| bad("\"auth\" is not base64"))?;
            let decoded = String::from_utf8(decoded).map_err(|_| bad("\"auth\" is not UTF-8"))?;
            let (user, pass) = decoded
                .split_once(':')
                .ok_or_else(|| bad("\"auth\" is not base64 of user:password"))?;
            // Some writers pad the password with NULs.
            (
                Some(user.to_string()),
                Some(pass.trim_end_matches('\0').to_string()),
            )
        }
        None => (entry.username.clone(), entry.password.clone()),
    };
    if let Some(token) = entry.identitytoken.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credentials::IdentityToken {
            username: username.filter(|u| !u.is_empty()),
            token: Secret::new(token),
        }));
    }
    match (username, password) {
        (Some(username), Some(password)) if !username.is_empty() => Ok(Some(Credentials::Basic {
            username,
            password: Secret(password),
        })),
        _ => Ok(None),
    }
}

/// The server URL a credential helper is asked about.
fn helper_server_url(registry: &str) -> &str {
    if normalise_host(registry) == DOCKER_HUB {
        DOCKER_HUB_HELPER_URL
    } else {
        registry
    }
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

fn ask_helper(
    env: &AuthEnv,
    file: &Path,
    name: &str,
    registry: &str,
) -> Result<Option<FoundCredentials>, AuthError> {
    let program = format!("docker-credential-{name}");
    // The name becomes part of a program name looked up on PATH: no paths.
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(AuthError::BadEntry {
            path: file.to_path_buf(),
            key: name.to_string(),
            reason: "a credential helper name is letters, digits, '.', '_' and '-'",
        });
    }
    let Some(executable) = find_on_path(env.path.as_deref(), &program) else {
        return Err(AuthError::HelperMissing {
            program,
            file: file.to_path_buf(),
        });
    };
    let credentials = run_helper(&executable, &program, registry)?;
    Ok(credentials.map(|credentials| FoundCredentials {
        credentials,
        source: CredentialSource::Helper {
            program,
            file: file.to_path_buf(),
        },
    }))
}

fn find_on_path(path: Option<&std::ffi::OsStr>, program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    std::env::split_paths(path?)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Runs `<executable> get` with the server URL on stdin, as docker's
/// credential-helper protocol has it. `None` when the helper has nothing for
/// the registry ("credentials not found").
pub(crate) fn run_helper(
    executable: &Path,
    program: &str,
    registry: &str,
) -> Result<Option<Credentials>, AuthError> {
    let failed = |message: String| AuthError::HelperFailed {
        program: program.to_string(),
        registry: registry.to_string(),
        message,
    };
    let mut child = Command::new(executable)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("cannot run {}: {e}", executable.display())))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // A helper that exits without reading gives EPIPE here; its exit status
    // and output say more than the write error, so that is what is reported.
    let _ = stdin.write_all(helper_server_url(registry).as_bytes());
    drop(stdin);
    let output = child
        .wait_with_output()
        .map_err(|e| failed(format!("cannot wait for it: {e}")))?;
    if !output.status.success() {
        // On failure the output is an error message, never a secret.
        let said = String::from_utf8_lossy(if output.stdout.is_empty() {
            &output.stderr
        } else {
            &output.stdout
        });
        let said: String = super::errors::one_line(&said).chars().take(200).collect();
        if said.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        return Err(failed(format!("{}: {said}", output.status)));
    }
    let answer: HelperAnswer = serde_json::from_slice(&output.stdout)
        .map_err(|_| failed("its answer is not the JSON of Username and Secret".into()))?;
    if answer.secret.is_empty() {
        return Ok(None);
    }
    // docker's helpers mark identity tokens with this user name.
    if answer.username == "<token>" {
        return Ok(Some(Credentials::IdentityToken {
            username: None,
            token: Secret(answer.secret),
        }));
    }
    Ok(Some(Credentials::Basic {
        username: answer.username,
        password: Secret(answer.secret),
    }))
}

/// Writes (or replaces) the entry for `registry` in the login file,
/// keeping every other entry and field; returns the file's path.
pub(crate) fn login(
    env: &AuthEnv,
    registry: &str,
    username: &str,
    password: &Secret,
) -> Result<PathBuf, AuthError> {
    let key = login_key(registry)?;
    if username.contains(':') {
        return Err(AuthError::BadUsername {
            registry: key.to_string(),
        });
    }
    let path = env.login_file()?;
    let mut document = read_document(&path)?;
    let auths = auths_object(&path, &mut document)?;
    let encoded = BASE64.encode(format!("{username}:{}", password.expose()));
    auths.insert(key.to_string(), serde_json::json!({ "auth": encoded }));
    write_document(&path, &document)?;
    Ok(path)
}

/// Removes the entries for `registry` from the login file (under any of the
/// key forms that name it); returns the file's path.
pub(crate) fn logout(env: &AuthEnv, registry: &str) -> Result<PathBuf, AuthError> {
    let key = login_key(registry)?;
    let path = env.login_file()?;
    let not_logged_in = || AuthError::NotLoggedIn {
        registry: key.to_string(),
        path: path.clone(),
    };
    if !path.exists() {
        return Err(not_logged_in());
    }
    let mut document = read_document(&path)?;
    let auths = auths_object(&path, &mut document)?;
    let before = auths.len();
    auths.retain(|k, _| normalise_key(k) != key);
    if auths.len() == before {
        return Err(not_logged_in());
    }
    write_document(&path, &document)?;
    Ok(path)
}

/// The key `login` writes: the registry as in references, Docker Hub as
/// `docker.io` (podman's choice).
fn login_key(registry: &str) -> Result<&str, AuthError> {
    if !is_valid_registry(registry) {
        return Err(AuthError::BadRegistry {
            registry: registry.to_string(),
        });
    }
    Ok(normalise_host(registry))
}

fn read_document(path: &Path) -> Result<serde_json::Value, AuthError> {
    let value = read_json(path)?.unwrap_or_else(|| serde_json::json!({}));
    if !value.is_object() {
        return Err(AuthError::BadFile {
            path: path.to_path_buf(),
            reason: "it is not a JSON object".into(),
        });
    }
    Ok(value)
}

fn auths_object<'a>(
    path: &Path,
    document: &'a mut serde_json::Value,
) -> Result<&'a mut serde_json::Map<String, serde_json::Value>, AuthError> {
    let object = document.as_object_mut().expect("checked by read_document");
    let auths = object
        .entry("auths")
        .or_insert_with(|| serde_json::json!({}));
    if auths.is_null() {
        *auths = serde_json::json!({});
    }
    auths.as_object_mut().ok_or_else(|| AuthError::BadFile {
        path: path.to_path_buf(),
        reason: "\"auths\" is not an object".into(),
    })
}

/// Replaces the file atomically: a temp file beside it (mode 0600), fsync,
/// rename, fsync of the directory. A crash leaves the old file or the new
/// one, never half of either. Missing parents are created with mode 0700.
fn write_document(path: &Path, document: &serde_json::Value) -> Result<(), AuthError> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    let io_error = |action, path: &Path| {
        let path = path.to_path_buf();
        move |cause| AuthError::Io {
            action,
            path,
            cause,
        }
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(io_error("create the directory of", path))?;
    let mut bytes = serde_json::to_vec_pretty(document).expect("a JSON value serialises");
    bytes.push(b'\n');
    let mut temp = tempfile::Builder::new()
        .prefix(".auth.json.")
        .tempfile_in(&dir)
        .map_err(io_error("create a temp file for", path))?;
    temp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io_error("set the mode of a temp file for", path))?;
    temp.write_all(&bytes)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(io_error("write", path))?;
    temp.persist(path)
        .map_err(|e| e.error)
        .map_err(io_error("replace", path))?;
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("fsync the directory of", path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn b64(s: &str) -> String {
        BASE64.encode(s)
    }

    /// An environment whose every path lies in a temp dir.
    struct Sandbox {
        dir: tempfile::TempDir,
    }

    impl Sandbox {
        fn new() -> Sandbox {
            Sandbox {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.dir.path().join(rel)
        }

        /// Only a home: lookups read ~/.config/containers/auth.json and
        /// ~/.docker/config.json.
        fn env(&self) -> AuthEnv {
            AuthEnv {
                home: Some(self.path("home")),
                path: Some(self.path("bin").into_os_string()),
                ..AuthEnv::default()
            }
        }

        fn write(&self, rel: &str, contents: &str) -> PathBuf {
            let path = self.path(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, contents).unwrap();
            path
        }

        /// A fake `docker-credential-NAME` that answers `get` for one
        /// server URL and logs what it was asked.
        fn helper(&self, name: &str, server: &str, answer: &str) {
            let log = self.path(&format!("{name}.log"));
            let script = format!(
                "#!/bin/sh\n\
                 [ \"$1\" = get ] || {{ echo \"bad verb $1\"; exit 3; }}\n\
                 read -r url || true\n\
                 printf '%s\\n' \"$url\" >> '{}'\n\
                 if [ \"$url\" = '{server}' ]; then printf '%s' '{answer}'; exit 0; fi\n\
                 echo 'credentials not found in native keychain'; exit 1\n",
                log.display()
            );
            let path = self.write(&format!("bin/docker-credential-{name}"), &script);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }

        fn asked(&self, name: &str) -> Vec<String> {
            std::fs::read_to_string(self.path(&format!("{name}.log")))
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect()
        }
    }

    fn basic(found: Option<FoundCredentials>) -> (String, String) {
        match found.expect("credentials").credentials {
            Credentials::Basic { username, password } => (username, password.expose().to_string()),
            other => panic!("not basic: {other:?}"),
        }
    }

    #[test]
    fn lookup_order_and_file_precedence() {
        let sb = Sandbox::new();
        let mut env = sb.env();
        env.registry_auth_file = Some(sb.path("explicit.json"));
        env.xdg_runtime_dir = Some(sb.path("run"));
        env.docker_config = Some(sb.path("dockercfg"));
        assert_eq!(
            env.lookup_files(),
            vec![
                sb.path("explicit.json"),
                sb.path("run/containers/auth.json"),
                sb.path("home/.config/containers/auth.json"),
                sb.path("dockercfg/config.json"),
            ]
        );
        let entry = |user: &str| {
            format!(
                r#"{{"auths":{{"r.io":{{"auth":"{}"}}}}}}"#,
                b64(&format!("{user}:pw"))
            )
        };
        sb.write("dockercfg/config.json", &entry("docker"));
        assert_eq!(basic(lookup(&env, "r.io", None).unwrap()).0, "docker");
        sb.write("home/.config/containers/auth.json", &entry("config"));
        assert_eq!(basic(lookup(&env, "r.io", None).unwrap()).0, "config");
        sb.write("run/containers/auth.json", &entry("runtime"));
        assert_eq!(basic(lookup(&env, "r.io", None).unwrap()).0, "runtime");
        let explicit = sb.write("explicit.json", &entry("explicit"));
        let found = lookup(&env, "r.io", None).unwrap().unwrap();
        assert_eq!(found.source, CredentialSource::File(explicit));
        assert_eq!(basic(Some(found)), ("explicit".into(), "pw".into()));
        // A host no file knows is anonymous.
        assert!(lookup(&env, "other.io", None).unwrap().is_none());
    }

    #[test]
    fn docker_config_defaults_to_home() {
        let sb = Sandbox::new();
        let env = sb.env();
        assert_eq!(
            env.lookup_files(),
            vec![
                sb.path("home/.config/containers/auth.json"),
                sb.path("home/.docker/config.json")
            ]
        );
        sb.write(
            "home/.docker/config.json",
            &format!(r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}}}},"HttpHeaders":{{"X":"y"}}}}"#, b64("hub:s3cret")),
        );
        // Docker Hub by any of its names.
        for name in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
            assert_eq!(
                basic(lookup(&env, name, None).unwrap()),
                ("hub".into(), "s3cret".into())
            );
        }
    }

    #[test]
    fn key_forms() {
        let sb = Sandbox::new();
        let env = sb.env();
        sb.write(
            "home/.docker/config.json",
            &format!(
                r#"{{"auths":{{
                    "https://secure.io/v1/":{{"auth":"{}"}},
                    "http://plain.io":{{"auth":"{}"}},
                    "localhost:5000":{{"auth":"{}"}},
                    "localhost:5000/team":{{"auth":"{}"}},
                    "docker.io":{{"auth":"{}"}}
                }}}}"#,
                b64("a:1"),
                b64("b:2"),
                b64("c:3"),
                b64("d:4"),
                b64("e:5")
            ),
        );
        assert_eq!(basic(lookup(&env, "secure.io", None).unwrap()).0, "a");
        assert_eq!(basic(lookup(&env, "plain.io", None).unwrap()).0, "b");
        assert_eq!(basic(lookup(&env, "localhost:5000", None).unwrap()).0, "c");
        assert_eq!(
            basic(lookup(&env, "localhost:5000", Some("team/app")).unwrap()).0,
            "d"
        );
        assert_eq!(
            basic(lookup(&env, "localhost:5000", Some("other/app")).unwrap()).0,
            "c"
        );
        assert_eq!(
            basic(lookup(&env, "docker.io", Some("library/busybox")).unwrap()).0,
            "e"
        );
        // A port is part of the host.
        assert!(lookup(&env, "localhost", None).unwrap().is_none());
        assert!(lookup(&env, "secure.io:443", None).unwrap().is_none());
    }

    #[test]
    fn identity_tokens_placeholders_and_plain_fields() {
        let sb = Sandbox::new();
        let env = sb.env();
        sb.write(
            "home/.docker/config.json",
            &format!(
                r#"{{"auths":{{
                    "tok.io":{{"auth":"{}","identitytoken":"refresh-me"}},
                    "empty.io":{{}},
                    "fields.io":{{"username":"u","password":"p"}},
                    "nul.io":{{"auth":"{}"}}
                }}}}"#,
                b64("<token>:"),
                b64("n:pass\0\0")
            ),
        );
        match lookup(&env, "tok.io", None).unwrap().unwrap().credentials {
            Credentials::IdentityToken { username, token } => {
                assert_eq!(username.as_deref(), Some("<token>"));
                assert_eq!(token.expose(), "refresh-me");
            }
            other => panic!("{other:?}"),
        }
        assert!(lookup(&env, "empty.io", None).unwrap().is_none());
        assert_eq!(
            basic(lookup(&env, "fields.io", None).unwrap()),
            ("u".into(), "p".into())
        );
        assert_eq!(
            basic(lookup(&env, "nul.io", None).unwrap()),
            ("n".into(), "pass".into())
        );
    }

    #[test]
    fn malformed_files_and_entries_name_themselves() {
        let sb = Sandbox::new();
        let env = sb.env();
        let file = sb.write("home/.docker/config.json", "{not json");
        let e = lookup(&env, "r.io", None).unwrap_err();
        assert!(
            matches!(e, AuthError::BadFile { ref path, .. } if *path == file),
            "{e}"
        );
        assert!(e.to_string().contains(&file.display().to_string()));

        sb.write(
            "home/.docker/config.json",
            r#"{"auths":{"r.io":{"auth":"***"}}}"#,
        );
        let e = lookup(&env, "r.io", None).unwrap_err();
        assert!(
            matches!(e, AuthError::BadEntry { ref key, .. } if key == "r.io"),
            "{e}"
        );

        sb.write(
            "home/.docker/config.json",
            &format!(r#"{{"auths":{{"r.io":{{"auth":"{}"}}}}}}"#, b64("nocolon")),
        );
        let e = lookup(&env, "r.io", None).unwrap_err();
        assert!(matches!(e, AuthError::BadEntry { .. }), "{e}");
        // The decoded value is not in the message.
        assert!(!e.to_string().contains("nocolon"), "{e}");

        // An empty file is no credentials, not an error.
        sb.write("home/.docker/config.json", "");
        assert!(lookup(&env, "r.io", None).unwrap().is_none());
    }

    #[test]
    fn cred_helpers_and_creds_store() {
        let sb = Sandbox::new();
        let env = sb.env();
        sb.helper(
            "fake",
            "helped.io",
            r#"{"ServerURL":"helped.io","Username":"hu","Secret":"hs"}"#,
        );
        sb.helper(
            "store",
            DOCKER_HUB_HELPER_URL,
            r#"{"Username":"<token>","Secret":"idtok"}"#,
        );
        let file = sb.write(
            "home/.docker/config.json",
            &format!(
                r#"{{"credHelpers":{{"helped.io":"fake","missing.io":"fake"}},
                    "credsStore":"store",
                    "auths":{{"missing.io":{{"auth":"{}"}},"https://index.docker.io/v1/":{{}}}}}}"#,
                b64("fallback:pw")
            ),
        );
        let found = lookup(&env, "helped.io", None).unwrap().unwrap();
        assert_eq!(
            found.source,
            CredentialSource::Helper {
                program: "docker-credential-fake".into(),
                file: file.clone()
            }
        );
        assert_eq!(basic(Some(found)), ("hu".into(), "hs".into()));
        // The helper has nothing for missing.io: the auths entry is used.
        assert_eq!(
            basic(lookup(&env, "missing.io", None).unwrap()).0,
            "fallback"
        );
        // Docker Hub goes to the store under docker's server URL; the
        // store marks identity tokens with the user "<token>".
        match lookup(&env, "docker.io", None)
            .unwrap()
            .unwrap()
            .credentials
        {
            Credentials::IdentityToken {
                username: None,
                token,
            } => assert_eq!(token.expose(), "idtok"),
            other => panic!("{other:?}"),
        }
        // The store knows nothing of this one: anonymous.
        assert!(lookup(&env, "nobody.io", None).unwrap().is_none());
        assert_eq!(sb.asked("fake"), ["helped.io", "missing.io"]);
        assert_eq!(sb.asked("store"), [DOCKER_HUB_HELPER_URL, "nobody.io"]);
    }

    #[test]
    fn helper_failures() {
        let sb = Sandbox::new();
        let env = sb.env();
        let file = sb.write("home/.docker/config.json", r#"{"credsStore":"absent"}"#);
        match lookup(&env, "r.io", None).unwrap_err() {
            AuthError::HelperMissing { program, file: f } => {
                assert_eq!(program, "docker-credential-absent");
                assert_eq!(f, file);
            }
            other => panic!("{other}"),
        }
        sb.write("home/.docker/config.json", r#"{"credsStore":"../evil"}"#);
        assert!(matches!(
            lookup(&env, "r.io", None),
            Err(AuthError::BadEntry { .. })
        ));

        let broken = sb.write(
            "bin/docker-credential-broken",
            "#!/bin/sh\necho 'keychain locked' >&2\nexit 2\n",
        );
        std::fs::set_permissions(&broken, std::fs::Permissions::from_mode(0o755)).unwrap();
        sb.write("home/.docker/config.json", r#"{"credsStore":"broken"}"#);
        let e = lookup(&env, "r.io", None).unwrap_err().to_string();
        assert!(
            e.contains("docker-credential-broken")
                && e.contains("keychain locked")
                && e.contains("r.io"),
            "{e}"
        );

        let garbage = sb.write(
            "bin/docker-credential-garbage",
            "#!/bin/sh\necho 'not json'\n",
        );
        std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o755)).unwrap();
        sb.write("home/.docker/config.json", r#"{"credsStore":"garbage"}"#);
        assert!(matches!(
            lookup(&env, "r.io", None),
            Err(AuthError::HelperFailed { .. })
        ));

        // Not executable: not found.
        let plain = sb.write("bin/docker-credential-plain", "#!/bin/sh\n");
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
        sb.write("home/.docker/config.json", r#"{"credsStore":"plain"}"#);
        assert!(matches!(
            lookup(&env, "r.io", None),
            Err(AuthError::HelperMissing { .. })
        ));
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let c = Credentials::Basic {
            username: "user".into(),
            password: Secret::new("hunter2"),
        };
        let shown = format!("{c:?}");
        assert!(
            shown.contains("user") && !shown.contains("hunter2"),
            "{shown}"
        );
        let t = Credentials::IdentityToken {
            username: None,
            token: Secret::new("tok-123"),
        };
        assert!(!format!("{t:?}").contains("tok-123"));
        let header = c.basic_authorization().unwrap();
        assert_eq!(header.expose(), format!("Basic {}", b64("user:hunter2")));
        assert!(!format!("{header:?}").contains(&b64("user:hunter2")));
        assert!(t.basic_authorization().is_none());
    }

    #[test]
    fn login_file_choice() {
        let sb = Sandbox::new();
        let mut env = sb.env();
        assert_eq!(
            env.login_file().unwrap(),
            sb.path("home/.config/containers/auth.json")
        );
        env.xdg_config_home = Some(sb.path("xdg"));
        assert_eq!(
            env.login_file().unwrap(),
            sb.path("xdg/containers/auth.json")
        );
        env.xdg_runtime_dir = Some(sb.path("run"));
        assert!(matches!(
            env.login_file(),
            Err(AuthError::RuntimeDirMissing { .. })
        ));
        std::fs::create_dir_all(sb.path("run")).unwrap();
        assert_eq!(
            env.login_file().unwrap(),
            sb.path("run/containers/auth.json")
        );
        env.registry_auth_file = Some(sb.path("mine.json"));
        assert_eq!(env.login_file().unwrap(), sb.path("mine.json"));
        let nothing = AuthEnv::default();
        assert!(matches!(nothing.login_file(), Err(AuthError::NoHome)));
        assert!(nothing.lookup_files().is_empty());
    }

    #[test]
    fn lookup_reads_where_login_writes() {
        // XDG_CONFIG_HOME, with XDG_RUNTIME_DIR unset: login writes there,
        // so lookup must read there too.
        let sb = Sandbox::new();
        let mut env = sb.env();
        env.xdg_config_home = Some(sb.path("xdg"));
        assert_eq!(
            env.lookup_files(),
            vec![
                sb.path("xdg/containers/auth.json"),
                sb.path("home/.docker/config.json")
            ]
        );
        let path = login(&env, "r.io", "u", &Secret::new("p")).unwrap();
        assert_eq!(path, sb.path("xdg/containers/auth.json"));
        let found = lookup(&env, "r.io", None).unwrap().unwrap();
        assert_eq!(found.source, CredentialSource::File(path));
    }

    #[test]
    fn login_writes_and_keeps_the_rest() {
        let sb = Sandbox::new();
        let mut env = sb.env();
        std::fs::create_dir_all(sb.path("run")).unwrap();
        env.xdg_runtime_dir = Some(sb.path("run"));
        let path = login(&env, "localhost:5000", "alice", &Secret::new("pw1")).unwrap();
        assert_eq!(path, sb.path("run/containers/auth.json"));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&sb.path("run/containers")), 0o700);
        assert_eq!(
            basic(lookup(&env, "localhost:5000", None).unwrap()),
            ("alice".into(), "pw1".into())
        );

        // Other entries and unknown fields survive; the entry is replaced.
        std::fs::write(
            &path,
            format!(
                r#"{{"auths":{{"localhost:5000":{{"auth":"{}","email":"x"}},"other.io":{{"auth":"{}"}}}},"credHelpers":{{"h.io":"x"}},"future":[1,2]}}"#,
                b64("alice:pw1"),
                b64("bob:pw2")
            ),
        )
        .unwrap();
        login(&env, "localhost:5000", "carol", &Secret::new("pw3")).unwrap();
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            doc["auths"]["localhost:5000"],
            serde_json::json!({"auth": b64("carol:pw3")})
        );
        assert_eq!(doc["auths"]["other.io"]["auth"], b64("bob:pw2"));
        assert_eq!(doc["credHelpers"]["h.io"], "x");
        assert_eq!(doc["future"], serde_json::json!([1, 2]));
        assert_eq!(mode(&path), 0o600);
        // No temp file is left beside it.
        let names: Vec<_> = std::fs::read_dir(sb.path("run/containers"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["auth.json"]);

        // Docker Hub is written as docker.io, whatever name is given.
        login(&env, "index.docker.io", "hub", &Secret::new("x")).unwrap();
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert!(doc["auths"]["docker.io"].is_object());

        assert!(matches!(
            login(&env, "https://r.io", "u", &Secret::new("p")),
            Err(AuthError::BadRegistry { .. })
        ));
        assert!(matches!(
            login(&env, "r.io", "a:b", &Secret::new("p")),
            Err(AuthError::BadUsername { .. })
        ));
    }

    #[test]
    fn login_refuses_to_clobber_a_malformed_file() {
        let sb = Sandbox::new();
        let mut env = sb.env();
        env.registry_auth_file = Some(sb.path("auth.json"));
        std::fs::write(sb.path("auth.json"), "[1]").unwrap();
        assert!(matches!(
            login(&env, "r.io", "u", &Secret::new("p")),
            Err(AuthError::BadFile { .. })
        ));
        std::fs::write(sb.path("auth.json"), r#"{"auths":[]}"#).unwrap();
        assert!(matches!(
            login(&env, "r.io", "u", &Secret::new("p")),
            Err(AuthError::BadFile { .. })
        ));
        assert_eq!(
            std::fs::read_to_string(sb.path("auth.json")).unwrap(),
            r#"{"auths":[]}"#
        );
    }

    #[test]
    fn logout_removes_every_form_of_the_key() {
        let sb = Sandbox::new();
        let mut env = sb.env();
        env.registry_auth_file = Some(sb.path("a/b/auth.json"));
        match logout(&env, "r.io") {
            Err(AuthError::NotLoggedIn { registry, path }) => {
                assert_eq!(registry, "r.io");
                assert_eq!(path, sb.path("a/b/auth.json"));
            }
            other => panic!("{other:?}"),
        }
        login(&env, "r.io", "u", &Secret::new("p")).unwrap();
        login(&env, "keep.io", "k", &Secret::new("p")).unwrap();
        let path = sb.path("a/b/auth.json");
        let mut doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        doc["auths"]["https://r.io/v1/"] = serde_json::json!({"auth": b64("old:p")});
        std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();

        assert_eq!(logout(&env, "r.io").unwrap(), path);
        assert!(lookup(&env, "r.io", None).unwrap().is_none());
        assert_eq!(basic(lookup(&env, "keep.io", None).unwrap()).0, "k");
        let e = logout(&env, "r.io").unwrap_err().to_string();
        assert!(
            e.contains("r.io") && e.contains(&path.display().to_string()),
            "{e}"
        );
    }
}
