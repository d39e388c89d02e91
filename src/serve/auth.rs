//! Basic auth against an htpasswd file of bcrypt entries (`USER:$2y$…`, as
//! Debian's `htpasswd -B` writes them; apache's MD5 and SHA-1 forms are
//! refused when the file is read, not at the first request).
//!
//! bcrypt is slow on purpose (milliseconds to a second per check, by the
//! cost in the hash), and a pull makes dozens of requests, each with the
//! same header. So a credential that was verified once is remembered, by a
//! SHA-256 of the user, the password and the hash it matched (never the
//! password itself), and later requests with it cost a hash. Wrong ones pay
//! for bcrypt every time.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use super::error::ServeError;
use crate::error::{Error, IoContext};

pub(super) struct Htpasswd {
    path: PathBuf,
    /// User → bcrypt hash.
    users: HashMap<String, String>,
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl Htpasswd {
    pub(super) fn load(path: &Path) -> Result<Htpasswd, Error> {
        let text = std::fs::read_to_string(path).ctx("read htpasswd file", path)?;
        let bad = |line, reason| ServeError::Htpasswd {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| bad(i + 1, "expected USER:HASH"))?;
            if user.is_empty() {
                return Err(bad(i + 1, "the user name is empty").into());
            }
            if !(hash.starts_with("$2y$") || hash.starts_with("$2b$") || hash.starts_with("$2a$")) {
                return Err(bad(
                    i + 1,
                    "only bcrypt entries are supported (write them with htpasswd -B)",
                )
                .into());
            }
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(bad(i + 1, "the bcrypt hash is malformed").into());
            }
            users.insert(user.to_string(), hash.to_string());
        }
        if users.is_empty() {
            return Err(bad(0, "it holds no user").into());
        }
        Ok(Htpasswd {
            path: path.to_path_buf(),
            users,
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// The user an `Authorization` header authenticates, if it does. Runs
    /// bcrypt: call it on the blocking pool.
    pub(super) fn check(&self, authorization: Option<&str>) -> Option<String> {
        let (user, password) = basic_credentials(authorization?)?;
        let hash = self.users.get(&user)?;
        let key: [u8; 32] = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .chain_update([0])
            .chain_update(hash.as_bytes())
            .finalize()
            .into();
        let verified = |set: &Mutex<HashSet<[u8; 32]>>| {
            set.lock().unwrap_or_else(|p| p.into_inner()).contains(&key)
        };
        if verified(&self.verified) {
            return Some(user);
        }
        match bcrypt::verify(password.as_bytes(), hash) {
            Ok(true) => {
                self.verified
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key);
                Some(user)
            }
            Ok(false) => None,
            Err(e) => {
                tracing::warn!(
                    "{}: cannot check {user}'s password: {e}",
                    self.path.display()
                );
                None
            }
        }
    }
}

/// `Basic base64(user:password)` → (user, password).
fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user_password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_password)
        )
    }

    #[test]
    fn checks_bcrypt_entries_and_remembers_good_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        // Cost 4, the cheapest, to keep the test fast.
        let hash = bcrypt::hash("s3cret", 4)
            .unwrap()
            .replacen("$2b$", "$2y$", 1);
        std::fs::write(&path, format!("# users\n\ntester:{hash}\n")).unwrap();
        let auth = Htpasswd::load(&path).unwrap();
        assert_eq!(
            auth.check(Some(&basic("tester:s3cret"))).as_deref(),
            Some("tester")
        );
        assert_eq!(auth.verified.lock().unwrap().len(), 1);
        assert_eq!(
            auth.check(Some(&basic("tester:s3cret"))).as_deref(),
            Some("tester")
        );
        assert_eq!(auth.check(Some(&basic("tester:wrong"))), None);
        assert_eq!(auth.check(Some(&basic("other:s3cret"))), None);
        assert_eq!(auth.check(Some(&basic("tester"))), None);
        assert_eq!(auth.check(Some("Bearer abc")), None);
        assert_eq!(auth.check(Some("Basic !!!")), None);
        assert_eq!(auth.check(None), None);
        assert_eq!(auth.verified.lock().unwrap().len(), 1);
    }

    #[test]
    fn refuses_files_it_cannot_use_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        for (text, line) in [
            ("u:$apr1$abc$def\n", 1),
            ("# c\nu:{SHA}abc=\n", 2),
            ("nocolon\n", 1),
            ("u:$2y$05$short\n", 1),
            (
                ":$2y$05$abcdefghijklmnopqrstuuKr7v7hB8UQ0w5rJk6o0Zb3Hq3r3r3r3\n",
                1,
            ),
            ("", 0),
        ] {
            std::fs::write(&path, text).unwrap();
            match Htpasswd::load(&path) {
                Err(Error::Serve(ServeError::Htpasswd { line: l, .. })) => {
                    assert_eq!(l, line, "{text:?}")
                }
                Err(e) => panic!("{text:?}: {e}"),
                Ok(_) => panic!("{text:?} was accepted"),
            }
        }
    }
}
