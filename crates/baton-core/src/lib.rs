//! Baton's pure domain: fleets, runbooks, the rules (R1–R6), the scheduler state machine, the
//! simulator and the plan report. No I/O, no async, no clock: time is an input.

pub mod assignment;
pub mod audit;
pub mod bounds;
pub mod error;
pub mod fleet;
pub mod fleetgen;
pub mod policy;
pub mod report;
pub mod rollout;
pub mod runbook;
pub mod scheduler;
pub mod simulator;
pub mod time;
mod toml_error;
pub mod watchdog;
pub mod window;
pub mod workload;

pub use error::InputError;
pub use fleet::Fleet;
pub use runbook::Runbook;
pub use scheduler::{Scheduler, Strategy};
