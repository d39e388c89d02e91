//! A session with one repository of one registry: the requests of a pull,
//! push or login, sent over the shared [`Client`] with whatever
//! authentication the registry asks for.
//!
//! The first request goes out bare. A `401` names the scheme in its
//! `WWW-Authenticate` challenge, which the session remembers for the rest
//! of the command:
//! - `Bearer`: a token is fetched from the realm for the scopes the request
//!   needs (`repository:NAME:pull`, `…:pull,push`), with the credentials
//!   when there are any (Basic to the realm, or an identity token as an
//!   OAuth2 refresh token), anonymously otherwise; tokens are cached per
//!   registry and scope set until they expire ([`TokenCache`]), so parallel
//!   downloads share one. A token refused before its time is fetched again
//!   once, and `error="insufficient_scope"` adds the scopes the challenge
//!   names, once.
//! - `Basic`: the credentials go with every request to the registry.
//!
//! Credentials go only to the registry's origin (and a token only to it;
//! Basic credentials for the realm only to the realm): the client drops
//! them on redirects to any other host, such as a blob storage URL.

use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use super::RegistryError;
use super::auth::{self, AuthEnv, Credentials, FoundCredentials};
use super::challenge::{BearerChallenge, Challenge, Scope, ScopeSet, parse_all};
use super::errors::Refusal;
use super::paths::ApiBase;
use super::reference::{Reference, api_host, uses_plain_http};
use super::token::{MAX_TOKEN_BODY, Token, TokenCache, parse_token_response, refresh_token_form};
use crate::ProgressTask;
use crate::error::Error;
use crate::remote::http::{
    Body, Client, Download, DownloadOptions, DownloadSink, Method, Op, Request, Response,
};

/// The most of an error answer's body read for its message.
const ERROR_BODY_LIMIT: u64 = 64 * 1024;

/// The OAuth2 client id sent with a refresh token, as docker sends its own.
const CLIENT_ID: &str = "imgstore";

/// How a registry wants to be authenticated, once it said.
#[derive(Debug, Clone)]
enum Scheme {
    /// Not asked yet: requests go out bare.
    Unknown,
    Basic,
    Bearer(BearerChallenge),
}

/// Requests to one repository of one registry.
pub(crate) struct Session<'h> {
    http: &'h Client,
    tokens: &'h TokenCache,
    op: Op,
    /// The registry as references name it (`docker.io`, `127.0.0.1:5000`):
    /// credentials are looked up and messages written by this name.
    registry: String,
    repository: String,
    base: ApiBase,
    credentials: Option<FoundCredentials>,
    scheme: Mutex<Scheme>,
    /// Scopes a registry said a token lacked (`insufficient_scope`): every
    /// later token of the session asks for them too.
    extra_scopes: Mutex<ScopeSet>,
}

/// Plain HTTP for loopback hosts (docker's rule) or when asked.
fn api_base(registry: &str, plain_http: bool) -> ApiBase {
    let host = api_host(registry);
    ApiBase::new(host, plain_http || uses_plain_http(host))
}

impl<'h> Session<'h> {
    /// A session for `registry`/`repository` with the given credentials.
    pub(crate) fn new(
        http: &'h Client,
        tokens: &'h TokenCache,
        op: Op,
        registry: &str,
        repository: &str,
        plain_http: bool,
        credentials: Option<FoundCredentials>,
    ) -> Session<'h> {
        Session {
            http,
            tokens,
            op,
            registry: registry.to_string(),
            repository: repository.to_string(),
            base: api_base(registry, plain_http),
            credentials,
            scheme: Mutex::new(Scheme::Unknown),
            extra_scopes: Mutex::new(ScopeSet::new()),
        }
    }

    /// A session for a reference's repository, with the credentials the
    /// auth files have for it (DESIGN.md §5, Registries).
    pub(crate) fn for_reference(
        http: &'h Client,
        tokens: &'h TokenCache,
        op: Op,
        reference: &Reference,
        plain_http: bool,
        env: &AuthEnv,
    ) -> Result<Session<'h>, Error> {
        let credentials = auth::lookup(env, reference.registry(), Some(reference.repository()))
            .map_err(RegistryError::Auth)?;
        Ok(Session::new(
            http,
            tokens,
            op,
            reference.registry(),
            reference.repository(),
            plain_http,
            credentials,
        ))
    }

    pub(crate) fn registry(&self) -> &str {
        &self.registry
    }

    pub(crate) fn repository(&self) -> &str {
        &self.repository
    }

    pub(crate) fn base(&self) -> &ApiBase {
        &self.base
    }

    /// The scope of this repository with `actions` (`pull`, `push`).
    pub(crate) fn scopes(&self, actions: &[&str]) -> ScopeSet {
        ScopeSet::new().with(Scope::repository(&self.repository, actions))
    }

    fn scheme(&self) -> Scheme {
        self.scheme
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_scheme(&self, scheme: Scheme) {
        *self.scheme.lock().unwrap_or_else(PoisonError::into_inner) = scheme;
    }

    /// `scopes` with those the registry asked for beyond them.
    fn with_extra(&self, scopes: &ScopeSet) -> ScopeSet {
        let extra = self
            .extra_scopes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut all = scopes.clone();
        for scope in extra.iter() {
            all.insert(scope);
        }
        all
    }

    /// The `Authorization` a request needing `scopes` carries now: none
    /// until the registry asked, then its scheme's.
    pub(crate) fn authorization(&self, scopes: &ScopeSet) -> Result<Option<String>, Error> {
        self.authorization_for(&self.scheme(), &self.with_extra(scopes))
    }

    fn authorization_for(
        &self,
        scheme: &Scheme,
        scopes: &ScopeSet,
    ) -> Result<Option<String>, Error> {
        match scheme {
            Scheme::Unknown => Ok(None),
            Scheme::Basic => Ok(self
                .credentials
                .as_ref()
                .and_then(|c| c.credentials.basic_authorization())
                .map(|s| s.expose().to_string())),
            Scheme::Bearer(challenge) => {
                let token =
                    self.tokens
                        .get_or_fetch(&self.registry, scopes, SystemTime::now, || {
                            self.fetch_token(challenge, scopes)
                        })?;
                Ok(Some(token.authorization().expose().to_string()))
            }
        }
    }

    /// Asks the realm for a token for `scopes`.
    fn fetch_token(&self, challenge: &BearerChallenge, scopes: &ScopeSet) -> Result<Token, Error> {
        let credentials = self.credentials.as_ref().map(|c| &c.credentials);
        let request = match credentials {
            Some(Credentials::IdentityToken { token, .. }) => {
                let form =
                    refresh_token_form(challenge.service.as_deref(), scopes, token, CLIENT_ID);
                Request::new(self.op, Method::Post, challenge.realm.clone())
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Body::Bytes(form.expose().as_bytes().to_vec()))
            }
            other => {
                let account = other.and_then(Credentials::username);
                Request::get(self.op, challenge.token_url(scopes, account)).credentials(
                    other
                        .and_then(Credentials::basic_authorization)
                        .map(|s| s.expose().to_string()),
                )
            }
        };
        let url = request.url.clone();
        let response = self.http.send(&request)?;
        if !response.is_success() {
            let realm = crate::remote::http::Origin::of(&challenge.realm)
                .map_or_else(|_| challenge.realm.clone(), |o| o.host_port());
            let who = format!("{} (its token server {realm})", self.registry);
            return Err(self.refusal_of(&who, &url, response));
        }
        let body = response.read_body(MAX_TOKEN_BODY)?;
        Ok(
            parse_token_response(&body, &challenge.realm, SystemTime::now())
                .map_err(RegistryError::Token)?,
        )
    }

    /// Sends a request that needs `scopes`, answering the registry's
    /// challenges as the module header says. Any final status comes back;
    /// [`Session::refused`] makes an error of one that is not wanted.
    pub(crate) fn send(&self, request: Request, scopes: &ScopeSet) -> Result<Response, Error> {
        let mut scopes = self.with_extra(scopes);
        let (mut renewed, mut widened, mut learned) = (false, false, false);
        loop {
            let scheme = self.scheme();
            let authorization = self.authorization_for(&scheme, &scopes)?;
            let sent = authorization.is_some();
            let response = self
                .http
                .send(&request.clone().credentials(authorization))?;
            if response.status() != 401 {
                return Ok(response);
            }
            let challenges: Vec<Challenge> =
                parse_all(response.headers().get_all("www-authenticate")).map_err(|source| {
                    RegistryError::Challenge {
                        op: self.op,
                        url: request.url.clone(),
                        source,
                    }
                })?;
            if let Some(bearer) = BearerChallenge::find(&challenges) {
                let bearer = bearer.map_err(|source| RegistryError::Challenge {
                    op: self.op,
                    url: request.url.clone(),
                    source,
                })?;
                if sent && matches!(scheme, Scheme::Bearer(_)) {
                    // Our token was refused.
                    if bearer.insufficient_scope() && !widened {
                        widened = true;
                        for scope in bearer.scopes().map_err(|source| RegistryError::Challenge {
                            op: self.op,
                            url: request.url.clone(),
                            source,
                        })? {
                            scopes.insert(scope.clone());
                            self.extra_scopes
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .insert(scope);
                        }
                    } else if !renewed {
                        renewed = true;
                        self.tokens.invalidate(&self.registry, &scopes);
                    } else {
                        return Ok(response);
                    }
                } else if learned {
                    return Ok(response);
                }
                learned = true;
                self.set_scheme(Scheme::Bearer(bearer));
                continue;
            }
            let basic = self
                .credentials
                .as_ref()
                .is_some_and(|c| c.credentials.basic_authorization().is_some());
            if basic
                && !matches!(scheme, Scheme::Basic)
                && challenges.iter().any(Challenge::is_basic)
            {
                self.set_scheme(Scheme::Basic);
                continue;
            }
            return Ok(response);
        }
    }

    /// Downloads a blob into `sink` (resumed, retried, verified for length
    /// by the client; the caller checks the digest). A `401` (a token that
    /// expired, or a registry that had not said yet) is answered once.
    pub(crate) fn download(
        &self,
        url: &str,
        opts: &DownloadOptions,
        scopes: &ScopeSet,
        sink: &mut dyn DownloadSink,
        mut progress: Option<&mut dyn ProgressTask>,
    ) -> Result<Download, Error> {
        let mut opts = opts.clone();
        let mut answered = false;
        loop {
            opts.credentials = self.authorization(scopes)?;
            // `as_deref_mut` would tie the reborrow to the task's own
            // lifetime (`&mut` is invariant), so it could not be made twice.
            #[allow(clippy::option_as_ref_deref)]
            let task = progress
                .as_mut()
                .map(|p| -> &mut dyn ProgressTask { &mut **p });
            match self.http.download(url, &opts, sink, task) {
                Err(e) if e.status() == Some(401) && !answered => {
                    answered = true;
                    if let Scheme::Bearer(_) = self.scheme() {
                        self.tokens
                            .invalidate(&self.registry, &self.with_extra(scopes));
                    }
                    // A HEAD of the same URL draws the same challenge, and
                    // `send` answers it.
                    let head = self.send(Request::head(self.op, url), scopes)?;
                    if head.status() == 401 || head.status() == 403 {
                        return Err(self.refused(url, head));
                    }
                }
                other => return other.map_err(Error::from),
            }
        }
    }

    /// The error for an answer that is not the one wanted: who refused,
    /// the status, and what the registry said in its body.
    pub(crate) fn refused(&self, url: &str, response: Response) -> Error {
        self.refusal_of(&self.registry.clone(), url, response)
    }

    fn refusal_of(&self, who: &str, url: &str, response: Response) -> Error {
        let status = response.status();
        // A body that cannot be read still leaves the status to tell.
        let body = response.read_body(ERROR_BODY_LIMIT).unwrap_or_default();
        // A login's refusal is about the credentials it was given: no need
        // to say where they came from.
        let credentials = if matches!(status, 401 | 403) && self.op != Op::Login {
            self.credentials.as_ref().map(|c| c.source.to_string())
        } else {
            None
        };
        RegistryError::Refused {
            op: self.op,
            url: url.to_string(),
            refusal: Refusal::new(who, status, &body),
            credentials,
        }
        .into()
    }
}
