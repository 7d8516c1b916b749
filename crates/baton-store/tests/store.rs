//! The store suite (`common/mod.rs`) on every backend: SQLite in memory and in a WAL file
//! always; PostgreSQL when `BATON_TEST_POSTGRES_URL` is set (each test in a schema of its own).
//! Then connection errors and timestamp formatting.

mod common;

use baton_store::{Backend, Store, StoreError, rfc3339_ms};
use common::{PgSchema, TempDir};

/// Instantiates each named suite function once per backend.
macro_rules! suite {
    (store: [$($store_test:ident),* $(,)?], url: [$($url_test:ident),* $(,)?] $(,)?) => {
        mod sqlite_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $store_test() {
                    let store = crate::common::connect("sqlite::memory:").await;
                    crate::common::$store_test(store).await;
                }
            )*
        }

        mod sqlite_file {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $store_test() {
                    let dir = crate::TempDir::new();
                    let store = crate::common::connect(&dir.sqlite_url("baton.db")).await;
                    crate::common::$store_test(store.clone()).await;
                    store.close().await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $url_test() {
                    let dir = crate::TempDir::new();
                    crate::common::$url_test(&dir.sqlite_url("baton.db")).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $store_test() {
                    let Some(schema) = crate::PgSchema::create(stringify!($store_test)).await
                    else {
                        return;
                    };
                    let store = crate::common::connect(&schema.url()).await;
                    crate::common::$store_test(store.clone()).await;
                    store.close().await;
                    schema.drop_schema().await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $url_test() {
                    let Some(schema) = crate::PgSchema::create(stringify!($url_test)).await
                    else {
                        return;
                    };
                    crate::common::$url_test(&schema.url()).await;
                    schema.drop_schema().await;
                }
            )*
        }
    };
}

suite! {
    store: [
        rollout_ids_increase,
        latest_rollout,
        rollout_state_updates,
        event_seqs_are_contiguous_per_rollout,
        events_after_seq_with_limit,
        concurrent_appends,
        batches_of_events_keep_seq_contiguous,
        workers_register_heartbeat_disconnect,
        last_seen_times_are_written_in_batches,
        workers_are_registered_in_batches,
        step_output_is_read_back_in_order,
        step_output_over_the_cap_keeps_head_and_tail,
    ],
    url: [
        reopen_keeps_everything,
        concurrent_appends_from_separate_stores,
        epochs_rise_across_controllers,
        the_store_identity_is_its_own,
    ],
}

#[tokio::test]
async fn backends_are_picked_from_the_url() {
    common::backend_of("sqlite::memory:", Backend::Sqlite).await;
    let dir = TempDir::new();
    common::backend_of(&dir.sqlite_url("baton.db"), Backend::Sqlite).await;
    if let Some(schema) = PgSchema::create("backend").await {
        common::backend_of(&schema.url(), Backend::Postgres).await;
        schema.drop_schema().await;
    }
}

#[tokio::test]
async fn sqlite_file_is_created_in_wal_mode() {
    let dir = TempDir::new();
    let file = dir.path().join("fresh.db");
    assert!(!file.exists());
    let store = common::connect(&dir.sqlite_url("fresh.db")).await;
    store
        .create_rollout(&common::new_rollout("alpha"))
        .await
        .unwrap();
    assert!(file.exists());
    // A write-ahead log sits beside the database while it is open.
    assert!(dir.path().join("fresh.db-wal").exists());
    store.close().await;
}

#[tokio::test]
async fn sqlite_in_missing_directory_names_the_path() {
    let dir = TempDir::new();
    let missing = dir.path().join("no-such-dir").join("baton.db");
    let url = format!("sqlite://{}", missing.display());
    let err = Store::connect(&url).await.unwrap_err();
    assert!(
        matches!(err, StoreError::MissingDirectory { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );
    assert!(message.contains("does not exist"), "{message}");
    assert!(!missing.parent().unwrap().exists(), "nothing was created");
}

#[tokio::test]
async fn unreachable_postgres_names_the_url_without_password() {
    let url = "postgres://baton:s3cret-pw@127.0.0.1:1/baton";
    let started = std::time::Instant::now();
    let err = Store::connect(url).await.unwrap_err();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("postgres://baton:***@127.0.0.1:1/baton"),
        "{message}"
    );
    assert!(!message.contains("s3cret"), "{message}");
    assert!(!format!("{err:?}").contains("s3cret"), "{err:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "a refused connection fails at once"
    );
}

#[tokio::test]
async fn other_urls_are_refused_clearly() {
    let err = Store::connect("mysql://root:hunter2@db/baton")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedUrl { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("mysql://root:***@db/baton"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");

    let err = Store::connect("sqlite://").await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err:?}");
}

#[test]
fn rfc3339_with_milliseconds_in_utc() {
    assert_eq!(rfc3339_ms(1_795_720_622_123), "2026-11-26T19:17:02.123Z");
    assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339_ms(1_795_720_622_000), "2026-11-26T19:17:02.000Z");
    assert_eq!(rfc3339_ms(951_782_400_007), "2000-02-29T00:00:00.007Z");
    assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
}
