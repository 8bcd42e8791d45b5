//! TLS for sources that accept connections (syslog over TLS, RFC 5425), with rustls.
//!
//! ```toml
//! [sources.syslog.tls]
//! crt_file = "/etc/weir/server.crt"   # PEM: the certificate, then its chain
//! key_file = "/etc/weir/server.key"   # PEM: PKCS#8, PKCS#1 or SEC1
//! ca_file = "/etc/weir/clients-ca.crt" # optional: verify client certificates against it
//! verify_certificate = true            # require a client certificate (needs ca_file)
//! ```
//!
//! With `ca_file` alone, a client certificate is optional but must verify when presented;
//! with `verify_certificate = true`, a connection without a valid client certificate is
//! refused during the handshake. The cryptography is `ring`'s, chosen explicitly so that the
//! choice does not depend on which rustls features other dependencies switch on.
//!
//! Invariant: checking the configuration reads no file; [`TlsServerConfig::acceptor`] reads
//! them when the source is built, and every failure names the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

use crate::error::ConfigIssue;

/// `tls` of a source that accepts connections.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    /// Switches TLS off without removing the table. Default true.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// The server certificate, followed by its intermediates (PEM).
    pub crt_file: PathBuf,
    /// The server's private key (PEM).
    pub key_file: PathBuf,
    /// Certificate authorities that client certificates are verified against (PEM).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Require every client to present a certificate signed by `ca_file`. Default false.
    #[serde(default)]
    pub verify_certificate: bool,
}

fn default_enabled() -> bool {
    true
}

impl TlsServerConfig {
    pub fn check(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if self.verify_certificate && self.ca_file.is_none() {
            issues.push(ConfigIssue::field(
                "tls.verify_certificate",
                "verifying client certificates needs `tls.ca_file`",
            ));
        }
        issues
    }

    /// Reads the files and builds the acceptor; `None` when TLS is switched off.
    pub fn acceptor(&self) -> Result<Option<TlsAcceptor>, String> {
        self.acceptor_for(&[])
    }

    /// As [`TlsServerConfig::acceptor`], offering the application protocols `alpn` in the
    /// handshake (gRPC clients require `h2`).
    pub fn acceptor_for(&self, alpn: &[&[u8]]) -> Result<Option<TlsAcceptor>, String> {
        if !self.enabled {
            return Ok(None);
        }
        let certs = read_certs(&self.crt_file, "tls.crt_file")?;
        let key = PrivateKeyDer::from_pem_file(&self.key_file).map_err(|e| {
            format!("tls.key_file: cannot read a private key from {}: {e}", self.key_file.display())
        })?;
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls: {e}"))?;
        let builder = match &self.ca_file {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs(ca, "tls.ca_file")? {
                    roots.add(cert).map_err(|e| {
                        format!("tls.ca_file: unusable certificate in {}: {e}", ca.display())
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if self.verify_certificate {
                    verifier
                } else {
                    verifier.allow_unauthenticated()
                };
                let verifier = verifier.build().map_err(|e| format!("tls.ca_file: {e}"))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(certs, key).map_err(|e| {
            format!(
                "tls: the key in {} does not fit the certificate in {}: {e}",
                self.key_file.display(),
                self.crt_file.display()
            )
        })?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Some(TlsAcceptor::from(Arc::new(config))))
    }
}

/// The PEM certificates in `path`; an error names `field` and the file (none is an error).
pub(crate) fn read_certs(path: &Path, field: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{field}: cannot read certificates from {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{field}: no PEM certificate in {}", path.display()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> TlsServerConfig {
        TlsServerConfig {
            enabled: true,
            crt_file: dir.join("server.crt"),
            key_file: dir.join("server.key"),
            ca_file: None,
            verify_certificate: false,
        }
    }

    #[test]
    fn builds_from_generated_files_and_names_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let err = config(dir.path()).acceptor().err().unwrap();
        assert!(err.starts_with("tls.crt_file: cannot read certificates from"), "{err}");

        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.path().join("server.crt"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("server.key"), "not a key").unwrap();
        let err = config(dir.path()).acceptor().err().unwrap();
        assert!(err.starts_with("tls.key_file:"), "{err}");

        std::fs::write(dir.path().join("server.key"), key.serialize_pem()).unwrap();
        assert!(config(dir.path()).acceptor().unwrap().is_some());

        let mut with_ca = config(dir.path());
        with_ca.ca_file = Some(dir.path().join("server.crt"));
        with_ca.verify_certificate = true;
        assert!(with_ca.acceptor().unwrap().is_some());
        with_ca.ca_file = None;
        assert_eq!(with_ca.check().len(), 1);
    }
}
