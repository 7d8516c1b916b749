//! `baton status` (once, or `--watch`ed until the rollout ends) and `pause`/`resume`/`abort`.

use super::render::{self, hms};
use super::{Controller, is_unreachable, write_out};
use crate::Format;
use anyhow::{Result, bail};
use baton_proto::v1::{RolloutRef, RolloutStatus};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often `--watch` asks for the status.
const POLL: Duration = Duration::from_millis(500);
/// How long `--watch` keeps retrying a controller that went away before giving up.
const GIVE_UP: Duration = Duration::from_secs(60);

async fn get(controller: &mut Controller, id: &str) -> Result<RolloutStatus, tonic::Status> {
    let request = RolloutRef {
        rollout_id: id.to_string(),
        force: false,
    };
    Ok(controller.client.get_status(request).await?.into_inner())
}

fn print(status: &RolloutStatus, format: Format) -> Result<()> {
    match format {
        Format::Table => write_out(&render::status_table(status)),
        Format::Json => write_out(&render::status_json(status)?),
    }
}

/// `baton status [ID]`: one look. An empty id asks for the newest rollout.
pub async fn show(controller: &mut Controller, id: String, format: Format) -> Result<()> {
    let status = get(controller, &id)
        .await
        .map_err(|s| controller.error(&s))?;
    print(&status, format)
}

/// `baton status [ID] --watch`: poll until the rollout is finished or aborted, showing
/// progress as bars on a terminal, as one line per change otherwise (nothing with `--format
/// json`, whose reader wants one document); then print the final status. Fails if a server
/// failed.
pub async fn watch(controller: &mut Controller, id: String, format: Format) -> Result<()> {
    let mut view = match format {
        Format::Json => View::Quiet,
        Format::Table if std::io::stdout().is_terminal() => View::Live(Live::new()),
        Format::Table => View::Lines,
    };
    // Once resolved, the id stays: a newer rollout applied meanwhile does not take over.
    let mut id = id;
    let mut previous: Option<RolloutStatus> = None;
    let mut unreachable_since: Option<Instant> = None;
    let mut ticks = tokio::time::interval(POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let last = loop {
        ticks.tick().await;
        let status = match get(controller, &id).await {
            Ok(status) => status,
            // A controller restarting mid-rollout should not end the watch at once.
            Err(s) if previous.is_some() && is_unreachable(&s) => {
                let first = unreachable_since.is_none();
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                if since.elapsed() > GIVE_UP {
                    view.clear();
                    return Err(controller.error(&s));
                }
                view.unreachable(&controller.error(&s).to_string(), first);
                continue;
            }
            Err(s) => {
                view.clear();
                return Err(controller.error(&s));
            }
        };
        unreachable_since = None;
        if id.is_empty() {
            id.clone_from(&status.rollout_id);
        }
        view.update(previous.as_ref(), &status)?;
        let done = render::is_final(&status.state);
        if done {
            break status;
        }
        previous = Some(status);
    };
    view.clear();
    print(&last, format)?;
    let failed = render::failed(&last);
    if !failed.is_empty() {
        bail!(
            "rollout {} {} with {} failed server{}: {}",
            last.rollout_id,
            last.state,
            failed.len(),
            if failed.len() == 1 { "" } else { "s" },
            failed.join(", ")
        );
    }
    Ok(())
}

enum View {
    /// Bars on a terminal.
    Live(Live),
    /// One line per change, for logs and pipes.
    Lines,
    /// Nothing until the end.
    Quiet,
}

impl View {
    fn update(&mut self, previous: Option<&RolloutStatus>, status: &RolloutStatus) -> Result<()> {
        match self {
            View::Live(live) => live.update(status),
            View::Lines => {
                let lines = render::changes(previous, status);
                if !lines.is_empty() {
                    write_out(&lines.join("\n"))?;
                }
            }
            View::Quiet => {}
        }
        Ok(())
    }

    /// The controller did not answer; we keep trying. Lines mode says so once per outage.
    fn unreachable(&mut self, message: &str, first: bool) {
        match self {
            View::Live(live) => live.overall.set_message(format!("{message}; retrying")),
            View::Lines | View::Quiet if first => {
                let _ = writeln!(std::io::stderr(), "warning: {message}; retrying");
            }
            View::Lines | View::Quiet => {}
        }
    }

    fn clear(&mut self) {
        if let View::Live(live) = self {
            live.clear();
        }
    }
}

/// The terminal view: one bar for the rollout, one per pool.
struct Live {
    multi: MultiProgress,
    overall: ProgressBar,
    pools: Vec<(String, ProgressBar)>,
    style: ProgressStyle,
}

impl Live {
    fn new() -> Live {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let style =
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos:>4}/{len:<4} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(style.clone());
        Live {
            multi,
            overall,
            pools: Vec::new(),
            style,
        }
    }

    fn update(&mut self, status: &RolloutStatus) {
        let pools = render::pools(status);
        let width = pools
            .iter()
            .map(|p| p.pool.len() + "pool ".len())
            .chain(["rollout".len()])
            .max()
            .unwrap_or(0);
        let total = pools.iter().map(|p| p.total).sum::<usize>();
        let done = pools.iter().map(|p| p.done).sum::<usize>();
        self.overall.set_prefix(format!("{:<width$}", "rollout"));
        self.overall.set_length(total as u64);
        self.overall.set_position(done as u64);
        let failed = render::failed(status).len();
        let failed = if failed > 0 {
            format!(", {failed} failed")
        } else {
            String::new()
        };
        self.overall.set_message(format!(
            "{} {}: {}, elapsed {}{failed}",
            status.rollout_id,
            status.fleet,
            status.state,
            hms(status.elapsed_s)
        ));
        for p in &pools {
            let bar = match self.pools.iter().find(|(name, _)| name == p.pool) {
                Some((_, bar)) => bar.clone(),
                None => {
                    let bar = self.multi.add(ProgressBar::new(0));
                    bar.set_style(self.style.clone());
                    self.pools.push((p.pool.to_string(), bar.clone()));
                    bar
                }
            };
            bar.set_prefix(format!("{:<width$}", format!("pool {}", p.pool)));
            bar.set_length(p.total as u64);
            bar.set_position(p.done as u64);
            bar.set_message(render::pool_message(status, p.pool));
        }
    }

    fn clear(&mut self) {
        for (_, bar) in &self.pools {
            bar.finish_and_clear();
        }
        self.overall.finish_and_clear();
        let _ = self.multi.clear();
    }
}

/// What `pause`, `resume`, `abort` and `approve` ask for.
#[derive(Clone, Copy)]
pub enum Control {
    Pause,
    Resume,
    /// `force`: also cancel the steps running now.
    Abort {
        force: bool,
    },
    Approve,
}

/// Calls the RPC and prints the state the rollout is in afterwards.
pub async fn control(controller: &mut Controller, what: Control, id: String) -> Result<()> {
    let force = matches!(what, Control::Abort { force: true });
    let request = RolloutRef {
        rollout_id: id,
        force,
    };
    let client = &mut controller.client;
    let answer = match what {
        Control::Pause => client.pause(request).await,
        Control::Resume => client.resume(request).await,
        Control::Abort { .. } => client.abort(request).await,
        Control::Approve => client.approve(request).await,
    };
    let status = answer.map_err(|s| controller.error(&s))?.into_inner();
    write_out(&render::state_line(&status))
}

/// `baton resolve`: settles a server in `needs_attention` and prints the rollout's state.
pub async fn resolve(
    controller: &mut Controller,
    rollout_id: String,
    server: String,
    action: &str,
) -> Result<()> {
    let request = baton_proto::v1::ResolveRequest {
        rollout_id,
        server,
        action: action.to_string(),
    };
    let status = controller
        .client
        .resolve(request)
        .await
        .map_err(|s| controller.error(&s))?
        .into_inner();
    write_out(&render::state_line(&status))
}
