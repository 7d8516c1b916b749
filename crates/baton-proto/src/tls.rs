//! TLS for the clients of a controller (workers and the CLI): the CA that signed the
//! controller's certificate, and this client's own certificate when the controller asks for
//! one (mutual TLS). Files are read and checked up front, so a wrong path or a file that is
//! not PEM is named before any connection is tried.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// Why TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {}: {reason}", path.display())]
    NotPem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{0}")]
    Settings(String),
    #[error("TLS: {0}")]
    Transport(String),
}

/// Reads a PEM file holding at least one certificate; returns its text.
pub fn read_certificates(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let pem = read(what, path)?;
    let count = CertificateDer::pem_slice_iter(&pem)
        .map(|cert| {
            cert.map_err(|e| TlsError::NotPem {
                what,
                path: path.to_owned(),
                reason: format!("not a PEM certificate ({e})"),
            })
        })
        .collect::<Result<Vec<_>, _>>()?
        .len();
    if count == 0 {
        return Err(TlsError::NotPem {
            what,
            path: path.to_owned(),
            reason: "no \"BEGIN CERTIFICATE\" block in it".into(),
        });
    }
    Ok(pem)
}

/// Reads a PEM file holding a private key; returns its text.
pub fn read_private_key(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let pem = read(what, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::NotPem {
        what,
        path: path.to_owned(),
        reason: format!("no PEM private key in it ({e})"),
    })?;
    Ok(pem)
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// A client's TLS files: `--tls-ca`, and `--tls-cert` with `--tls-key` for mutual TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// The CA that signed the controller's certificate.
    pub ca: Option<PathBuf>,
    /// This client's certificate (PEM), for a controller that requires one.
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub key: Option<PathBuf>,
}

impl ClientTls {
    pub fn is_set(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }

    /// The files, read and checked: `None` when no TLS setting is given.
    pub fn config(&self) -> Result<Option<ClientTlsConfig>, TlsError> {
        if !self.is_set() {
            return Ok(None);
        }
        let ca = self.ca.as_deref().ok_or_else(|| {
            TlsError::Settings(
                "--tls-ca is required with TLS: the CA that signed the controller's certificate"
                    .into(),
            )
        })?;
        let mut config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read_certificates("--tls-ca", ca)?));
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                config = config.identity(Identity::from_pem(
                    read_certificates("--tls-cert", cert)?,
                    read_private_key("--tls-key", key)?,
                ));
            }
            (None, None) => {}
            _ => {
                return Err(TlsError::Settings(
                    "--tls-cert and --tls-key go together: this client's certificate and its key"
                        .into(),
                ));
            }
        }
        Ok(Some(config))
    }

    /// An endpoint for `url` (`http://` without TLS settings, `https://` with them).
    pub fn endpoint(&self, url: &str) -> Result<Endpoint, TlsError> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| TlsError::Settings(format!("invalid controller URL {url:?}: {e}")))?;
        let https = endpoint.uri().scheme_str() == Some("https");
        match (self.config()?, https) {
            (Some(config), true) => endpoint
                .tls_config(config)
                .map_err(|e| TlsError::Transport(e.to_string())),
            (None, false) => Ok(endpoint),
            (Some(_), false) => Err(TlsError::Settings(format!(
                "{url}: TLS settings are given, so the controller URL must be https://"
            ))),
            (None, true) => Err(TlsError::Settings(format!(
                "{url}: an https:// controller needs --tls-ca (the CA that signed its certificate)"
            ))),
        }
    }
}
