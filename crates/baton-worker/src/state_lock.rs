//! One worker per state folder. The journal in the state folder says where this server's
//! assignment stopped; two workers sharing the folder would overwrite each other's journal, and
//! a restarted worker could then tell the controller about the wrong assignment.
//!
//! So at start the worker takes an OS lock (`flock` on Unix, `LockFileEx` on Windows, through
//! [`File::try_lock`]) on `worker.lock` in its state folder and holds it for the life of the
//! process: the OS lets it go when the process ends, however it ends, so a crashed worker
//! leaves no stale lock behind. The holder writes its PID and FQDN into the file, so a second
//! worker can say who is in the way. The file itself is never removed (removing a lock file
//! races with the next worker opening it).

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The lock file's name in the state folder.
pub const LOCK_FILE: &str = "worker.lock";

/// Why the state folder cannot be taken. Names the folder (or the lock file in it).
#[derive(Debug, thiserror::Error)]
pub enum StateLockError {
    /// Another process (another worker, most likely) holds the lock. `pid` and `fqdn` are what
    /// the holder wrote into the lock file, when it could be read (and, on Linux, when that
    /// process still runs).
    #[error(
        "state dir {} is in use by another worker{}; give each worker its own --state-dir",
        dir.display(),
        holder_text(*pid, fqdn.as_deref())
    )]
    InUse {
        dir: PathBuf,
        pid: Option<u32>,
        fqdn: Option<String>,
    },
    /// The folder cannot be created, or the lock file opened, locked or written.
    #[error("{}", io_text(dir, path, action, source))]
    Io {
        dir: PathBuf,
        /// The folder itself or the lock file in it.
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
}

/// `state dir DIR: cannot create it: …`, or `state dir DIR: cannot open worker.lock: …`.
fn io_text(dir: &Path, path: &Path, action: &str, source: &io::Error) -> String {
    match path.strip_prefix(dir) {
        Ok(file) if !file.as_os_str().is_empty() => format!(
            "state dir {}: cannot {action} {}: {source}",
            dir.display(),
            file.display()
        ),
        _ => format!("state dir {}: cannot {action}: {source}", dir.display()),
    }
}

/// ` (pid 1234, fqdn fe01.contoso.com)`, or less, or nothing.
fn holder_text(pid: Option<u32>, fqdn: Option<&str>) -> String {
    let mut parts = Vec::new();
    if let Some(pid) = pid {
        parts.push(format!("pid {pid}"));
    }
    if let Some(fqdn) = fqdn {
        // Escaped: the message stays on one line whatever the file says.
        parts.push(format!("fqdn {}", fqdn.escape_debug()));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

/// What the holder writes into the lock file: one line of JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Holder {
    pid: u32,
    fqdn: String,
}

/// The lock on a state folder, held until dropped (or the process ends).
#[derive(Debug)]
pub struct StateDirLock {
    dir: PathBuf,
    path: PathBuf,
    /// Holds the lock: closing it lets the lock go.
    _file: File,
}

impl StateDirLock {
    /// Creates `dir` if needed and locks `dir/worker.lock` for this process, writing our PID
    /// and `fqdn` into it. Fails at once (no waiting) if another process holds it.
    pub fn acquire(dir: &Path, fqdn: &str) -> Result<StateDirLock, StateLockError> {
        let path = dir.join(LOCK_FILE);
        let io_error = |action: &'static str, path: &Path| {
            let dir = dir.to_path_buf();
            let path = path.to_path_buf();
            move |source| StateLockError::Io {
                dir,
                path,
                action,
                source,
            }
        };
        fs::create_dir_all(dir).map_err(io_error("create it", dir))?;
        // Not truncated on open: the holder's PID must survive a second worker opening it.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error("open", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = read_holder(&mut file);
                return Err(StateLockError::InUse {
                    dir: dir.to_path_buf(),
                    pid: holder.as_ref().map(|h| h.pid),
                    fqdn: holder.map(|h| h.fqdn),
                });
            }
            Err(TryLockError::Error(source)) => return Err(io_error("lock", &path)(source)),
        }
        let holder = Holder {
            pid: std::process::id(),
            fqdn: fqdn.to_owned(),
        };
        let mut line = serde_json::to_string(&holder).expect("a PID and a string serialize");
        line.push('\n');
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(line.as_bytes()))
            .and_then(|()| file.flush())
            .map_err(io_error("write", &path))?;
        Ok(StateDirLock {
            dir: dir.to_path_buf(),
            path,
            _file: file,
        })
    }

    /// The state folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What the holder wrote, if it can be read: not on Windows, where the holder's lock keeps
/// others from reading the file, nor before the holder has written it. On Linux, a PID that no
/// longer runs is a previous holder's, written before the current one took the lock: not named.
fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(4096).read_to_string(&mut text).ok()?;
    let holder: Holder = serde_json::from_str(text.trim()).ok()?;
    if cfg!(target_os = "linux") && !Path::new(&format!("/proc/{}", holder.pid)).exists() {
        return None;
    }
    Some(holder)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;

    #[test]
    fn a_second_lock_on_the_same_dir_fails_naming_the_dir_and_the_holder() {
        let tmp = TempDir::new();
        let dir = tmp.path().join("state");
        let first = StateDirLock::acquire(&dir, "fe01.contoso.com").expect("first lock");
        assert_eq!(first.dir(), dir);
        assert_eq!(first.path(), dir.join(LOCK_FILE));

        let err = StateDirLock::acquire(&dir, "fe02.contoso.com").expect_err("second lock");
        let StateLockError::InUse {
            dir: in_use,
            pid,
            fqdn,
        } = &err
        else {
            panic!("not InUse: {err:?}");
        };
        assert_eq!(in_use, &dir);
        let text = err.to_string();
        assert!(text.contains(&dir.display().to_string()), "{text}");
        assert!(!text.contains('\n'), "{text:?}");
        if cfg!(windows) {
            // The holder's lock keeps others from reading the file: there is no PID to name,
            // and anything named must be the holder.
            assert!(pid.is_none_or(|pid| pid == std::process::id()), "{text}");
            assert!(
                fqdn.as_deref().is_none_or(|f| f == "fe01.contoso.com"),
                "{text}"
            );
        } else {
            assert_eq!(pid, &Some(std::process::id()), "{text}");
            assert_eq!(fqdn.as_deref(), Some("fe01.contoso.com"), "{text}");
            assert_eq!(
                text,
                format!(
                    "state dir {} is in use by another worker (pid {}, fqdn fe01.contoso.com); \
                     give each worker its own --state-dir",
                    dir.display(),
                    std::process::id()
                )
            );
        }
        // The failed attempt left the holder's record alone.
        drop(first);
        let text = fs::read_to_string(dir.join(LOCK_FILE)).expect("lock file");
        let holder: Holder = serde_json::from_str(text.trim()).expect("holder record");
        assert_eq!(
            holder,
            Holder {
                pid: std::process::id(),
                fqdn: "fe01.contoso.com".into()
            }
        );
    }

    #[test]
    fn the_dir_can_be_locked_again_once_the_lock_is_dropped() {
        let tmp = TempDir::new();
        let first = StateDirLock::acquire(tmp.path(), "fe01.contoso.com").expect("first lock");
        drop(first);
        let again = StateDirLock::acquire(tmp.path(), "fe02.contoso.com").expect("lock again");
        // The new holder's record replaced the old one.
        let text = fs::read_to_string(again.path()).expect("lock file");
        assert_eq!(
            serde_json::from_str::<Holder>(text.trim()).expect("holder record"),
            Holder {
                pid: std::process::id(),
                fqdn: "fe02.contoso.com".into()
            }
        );
        let err = StateDirLock::acquire(tmp.path(), "fe03.contoso.com").expect_err("held again");
        assert!(matches!(err, StateLockError::InUse { .. }), "{err:?}");
    }

    #[test]
    fn a_dir_that_is_a_file_is_an_error_naming_it() {
        let tmp = TempDir::new();
        let file = tmp.path().join("not-a-dir");
        fs::write(&file, "").expect("write file");
        let err = StateDirLock::acquire(&file, "fe01.contoso.com").expect_err("a file");
        assert!(matches!(err, StateLockError::Io { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&file.display().to_string()), "{text}");
        assert!(!text.contains('\n'), "{text:?}");
    }

    #[test]
    fn the_holder_is_named_as_far_as_it_is_known() {
        assert_eq!(
            holder_text(Some(7), Some("a.b")),
            " (pid 7, fqdn a.b)".to_string()
        );
        assert_eq!(holder_text(Some(7), None), " (pid 7)");
        assert_eq!(holder_text(None, None), "");
        assert_eq!(holder_text(None, Some("a\nb")), " (fqdn a\\nb)");
    }
}
