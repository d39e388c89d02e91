//! Bearer tokens: reading a token server's answer, and a cache of tokens
//! per registry and scope set that many downloads share.
//!
//! A token server answers `{"token": …}` or `{"access_token": …}` (both
//! mean the same; `token` wins), with `expires_in` seconds (60 when absent,
//! and never taken as less, as docker's spec says) and maybe `issued_at`.
//! A token counts as expired [`EXPIRY_MARGIN`] before the end of its
//! lifetime, so that a request started just before the end does not reach
//! the registry with a dead token.
//!
//! The lifetime is measured on this machine's clock from when the answer
//! came, except that an `issued_at` in the past (and within the lifetime)
//! moves the start back: the server may hand out a token it made earlier.
//! An `issued_at` in the future, or so far back that the token would be
//! dead on arrival, says the clocks disagree and is ignored.
//!
//! [`TokenCache::get_or_fetch`] lets one thread fetch a token while others
//! wanting the same one wait for it, so a pull with many parallel downloads
//! asks the token server once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::auth::Secret;
use super::challenge::ScopeSet;
use super::paths::encode_component;

/// The lifetime a token has when the server gives none, and the least it is
/// taken to have.
pub(crate) const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// How long before its end a token is no longer used.
pub(crate) const EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// The largest token answer read (tokens are a few kB; JWTs with many
/// claims tens of kB).
pub(crate) const MAX_TOKEN_BODY: u64 = 1 << 20;

/// Why a token server's answer could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The answer is not JSON of a token.
    #[error("the token server {realm} sent an answer that is not token JSON: {reason}")]
    NotJson {
        /// The realm asked.
        realm: String,
        /// What the JSON reader said (never the token).
        reason: String,
    },
    /// The answer holds no token.
    #[error("the token server {realm} sent no token")]
    NoToken {
        /// The realm asked.
        realm: String,
    },
}

/// A bearer token and the end of its lifetime (before the margin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    value: Secret,
    expires_at: SystemTime,
}

impl Token {
    /// The `Authorization` header value: `Bearer <token>`.
    pub(crate) fn authorization(&self) -> Secret {
        Secret::new(format!("Bearer {}", self.value.expose()))
    }

    /// Whether the token may still be sent at `now`.
    pub(crate) fn is_fresh(&self, now: SystemTime) -> bool {
        now + EXPIRY_MARGIN < self.expires_at
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    issued_at: Option<String>,
}

/// Reads a token server's answer received at `now`.
pub(crate) fn parse_token_response(
    body: &[u8],
    realm: &str,
    now: SystemTime,
) -> Result<Token, TokenError> {
    let answer: TokenAnswer = serde_json::from_slice(body).map_err(|e| TokenError::NotJson {
        realm: realm.to_string(),
        // serde's message names a position and type, never the token text.
        reason: e.to_string(),
    })?;
    let value = answer
        .token
        .filter(|t| !t.is_empty())
        .or(answer.access_token.filter(|t| !t.is_empty()))
        .ok_or_else(|| TokenError::NoToken {
            realm: realm.to_string(),
        })?;
    let lifetime = answer
        .expires_in
        .map_or(MIN_TOKEN_LIFETIME, Duration::from_secs)
        .max(MIN_TOKEN_LIFETIME);
    let issued = answer
        .issued_at
        .as_deref()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .and_then(|t| {
            let secs = u64::try_from(t.timestamp()).ok()?;
            Some(SystemTime::UNIX_EPOCH + Duration::new(secs, t.timestamp_subsec_nanos()))
        });
    let start = match issued {
        Some(at) if at <= now && now.duration_since(at).is_ok_and(|age| age < lifetime) => at,
        _ => now,
    };
    Ok(Token {
        value: Secret::new(value),
        expires_at: start + lifetime,
    })
}

/// The form body of an OAuth2 refresh-token request (a `POST` to the realm,
/// `Content-Type: application/x-www-form-urlencoded`), for credentials that
/// are an identity token.
pub(crate) fn refresh_token_form(
    service: Option<&str>,
    scopes: &ScopeSet,
    refresh_token: &Secret,
    client_id: &str,
) -> Secret {
    let mut pairs: Vec<(&str, String)> = vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", refresh_token.expose().to_string()),
        ("client_id", client_id.to_string()),
    ];
    if let Some(service) = service {
        pairs.push(("service", service.to_string()));
    }
    for scope in scopes.iter() {
        pairs.push(("scope", scope.to_string()));
    }
    let body: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", encode_component(v)))
        .collect();
    Secret::new(body.join("&"))
}

type CacheKey = (String, ScopeSet);
type Slot = Arc<Mutex<Option<Token>>>;

/// Tokens by (registry, scope set), shared by the threads of one command.
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    slots: Mutex<HashMap<CacheKey, Slot>>,
}

impl TokenCache {
    pub(crate) fn new() -> TokenCache {
        TokenCache::default()
    }

    fn slot(&self, registry: &str, scopes: &ScopeSet) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots
            .entry((registry.to_string(), scopes.clone()))
            .or_default()
            .clone()
    }

    /// Forgets a token (the registry refused it before its time).
    pub(crate) fn invalidate(&self, registry: &str, scopes: &ScopeSet) {
        let slot = self.slot(registry, scopes);
        *slot.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// The cached token if fresh; otherwise calls `fetch`, caches what it
    /// returns, and returns that. Threads asking for the same key meanwhile
    /// wait and then take the fetched token instead of fetching their own;
    /// other keys are not held up. A failed fetch caches nothing, and the
    /// next caller tries again.
    pub(crate) fn get_or_fetch<E>(
        &self,
        registry: &str,
        scopes: &ScopeSet,
        now: impl Fn() -> SystemTime,
        fetch: impl FnOnce() -> Result<Token, E>,
    ) -> Result<Token, E> {
        let slot = self.slot(registry, scopes);
        let mut cached = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(token) = cached.as_ref().filter(|t| t.is_fresh(now())) {
            return Ok(token.clone());
        }
        let token = fetch()?;
        *cached = Some(token.clone());
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::registry::challenge::Scope;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// 2023-11-14T22:13:20Z
    const T0: u64 = 1_700_000_000;

    fn token(value: Secret, expires_at: SystemTime) -> Token {
        Token { value, expires_at }
    }

    /// The cached token for a key, if it is still fresh at `now`.
    fn cached(
        cache: &TokenCache,
        registry: &str,
        scopes: &ScopeSet,
        now: SystemTime,
    ) -> Option<Token> {
        let slot = cache.slot(registry, scopes);
        let token = slot.lock().unwrap();
        token.as_ref().filter(|t| t.is_fresh(now)).cloned()
    }

    fn put(cache: &TokenCache, registry: &str, scopes: &ScopeSet, token: Token) {
        *cache.slot(registry, scopes).lock().unwrap() = Some(token);
    }

    fn pull(name: &str) -> ScopeSet {
        ScopeSet::new().with(Scope::repository(name, &["pull"]))
    }

    #[test]
    fn token_or_access_token() {
        let t = parse_token_response(br#"{"token":"abc","expires_in":300}"#, "r", at(T0)).unwrap();
        assert_eq!(t.value.expose(), "abc");
        assert_eq!(t.authorization().expose(), "Bearer abc");
        assert_eq!(t.expires_at, at(T0 + 300));
        let t = parse_token_response(br#"{"access_token":"xyz"}"#, "r", at(T0)).unwrap();
        assert_eq!(t.value.expose(), "xyz");
        let t = parse_token_response(br#"{"token":"","access_token":"xyz"}"#, "r", at(T0)).unwrap();
        assert_eq!(t.value.expose(), "xyz");
        let t = parse_token_response(
            br#"{"token":"a","access_token":"b","refresh_token":"r1"}"#,
            "r",
            at(T0),
        )
        .unwrap();
        assert_eq!(t.value.expose(), "a");
    }

    #[test]
    fn lifetimes() {
        // Absent: 60 s. Less than 60: 60.
        let t = parse_token_response(br#"{"token":"a"}"#, "r", at(T0)).unwrap();
        assert_eq!(t.expires_at, at(T0 + 60));
        let t = parse_token_response(br#"{"token":"a","expires_in":5}"#, "r", at(T0)).unwrap();
        assert_eq!(t.expires_at, at(T0 + 60));
        // issued_at in the past and within the lifetime moves the start.
        let t = parse_token_response(
            br#"{"token":"a","expires_in":300,"issued_at":"2023-11-14T22:12:20Z"}"#,
            "r",
            at(T0),
        )
        .unwrap();
        assert_eq!(t.expires_at, at(T0 - 60 + 300));
        // With fractions and an offset.
        let t = parse_token_response(
            br#"{"token":"a","expires_in":300,"issued_at":"2023-11-14T23:12:20.5+01:00"}"#,
            "r",
            at(T0),
        )
        .unwrap();
        assert_eq!(t.expires_at, at(T0 - 60 + 300) + Duration::from_millis(500));
        // In the future (clock skew): ignored.
        let t = parse_token_response(
            br#"{"token":"a","expires_in":300,"issued_at":"2023-11-14T23:13:20Z"}"#,
            "r",
            at(T0),
        )
        .unwrap();
        assert_eq!(t.expires_at, at(T0 + 300));
        // So old the token would be dead on arrival: ignored.
        let t = parse_token_response(
            br#"{"token":"a","expires_in":300,"issued_at":"2023-11-14T20:00:00Z"}"#,
            "r",
            at(T0),
        )
        .unwrap();
        assert_eq!(t.expires_at, at(T0 + 300));
        // Unparseable: ignored.
        let t =
            parse_token_response(br#"{"token":"a","issued_at":"yesterday"}"#, "r", at(T0)).unwrap();
        assert_eq!(t.expires_at, at(T0 + 60));
    }

    #[test]
    fn freshness_margin() {
        let t = token(Secret::new("a"), at(T0 + 60));
        assert!(t.is_fresh(at(T0)));
        assert!(t.is_fresh(at(T0 + 49)));
        assert!(!t.is_fresh(at(T0 + 50)));
        assert!(!t.is_fresh(at(T0 + 61)));
    }

    #[test]
    fn bad_answers() {
        let e = parse_token_response(b"<html>", "https://auth/token", at(T0)).unwrap_err();
        assert!(matches!(e, TokenError::NotJson { .. }));
        assert!(e.to_string().contains("https://auth/token"));
        for body in [&br#"{}"#[..], br#"{"token":""}"#, br#"{"expires_in":60}"#] {
            assert!(matches!(
                parse_token_response(body, "r", at(T0)),
                Err(TokenError::NoToken { .. })
            ));
        }
        // A token of the wrong type does not echo into the message.
        let e = parse_token_response(br#"{"token":["s3cr3t"]}"#, "r", at(T0)).unwrap_err();
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
    }

    #[test]
    fn refresh_form() {
        let scopes = pull("a/b").with(Scope::repository("c", &["pull", "push"]));
        let form = refresh_token_form(Some("reg io"), &scopes, &Secret::new("r&t=1"), "imgstore");
        assert_eq!(
            form.expose(),
            "grant_type=refresh_token&refresh_token=r%26t%3D1&client_id=imgstore&service=reg%20io\
             &scope=repository%3Aa%2Fb%3Apull&scope=repository%3Ac%3Apull%2Cpush"
        );
        assert!(!format!("{form:?}").contains("r%26t"));
    }

    #[test]
    fn cache_by_registry_and_scopes() {
        let cache = TokenCache::new();
        let a = pull("a");
        put(&cache, "r1", &a, token(Secret::new("t1"), at(T0 + 60)));
        assert_eq!(
            cached(&cache, "r1", &a, at(T0)).unwrap().value.expose(),
            "t1"
        );
        // Same scopes, in another order: same key.
        let a_again: ScopeSet = [Scope::repository("a", &["pull"])].into_iter().collect();
        assert!(cached(&cache, "r1", &a_again, at(T0)).is_some());
        assert!(cached(&cache, "r2", &a, at(T0)).is_none());
        assert!(cached(&cache, "r1", &pull("b"), at(T0)).is_none());
        let a_push = a.clone().with(Scope::repository("a", &["push"]));
        assert!(cached(&cache, "r1", &a_push, at(T0)).is_none());
        // Expired, a little early.
        assert!(cached(&cache, "r1", &a, at(T0 + 55)).is_none());
        cache.invalidate("r1", &a);
        assert!(cached(&cache, "r1", &a, at(T0)).is_none());
    }

    #[test]
    fn get_or_fetch_refetches_when_expired_and_not_after_errors() {
        let cache = TokenCache::new();
        let scopes = pull("a");
        let fetches = AtomicUsize::new(0);
        let fetch = |name: &'static str| {
            fetches.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(token(Secret::new(name), at(T0 + 60)))
        };
        let t = cache
            .get_or_fetch("r", &scopes, || at(T0), || fetch("one"))
            .unwrap();
        assert_eq!(t.value.expose(), "one");
        let t = cache
            .get_or_fetch("r", &scopes, || at(T0 + 10), || fetch("two"))
            .unwrap();
        assert_eq!(t.value.expose(), "one");
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        let t = cache
            .get_or_fetch("r", &scopes, || at(T0 + 51), || fetch("three"))
            .unwrap();
        assert_eq!(t.value.expose(), "three");
        assert_eq!(fetches.load(Ordering::SeqCst), 2);

        let other = pull("b");
        let e = cache.get_or_fetch(
            "r",
            &other,
            || at(T0),
            || Err::<Token, _>("denied".to_string()),
        );
        assert_eq!(e.unwrap_err(), "denied");
        assert!(cached(&cache, "r", &other, at(T0)).is_none());
        let t = cache
            .get_or_fetch("r", &other, || at(T0), || fetch("four"))
            .unwrap();
        assert_eq!(t.value.expose(), "four");
    }

    #[test]
    fn parallel_callers_share_one_fetch() {
        let cache = Arc::new(TokenCache::new());
        let fetches = Arc::new(AtomicUsize::new(0));
        let start = Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (cache, fetches, start) = (cache.clone(), fetches.clone(), start.clone());
                std::thread::spawn(move || {
                    // Two keys, four threads each.
                    let scopes = pull(if i % 2 == 0 { "even" } else { "odd" });
                    start.wait();
                    cache
                        .get_or_fetch(
                            "r",
                            &scopes,
                            || at(T0),
                            || {
                                fetches.fetch_add(1, Ordering::SeqCst);
                                // Long enough for the others to pile up behind.
                                std::thread::sleep(Duration::from_millis(50));
                                Ok::<_, ()>(token(Secret::new(format!("t{i}")), at(T0 + 60)))
                            },
                        )
                        .unwrap()
                        .value
                        .expose()
                        .to_string()
                })
            })
            .collect();
        let values: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        let evens: std::collections::BTreeSet<_> = values.iter().step_by(2).collect();
        let odds: std::collections::BTreeSet<_> = values.iter().skip(1).step_by(2).collect();
        assert_eq!((evens.len(), odds.len()), (1, 1), "{values:?}");
    }
}
