//! Who a client is, by its TLS certificate, when the controller requires client certificates
//! (mutual TLS). rustls has already checked that the certificate chains to the client CA; here
//! the names it is valid for decide what it may do: a worker speaks only for the server its
//! certificate names, and operator calls need a certificate valid for an operator name.

use std::sync::Arc;

use rustls_pki_types::{CertificateDer, ServerName};
use tonic::Status;

/// The client's certificate chain, as tonic reports it.
pub type PeerCerts = Option<Arc<Vec<CertificateDer<'static>>>>;

/// Whether `cert` is valid for the DNS name `name` (its subject alternative names).
fn valid_for(cert: &CertificateDer<'_>, name: &str) -> bool {
    let Ok(name) = ServerName::try_from(name) else {
        return false;
    };
    webpki::EndEntityCert::try_from(cert)
        .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&name).is_ok())
}

fn end_entity(peer: &PeerCerts) -> Result<&CertificateDer<'static>, Status> {
    peer.as_deref()
        .and_then(|chain| chain.first())
        .ok_or_else(|| Status::unauthenticated("a client certificate is required"))
}

/// A worker may open a session only for the server its certificate names.
pub fn check_worker(peer: &PeerCerts, fqdn: &str) -> Result<(), Status> {
    if valid_for(end_entity(peer)?, fqdn) {
        Ok(())
    } else {
        Err(Status::permission_denied(format!(
            "this client certificate is not valid for {fqdn}: a worker speaks only for the server its certificate names"
        )))
    }
}

/// Operator calls need a certificate valid for one of `operators`.
pub fn check_operator(peer: &PeerCerts, operators: &[String]) -> Result<(), Status> {
    let cert = end_entity(peer)?;
    if operators.iter().any(|name| valid_for(cert, name)) {
        Ok(())
    } else {
        Err(Status::permission_denied(
            "this client certificate is not an operator's (the controller's --tls-operator names)",
        ))
    }
}
