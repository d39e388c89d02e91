//! Which certificate authorities HTTPS trusts: the system's roots plus
//! `SSL_CERT_FILE` (a PEM bundle) and `SSL_CERT_DIR` (directories of PEM
//! files, `:`-separated), so that a private registry's CA can be added
//! without touching the system, as with curl and git.
//!
//! Unlike rustls-native-certs, which lets these variables *replace* the
//! system store, they add to it here (DESIGN.md §5, "Registries"). A
//! variable that names a missing or unreadable file is an error naming it;
//! the system store being absent is not (the variables may be all there is).

use std::path::{Path, PathBuf};

use super::error::{Cause, RemoteErrorKind};

/// Where trusted roots come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TrustRoots {
    /// Load the operating system's roots.
    pub(crate) system: bool,
    /// Extra PEM bundles (from `SSL_CERT_FILE`).
    pub(crate) files: Vec<PathBuf>,
    /// Extra directories of PEM files (from `SSL_CERT_DIR`).
    pub(crate) dirs: Vec<PathBuf>,
}

impl Default for TrustRoots {
    fn default() -> TrustRoots {
        TrustRoots::from_env()
    }
}

impl TrustRoots {
    /// The system's roots plus what `SSL_CERT_FILE` and `SSL_CERT_DIR` name.
    pub(crate) fn from_env() -> TrustRoots {
        TrustRoots::from_vars(
            std::env::var_os("SSL_CERT_FILE"),
            std::env::var_os("SSL_CERT_DIR"),
        )
    }

    /// As [`from_env`](TrustRoots::from_env), with the variables' values
    /// given (tests cannot safely set the environment of a threaded process).
    pub(crate) fn from_vars(
        cert_file: Option<std::ffi::OsString>,
        cert_dir: Option<std::ffi::OsString>,
    ) -> TrustRoots {
        TrustRoots {
            system: true,
            files: cert_file
                .filter(|f| !f.is_empty())
                .map(PathBuf::from)
                .into_iter()
                .collect(),
            dirs: cert_dir
                .map(|d| {
                    std::env::split_paths(&d)
                        .filter(|p| !p.as_os_str().is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The DER certificates to trust.
    pub(crate) fn load(&self) -> Result<Vec<Vec<u8>>, RemoteErrorKind> {
        let mut certs: Vec<Vec<u8>> = Vec::new();
        if self.system {
            // The system store is best effort: a container may have none.
            let (found, errors) = system_roots();
            for e in errors {
                tracing::debug!("system CA certificates: {e}");
            }
            certs.extend(found);
        }
        for file in &self.files {
            let found = load_paths(Some(file), None).map_err(|source| trust_error(file, source))?;
            certs.extend(found);
        }
        for dir in &self.dirs {
            let found = load_paths(None, Some(dir)).map_err(|source| trust_error(dir, source))?;
            certs.extend(found);
        }
        certs.sort_unstable();
        certs.dedup();
        Ok(certs)
    }
}

fn trust_error(path: &Path, source: Cause) -> RemoteErrorKind {
    RemoteErrorKind::TrustStore {
        path: path.to_path_buf(),
        source,
    }
}

fn load_paths(file: Option<&Path>, dir: Option<&Path>) -> Result<Vec<Vec<u8>>, Cause> {
    let result = rustls_native_certs::load_certs_from_paths(file, dir);
    if let Some(e) = result.errors.into_iter().next() {
        return Err(Box::new(e));
    }
    Ok(result.certs.into_iter().map(|c| c.to_vec()).collect())
}

/// The operating system's roots, ignoring `SSL_CERT_*` (added separately).
/// On Linux, the first distribution bundle found (the bundle is what
/// `update-ca-certificates` and its kin keep current); without one, the
/// certificate directories.
#[cfg(all(unix, not(target_os = "macos")))]
fn system_roots() -> (Vec<Vec<u8>>, Vec<String>) {
    const BUNDLES: &[&str] = &[
        "/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Gentoo, Arch
        "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", // Fedora, RHEL
        "/etc/pki/tls/certs/ca-bundle.crt",   // older RHEL
        "/etc/ssl/ca-bundle.pem",             // openSUSE
        "/etc/ssl/cert.pem",                  // Alpine
    ];
    const DIRS: &[&str] = &["/etc/ssl/certs", "/etc/pki/tls/certs"];
    let source = BUNDLES
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .map(|p| (Some(p), None))
        .or_else(|| {
            DIRS.iter()
                .map(Path::new)
                .find(|p| p.is_dir())
                .map(|d| (None, Some(d)))
        });
    match source {
        Some((file, dir)) => {
            let r = rustls_native_certs::load_certs_from_paths(file, dir);
            (
                r.certs.into_iter().map(|c| c.to_vec()).collect(),
                r.errors.iter().map(|e| e.to_string()).collect(),
            )
        }
        None => (Vec::new(), vec!["no CA bundle found".into()]),
    }
}

/// Elsewhere, the platform's store through rustls-native-certs (which lets
/// `SSL_CERT_*` replace it; they are added again after, so nothing is lost
/// but the system roots when they are set).
#[cfg(not(all(unix, not(target_os = "macos"))))]
fn system_roots() -> (Vec<Vec<u8>>, Vec<String>) {
    let r = rustls_native_certs::load_native_certs();
    (
        r.certs.into_iter().map(|c| c.to_vec()).collect(),
        r.errors.iter().map(|e| e.to_string()).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_add_to_the_system_store() {
        let roots = TrustRoots::from_vars(Some("/a.pem".into()), Some("/d1:/d2:".into()));
        assert!(roots.system);
        assert_eq!(roots.files, [PathBuf::from("/a.pem")]);
        assert_eq!(roots.dirs, [PathBuf::from("/d1"), PathBuf::from("/d2")]);
        let none = TrustRoots::from_vars(Some("".into()), None);
        assert!(none.files.is_empty() && none.dirs.is_empty());
    }

    #[test]
    fn a_missing_cert_file_is_an_error_naming_it() {
        let roots = TrustRoots {
            system: false,
            files: vec!["/nonexistent/ca.pem".into()],
            dirs: vec![],
        };
        let err = roots.load().unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot load CA certificates from /nonexistent/ca.pem"
        );
    }

    #[test]
    fn loads_a_bundle_and_a_directory() {
        let certs = testkit::tls::TestCerts::generate();
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(certs.ca_file(), dir.path().join("ca.pem")).unwrap();
        let from_file = TrustRoots {
            system: false,
            files: vec![certs.ca_file().to_path_buf()],
            dirs: vec![],
        }
        .load()
        .unwrap();
        assert_eq!(from_file.len(), 1);
        let from_dir = TrustRoots {
            system: false,
            files: vec![],
            dirs: vec![dir.path().to_path_buf()],
        }
        .load()
        .unwrap();
        assert_eq!(from_dir, from_file);
    }
}
