//! Docker references, parsed and normalised as docker does.
//!
//! A reference is `[HOST[:PORT]/]REPO[:TAG][@DIGEST]`. The first
//! `/`-separated component is a host only if it is `localhost` or contains a
//! `.` or a `:`; otherwise the whole name is a repository on Docker Hub, and a
//! one-component Hub repository lives under `library/`:
//!
//! | input                          | registry         | repository        | tag      |
//! |--------------------------------|------------------|-------------------|----------|
//! | `busybox`                      | `docker.io`      | `library/busybox` | (latest) |
//! | `library/busybox:1.36`         | `docker.io`      | `library/busybox` | `1.36`   |
//! | `index.docker.io/busybox`      | `docker.io`      | `library/busybox` | (latest) |
//! | `localhost:5000/a`             | `localhost:5000` | `a`               | (latest) |
//! | `a:5000/b:tag`                 | `a:5000`         | `b`               | `tag`    |
//! | `localhost:5000` (no slash)    | `docker.io`      | `library/localhost` | `5000` |
//!
//! The last row is docker's rule too: without a `/` there is no host.
//!
//! Repository components follow the distribution grammar
//! (`[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`, joined by `/`, at most 255
//! characters in all), tags `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`, and digests
//! must be `sha256:` or `sha512:` with full-length lower-case hex. Everything
//! is checked before any request is made, and [`check_repository`] and
//! [`check_tag`] serve the registry server's URL checks as well.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::digest::{Digest, DigestError};

/// Docker Hub's name in references and image names.
pub(crate) const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's old name, still accepted in references and auth files.
pub(crate) const DOCKER_HUB_LEGACY: &str = "index.docker.io";
/// The host Docker Hub's registry API is served from.
pub(crate) const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// The tag a reference without tag or digest means.
pub(crate) const DEFAULT_TAG: &str = "latest";
/// The longest repository path (without the host) the grammar admits.
pub(crate) const MAX_REPOSITORY_LEN: usize = 255;
/// The longest tag.
pub(crate) const MAX_TAG_LEN: usize = 128;

/// Why a string is not a valid reference, repository name or tag. Every
/// variant names the input as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceError {
    /// The input is empty.
    #[error("invalid reference {input:?}: it is empty")]
    Empty {
        /// The input.
        input: String,
    },
    /// 64 hex digits: an image ID, which docker refuses as a name too.
    #[error(
        "invalid reference {input:?}: a 64-digit hex string is an image ID, not a repository name"
    )]
    LooksLikeId {
        /// The input.
        input: String,
    },
    /// The host part is not `host[:port]`.
    #[error("invalid reference {input:?}: {registry:?} is not a valid registry host[:port]")]
    BadRegistry {
        /// The input.
        input: String,
        /// The host part.
        registry: String,
    },
    /// The repository has upper-case letters.
    #[error("invalid reference {input:?}: repository name {repository:?} must be lower case")]
    UpperCase {
        /// The input.
        input: String,
        /// The repository part.
        repository: String,
    },
    /// The repository breaks the distribution grammar.
    #[error("invalid reference {input:?}: repository name {repository:?} {reason}")]
    BadRepository {
        /// The input.
        input: String,
        /// The repository part.
        repository: String,
        /// How, as a predicate.
        reason: &'static str,
    },
    /// The repository is longer than the grammar allows.
    #[error(
        "invalid reference {input:?}: repository name is {len} characters long, more than {MAX_REPOSITORY_LEN}"
    )]
    NameTooLong {
        /// The input.
        input: String,
        /// The repository's length.
        len: usize,
    },
    /// The tag breaks the tag grammar.
    #[error(
        "invalid reference {input:?}: tag {tag:?} must be 1 to 128 of letters, digits, '_', '.' and '-', not starting with '.' or '-'"
    )]
    BadTag {
        /// The input.
        input: String,
        /// The tag part.
        tag: String,
    },
    /// The digest part is not a digest.
    #[error("invalid reference {input:?}: {cause}")]
    BadDigest {
        /// The input.
        input: String,
        /// Why (told in the message, so not a `source`).
        cause: DigestError,
    },
    /// The digest is not written `<algorithm>:<hex>`.
    #[error("invalid reference {input:?}: digest {digest:?} must be written <algorithm>:<hex>")]
    DigestForm {
        /// The input.
        input: String,
        /// The digest part.
        digest: String,
    },
}

/// A normalised docker reference. Fields are private: every `Reference` has
/// passed the grammar, so its parts can go into URLs and image names as they
/// are.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises a reference as docker does (module docs).
    pub(crate) fn parse(input: &str) -> Result<Reference, ReferenceError> {
        let owned = || input.to_string();
        if input.is_empty() {
            return Err(ReferenceError::Empty { input: owned() });
        }
        if input.len() == 64
            && input
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(ReferenceError::LooksLikeId { input: owned() });
        }

        let (named, digest) = match input.split_once('@') {
            Some((named, digest)) => (named, Some(parse_digest(input, digest)?)),
            None => (input, None),
        };

        let (registry, remainder) = split_registry(named);
        // A tag is what follows the last ':' of the part after the host (a
        // ':' in the host is a port).
        let (path, tag) = match remainder.rsplit_once(':') {
            Some((path, tag)) if !tag.contains('/') => (path, Some(tag)),
            _ => (remainder, None),
        };

        if let Some(registry) = registry
            && !is_valid_registry(registry)
        {
            return Err(ReferenceError::BadRegistry {
                input: owned(),
                registry: registry.to_string(),
            });
        }
        let registry = match registry {
            None | Some(DOCKER_HUB_LEGACY) => DOCKER_HUB,
            Some(host) => host,
        };
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        check_repository_for(input, &repository)?;
        if let Some(tag) = tag {
            check_tag_for(input, tag)?;
        }
        Ok(Reference {
            registry: registry.to_string(),
            repository,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// The registry as written in references: `docker.io`, `localhost:5000`.
    pub(crate) fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path on the registry: `library/busybox`.
    pub(crate) fn repository(&self) -> &str {
        &self.repository
    }

    pub(crate) fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub(crate) fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The tag, or `latest` when the reference names none.
    pub(crate) fn tag_or_latest(&self) -> &str {
        self.tag.as_deref().unwrap_or(DEFAULT_TAG)
    }

    /// The image name the store records: `HOST/REPO`, so Hub images keep
    /// `docker.io/library/…`.
    pub(crate) fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What goes after `/manifests/` in the API: the digest when there is one
    /// (it pins the content, so it wins over a tag), else the tag or `latest`.
    pub(crate) fn manifest_reference(&self) -> String {
        match &self.digest {
            Some(digest) => digest.to_string(),
            None => self.tag_or_latest().to_string(),
        }
    }
}

impl fmt::Display for Reference {
    /// The full normalised form: `docker.io/library/busybox:latest`,
    /// `localhost:5000/a@sha256:…`, `host/a:1@sha256:…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        match (&self.tag, &self.digest) {
            (Some(tag), Some(digest)) => write!(f, ":{tag}@{digest}"),
            (Some(tag), None) => write!(f, ":{tag}"),
            (None, Some(digest)) => write!(f, "@{digest}"),
            (None, None) => write!(f, ":{DEFAULT_TAG}"),
        }
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// The host (and port) a registry's API is served from: Docker Hub's API
/// lives on `registry-1.docker.io` (under either of its names), every
/// other registry on its name.
pub(crate) fn api_host(registry: &str) -> &str {
    match registry {
        DOCKER_HUB | DOCKER_HUB_LEGACY => DOCKER_HUB_API,
        other => other,
    }
}

/// Splits off the host when the first component is one (module docs).
fn split_registry(named: &str) -> (Option<&str>, &str) {
    match named.split_once('/') {
        Some((first, rest)) if first == "localhost" || first.contains(['.', ':']) => {
            (Some(first), rest)
        }
        _ => (None, named),
    }
}

fn parse_digest(input: &str, digest: &str) -> Result<Digest, ReferenceError> {
    let parsed = Digest::parse(digest).map_err(|cause| ReferenceError::BadDigest {
        input: input.to_string(),
        cause,
    })?;
    // `Digest::parse` also takes appc's `sha512-…`; a reference does not.
    if parsed.to_string() != digest {
        return Err(ReferenceError::DigestForm {
            input: input.to_string(),
            digest: digest.to_string(),
        });
    }
    Ok(parsed)
}

/// Whether `host` is `HOST[:PORT]` by the reference grammar: DNS-like labels
/// of letters, digits and inner `-` joined by `.`, or an IPv6 address in
/// brackets; then an optional `:` and decimal port.
pub(crate) fn is_valid_registry(host: &str) -> bool {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((address, after)) = rest.split_once(']') else {
            return false;
        };
        if address.is_empty() || !address.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return false,
            },
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    if host.starts_with('[') {
        return true;
    }
    !name.is_empty()
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        })
}

/// Checks a repository path (`library/busybox`, no host) against the
/// distribution grammar; the registry server checks URL names with it.
pub(crate) fn check_repository(name: &str) -> Result<(), ReferenceError> {
    check_repository_for(name, name)
}

/// Checks a tag against `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub(crate) fn check_tag(tag: &str) -> Result<(), ReferenceError> {
    check_tag_for(tag, tag)
}

fn check_repository_for(input: &str, repository: &str) -> Result<(), ReferenceError> {
    let bad = |reason| ReferenceError::BadRepository {
        input: input.to_string(),
        repository: repository.to_string(),
        reason,
    };
    if repository.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ReferenceError::UpperCase {
            input: input.to_string(),
            repository: repository.to_string(),
        });
    }
    if repository.is_empty() {
        return Err(bad("is empty"));
    }
    if repository.len() > MAX_REPOSITORY_LEN {
        return Err(ReferenceError::NameTooLong {
            input: input.to_string(),
            len: repository.len(),
        });
    }
    for component in repository.split('/') {
        if component.is_empty() {
            return Err(bad("has an empty path component"));
        }
        check_component(component).map_err(bad)?;
    }
    Ok(())
}

/// One path component: runs of `[a-z0-9]` separated by exactly one `.`,
/// one or two `_`, or any number of `-`.
fn check_component(component: &str) -> Result<(), &'static str> {
    let b = component.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !b
        .iter()
        .all(|&c| alnum(c) || matches!(c, b'.' | b'_' | b'-'))
    {
        return Err("may contain only a-z, 0-9, '.', '_', '-' and '/'");
    }
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return Err("has a component that does not start and end with a letter or digit");
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|c| c == b'-');
        if !ok {
            return Err("has a separator other than '.', '_', '__' or dashes between letters");
        }
    }
    Ok(())
}

fn check_tag_for(input: &str, tag: &str) -> Result<(), ReferenceError> {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let b = tag.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && word(b[0])
        && b.iter().all(|&c| word(c) || c == b'.' || c == b'-');
    if ok {
        Ok(())
    } else {
        Err(ReferenceError::BadTag {
            input: input.to_string(),
            tag: tag.to_string(),
        })
    }
}

/// Docker's rule for registries spoken to over plain HTTP: `localhost`,
/// `127.0.0.0/8` and `::1`, with or without a port (`[::1]:5000`). Every
/// other registry gets HTTPS unless the user says `--plain-http`.
pub(crate) fn uses_plain_http(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((address, _)) => address,
            None => return false,
        }
    } else if host.parse::<Ipv6Addr>().is_ok() {
        // A bare IPv6 address has colons but no port.
        host
    } else {
        host.split_once(':').map_or(host, |(name, _)| name)
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if let Ok(v4) = name.parse::<Ipv4Addr>() {
        return v4.is_loopback();
    }
    name.parse::<Ipv6Addr>().is_ok_and(|v6| v6.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "sha256:7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa";

    fn parts(input: &str) -> (String, String, Option<String>, Option<String>) {
        let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        (
            r.registry().to_string(),
            r.repository().to_string(),
            r.tag().map(str::to_string),
            r.digest().map(|d| d.to_string()),
        )
    }

    #[test]
    fn normalises_as_docker_does() {
        let table: &[(&str, &str, &str, Option<&str>)] = &[
            ("busybox", "docker.io", "library/busybox", None),
            ("busybox:1.36", "docker.io", "library/busybox", Some("1.36")),
            ("library/busybox", "docker.io", "library/busybox", None),
            ("docker.io/busybox", "docker.io", "library/busybox", None),
            (
                "docker.io/library/busybox",
                "docker.io",
                "library/busybox",
                None,
            ),
            (
                "index.docker.io/busybox:x",
                "docker.io",
                "library/busybox",
                Some("x"),
            ),
            ("user/app", "docker.io", "user/app", None),
            ("a/b/c/d", "docker.io", "a/b/c/d", None),
            ("localhost/a", "localhost", "a", None),
            ("localhost:5000/a", "localhost:5000", "a", None),
            ("localhost:5000/a/b:v1", "localhost:5000", "a/b", Some("v1")),
            ("a:5000/b:tag", "a:5000", "b", Some("tag")),
            ("a.b/c", "a.b", "c", None),
            ("127.0.0.1:5000/x", "127.0.0.1:5000", "x", None),
            ("[::1]:5000/x:y", "[::1]:5000", "x", Some("y")),
            ("[fe80::1]/x", "[fe80::1]", "x", None),
            ("Example.COM/x", "Example.COM", "x", None),
            (
                "quay.io/org/app:latest",
                "quay.io",
                "org/app",
                Some("latest"),
            ),
            // No '/', so no host, as docker has it.
            (
                "localhost:5000",
                "docker.io",
                "library/localhost",
                Some("5000"),
            ),
            ("foo_bar/a__b", "docker.io", "foo_bar/a__b", None),
            ("a-----b/c.d", "docker.io", "a-----b/c.d", None),
        ];
        for (input, registry, repository, tag) in table {
            let (r, p, t, d) = parts(input);
            assert_eq!(
                (r.as_str(), p.as_str(), t.as_deref(), d),
                (*registry, *repository, *tag, None),
                "{input}"
            );
        }
    }

    #[test]
    fn display_is_the_full_normalised_form() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("localhost:5000/a", "localhost:5000/a:latest"),
            ("a:5000/b:tag", "a:5000/b:tag"),
            (
                &format!("busybox@{SHA}"),
                &format!("docker.io/library/busybox@{SHA}"),
            ),
            (&format!("h.io/a:1@{SHA}"), &format!("h.io/a:1@{SHA}")),
        ];
        for (input, shown) in cases {
            let r = Reference::parse(input).unwrap();
            assert_eq!(r.to_string(), shown);
            // The normalised form parses to itself.
            assert_eq!(Reference::parse(shown).unwrap().to_string(), shown);
        }
    }

    #[test]
    fn names_tags_and_api_hosts() {
        let hub = Reference::parse("busybox").unwrap();
        assert_eq!(hub.name(), "docker.io/library/busybox");
        assert_eq!(hub.tag(), None);
        assert_eq!(hub.tag_or_latest(), "latest");
        assert_eq!(hub.manifest_reference(), "latest");
        assert_eq!(api_host(hub.registry()), "registry-1.docker.io");
        assert_eq!(api_host(DOCKER_HUB_LEGACY), "registry-1.docker.io");

        let local = Reference::parse("localhost:5000/a/b:v2").unwrap();
        assert_eq!(local.name(), "localhost:5000/a/b");
        assert_eq!(local.tag_or_latest(), "v2");
        assert_eq!(api_host(local.registry()), "localhost:5000");

        let pinned = Reference::parse(&format!("quay.io/x:1@{SHA}")).unwrap();
        assert_eq!(pinned.tag(), Some("1"));
        assert_eq!(pinned.digest().unwrap().to_string(), SHA);
        assert_eq!(pinned.manifest_reference(), SHA);
    }

    #[test]
    fn digests_with_and_without_tag() {
        let (r, p, t, d) = parts(&format!("busybox@{SHA}"));
        assert_eq!(
            (r.as_str(), p.as_str(), t, d.as_deref()),
            ("docker.io", "library/busybox", None, Some(SHA))
        );
        let (_, _, t, d) = parts(&format!("localhost:5000/a:v1@{SHA}"));
        assert_eq!((t.as_deref(), d.as_deref()), (Some("v1"), Some(SHA)));
        let sha512 = format!("sha512:{}", "ab".repeat(64));
        assert_eq!(
            parts(&format!("x/y@{sha512}")).3.as_deref(),
            Some(sha512.as_str())
        );
    }

    #[test]
    fn rejects_bad_digests() {
        let short = "busybox@sha256:abc";
        assert!(matches!(
            Reference::parse(short),
            Err(ReferenceError::BadDigest { .. })
        ));
        let upper = format!("busybox@sha256:{}", "A".repeat(64));
        assert!(matches!(
            Reference::parse(&upper),
            Err(ReferenceError::BadDigest { .. })
        ));
        let md5 = format!("busybox@md5:{}", "a".repeat(32));
        assert!(matches!(
            Reference::parse(&md5),
            Err(ReferenceError::BadDigest { .. })
        ));
        let appc = format!("busybox@sha256-{}", "a".repeat(64));
        assert!(matches!(
            Reference::parse(&appc),
            Err(ReferenceError::DigestForm { .. })
        ));
        assert!(Reference::parse(&format!("busybox@{SHA}@{SHA}")).is_err());
        assert!(Reference::parse("busybox@").is_err());
        let e = Reference::parse(short).unwrap_err().to_string();
        assert!(e.contains("busybox@sha256:abc"), "{e}");
    }

    #[test]
    fn rejects_upper_case_repositories() {
        for input in [
            "Busybox",
            "docker.io/Library/busybox",
            "localhost:5000/App",
            "Foo/bar",
        ] {
            match Reference::parse(input) {
                Err(ReferenceError::UpperCase { input: i, .. }) => assert_eq!(i, input),
                other => panic!("{input}: {other:?}"),
            }
        }
        let e = Reference::parse("Busybox").unwrap_err().to_string();
        assert!(e.contains("\"library/Busybox\" must be lower case"), "{e}");
    }

    #[test]
    fn rejects_bad_repositories() {
        for input in [
            "a//b",
            "/a",
            "a/",
            "localhost:5000/",
            "docker.io/",
            "a..b",
            "a._b",
            "a___b",
            "-a",
            "a-",
            "_a",
            "a/.b",
            "a b",
            "a/b c:1",
            "ä",
            "a+b",
        ] {
            let result = Reference::parse(input);
            assert!(
                matches!(result, Err(ReferenceError::BadRepository { .. })),
                "{input}: {result:?}"
            );
        }
        assert!(matches!(
            Reference::parse(""),
            Err(ReferenceError::Empty { .. })
        ));
        assert!(matches!(
            Reference::parse(&"a".repeat(64)),
            Err(ReferenceError::LooksLikeId { .. })
        ));
        // 63 hex digits is a fine name.
        assert!(Reference::parse(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn rejects_bad_registries() {
        for input in [
            "a.-b/c",
            "a..b/c",
            "host:/c",
            "host:50x0/c",
            "[::1/c",
            "[]:5000/c",
            "[::1]x/c",
            ".a/c",
        ] {
            let result = Reference::parse(input);
            assert!(
                matches!(result, Err(ReferenceError::BadRegistry { .. })),
                "{input}: {result:?}"
            );
        }
    }

    #[test]
    fn length_limits() {
        // 255 characters of path: 'library/' (8) + 247.
        let at_limit = "a".repeat(247);
        assert_eq!(Reference::parse(&at_limit).unwrap().repository().len(), 255);
        let over = "a".repeat(248);
        assert!(matches!(
            Reference::parse(&over),
            Err(ReferenceError::NameTooLong { len: 256, .. })
        ));
        let long_path = format!("h.io/{}", "a".repeat(255));
        assert!(Reference::parse(&long_path).is_ok());
        assert!(Reference::parse(&format!("{long_path}b")).is_err());
        let tag128 = format!("a:{}", "t".repeat(128));
        assert!(Reference::parse(&tag128).is_ok());
        let tag129 = format!("a:{}", "t".repeat(129));
        assert!(matches!(
            Reference::parse(&tag129),
            Err(ReferenceError::BadTag { .. })
        ));
    }

    #[test]
    fn tag_grammar() {
        for good in ["latest", "1.0", "_x", "V1-rc.2", "A", "0"] {
            assert!(check_tag(good).is_ok(), "{good}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", "a b", "é", "a+b"] {
            assert!(check_tag(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            Reference::parse("a:"),
            Err(ReferenceError::BadTag { .. })
        ));
        assert!(matches!(
            Reference::parse("a:.x"),
            Err(ReferenceError::BadTag { .. })
        ));
        // A ':' before the last '/' is a port, never a tag.
        assert!(Reference::parse("h:1/a").unwrap().tag().is_none());
    }

    #[test]
    fn repository_checker_for_the_server() {
        assert!(check_repository("library/busybox").is_ok());
        assert!(check_repository("a/b_c/d-e/f.g/h__i").is_ok());
        assert!(matches!(
            check_repository("A"),
            Err(ReferenceError::UpperCase { .. })
        ));
        assert!(matches!(
            check_repository(""),
            Err(ReferenceError::BadRepository { .. })
        ));
        assert!(matches!(
            check_repository("a/../b"),
            Err(ReferenceError::BadRepository { .. })
        ));
        assert!(matches!(
            check_repository(&"a".repeat(256)),
            Err(ReferenceError::NameTooLong { .. })
        ));
    }

    #[test]
    fn plain_http_rule() {
        for host in [
            "localhost",
            "localhost:5000",
            "LocalHost:1",
            "127.0.0.1",
            "127.0.0.1:5000",
            "127.255.3.4:80",
            "[::1]",
            "[::1]:5000",
            "::1",
            "[0:0:0:0:0:0:0:1]:443",
        ] {
            assert!(uses_plain_http(host), "{host}");
        }
        for host in [
            "docker.io",
            "registry-1.docker.io",
            "128.0.0.1:5000",
            "10.0.0.1",
            "localhost.example.com",
            "mylocalhost",
            "[::2]:5000",
            "[fe80::1]",
            "127.0.0.1.nip.io",
            "[::1",
        ] {
            assert!(!uses_plain_http(host), "{host}");
        }
    }
}
