//! Certificates for HTTPS tests: a private CA and a server certificate it
//! signed for `127.0.0.1`, `::1` and `localhost`, made with rcgen and
//! written as PEM files into a temporary directory that lives as long as
//! the [`TestCerts`]. Point `SSL_CERT_FILE` (or a client's extra roots) at
//! [`TestCerts::ca_file`] to trust the server; any other client does not.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A test CA and a server certificate for loopback, as PEM files.
pub struct TestCerts {
    dir: tempfile::TempDir,
    ca_file: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl TestCerts {
    /// Makes a fresh CA and server certificate. Panics (failing the test)
    /// if that is impossible.
    pub fn generate() -> TestCerts {
        let ca_key = KeyPair::generate().expect("generate the test CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "imgstore test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .expect("self-sign the test CA");
        let issuer = Issuer::new(ca_params, ca_key);

        let key = KeyPair::generate().expect("generate the server key");
        let mut params = CertificateParams::new(vec![
            "127.0.0.1".to_string(),
            "::1".to_string(),
            "localhost".to_string(),
        ])
        .expect("server certificate parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let cert = params
            .signed_by(&key, &issuer)
            .expect("sign the server certificate");

        let dir = tempfile::Builder::new()
            .prefix("imgstore-tls-")
            .tempdir()
            .expect("create a directory for the test certificates");
        let ca_file = dir.path().join("ca.pem");
        let cert_file = dir.path().join("server.pem");
        let key_file = dir.path().join("server.key");
        for (path, pem) in [
            (&ca_file, ca_cert.pem()),
            (&cert_file, cert.pem()),
            (&key_file, key.serialize_pem()),
        ] {
            std::fs::write(path, pem)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }
        TestCerts {
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
            dir,
            ca_file,
            cert_file,
            key_file,
        }
    }

    /// The CA certificate (PEM): what a client must trust.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The server certificate (PEM), for servers such as nginx.
    pub fn cert_file(&self) -> &Path {
        &self.cert_file
    }

    /// The server's private key (PKCS#8 PEM).
    pub fn key_file(&self) -> &Path {
        &self.key_file
    }

    /// The directory holding the three files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A rustls server configuration presenting the server certificate.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.cert_der.clone()], key)
            .expect("a server configuration for the test certificate");
        Arc::new(config)
    }
}
