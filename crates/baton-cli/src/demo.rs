//! `baton demo`: a whole rollout on one machine. A controller on an embedded SQLite file, one
//! worker per server of the example fleet connected over real loopback gRPC (the simulate
//! executor, durations scaled to about half a minute), the Skype for Business runbook applied,
//! live progress, and a summary checked against the event log.

use crate::Format;
use crate::operator::{Controller, status};
use anyhow::{Context, Result, anyhow, bail};
use baton_core::audit::{audit_schedule, rule_peaks};
use baton_core::rollout::plan;
use baton_core::scheduler::{Outcome, ServerRecord, Strategy};
use baton_core::time::{Millis, clock};
use baton_core::workload::build_workload;
use baton_core::{Fleet, Runbook};
use baton_proto::v1::{ApplyRequest, EventsRequest, ListServersRequest};
use baton_worker::{Executor, SimulateExecutor, WorkerConfig};
use clap::Args;
use comfy_table::Table;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const EXAMPLE_FLEET: (&str, &str) = (
    "examples/contoso.toml",
    include_str!("../../../examples/contoso.toml"),
);
const SFB_RUNBOOK: (&str, &str) = (
    "runbooks/sfb-server-update.toml",
    include_str!("../../../runbooks/sfb-server-update.toml"),
);

#[derive(Args)]
pub struct DemoArgs {
    /// Fleet to roll out (default: the built-in copy of examples/contoso.toml).
    #[arg(long)]
    fleet: Option<PathBuf>,
    /// Runbook (default: the built-in copy of runbooks/sfb-server-update.toml).
    #[arg(long)]
    runbook: Option<PathBuf>,
    /// About how long the demo should take, in seconds: the plan is scaled to fit.
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// The SQLite file to use (default: a new file in the temporary directory, removed when
    /// the demo ends unless --keep is given). A file named here is kept.
    #[arg(long)]
    db: Option<PathBuf>,
    /// Keep the demo's database when it ends, and say where it is (on stderr).
    #[arg(long)]
    keep: bool,
}

fn read(path: &Option<PathBuf>, builtin: (&str, &str)) -> Result<(String, String)> {
    match path {
        Some(path) => Ok((
            path.display().to_string(),
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        )),
        None => Ok((builtin.0.to_string(), builtin.1.to_string())),
    }
}

pub fn run(args: DemoArgs, log_format: baton_telemetry::LogFormat) -> Result<()> {
    if !(args.seconds > 0.0 && args.seconds.is_finite()) {
        bail!("--seconds must be a positive number, not {}", args.seconds);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // Only warnings by default: the demo's own output is the show. With an OTLP endpoint
        // set, the rollout's trace (controller and workers alike) goes out too.
        let telemetry = baton_telemetry::init(
            "baton-demo",
            baton_telemetry::Logs {
                format: log_format,
                default_filter: "warn",
                file: None,
            },
        )?;
        let outcome = demo(args, telemetry.traces()).await;
        telemetry.shutdown(Duration::from_secs(3)).await;
        outcome
    })
}

async fn demo(args: DemoArgs, traces: bool) -> Result<()> {
    let (fleet_name, fleet_text) = read(&args.fleet, EXAMPLE_FLEET)?;
    let (runbook_name, runbook_text) = read(&args.runbook, SFB_RUNBOOK)?;
    // Validate and plan locally first, to scale time and to explain what is about to happen.
    let fleet = Fleet::from_toml(&fleet_name, &fleet_text)?;
    let runbook = Runbook::from_toml(&runbook_name, &runbook_text)?;
    let params = runbook.resolve_params(&[], "--param")?;
    let workload = build_workload(&fleet, Some((&runbook, &params)))?;
    let planned = plan(&fleet, &workload, Strategy::Baton)?;
    let time_scale = args.seconds / planned.makespan_s;

    println!(
        "Baton demo: fleet {} ({} servers in {} pools), runbook {}, planned {} (lower bound {}), played {:.0}× faster",
        fleet.name,
        fleet.servers.len(),
        fleet.pools.len(),
        runbook.name,
        clock(seconds_to_ms(planned.makespan_s)),
        clock(seconds_to_ms(planned.lower_bound_s)),
        1.0 / time_scale
    );
    let request = ApplyRequest {
        fleet_name,
        fleet_toml: fleet_text,
        runbook_name,
        runbook_toml: runbook_text,
        params: HashMap::new(),
    };

    let db = DemoDb::new(args.db, args.keep);
    // Whatever an earlier run left at this path (a reused --db, a recycled process id) goes.
    db.remove();
    let outcome = on_store(&db, &fleet, request, time_scale, traces).await;
    db.finish();
    outcome
}

/// The demo's SQLite database: the file and its `-wal` and `-shm` companions.
struct DemoDb {
    path: PathBuf,
    /// Remove the files when the demo ends: the default file, without `--keep`.
    temporary: bool,
}

impl DemoDb {
    fn new(chosen: Option<PathBuf>, keep: bool) -> DemoDb {
        match chosen {
            Some(path) => DemoDb {
                path,
                temporary: false,
            },
            None => DemoDb {
                path: std::env::temp_dir().join(format!("baton-demo-{}.db", std::process::id())),
                temporary: !keep,
            },
        }
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    fn remove(&self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut file = self.path.clone().into_os_string();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
    }

    /// Once the store is closed: removes a temporary database, or says where the kept one is.
    fn finish(&self) {
        if self.temporary {
            self.remove();
        } else if self.path.exists() {
            eprintln!(
                "baton demo: database kept at {} (`baton-controller --db {}` serves it to `baton status` and `baton events`)",
                self.path.display(),
                self.url()
            );
        }
    }
}

/// Opens the store, runs the demo on it, and closes it whatever happened (a failure, Ctrl-C):
/// after this, no connection holds the database's files.
async fn on_store(
    db: &DemoDb,
    fleet: &Fleet,
    request: ApplyRequest,
    time_scale: f64,
    traces: bool,
) -> Result<()> {
    let db_url = db.url();
    let store = baton_store::Store::connect(&db_url)
        .await
        .context("cannot open the demo database")?;
    let options = baton_controller::Options {
        traces,
        ..baton_controller::Options::default()
    };
    let outcome = match baton_controller::start_with(
        store.clone(),
        "127.0.0.1:0".parse().expect("a socket address"),
        options,
    )
    .await
    {
        Ok(controller) => {
            let url = format!("http://{}", controller.addr);
            println!(
                "controller {url}, store {db_url}; one worker per server, simulating each step"
            );
            let (stop_workers, stopped) = tokio::sync::watch::channel(false);
            let mut workers = Vec::new();
            for server in &fleet.servers {
                let config = WorkerConfig::new(
                    url.clone(),
                    server.fqdn.clone(),
                    Executor::Simulate(SimulateExecutor { time_scale }),
                );
                let mut stopped = stopped.clone();
                workers.push(tokio::spawn(baton_worker::run(config, async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                })));
            }
            let outcome = tokio::select! {
                outcome = rollout(&url, request, fleet, time_scale) => outcome,
                // Ctrl-C stops the demo short, the same way as a failure: cleaned up after.
                Ok(()) = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
            };
            // On failure too: the workers and the controller stop, so the store can close.
            let _ = stop_workers.send(true);
            for worker in workers {
                let _ = worker.await;
            }
            let stopped = controller
                .shutdown()
                .await
                .context("stopping the controller");
            outcome.and(stopped)
        }
        Err(err) => Err(anyhow::Error::new(err).context("cannot start the controller")),
    };
    store.close().await;
    outcome
}

/// Applies the rollout once every worker is connected, follows it live, and summarizes it from
/// the event log.
async fn rollout(url: &str, request: ApplyRequest, fleet: &Fleet, time_scale: f64) -> Result<()> {
    let mut client = Controller::connect(url).await?;
    wait_for_workers(&mut client, fleet.servers.len()).await?;
    let id = client
        .client
        .apply(request)
        .await
        .map_err(|s| client.error(&s))?
        .into_inner()
        .rollout_id;
    println!("rollout {id} applied; `baton --controller {url} status {id}` works while it runs\n");
    let watched = status::watch(&mut client, id.clone(), Format::Table).await;
    let summary = summarize(&mut client, &id, fleet, time_scale).await;
    watched?;
    summary
}

fn seconds_to_ms(seconds: f64) -> Millis {
    (seconds * 1000.0).round() as Millis
}

/// Waits until every server's worker has said hello (bounded: they connect in milliseconds).
async fn wait_for_workers(client: &mut Controller, expected: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let workers = client
            .client
            .list_servers(ListServersRequest {})
            .await
            .map_err(|s| client.error(&s))?
            .into_inner()
            .workers;
        if workers.iter().filter(|w| w.connected).count() >= expected {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "only {} of {expected} workers connected within 20 s",
                workers.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Rebuilds the rollout from its event log (what really happened, not what was planned) and
/// prints makespan against the bound, back-end outages against budgets, and each rule's peak.
async fn summarize(
    client: &mut Controller,
    id: &str,
    fleet: &Fleet,
    time_scale: f64,
) -> Result<()> {
    let mut stream = client
        .client
        .stream_events(EventsRequest {
            rollout_id: id.to_string(),
            after_seq: 0,
            follow: false,
        })
        .await
        .map_err(|s| client.error(&s))?
        .into_inner();
    let mut events = Vec::new();
    while let Some(event) = stream.message().await.map_err(|s| client.error(&s))? {
        events.push(event);
    }
    let at = |stamp: &str| -> Result<i64> {
        let parsed =
            time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339)
                .with_context(|| format!("event time {stamp:?}"))?;
        Ok((parsed.unix_timestamp_nanos() / 1_000_000) as i64)
    };
    let start_of = events
        .iter()
        .find(|e| e.kind == "rollout_started")
        .context("no rollout_started event")?;
    let end_of = events
        .iter()
        .find(|e| e.kind == "rollout_finished")
        .context("no rollout_finished event")?;
    let (t0, t1) = (at(&start_of.at)?, at(&end_of.at)?);
    // Back to plan time: what the outages would have been at full speed.
    let to_plan = |real_ms: i64| ((real_ms - t0).max(0) as f64 / time_scale).round() as Millis;

    let mut records = vec![ServerRecord::default(); fleet.servers.len()];
    for event in &events {
        let Some(server) = fleet.server_by_fqdn(&event.server) else {
            continue;
        };
        match event.kind.as_str() {
            "server_started" => records[server].start = Some(to_plan(at(&event.at)?)),
            "server_finished" => {
                records[server].end = Some(to_plan(at(&event.at)?));
                records[server].outcome = Some(if event.detail == "succeeded" {
                    Outcome::Succeeded
                } else {
                    Outcome::Failed
                });
            }
            "server_skipped" => records[server].outcome = Some(Outcome::Skipped),
            "server_not_started" => records[server].outcome = Some(Outcome::NotStarted),
            _ => {}
        }
    }
    let audit = audit_schedule(fleet, &records);
    let peaks = rule_peaks(fleet, &records);
    let work: Vec<Option<Millis>> = records.iter().map(|r| Some(r.end? - r.start?)).collect();
    let bound = baton_core::bounds::lower_bound(fleet, &work);
    let makespan = to_plan(t1);

    println!();
    println!(
        "Makespan {} in plan time ({:.1} s real), lower bound {} (+{:.1}%); {} events, seq 1..{}",
        clock(makespan),
        (t1 - t0) as f64 / 1000.0,
        clock(bound),
        (makespan as f64 / bound.max(1) as f64 - 1.0) * 100.0,
        events.len(),
        events.last().map_or(0, |e| e.seq)
    );

    let mut outages = Table::new();
    outages.load_style(UTF8_FULL_CONDENSED).set_header([
        "pool",
        "longest back-end outage",
        "budget",
        "used",
    ]);
    for (pool_id, pool) in fleet.pools.iter().enumerate() {
        let longest = pool
            .servers
            .iter()
            .filter(|&&s| fleet.servers[s].role.is_backend_class())
            .filter_map(|&s| Some((s, records[s].end? - records[s].start?)))
            .max_by_key(|&(_, d)| d);
        if let Some((server, duration)) = longest {
            let _ = pool_id;
            outages.add_row([
                pool.fqdn.clone(),
                format!("{} ({})", clock(duration), fleet.servers[server].fqdn),
                clock(pool.outage_budget),
                format!(
                    "{:.0}%",
                    duration as f64 / pool.outage_budget as f64 * 100.0
                ),
            ]);
        }
    }
    println!("{outages}");

    let mut rules = Table::new();
    rules
        .load_style(UTF8_FULL_CONDENSED)
        .set_header(["rule", "counter", "peak", "limit"]);
    rules.add_row([
        "R1",
        "back-end-class servers down in one pool",
        &peaks.backends_in_a_pool.to_string(),
        "1",
    ]);
    rules.add_row([
        "R2",
        "pools with back end and others down together",
        &peaks.pools_mixed.to_string(),
        "0",
    ]);
    rules.add_row([
        "R3",
        "other servers down in one pool",
        &peaks.others_in_a_pool.0.to_string(),
        &peaks.others_in_a_pool.1.to_string(),
    ]);
    rules.add_row([
        "R4",
        "paired pools degraded together",
        &peaks.pairs_degraded.to_string(),
        "0",
    ]);
    let cap = |c: Option<u32>| c.map_or("none".to_string(), |c| c.to_string());
    rules.add_row([
        "R5",
        "servers down, fleet",
        &peaks.fleet.to_string(),
        &cap(fleet.max_parallel),
    ]);
    for (site, peak) in fleet.sites.iter().zip(&peaks.sites) {
        rules.add_row([
            "R5",
            &format!("servers down, site {}", site.name),
            &peak.to_string(),
            &cap(site.max_parallel),
        ]);
    }
    println!("{rules}");
    match audit {
        Ok(()) => println!("R1–R5 and R7 held at every instant of the event log."),
        Err(violation) => bail!("the event log breaks a rule: {violation}"),
    }
    let failed = records
        .iter()
        .filter(|r| r.outcome != Some(Outcome::Succeeded))
        .count();
    if failed > 0 {
        bail!("{failed} server(s) did not succeed");
    }
    Ok(())
}
