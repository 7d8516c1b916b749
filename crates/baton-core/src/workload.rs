//! What each server will do and for how long: the fleet joined with its runbook. This is
//! also where R6 is enforced, before anything is scheduled.

use crate::error::InputError;
use crate::fleet::{Fleet, ServerId};
use crate::runbook::{Params, RenderError, RenderedStep, Runbook};
use crate::time::{Millis, human};

/// Expected durations and rendered steps, indexed by server.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub expected: Vec<Millis>,
    pub steps: Vec<Vec<RenderedStep>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkloadError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Render(#[from] RenderError),
}

/// Joins `fleet` with an optional runbook. Without one, every server needs its own
/// `expected_duration` and no steps are rendered.
pub fn build_workload(
    fleet: &Fleet,
    runbook: Option<(&Runbook, &Params)>,
) -> Result<Workload, WorkloadError> {
    let mut expected = Vec::with_capacity(fleet.servers.len());
    let mut steps = Vec::with_capacity(fleet.servers.len());
    for (id, server) in fleet.servers.iter().enumerate() {
        let duration = expected_duration(fleet, runbook.map(|(r, _)| r), id)?;
        check_outage_budget(fleet, id, duration, server.expected_duration.is_none())?;
        check_windows(fleet, id, duration, server.expected_duration.is_none())?;
        expected.push(duration);
        steps.push(match runbook {
            Some((runbook, params)) => runbook.render_for(fleet, id, params)?,
            None => Vec::new(),
        });
    }
    Ok(Workload { expected, steps })
}

fn expected_duration(
    fleet: &Fleet,
    runbook: Option<&Runbook>,
    id: ServerId,
) -> Result<Millis, InputError> {
    let server = &fleet.servers[id];
    server
        .expected_duration
        .or_else(|| runbook.and_then(|r| r.default_duration(server.role)))
        .ok_or_else(|| InputError {
            file: fleet.file.clone(),
            line: server.line,
            owner: Some(format!("server {:?}", server.fqdn)),
            field: "pool.server.expected_duration".into(),
            value: None,
            message: match runbook {
                Some(r) => format!(
                    "missing, and runbook {} gives no default for role {}: set it on the server or add expected_duration to the runbook",
                    r.file, server.role
                ),
                None => "missing: set it on the server, or pass --runbook whose expected_duration gives a default".into(),
            },
        })
}

/// The line an error about a server's expected duration points at: its own
/// `expected_duration`, or the server when the duration is the runbook's default.
fn duration_line(fleet: &Fleet, id: ServerId, from_runbook: bool) -> Option<u32> {
    let server = &fleet.servers[id];
    if from_runbook {
        server.line
    } else {
        server.duration_line.or(server.line)
    }
}

/// A server must fit inside one of its maintenance windows, or it would wait for ever. Judged
/// on a fixed January fortnight (Monday 2026-01-05 UTC) so the answer does not depend on the
/// day `baton plan` runs; a clock change can make one night an hour longer or shorter.
fn check_windows(
    fleet: &Fleet,
    id: ServerId,
    duration: Millis,
    from_runbook: bool,
) -> Result<(), InputError> {
    const REFERENCE_MS: i64 = 1_767_571_200_000;
    let windows = fleet.windows_of(id);
    if windows.is_empty() {
        return Ok(());
    }
    let longest = windows.longest_ms(REFERENCE_MS);
    if duration <= longest {
        return Ok(());
    }
    let server = &fleet.servers[id];
    Err(InputError {
        file: fleet.file.clone(),
        line: duration_line(fleet, id, from_runbook),
        owner: Some(format!("server {:?}", server.fqdn)),
        field: "pool.server.expected_duration".into(),
        value: Some(format!("{:?}", human(duration))),
        message: format!(
            "longer than every maintenance window it may use (the longest is {}: {}): it would never start. Widen a window or shorten the update",
            human(longest),
            windows.describe()
        ),
    })
}

/// R6: a back-end outage must end before the pool's users fall into resiliency mode.
fn check_outage_budget(
    fleet: &Fleet,
    id: ServerId,
    duration: Millis,
    from_runbook: bool,
) -> Result<(), InputError> {
    let server = &fleet.servers[id];
    let pool = &fleet.pools[server.pool];
    if !server.role.is_backend_class() || duration < pool.outage_budget {
        return Ok(());
    }
    Err(InputError {
        file: fleet.file.clone(),
        line: duration_line(fleet, id, from_runbook),
        owner: Some(format!(
            "server {:?} ({}, pool {})",
            server.fqdn, server.role, pool.fqdn
        )),
        field: "pool.server.expected_duration".into(),
        value: Some(format!("{:?}", human(duration))),
        message: format!(
            "R6: a back-end outage of {}{} does not fit inside the pool's outage_budget of {}; \
             its users would enter resiliency mode. Shorten the update or split it, or set a larger outage_budget if your product allows it",
            human(duration),
            if from_runbook {
                " (the runbook's default)"
            } else {
                ""
            },
            human(pool.outage_budget)
        ),
    })
}
