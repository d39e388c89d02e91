//! `WWW-Authenticate` challenges (RFC 7235) and the scopes of docker's
//! token protocol.
//!
//! A registry that wants credentials answers `401` with one or more
//! challenges, several per header line if it likes:
//!
//! ```text
//! WWW-Authenticate: Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"
//! WWW-Authenticate: Basic realm="Registry Realm", Bearer realm="https://h/token,v2"
//! ```
//!
//! For `Bearer`, the client fetches a token from the realm with the service
//! and the scopes it needs ([`BearerChallenge::token_url`]) and retries;
//! `error="insufficient_scope"` on a later `401` names a scope the token
//! lacked. Parameter values are tokens or quoted strings with `\` escapes,
//! so commas inside quotes are part of the value.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::paths::append_query;
use crate::remote::http::Origin;

/// Why a challenge header or scope could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChallengeError {
    /// The header is not RFC 7235's grammar.
    #[error("malformed WWW-Authenticate header {header:?}: {reason}")]
    Malformed {
        /// The header's value.
        header: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A Bearer challenge without the realm to ask for a token.
    #[error("the Bearer challenge {header:?} names no realm")]
    NoRealm {
        /// The challenge.
        header: String,
    },
    /// A realm that is not an http(s) URL.
    #[error("the Bearer challenge's realm {realm:?} is not an http(s) URL")]
    BadRealm {
        /// The realm.
        realm: String,
    },
    /// A scope that is not `TYPE:NAME:ACTIONS`.
    #[error("malformed token scope {scope:?}: expected TYPE:NAME:ACTION[,ACTION…]")]
    BadScope {
        /// The scope.
        scope: String,
    },
}

/// One challenge: a scheme (lower case) and its parameters (names lower
/// case), or a token68 blob for schemes that use one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    scheme: String,
    params: Vec<(String, String)>,
    token68: Option<String>,
}

impl Challenge {
    /// The first value of a parameter, by case-insensitive name.
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn is_basic(&self) -> bool {
        self.scheme == "basic"
    }

    pub(crate) fn is_bearer(&self) -> bool {
        self.scheme == "bearer"
    }
}

/// Parses every challenge in one header value.
pub(crate) fn parse_challenges(header: &str) -> Result<Vec<Challenge>, ChallengeError> {
    let mut parser = Parser {
        header,
        s: header.as_bytes(),
        i: 0,
    };
    let mut challenges = Vec::new();
    loop {
        parser.skip_list_separators();
        if parser.at_end() {
            return Ok(challenges);
        }
        let scheme = parser.token();
        if scheme.is_empty() {
            return Err(parser.malformed("expected an auth scheme"));
        }
        let mut challenge = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: Vec::new(),
            token68: None,
        };
        parser.skip_space();
        // Right after the scheme: a token68 or the first parameter.
        if !parser.at_end() && parser.peek() != b',' {
            if let Some(blob) = parser.token68() {
                challenge.token68 = Some(blob);
            } else {
                let param = parser.param()?;
                challenge.params.push(param);
            }
        }
        // Then `, name=value` pairs until a comma is followed by something
        // that is not a parameter: the next challenge's scheme.
        loop {
            parser.skip_space();
            if parser.at_end() {
                break;
            }
            if parser.peek() != b',' {
                return Err(parser.malformed("expected ',' between parameters"));
            }
            let before_comma = parser.i;
            parser.skip_list_separators();
            if parser.at_end() {
                break;
            }
            if challenge.token68.is_some() || !parser.looking_at_param() {
                parser.i = before_comma;
                break;
            }
            let param = parser.param()?;
            challenge.params.push(param);
        }
        challenges.push(challenge);
    }
}

/// Parses the challenges of several header lines.
pub(crate) fn parse_all<'a>(
    headers: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<Challenge>, ChallengeError> {
    let mut all = Vec::new();
    for header in headers {
        all.extend(parse_challenges(header)?);
    }
    Ok(all)
}

struct Parser<'a> {
    header: &'a str,
    s: &'a [u8],
    i: usize,
}

/// RFC 7230 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

impl Parser<'_> {
    fn malformed(&self, reason: &'static str) -> ChallengeError {
        ChallengeError::Malformed {
            header: self.header.to_string(),
            reason,
        }
    }

    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> u8 {
        self.s[self.i]
    }

    fn skip_space(&mut self) {
        while !self.at_end() && matches!(self.peek(), b' ' | b'\t') {
            self.i += 1;
        }
    }

    fn skip_list_separators(&mut self) {
        while !self.at_end() && matches!(self.peek(), b' ' | b'\t' | b',') {
            self.i += 1;
        }
    }

    fn token(&mut self) -> &str {
        let start = self.i;
        while !self.at_end() && is_tchar(self.peek()) {
            self.i += 1;
        }
        &self.header[start..self.i]
    }

    /// A token68 (`dXNlcg==`) if that is what comes next: its characters,
    /// optional `=` padding, then the end, a comma or spaces. `name=value`
    /// is not one, since a value follows its `=`.
    fn token68(&mut self) -> Option<String> {
        let start = self.i;
        let mut j = self.i;
        while j < self.s.len() && is_token68_char(self.s[j]) {
            j += 1;
        }
        if j == start {
            return None;
        }
        while j < self.s.len() && self.s[j] == b'=' {
            j += 1;
        }
        let mut k = j;
        while k < self.s.len() && matches!(self.s[k], b' ' | b'\t') {
            k += 1;
        }
        if k == self.s.len() || self.s[k] == b',' {
            self.i = j;
            Some(self.header[start..j].to_string())
        } else {
            None
        }
    }

    /// Whether a `name=` (with optional spaces around `=`) comes next.
    fn looking_at_param(&self) -> bool {
        let mut j = self.i;
        while j < self.s.len() && is_tchar(self.s[j]) {
            j += 1;
        }
        if j == self.i {
            return false;
        }
        while j < self.s.len() && matches!(self.s[j], b' ' | b'\t') {
            j += 1;
        }
        j < self.s.len() && self.s[j] == b'='
    }

    fn param(&mut self) -> Result<(String, String), ChallengeError> {
        let name = self.token().to_ascii_lowercase();
        if name.is_empty() {
            return Err(self.malformed("expected a parameter name"));
        }
        self.skip_space();
        if self.at_end() || self.peek() != b'=' {
            return Err(self.malformed("expected '=' after a parameter name"));
        }
        self.i += 1;
        self.skip_space();
        if self.at_end() {
            return Err(self.malformed("a parameter has no value"));
        }
        let value = if self.peek() == b'"' {
            self.quoted()?
        } else {
            // Lenient: some registries send `realm=https://…` unquoted,
            // though ':' and '/' are not token characters.
            let start = self.i;
            while !self.at_end() && !matches!(self.peek(), b',' | b' ' | b'\t' | b'"') {
                self.i += 1;
            }
            if start == self.i {
                return Err(self.malformed("a parameter has no value"));
            }
            self.header[start..self.i].to_string()
        };
        Ok((name, value))
    }

    fn quoted(&mut self) -> Result<String, ChallengeError> {
        self.i += 1; // the opening quote
        let mut value = Vec::new();
        while !self.at_end() {
            match self.peek() {
                b'"' => {
                    self.i += 1;
                    return String::from_utf8(value)
                        .map_err(|_| self.malformed("a quoted string is not UTF-8"));
                }
                b'\\' => {
                    self.i += 1;
                    if self.at_end() {
                        break;
                    }
                    value.push(self.peek());
                    self.i += 1;
                }
                b => {
                    value.push(b);
                    self.i += 1;
                }
            }
        }
        Err(self.malformed("a quoted string is not closed"))
    }
}

/// A `Bearer` challenge's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BearerChallenge {
    pub(crate) realm: String,
    pub(crate) service: Option<String>,
    /// The scope strings the server named (space-separated in the header).
    pub(crate) scope: Vec<String>,
    /// `invalid_token`, `insufficient_scope`, … when the server said why.
    pub(crate) error: Option<String>,
}

impl BearerChallenge {
    /// Reads a `Bearer` challenge; `None` for other schemes.
    pub(crate) fn from_challenge(
        challenge: &Challenge,
    ) -> Option<Result<BearerChallenge, ChallengeError>> {
        if !challenge.is_bearer() {
            return None;
        }
        let header = || {
            let params: Vec<String> = challenge
                .params
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect();
            format!("Bearer {}", params.join(","))
        };
        let Some(realm) = challenge.param("realm") else {
            return Some(Err(ChallengeError::NoRealm { header: header() }));
        };
        if Origin::of(realm).is_err() {
            return Some(Err(ChallengeError::BadRealm {
                realm: realm.to_string(),
            }));
        }
        Some(Ok(BearerChallenge {
            realm: realm.to_string(),
            service: challenge.param("service").map(str::to_string),
            scope: challenge
                .param("scope")
                .map(|s| s.split_ascii_whitespace().map(str::to_string).collect())
                .unwrap_or_default(),
            error: challenge.param("error").map(str::to_string),
        }))
    }

    /// The first Bearer challenge among several.
    pub(crate) fn find(
        challenges: &[Challenge],
    ) -> Option<Result<BearerChallenge, ChallengeError>> {
        challenges.iter().find_map(BearerChallenge::from_challenge)
    }

    /// Whether the server says the token lacked a scope (retry once with
    /// the scopes it names added).
    pub(crate) fn insufficient_scope(&self) -> bool {
        self.error.as_deref() == Some("insufficient_scope")
    }

    /// The scopes the server named, parsed.
    pub(crate) fn scopes(&self) -> Result<Vec<Scope>, ChallengeError> {
        self.scope.iter().map(|s| Scope::parse(s)).collect()
    }

    /// `realm?service=…&scope=…&scope=…[&account=…]`, every value
    /// percent-encoded, added to whatever query the realm has.
    pub(crate) fn token_url(&self, scopes: &ScopeSet, account: Option<&str>) -> String {
        let mut url = self.realm.clone();
        if let Some(service) = &self.service {
            url = append_query(&url, "service", service);
        }
        for scope in scopes.iter() {
            url = append_query(&url, "scope", &scope.to_string());
        }
        if let Some(account) = account {
            url = append_query(&url, "account", account);
        }
        url
    }
}

/// One scope of docker's token protocol: `repository:library/busybox:pull,push`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Scope {
    /// `repository`, `repository(plugin)`, `registry`.
    pub(crate) resource_type: String,
    pub(crate) name: String,
    pub(crate) actions: BTreeSet<String>,
}

impl Scope {
    /// A repository scope: `Scope::repository("a/b", &["pull", "push"])`.
    pub(crate) fn repository(name: &str, actions: &[&str]) -> Scope {
        Scope {
            resource_type: "repository".into(),
            name: name.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// Parses `TYPE:NAME:ACTIONS`; the name may contain ':' (it is what lies
    /// between the first and the last one).
    pub(crate) fn parse(scope: &str) -> Result<Scope, ChallengeError> {
        let bad = || ChallengeError::BadScope {
            scope: scope.to_string(),
        };
        let (resource_type, rest) = scope.split_once(':').ok_or_else(bad)?;
        let (name, actions) = rest.rsplit_once(':').ok_or_else(bad)?;
        let actions: BTreeSet<String> = actions
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
        if resource_type.is_empty() || name.is_empty() || actions.is_empty() {
            return Err(bad());
        }
        Ok(Scope {
            resource_type: resource_type.into(),
            name: name.into(),
            actions,
        })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:", self.resource_type, self.name)?;
        for (i, action) in self.actions.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(action)?;
        }
        Ok(())
    }
}

/// A set of scopes with the actions on one resource merged, in a canonical
/// order: the key a token is cached under.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ScopeSet {
    resources: BTreeMap<(String, String), BTreeSet<String>>,
}

impl ScopeSet {
    pub(crate) fn new() -> ScopeSet {
        ScopeSet::default()
    }

    /// Adds a scope, merging its actions into any for the same resource.
    pub(crate) fn insert(&mut self, scope: Scope) {
        self.resources
            .entry((scope.resource_type, scope.name))
            .or_default()
            .extend(scope.actions);
    }

    pub(crate) fn with(mut self, scope: Scope) -> ScopeSet {
        self.insert(scope);
        self
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.resources
            .iter()
            .map(|((resource_type, name), actions)| Scope {
                resource_type: resource_type.clone(),
                name: name.clone(),
                actions: actions.clone(),
            })
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut set = ScopeSet::new();
        for scope in iter {
            set.insert(scope);
        }
        set
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{scope}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(c: &Challenge) -> Vec<(&str, &str)> {
        c.params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn docker_hub_challenge() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#;
        let all = parse_challenges(h).unwrap();
        assert_eq!(all.len(), 1);
        assert!(all[0].is_bearer());
        let b = BearerChallenge::from_challenge(&all[0]).unwrap().unwrap();
        assert_eq!(b.realm, "https://auth.docker.io/token");
        assert_eq!(b.service.as_deref(), Some("registry.docker.io"));
        assert_eq!(b.scope, ["repository:library/busybox:pull"]);
        assert!(!b.insufficient_scope());
    }

    #[test]
    fn commas_and_escapes_inside_quotes() {
        let h = r#"Bearer realm="https://h/token?a=1,2",service="svc \"x\", y\\z",scope="repository:a:pull,push repository:b:pull""#;
        let all = parse_challenges(h).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(
            params(&all[0]),
            [
                ("realm", "https://h/token?a=1,2"),
                ("service", r#"svc "x", y\z"#),
                ("scope", "repository:a:pull,push repository:b:pull"),
            ]
        );
        let b = BearerChallenge::find(&all).unwrap().unwrap();
        assert_eq!(b.scope.len(), 2);
        assert_eq!(
            b.scopes().unwrap()[0],
            Scope::repository("a", &["pull", "push"])
        );
    }

    #[test]
    fn several_challenges_in_one_header() {
        let h = r#"Basic realm="Registry Realm", Bearer realm="https://h/t",service=reg , Newauth realm="x", title="Login, please""#;
        let all = parse_challenges(h).unwrap();
        let schemes: Vec<_> = all.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["basic", "bearer", "newauth"]);
        assert_eq!(all[0].param("REALM"), Some("Registry Realm"));
        assert_eq!(
            params(&all[1]),
            [("realm", "https://h/t"), ("service", "reg")]
        );
        assert_eq!(
            params(&all[2]),
            [("realm", "x"), ("title", "Login, please")]
        );
        // And across header lines.
        let all = parse_all(["Basic realm=\"a\"", "bearer Realm=\"https://b/\""]).unwrap();
        assert!(all[0].is_basic() && all[1].is_bearer());
        assert_eq!(
            BearerChallenge::find(&all).unwrap().unwrap().realm,
            "https://b/"
        );
    }

    #[test]
    fn spacing_case_and_lenient_values() {
        let h = "  BEARER   Realm = \"https://h/t\" ,  Service=x,,error=insufficient_scope ,";
        let all = parse_challenges(h).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(
            params(&all[0]),
            [
                ("realm", "https://h/t"),
                ("service", "x"),
                ("error", "insufficient_scope")
            ]
        );
        let b = BearerChallenge::find(&all).unwrap().unwrap();
        assert!(b.insufficient_scope());
        // Unquoted URL values, as some servers send them.
        let all = parse_challenges("Bearer realm=https://h:8443/token,service=h").unwrap();
        assert_eq!(all[0].param("realm"), Some("https://h:8443/token"));
        assert_eq!(all[0].param("service"), Some("h"));
    }

    #[test]
    fn token68_and_bare_schemes() {
        let all = parse_challenges("Negotiate, NTLM abc+/d==, Basic realm=\"r\"").unwrap();
        let schemes: Vec<_> = all.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["negotiate", "ntlm", "basic"]);
        assert_eq!(all[1].token68.as_deref(), Some("abc+/d=="));
        assert_eq!(all[2].param("realm"), Some("r"));
        assert!(parse_challenges("").unwrap().is_empty());
        assert_eq!(parse_challenges("Basic").unwrap()[0].scheme, "basic");
    }

    #[test]
    fn malformed_headers() {
        for h in [
            r#"Bearer realm="unterminated"#,
            r#"Bearer realm="a", service="#,
            r#"Bearer realm="a", service = "#,
            r#"Bearer realm="a" service="b""#,
            "=x",
            r#"Bearer realm="a",="b""#,
        ] {
            let result = parse_challenges(h);
            assert!(
                matches!(result, Err(ChallengeError::Malformed { .. })),
                "{h}: {result:?}"
            );
        }
        let e = parse_challenges(r#"Bearer realm="x"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not closed"), "{e}");
        // `realm=` alone reads as a token68 (`abc=` is one), so the Bearer
        // challenge has no realm.
        let c = parse_challenges("Bearer realm=").unwrap();
        assert_eq!(c[0].token68.as_deref(), Some("realm="));
        assert!(matches!(
            BearerChallenge::find(&c),
            Some(Err(ChallengeError::NoRealm { .. }))
        ));
    }

    #[test]
    fn bearer_needs_an_http_realm() {
        let no_realm = parse_challenges(r#"Bearer service="s""#).unwrap();
        assert!(matches!(
            BearerChallenge::find(&no_realm),
            Some(Err(ChallengeError::NoRealm { .. }))
        ));
        for realm in ["/token", "ftp://h/t", "https://"] {
            let c = parse_challenges(&format!("Bearer realm=\"{realm}\"")).unwrap();
            assert!(
                matches!(
                    BearerChallenge::find(&c),
                    Some(Err(ChallengeError::BadRealm { .. }))
                ),
                "{realm}"
            );
        }
        let basic = parse_challenges(r#"Basic realm="x""#).unwrap();
        assert!(BearerChallenge::find(&basic).is_none());
    }

    #[test]
    fn scopes() {
        let s = Scope::parse("repository:samalba/my-app:pull,push").unwrap();
        assert_eq!(s, Scope::repository("samalba/my-app", &["push", "pull"]));
        assert_eq!(s.to_string(), "repository:samalba/my-app:pull,push");
        let s = Scope::parse("repository(plugin):a:b:pull").unwrap();
        assert_eq!(
            (s.resource_type.as_str(), s.name.as_str()),
            ("repository(plugin)", "a:b")
        );
        assert_eq!(
            Scope::parse("registry:catalog:*").unwrap().to_string(),
            "registry:catalog:*"
        );
        for bad in [
            "",
            "repository",
            "repository:a",
            ":a:pull",
            "repository::pull",
            "repository:a:",
            "repository:a: , ",
        ] {
            assert!(
                matches!(Scope::parse(bad), Err(ChallengeError::BadScope { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn scope_sets_merge_and_order() {
        let a = ScopeSet::new()
            .with(Scope::repository("b/x", &["pull"]))
            .with(Scope::repository("a/y", &["push"]))
            .with(Scope::repository("b/x", &["push"]))
            .with(Scope::repository("a/y", &["pull"]));
        let b: ScopeSet = [
            Scope::repository("a/y", &["pull", "push"]),
            Scope::repository("b/x", &["push", "pull"]),
        ]
        .into_iter()
        .collect();
        assert_eq!(a, b);
        assert_eq!(
            a.to_string(),
            "repository:a/y:pull,push repository:b/x:pull,push"
        );
    }

    #[test]
    fn token_urls() {
        let b = BearerChallenge {
            realm: "https://auth.docker.io/token".into(),
            service: Some("registry.docker.io".into()),
            scope: vec![],
            error: None,
        };
        let scopes = ScopeSet::new()
            .with(Scope::repository("library/busybox", &["pull"]))
            .with(Scope::repository("me/app", &["pull", "push"]));
        assert_eq!(
            b.token_url(&scopes, None),
            "https://auth.docker.io/token?service=registry.docker.io\
             &scope=repository%3Alibrary%2Fbusybox%3Apull\
             &scope=repository%3Ame%2Fapp%3Apull%2Cpush"
        );
        assert_eq!(
            b.token_url(&ScopeSet::new(), Some("a b@c")),
            "https://auth.docker.io/token?service=registry.docker.io&account=a%20b%40c"
        );
        // A realm with a query of its own keeps it.
        let with_query = BearerChallenge {
            realm: "https://h/token?tenant=x".into(),
            service: Some("a&b=c".into()),
            ..b.clone()
        };
        assert_eq!(
            with_query.token_url(&ScopeSet::new(), None),
            "https://h/token?tenant=x&service=a%26b%3Dc"
        );
        let bare = BearerChallenge { service: None, ..b };
        assert_eq!(
            bare.token_url(&ScopeSet::new(), None),
            "https://auth.docker.io/token"
        );
    }
}
