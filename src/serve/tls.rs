//! HTTPS: a certificate chain and its private key from PEM files, served
//! by rustls (with the ring provider ureq already brings) for HTTP/1.1.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::error::ServeError;
use crate::error::Error;

pub(super) fn acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, Error> {
    let tls_error =
        |what, path: &Path, reason, source: Option<Box<dyn std::error::Error + Send + Sync>>| {
            ServeError::Tls {
                what,
                path: path.to_path_buf(),
                reason,
                source,
            }
        };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            tls_error(
                "certificate",
                cert,
                "cannot be read as PEM certificates",
                Some(Box::new(e)),
            )
        })?;
    if chain.is_empty() {
        return Err(tls_error("certificate", cert, "holds no certificate", None).into());
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        tls_error(
            "key",
            key,
            "cannot be read as a PEM private key",
            Some(Box::new(e)),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("certificate", cert, "no TLS version", Some(Box::new(e))))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            tls_error(
                "key",
                key,
                "does not go with the certificate, or is of a kind rustls does not use",
                Some(Box::new(e)),
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
