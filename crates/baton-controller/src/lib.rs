//! Baton's controller: drives the `baton-core` scheduler against live workers over gRPC and
//! remembers every state change in the store before acting on it (write-ahead).

mod engine;
mod events;
mod http;
pub mod metrics;
mod operator_service;
mod owner;
mod peer;
mod run;
mod server;
mod spans;
mod worker_service;

pub use server::{ControllerHandle, Options, ServerTls, start, start_with};
