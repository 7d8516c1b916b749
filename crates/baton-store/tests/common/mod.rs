//! The store test suite, written once against the `Store` API, and the helpers that give each
//! test a fresh database on every backend (see `store.rs` for where they run).

#![allow(dead_code)] // each test binary uses its own subset

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

use baton_store::{
    Backend, EventRow, NewEvent, NewRollout, NewStepOutput, OutputCursor, OutputItem,
    StepOutputFilter, StepOutputKey, Store, StoreError, now_ms,
};
use sqlx::Connection as _;

// ---------------------------------------------------------------------------------------------
// Fresh databases

/// A folder under the system temp dir, removed (with its contents) on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "baton-store-test-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            now_ms()
        ));
        std::fs::create_dir_all(&path).expect("create a temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// `sqlite://` URL of a database file in this folder.
    pub fn sqlite_url(&self, file: &str) -> String {
        format!("sqlite://{}", self.0.join(file).display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub const POSTGRES_URL_VAR: &str = "BATON_TEST_POSTGRES_URL";

/// The PostgreSQL server to test against, from `BATON_TEST_POSTGRES_URL`. When unset, says once,
/// on the terminal (past the test harness's capture), that the PostgreSQL tests are skipped.
pub fn postgres_base_url() -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            static NOTICE: Once = Once::new();
            NOTICE.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "note: PostgreSQL store tests skipped: {POSTGRES_URL_VAR} is not set \
                     (e.g. postgres://baton:baton@127.0.0.1:5432/baton_test; \
                     `.ci/postgres.sh` sets one up and prints it)"
                );
            });
            None
        }
    }
}

/// A schema of its own on the test PostgreSQL server, so tests can run in parallel and again:
/// the store's URL sets `search_path` to it, so migrations and queries stay inside it.
pub struct PgSchema {
    base_url: String,
    name: String,
}

impl PgSchema {
    /// `None` (after a notice) when no test server is configured.
    pub async fn create(test: &str) -> Option<PgSchema> {
        let base_url = postgres_base_url()?;
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let mut name = format!(
            "baton_test_{}_{}_{}_{test}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            now_ms() % 1_000_000_000
        );
        name.truncate(63);
        let schema = PgSchema { base_url, name };
        schema
            .execute(format!("CREATE SCHEMA {}", schema.name))
            .await;
        Some(schema)
    }

    /// URL of a store whose tables live in this schema.
    pub fn url(&self) -> String {
        let separator = if self.base_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{separator}options=-c%20search_path%3D{}",
            self.base_url, self.name
        )
    }

    /// Drops the schema. A test that fails leaves its schema behind, for a look.
    pub async fn drop_schema(self) {
        self.execute(format!("DROP SCHEMA {} CASCADE", self.name))
            .await;
    }

    async fn execute(&self, sql: String) {
        let mut connection = sqlx::PgConnection::connect(&self.base_url)
            .await
            .unwrap_or_else(|e| panic!("connect to {POSTGRES_URL_VAR}: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(&mut connection)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = connection.close().await;
    }
}

pub async fn connect(url: &str) -> Store {
    Store::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Data

pub fn new_rollout(fleet: &str) -> NewRollout {
    NewRollout {
        fleet_name: fleet.to_string(),
        fleet_toml: format!("name = \"{fleet}\"\n[[pool]]\nname = \"web\"\n"),
        runbook_name: "patch".to_string(),
        runbook_toml: "[[step]]\nid = \"drain\"\ncommand = \"echo drain\"\n".to_string(),
        params_json: r#"{"kb":"KB5031234","quoted":"it's \"fine\""}"#.to_string(),
        planned_makespan_ms: 3_600_000,
        lower_bound_ms: 3_000_000,
    }
}

pub fn new_event(rollout_id: i64, kind: &str, detail: &str) -> NewEvent {
    NewEvent {
        rollout_id,
        server: Some("web-01.example.test".to_string()),
        pool: Some("web".to_string()),
        kind: kind.to_string(),
        detail: detail.to_string(),
    }
}

fn seqs(events: &[EventRow]) -> Vec<i64> {
    events.iter().map(|e| e.seq).collect()
}

// ---------------------------------------------------------------------------------------------
// The suite: every function here runs on every backend.

pub async fn rollout_ids_increase(store: Store) {
    let before = now_ms();
    let first = store.create_rollout(&new_rollout("alpha")).await.unwrap();
    let second = store.create_rollout(&new_rollout("beta")).await.unwrap();
    let third = store.create_rollout(&new_rollout("gamma")).await.unwrap();
    let after = now_ms();

    assert_eq!((first.id, second.id, third.id), (1, 2, 3));
    let want = new_rollout("alpha");
    assert_eq!(first.fleet_name, want.fleet_name);
    assert_eq!(first.fleet_toml, want.fleet_toml);
    assert_eq!(first.runbook_name, want.runbook_name);
    assert_eq!(first.runbook_toml, want.runbook_toml);
    assert_eq!(first.params_json, want.params_json);
    assert_eq!(first.planned_makespan_ms, want.planned_makespan_ms);
    assert_eq!(first.lower_bound_ms, want.lower_bound_ms);
    assert_eq!(first.state, "running");
    assert!((before..=after).contains(&first.created_at_ms));

    assert_eq!(store.rollout(2).await.unwrap(), Some(second));
    assert_eq!(store.rollout(4).await.unwrap(), None);
    assert_eq!(store.rollout(0).await.unwrap(), None);
}

pub async fn latest_rollout(store: Store) {
    assert_eq!(store.latest_rollout().await.unwrap(), None);
    store.create_rollout(&new_rollout("alpha")).await.unwrap();
    let beta = store.create_rollout(&new_rollout("beta")).await.unwrap();
    assert_eq!(store.latest_rollout().await.unwrap(), Some(beta.clone()));

    // Changing an older rollout does not make it the latest.
    store.set_rollout_state(1, "done").await.unwrap();
    assert_eq!(store.latest_rollout().await.unwrap(), Some(beta));
}

pub async fn rollout_state_updates(store: Store) {
    let rollout = store.create_rollout(&new_rollout("alpha")).await.unwrap();
    let other = store.create_rollout(&new_rollout("beta")).await.unwrap();
    store.set_rollout_state(rollout.id, "paused").await.unwrap();
    store.set_rollout_state(rollout.id, "failed").await.unwrap();

    let read = store.rollout(rollout.id).await.unwrap().unwrap();
    assert_eq!(read.state, "failed");
    assert_eq!(
        read,
        baton_store::RolloutRow {
            state: "failed".to_string(),
            ..rollout
        }
    );
    let other_id = other.id;
    assert_eq!(store.rollout(other.id).await.unwrap(), Some(other));

    let missing = store.set_rollout_state(99, "done").await.unwrap_err();
    assert!(
        matches!(missing, StoreError::RolloutNotFound { id: 99 }),
        "{missing:?}"
    );
    assert_eq!(missing.to_string(), "rollout 99 does not exist");

    // What a starting controller takes over: everything not finished or aborted.
    let done = store.create_rollout(&new_rollout("gamma")).await.unwrap();
    store.set_rollout_state(done.id, "finished").await.unwrap();
    let gone = store.create_rollout(&new_rollout("delta")).await.unwrap();
    store.set_rollout_state(gone.id, "aborted").await.unwrap();
    let unfinished: Vec<i64> = store
        .unfinished_rollouts()
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(unfinished, [rollout.id, other_id]);
}

pub async fn event_seqs_are_contiguous_per_rollout(store: Store) {
    let a = store
        .create_rollout(&new_rollout("alpha"))
        .await
        .unwrap()
        .id;
    let b = store.create_rollout(&new_rollout("beta")).await.unwrap().id;

    let before = now_ms();
    let mut appended = Vec::new();
    for i in 0..5 {
        appended.push(
            store
                .append_event(&new_event(a, "step", &format!("a{i}")))
                .await
                .unwrap(),
        );
        if i < 3 {
            let event = NewEvent {
                rollout_id: b,
                server: None,
                pool: None,
                kind: "note".to_string(),
                detail: format!("b{i}"),
            };
            let row = store.append_event(&event).await.unwrap();
            assert_eq!(row.seq, i + 1);
            assert_eq!((row.server, row.pool), (None, None));
        }
    }
    let after = now_ms();
    assert_eq!(seqs(&appended), [1, 2, 3, 4, 5]);

    let a_events = store.events(a, 0, None).await.unwrap();
    assert_eq!(
        a_events, appended,
        "what append_event returned is what was stored"
    );
    assert!(a_events.iter().all(|e| (before..=after).contains(&e.at_ms)));
    assert_eq!(a_events[2].detail, "a2");
    assert_eq!(a_events[2].server.as_deref(), Some("web-01.example.test"));
    assert_eq!(a_events[2].pool.as_deref(), Some("web"));
    assert_eq!(a_events[2].kind, "step");

    let b_events = store.events(b, 0, None).await.unwrap();
    assert_eq!(seqs(&b_events), [1, 2, 3]);
    assert!(
        b_events
            .iter()
            .all(|e| e.rollout_id == b && e.server.is_none())
    );

    assert_eq!(store.events(99, 0, None).await.unwrap(), []);
    let missing = store
        .append_event(&new_event(99, "step", "nowhere"))
        .await
        .unwrap_err();
    assert!(
        matches!(missing, StoreError::RolloutNotFound { id: 99 }),
        "{missing:?}"
    );
    // A refused append leaves no trace.
    let c = store
        .create_rollout(&new_rollout("gamma"))
        .await
        .unwrap()
        .id;
    assert_eq!(
        store
            .append_event(&new_event(c, "step", "x"))
            .await
            .unwrap()
            .seq,
        1
    );
}

pub async fn events_after_seq_with_limit(store: Store) {
    let id = store
        .create_rollout(&new_rollout("alpha"))
        .await
        .unwrap()
        .id;
    for i in 1..=10 {
        store
            .append_event(&new_event(id, "step", &format!("e{i}")))
            .await
            .unwrap();
    }
    assert_eq!(
        seqs(&store.events(id, 0, None).await.unwrap()),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(seqs(&store.events(id, 7, None).await.unwrap()), [8, 9, 10]);
    assert_eq!(
        seqs(&store.events(id, 0, Some(3)).await.unwrap()),
        [1, 2, 3]
    );
    assert_eq!(seqs(&store.events(id, 4, Some(2)).await.unwrap()), [5, 6]);
    assert_eq!(seqs(&store.events(id, 8, Some(5)).await.unwrap()), [9, 10]);
    assert_eq!(store.events(id, 10, None).await.unwrap(), []);
    assert_eq!(store.events(id, 0, Some(0)).await.unwrap(), []);
    assert_eq!(store.events(id, 0, Some(-1)).await.unwrap(), []);
    assert_eq!(seqs(&store.events(id, -5, Some(1)).await.unwrap()), [1]);
    let page = store.events(id, 5, Some(1)).await.unwrap();
    assert_eq!(page[0].detail, "e6");
}

/// 8 tasks × 50 appends on clones of one store (one pool, several connections): seqs 1..=400,
/// no gap, no duplicate, and every event stored once.
pub async fn concurrent_appends(store: Store) {
    concurrent_appends_on(vec![store; 8]).await;
}

pub async fn concurrent_appends_on(stores: Vec<Store>) {
    const PER_TASK: usize = 50;
    let tasks = stores.len();
    let id = stores[0]
        .create_rollout(&new_rollout("alpha"))
        .await
        .unwrap()
        .id;
    let other = stores[0]
        .create_rollout(&new_rollout("beta"))
        .await
        .unwrap()
        .id;

    let mut handles = Vec::new();
    for (task, store) in stores.into_iter().enumerate() {
        handles.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..PER_TASK {
                // Every other task also writes to a second rollout, interleaved.
                if task % 2 == 1 {
                    store
                        .append_event(&new_event(other, "noise", &format!("{task}/{i}")))
                        .await
                        .unwrap();
                }
                let row = store
                    .append_event(&new_event(id, "step", &format!("{task}/{i}")))
                    .await
                    .unwrap();
                seqs.push(row.seq);
            }
            (store, seqs)
        }));
    }
    let mut all = Vec::new();
    let mut stores = Vec::new();
    for handle in handles {
        let (store, seqs) = handle.await.unwrap();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one task's seqs increase"
        );
        all.extend(seqs);
        stores.push(store);
    }
    let store = stores[0].clone();
    let total = (tasks * PER_TASK) as i64;
    all.sort_unstable();
    assert_eq!(all, (1..=total).collect::<Vec<_>>());

    let stored = store.events(id, 0, None).await.unwrap();
    assert_eq!(seqs(&stored), (1..=total).collect::<Vec<_>>());
    let details: BTreeSet<&str> = stored.iter().map(|e| e.detail.as_str()).collect();
    assert_eq!(details.len(), tasks * PER_TASK, "every append stored once");

    let noise = store.events(other, 0, None).await.unwrap();
    let noisy = (tasks / 2 * PER_TASK) as i64;
    assert_eq!(seqs(&noise), (1..=noisy).collect::<Vec<_>>());
    for store in stores {
        store.close().await;
    }
}

pub async fn workers_register_heartbeat_disconnect(store: Store) {
    assert_eq!(store.workers().await.unwrap(), []);

    let before = now_ms();
    store
        .worker_connected("web-2.example.test", "0.1.0", "windows-x86_64", true)
        .await
        .unwrap();
    store
        .worker_connected("app.example.test", "0.1.0", "linux-x86_64", true)
        .await
        .unwrap();
    store
        .worker_connected("web-10.example.test", "0.1.0", "windows-x86_64", false)
        .await
        .unwrap();
    store
        .worker_connected("Zeta.example.test", "0.1.0", "linux-aarch64", true)
        .await
        .unwrap();
    let after = now_ms();

    let workers = store.workers().await.unwrap();
    let names: Vec<&str> = workers.iter().map(|w| w.fqdn.as_str()).collect();
    // Byte order on both backends, whatever the database's locale.
    assert_eq!(
        names,
        [
            "Zeta.example.test",
            "app.example.test",
            "web-10.example.test",
            "web-2.example.test"
        ]
    );
    assert!(workers.iter().all(|w| w.connected));
    assert!(workers.iter().all(|w| {
        w.last_heartbeat_ms
            .is_some_and(|t| (before..=after).contains(&t))
    }));
    let web10 = &workers[2];
    assert_eq!(
        (web10.version.as_str(), web10.platform.as_str(), web10.known),
        ("0.1.0", "windows-x86_64", false)
    );

    // A last-seen time moves the clock forward for that worker only.
    let app_before = workers[1].last_heartbeat_ms.unwrap();
    let web2_before = workers[3].last_heartbeat_ms.unwrap();
    store
        .workers_seen(&[("app.example.test".to_string(), app_before + 5)])
        .await
        .unwrap();
    let workers = store.workers().await.unwrap();
    assert_eq!(workers[1].last_heartbeat_ms, Some(app_before + 5));
    assert_eq!(workers[3].last_heartbeat_ms.unwrap(), web2_before);

    // Disconnect keeps the row; reconnecting updates it in place.
    let gone = baton_store::WorkerRow {
        connected: false,
        ..workers[3].clone()
    };
    store.workers_upsert(&[gone]).await.unwrap();
    let workers = store.workers().await.unwrap();
    assert_eq!(workers.len(), 4);
    assert!(!workers[3].connected);
    assert!(workers[..3].iter().all(|w| w.connected));

    store
        .worker_connected("web-2.example.test", "0.2.0", "windows-aarch64", false)
        .await
        .unwrap();
    let workers = store.workers().await.unwrap();
    assert_eq!(workers.len(), 4);
    let web2 = &workers[3];
    assert_eq!(
        (
            web2.fqdn.as_str(),
            web2.version.as_str(),
            web2.platform.as_str(),
            web2.known,
            web2.connected
        ),
        (
            "web-2.example.test",
            "0.2.0",
            "windows-aarch64",
            false,
            true
        )
    );

    // An unknown worker's last-seen time is ignored.
    store
        .workers_seen(&[("ghost.example.test".to_string(), now_ms())])
        .await
        .unwrap();
    assert_eq!(store.workers().await.unwrap().len(), 4);
}

// ---------------------------------------------------------------------------------------------
// Step output

pub fn output_key(
    rollout_id: i64,
    assignment: &str,
    step_index: i64,
    attempt: i64,
) -> StepOutputKey {
    StepOutputKey {
        rollout_id,
        server: "web-01.example.test".to_string(),
        assignment_id: assignment.to_string(),
        step_index,
        attempt,
    }
}

fn output(key: &StepOutputKey, step_id: &str, stderr: bool, text: &str) -> NewStepOutput {
    NewStepOutput {
        key: key.clone(),
        step_id: step_id.to_string(),
        stderr,
        text: text.to_string(),
    }
}

/// What a reader gets, as `(step, attempt, "out"|"err", text)` per chunk and
/// `(step, attempt, "dropped", "LINES/BYTES")` per drop note.
fn shown(items: &[OutputItem]) -> Vec<(String, i64, &'static str, String)> {
    items
        .iter()
        .map(|item| match item {
            OutputItem::Chunk { step_id, chunk } => (
                step_id.clone(),
                chunk.attempt,
                if chunk.stderr { "err" } else { "out" },
                chunk.text.clone(),
            ),
            OutputItem::Dropped {
                key,
                step_id,
                lines,
                bytes,
            } => (
                step_id.clone(),
                key.attempt,
                "dropped",
                format!("{lines}/{bytes}"),
            ),
        })
        .collect()
}

fn row(
    step: &str,
    attempt: i64,
    stream: &'static str,
    text: &str,
) -> (String, i64, &'static str, String) {
    (step.to_string(), attempt, stream, text.to_string())
}

/// Everything from `cursor` on, a few chunks per call as a follower reads it.
async fn read_all(
    store: &Store,
    rollout_id: i64,
    filter: &StepOutputFilter,
    cursor: &mut OutputCursor,
) -> Vec<OutputItem> {
    let mut all = Vec::new();
    loop {
        let items = store
            .read_step_output(rollout_id, "web-01.example.test", filter, cursor, 2)
            .await
            .unwrap();
        if items.is_empty() {
            return all;
        }
        all.extend(items);
    }
}

/// Chunks of several attempts of several steps come back in order, each with its stream;
/// filters pick a step or an assignment; a cursor reads only what is new; counters add up.
pub async fn step_output_is_read_back_in_order(store: Store) {
    let id = store
        .create_rollout(&new_rollout("alpha"))
        .await
        .unwrap()
        .id;
    let other = store.create_rollout(&new_rollout("beta")).await.unwrap().id;
    let prepare = output_key(id, "s-1-1-1", 0, 1);
    let patch1 = output_key(id, "s-1-1-1", 1, 1);
    let patch2 = output_key(id, "s-1-1-1", 1, 2);
    let retried = output_key(id, "s-1-1-2", 0, 1);
    store
        .append_step_output(&output(&prepare, "prepare", false, "one\ntwo"))
        .await
        .unwrap();
    store
        .append_step_output(&output(&prepare, "prepare", true, "oops"))
        .await
        .unwrap();
    store
        .append_step_output(&output(&prepare, "prepare", false, ""))
        .await
        .unwrap();
    store
        .append_step_output(&output(&patch1, "patch", true, "failed"))
        .await
        .unwrap();
    let counters = store
        .append_step_output(&output(&patch2, "patch", false, "patched\nok\ndone"))
        .await
        .unwrap();
    assert_eq!(
        (
            counters.ord,
            counters.last_chunk_seq,
            counters.lines,
            counters.bytes
        ),
        (3, 1, 3, 16)
    );
    assert_eq!(counters.head_end_seq, None, "far below the cap: all head");
    // Another rollout's output of the same server is not this one's.
    store
        .append_step_output(&output(
            &output_key(other, "s-2-1-1", 0, 1),
            "prepare",
            false,
            "x",
        ))
        .await
        .unwrap();

    let all = StepOutputFilter::default();
    let mut cursor = OutputCursor::default();
    let items = read_all(&store, id, &all, &mut cursor).await;
    assert_eq!(
        shown(&items),
        [
            row("prepare", 1, "out", "one\ntwo"),
            row("prepare", 1, "err", "oops"),
            row("prepare", 1, "out", ""),
            row("patch", 1, "err", "failed"),
            row("patch", 2, "out", "patched\nok\ndone"),
        ]
    );
    let OutputItem::Chunk { chunk, .. } = &items[0] else {
        panic!("a chunk")
    };
    assert_eq!((chunk.chunk_seq, chunk.lines, chunk.bytes), (1, 2, 8));
    assert_eq!(chunk.server, "web-01.example.test");
    assert!(chunk.at_ms > 0);

    // Nothing new: nothing read. New output of a known attempt and of a new one: just those.
    assert_eq!(read_all(&store, id, &all, &mut cursor).await, []);
    store
        .append_step_output(&output(&patch2, "patch", false, "really"))
        .await
        .unwrap();
    store
        .append_step_output(&output(&retried, "prepare", false, "again"))
        .await
        .unwrap();
    assert_eq!(
        shown(&read_all(&store, id, &all, &mut cursor).await),
        [
            row("patch", 2, "out", "really"),
            row("prepare", 1, "out", "again")
        ]
    );

    let patch_only = StepOutputFilter {
        step_id: Some("patch".into()),
        ..StepOutputFilter::default()
    };
    assert_eq!(
        shown(&read_all(&store, id, &patch_only, &mut OutputCursor::default()).await),
        [
            row("patch", 1, "err", "failed"),
            row("patch", 2, "out", "patched\nok\ndone"),
            row("patch", 2, "out", "really"),
        ]
    );
    let second_assignment = StepOutputFilter {
        assignment_id: Some("s-1-1-2".into()),
        ..StepOutputFilter::default()
    };
    assert_eq!(
        shown(&read_all(&store, id, &second_assignment, &mut OutputCursor::default()).await),
        [row("prepare", 1, "out", "again")]
    );

    let attempts = store
        .step_output_attempts(id, "web-01.example.test", &all)
        .await
        .unwrap();
    let order: Vec<(String, i64, i64)> = attempts
        .iter()
        .map(|a| (a.assignment_id.clone(), a.step_index, a.attempt))
        .collect();
    assert_eq!(
        order,
        [
            ("s-1-1-1".to_string(), 0, 1),
            ("s-1-1-1".to_string(), 1, 1),
            ("s-1-1-1".to_string(), 1, 2),
            ("s-1-1-2".to_string(), 0, 1),
        ]
    );
    let prepared = store.step_output_attempt(&prepare).await.unwrap().unwrap();
    // "one", "two", "oops", "": 4 lines, 4 + 4 + 5 + 1 bytes with their newlines.
    assert_eq!(
        (prepared.lines, prepared.bytes, prepared.last_chunk_seq),
        (4, 14, 3)
    );
    assert_eq!((prepared.dropped_lines, prepared.dropped_bytes), (0, 0));
    assert_eq!(
        store
            .step_output_attempt(&output_key(id, "s-9", 0, 1))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .latest_step_output_rollout("WEB-01.example.test")
            .await
            .unwrap(),
        Some(other)
    );
    assert_eq!(
        store
            .latest_step_output_rollout("nobody.example.test")
            .await
            .unwrap(),
        None
    );
}

/// `line-001` … : 9 bytes each with its newline.
fn numbered(lines: std::ops::RangeInclusive<u32>) -> String {
    lines
        .map(|n| format!("line-{n:03}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Over the cap (100 bytes: a head and a tail of 50), an attempt keeps its first lines and its
/// last ones, and a reader is told exactly how much went between them: once, where it went,
/// also a reader that had read some of it before it went.
pub async fn step_output_over_the_cap_keeps_head_and_tail(store: Store) {
    let store = store.with_max_step_output(100);
    assert_eq!(store.max_step_output(), 100);
    let id = store
        .create_rollout(&new_rollout("alpha"))
        .await
        .unwrap()
        .id;
    let key = output_key(id, "s-1-1-1", 0, 1);
    let all = StepOutputFilter::default();

    // 10 lines: 5 fit the head (45 bytes; a 6th would make 54), 5 start the tail.
    let first = store
        .append_step_output(&output(&key, "install", false, &numbered(1..=10)))
        .await
        .unwrap();
    assert_eq!(
        (
            first.head_end_seq,
            first.head_bytes,
            first.tail_lines,
            first.tail_bytes,
            first.last_chunk_seq
        ),
        (Some(1), 45, 5, 45, 2)
    );
    let mut follower = OutputCursor::default();
    assert_eq!(
        shown(&read_all(&store, id, &all, &mut follower).await),
        [
            row("install", 1, "out", &numbered(1..=5)),
            row("install", 1, "out", &numbered(6..=10))
        ]
    );

    // 90 more lines, 10 at a time: the tail keeps the last 5 (45 bytes).
    let mut last = first;
    for start in (11..=91).step_by(10) {
        last = store
            .append_step_output(&output(
                &key,
                "install",
                false,
                &numbered(start..=start + 9),
            ))
            .await
            .unwrap();
        assert!(last.tail_bytes <= 50, "{last:?}");
    }
    assert_eq!((last.lines, last.bytes), (100, 900));
    assert_eq!((last.dropped_lines, last.dropped_bytes), (90, 810));
    assert_eq!((last.tail_lines, last.tail_bytes), (5, 45));

    // A new reader: the head, the note, the tail.
    assert_eq!(
        shown(&read_all(&store, id, &all, &mut OutputCursor::default()).await),
        [
            row("install", 1, "out", &numbered(1..=5)),
            row("install", 1, "dropped", "90/810"),
            row("install", 1, "out", &numbered(96..=100)),
        ]
    );
    // The follower had read lines 6-10 before they went: it is told of the other 85.
    assert_eq!(
        shown(&read_all(&store, id, &all, &mut follower).await),
        [
            row("install", 1, "dropped", "85/765"),
            row("install", 1, "out", &numbered(96..=100)),
        ]
    );
    assert_eq!(read_all(&store, id, &all, &mut follower).await, []);

    // Shrinking the tail by hand: its 2 last lines stay, 3 more are counted.
    let trimmed = store.trim_step_output(&key, 18).await.unwrap().unwrap();
    assert_eq!((trimmed.tail_lines, trimmed.tail_bytes), (2, 18));
    assert_eq!((trimmed.dropped_lines, trimmed.dropped_bytes), (93, 837));
    assert_eq!(
        shown(&read_all(&store, id, &all, &mut OutputCursor::default()).await),
        [
            row("install", 1, "out", &numbered(1..=5)),
            row("install", 1, "dropped", "93/837"),
            row("install", 1, "out", &numbered(99..=100)),
        ]
    );
    assert_eq!(
        store
            .trim_step_output(&output_key(id, "s-9", 0, 1), 0)
            .await
            .unwrap(),
        None
    );

    // One chunk bigger than head and tail together: split, its middle dropped at once.
    let big = output_key(id, "s-1-1-1", 1, 1);
    let counters = store
        .append_step_output(&output(&big, "verify", true, &numbered(1..=30)))
        .await
        .unwrap();
    assert_eq!((counters.dropped_lines, counters.dropped_bytes), (20, 180));
    let verify = StepOutputFilter {
        step_id: Some("verify".into()),
        ..StepOutputFilter::default()
    };
    assert_eq!(
        shown(&read_all(&store, id, &verify, &mut OutputCursor::default()).await),
        [
            row("verify", 1, "err", &numbered(1..=5)),
            row("verify", 1, "dropped", "20/180"),
            row("verify", 1, "err", &numbered(26..=30)),
        ]
    );

    // A first line that does not fit the head at all: no head, the note first.
    let wide = output_key(id, "s-1-1-1", 2, 1);
    let long = "x".repeat(60);
    store
        .append_step_output(&output(&wide, "wide", false, &format!("{long}\nshort")))
        .await
        .unwrap();
    let attempt = store.step_output_attempt(&wide).await.unwrap().unwrap();
    assert_eq!(attempt.head_end_seq, Some(0));
    assert_eq!((attempt.dropped_lines, attempt.dropped_bytes), (1, 61));
    let only_wide = StepOutputFilter {
        step_id: Some("wide".into()),
        ..StepOutputFilter::default()
    };
    assert_eq!(
        shown(&read_all(&store, id, &only_wide, &mut OutputCursor::default()).await),
        [
            row("wide", 1, "dropped", "1/61"),
            row("wide", 1, "out", "short")
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// For databases that outlive a store (SQLite files, PostgreSQL): these take the URL.

/// Everything written through one store is there for the next one opened on the same database
/// (and opening an up-to-date database migrates nothing).
pub async fn reopen_keeps_everything(url: &str) {
    let store = connect(url).await;
    let rollout = store.create_rollout(&new_rollout("alpha")).await.unwrap();
    store.set_rollout_state(rollout.id, "done").await.unwrap();
    let mut events = Vec::new();
    for i in 0..3 {
        events.push(
            store
                .append_event(&new_event(rollout.id, "step", &format!("e{i}")))
                .await
                .unwrap(),
        );
    }
    store
        .worker_connected("web-1.example.test", "0.1.0", "windows-x86_64", true)
        .await
        .unwrap();
    let mut gone = store.workers().await.unwrap();
    gone[0].connected = false;
    store.workers_upsert(&gone).await.unwrap();
    let workers = store.workers().await.unwrap();
    assert!(!workers[0].connected);
    store.close().await;

    let store = connect(url).await;
    let reread = store.rollout(rollout.id).await.unwrap().unwrap();
    assert_eq!(reread.state, "done");
    assert_eq!(reread.fleet_toml, rollout.fleet_toml);
    assert_eq!(store.latest_rollout().await.unwrap(), Some(reread));
    assert_eq!(store.events(rollout.id, 0, None).await.unwrap(), events);
    assert_eq!(store.workers().await.unwrap(), workers);

    // Numbering goes on where it stopped.
    let next = store
        .append_event(&new_event(rollout.id, "step", "e3"))
        .await
        .unwrap();
    assert_eq!(next.seq, 4);
    assert_eq!(
        store.create_rollout(&new_rollout("beta")).await.unwrap().id,
        2
    );
    store.close().await;
}

/// Appends through four separately opened stores (four pools) on one database.
pub async fn concurrent_appends_from_separate_stores(url: &str) {
    let mut stores = Vec::new();
    for _ in 0..4 {
        let store = connect(url).await;
        stores.push(store.clone());
        stores.push(store);
    }
    concurrent_appends_on(stores).await;
}

/// The backend a URL selects.
pub async fn backend_of(url: &str, want: Backend) {
    let store = connect(url).await;
    assert_eq!(store.backend(), want);
    store.close().await;
}

/// Each controller start raises the epoch by one, also after the store is reopened and when
/// several stores race for it.
pub async fn epochs_rise_across_controllers(url: &str) {
    let first = connect(url).await;
    assert_eq!(first.next_epoch().await.expect("epoch"), 1);
    assert_eq!(first.next_epoch().await.expect("epoch"), 2);
    first.close().await;
    let again = connect(url).await;
    assert_eq!(again.next_epoch().await.expect("epoch"), 3);
    let other = connect(url).await;
    let (a, b) = tokio::join!(again.next_epoch(), other.next_epoch());
    let mut both = [a.expect("epoch"), b.expect("epoch")];
    both.sort_unstable();
    assert_eq!(both, [4, 5], "racing controllers never share an epoch");
    again.close().await;
    other.close().await;
}

/// A store's identity is made once, kept across reopenings, and differs between databases.
pub async fn the_store_identity_is_its_own(url: &str) {
    let first = connect(url).await;
    let id = first.store_id().await.expect("store id");
    assert_eq!(id.len(), 16, "{id}");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    first.close().await;
    let again = connect(url).await;
    assert_eq!(again.store_id().await.expect("store id"), id, "kept");
    again.close().await;
    let other = connect("sqlite::memory:").await;
    assert_ne!(
        other.store_id().await.expect("store id"),
        id,
        "another database"
    );
    other.close().await;
}

/// Last-seen times of many workers go in one call (several statements past 500 workers):
/// each row gets its own time, an older time never replaces a newer one, and unknown FQDNs are
/// ignored.
pub async fn last_seen_times_are_written_in_batches(store: Store) {
    let fqdns: Vec<String> = (0..1200).map(|i| format!("w{i}.example.test")).collect();
    for fqdn in &fqdns {
        store
            .worker_connected(fqdn, "0.1.0", "linux", true)
            .await
            .unwrap();
    }
    let future = now_ms() + 60_000;
    let mut seen: Vec<(String, i64)> = fqdns
        .iter()
        .enumerate()
        .map(|(i, fqdn)| (fqdn.clone(), future + i as i64))
        .collect();
    seen.push(("stranger.example.test".to_string(), future));
    store.workers_seen(&seen).await.unwrap();
    // An older time for w0 is ignored.
    store
        .workers_seen(&[("w0.example.test".to_string(), 5)])
        .await
        .unwrap();
    let workers = store.workers().await.unwrap();
    assert_eq!(workers.len(), 1200, "the stranger is not registered");
    for worker in &workers {
        let i: i64 = worker.fqdn[1..worker.fqdn.find('.').unwrap()]
            .parse()
            .unwrap();
        assert_eq!(
            worker.last_heartbeat_ms,
            Some(future + i),
            "{}",
            worker.fqdn
        );
    }
}

/// A batch of events for several rollouts goes in one transaction: each rollout's share is
/// numbered on from its last event, in order, interleaved with single appends and other
/// batches without a gap or a duplicate; a batch naming an unknown rollout writes nothing.
pub async fn batches_of_events_keep_seq_contiguous(store: Store) {
    let a = store
        .create_rollout(&new_rollout("alpha"))
        .await
        .unwrap()
        .id;
    let b = store.create_rollout(&new_rollout("beta")).await.unwrap().id;
    store
        .append_event(&new_event(a, "single", "a1"))
        .await
        .unwrap();
    let batch = [
        new_event(a, "batch", "a2"),
        new_event(b, "batch", "b1"),
        new_event(a, "batch", "a3"),
        new_event(b, "batch", "b2"),
    ];
    let rows = store.append_events(&batch).await.unwrap();
    let seqs: Vec<(i64, i64, &str)> = rows
        .iter()
        .map(|r| (r.rollout_id, r.seq, r.detail.as_str()))
        .collect();
    assert_eq!(
        seqs,
        [(a, 2, "a2"), (b, 1, "b1"), (a, 3, "a3"), (b, 2, "b2")]
    );
    assert!(store.append_events(&[]).await.unwrap().is_empty());

    // Batches and single appends racing from several tasks.
    let mut tasks = Vec::new();
    for task in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                let detail = format!("{task}/{i}");
                if task % 2 == 0 {
                    let events = [new_event(a, "race", &detail), new_event(b, "race", &detail)];
                    store.append_events(&events).await.unwrap();
                } else {
                    store
                        .append_event(&new_event(a, "race", &detail))
                        .await
                        .unwrap();
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let a_events = store.events(a, 0, None).await.unwrap();
    let b_events = store.events(b, 0, None).await.unwrap();
    assert_eq!(a_events.len(), 3 + 40);
    assert_eq!(b_events.len(), 2 + 20);
    for events in [&a_events, &b_events] {
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        let want: Vec<i64> = (1..=events.len() as i64).collect();
        assert_eq!(seqs, want, "contiguous");
    }

    // A batch larger than one INSERT statement takes: still one transaction, in order.
    let many: Vec<NewEvent> = (0..1000)
        .map(|i| new_event(b, "many", &i.to_string()))
        .collect();
    let rows = store.append_events(&many).await.unwrap();
    let first = rows[0].seq;
    assert!(
        rows.iter()
            .enumerate()
            .all(|(i, r)| r.seq == first + i as i64 && r.detail == i.to_string())
    );
    let b_events = store.events(b, 0, None).await.unwrap();
    assert_eq!(b_events.len(), 22 + 1000);

    let unknown = [
        new_event(a, "lost", "x"),
        new_event(a + b + 100, "lost", "y"),
    ];
    let err = store.append_events(&unknown).await.unwrap_err();
    assert!(matches!(err, StoreError::RolloutNotFound { .. }), "{err:?}");
    assert_eq!(
        store.events(a, 0, None).await.unwrap().len(),
        a_events.len(),
        "all or none"
    );
}

/// Many workers registered and updated in one call (several statements past 500): new ones
/// are inserted, known ones updated, whatever their number.
pub async fn workers_are_registered_in_batches(store: Store) {
    store
        .worker_connected("w0.example.test", "0.0.1", "linux", false)
        .await
        .unwrap();
    let rows: Vec<baton_store::WorkerRow> = (0..1200)
        .map(|i| baton_store::WorkerRow {
            fqdn: format!("w{i}.example.test"),
            version: "0.2.0".into(),
            platform: "windows".into(),
            known: i % 2 == 0,
            connected: i % 3 != 0,
            last_heartbeat_ms: Some(1_000 + i),
        })
        .collect();
    store.workers_upsert(&rows).await.unwrap();
    let mut stored = store.workers().await.unwrap();
    stored.sort_by_key(|w| w.last_heartbeat_ms);
    assert_eq!(stored, rows, "every row as given, w0 updated");
    assert!(store.workers_upsert(&[]).await.is_ok());
}
