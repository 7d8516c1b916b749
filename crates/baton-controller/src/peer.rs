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

/// What an operator-service client may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything `baton` does.
    Operator,
    /// Read only: status, events, servers, step output.
    Viewer,
}

/// The role of a client of the operator service: a certificate valid for one of `operators`
/// is an operator's, one valid for one of `viewers` a viewer's; any other is refused.
pub fn operator_role(
    peer: &PeerCerts,
    operators: &[String],
    viewers: &[String],
) -> Result<Role, Status> {
    let cert = end_entity(peer)?;
    if operators.iter().any(|name| valid_for(cert, name)) {
        Ok(Role::Operator)
    } else if viewers.iter().any(|name| valid_for(cert, name)) {
        Ok(Role::Viewer)
    } else {
        Err(Status::permission_denied(
            "this client certificate is not an operator's (the controller's --tls-operator and --tls-viewer names)",
        ))
    }
}

/// Calls that change something need an operator: a viewer's certificate is refused. (Without
/// client certificates there are no roles: whoever reaches the port is an operator.)
pub fn require_operator<T>(request: &tonic::Request<T>) -> Result<(), Status> {
    match request.extensions().get::<Role>() {
        Some(Role::Viewer) => Err(Status::permission_denied(
            "a viewer's certificate (--tls-viewer) may read status, events, servers and step output, not change a rollout",
        )),
        Some(Role::Operator) | None => Ok(()),
    }
}
