//! A test PKI, generated at run time with rcgen (no certificate is ever committed): a CA, the
//! certificates it signs, and a second CA nobody trusts.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};

use super::TempDir;

/// A certificate and its key, written as PEM files.
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A test PKI: a CA, certificates it signs, and a second CA nobody trusts.
pub struct Pki {
    pub dir: TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
    stranger: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = TempDir::new("tls-pki");
        let authority = |name: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a CA key"))
                .expect("a self-signed CA")
        };
        let pki = Pki {
            dir,
            ca: authority("Baton e2e CA"),
            stranger: authority("Someone else's CA"),
        };
        std::fs::write(pki.ca_file(), pki.ca.pem()).expect("write the CA");
        pki
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A certificate for `names` signed by the CA (or by the stranger); `localhost` also
    /// covers 127.0.0.1.
    pub fn issue(&self, file: &str, names: &[&str], by_stranger: bool) -> Pair {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        if names.contains(&"localhost") {
            params
                .subject_alt_names
                .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        }
        let key = KeyPair::generate().expect("a key");
        let issuer = if by_stranger {
            &self.stranger
        } else {
            &self.ca
        };
        let cert = params
            .signed_by(&key, issuer)
            .expect("a signed certificate");
        let pair = Pair {
            cert: self.dir.path().join(format!("{file}.pem")),
            key: self.dir.path().join(format!("{file}-key.pem")),
        };
        std::fs::write(&pair.cert, cert.pem()).expect("write a certificate");
        std::fs::write(&pair.key, key.serialize_pem()).expect("write a key");
        pair
    }
}
