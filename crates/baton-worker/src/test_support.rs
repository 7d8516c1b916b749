//! Helpers for the worker's tests: its unit tests, and `tests/connection.rs` by `#[path]`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// A scratch directory removed on drop (no tempfile dependency for a dozen lines).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "baton-worker-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether `pid` still runs (Linux: a zombie counts as ended). SIGKILL lands asynchronously,
/// so this gives the kernel a bounded moment to finish the job.
pub fn still_running(pid: u32) -> bool {
    let stat = format!("/proc/{pid}/stat");
    if !Path::new("/proc/self/stat").exists() {
        // Not Linux: ask `kill -0` (a zombie would count as running; good enough there).
        return std::process::Command::new("kill")
            .args(["-0", &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
    }
    for _ in 0..200 {
        match std::fs::read_to_string(&stat) {
            Err(_) => return false,
            // The state follows the parenthesised command name.
            Ok(text) => match text
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next())
            {
                Some("Z" | "X") => return false,
                _ => std::thread::sleep(Duration::from_millis(10)),
            },
        }
    }
    true
}
