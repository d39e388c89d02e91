//! `login` and `logout`: credentials checked against a registry, then kept
//! in the containers auth file that podman and skopeo read (mode 0600), or
//! dropped from it. The store is not involved: these are associated
//! functions of [`Store`] only so that the library has one entry point.

use std::path::PathBuf;

use super::RegistryError;
use super::auth::{
    self, AuthEnv, AuthError, CredentialSource, Credentials, FoundCredentials, Secret,
};
use super::challenge::ScopeSet;
use super::client::Session;
use super::reference::is_valid_registry;
use super::token::TokenCache;
use crate::error::Error;
use crate::remote::http::{Client, ClientOptions, Op, Request};
use crate::store::Store;

/// Settings of a login.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LoginOptions {
    /// Plain HTTP for a registry that is not on loopback.
    pub plain_http: bool,
}

impl LoginOptions {
    /// The defaults: HTTPS unless the registry is on loopback.
    pub fn new() -> LoginOptions {
        LoginOptions::default()
    }

    /// Use plain HTTP whatever the host.
    pub fn plain_http(mut self, plain: bool) -> LoginOptions {
        self.plain_http = plain;
        self
    }
}

impl Store {
    /// Checks `username` and `password` against `registry` (`host[:port]`;
    /// `docker.io` for Docker Hub) with `GET /v2/`, answering its Basic or
    /// Bearer challenge with them, and only then writes them to the login
    /// file (`$REGISTRY_AUTH_FILE`, else `$XDG_RUNTIME_DIR/containers/auth.json`,
    /// else `~/.config/containers/auth.json`); returns that file. A refusal
    /// says which registry refused and why, and writes nothing.
    pub fn login(
        registry: &str,
        username: &str,
        password: &str,
        options: &LoginOptions,
    ) -> Result<PathBuf, Error> {
        if !is_valid_registry(registry) {
            return Err(RegistryError::Auth(AuthError::BadRegistry {
                registry: registry.to_string(),
            })
            .into());
        }
        if username.contains(':') {
            return Err(RegistryError::Auth(AuthError::BadUsername {
                registry: registry.to_string(),
            })
            .into());
        }
        let password = Secret::new(password);
        let http = Client::new(ClientOptions::default());
        let tokens = TokenCache::new();
        let session = Session::new(
            &http,
            &tokens,
            Op::Login,
            registry,
            "",
            options.plain_http,
            Some(FoundCredentials {
                credentials: Credentials::Basic {
                    username: username.to_string(),
                    password: password.clone(),
                },
                source: CredentialSource::Given,
            }),
        );
        let url = session.base().ping();
        let answer = session.send(Request::get(Op::Login, &url), &ScopeSet::new())?;
        if !answer.is_success() {
            return Err(session.refused(&url, answer));
        }
        let env = AuthEnv::from_process();
        Ok(auth::login(&env, registry, username, &password).map_err(RegistryError::Auth)?)
    }

    /// Removes the credentials for `registry` from the login file; returns
    /// that file. Not being logged in is an error that says so.
    pub fn logout(registry: &str) -> Result<PathBuf, Error> {
        let env = AuthEnv::from_process();
        Ok(auth::logout(&env, registry).map_err(RegistryError::Auth)?)
    }
}
