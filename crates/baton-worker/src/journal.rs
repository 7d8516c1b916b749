//! The worker's journal: the current assignment's step starts and results, written to disk
//! (and synced) before they are reported. A worker that restarts, as a process or with its
//! machine, reads it back and tells the controller where its assignment stopped, so the
//! controller can resume it or hold the server for an operator, never guess.
//!
//! One file, `journal.jsonl` in the state folder, one JSON record per line. It holds only the
//! current assignment: a new assignment replaces the file (written aside, then renamed). A last
//! line torn by a crash is ignored: the record it would have held was not reported either.
//!
//! The journal names the store (the controller's database) that issued its assignment. When
//! a controller answers that an assignment can never count (`Discard`), or the controller now
//! reached runs on another store, the entry is moved to `journal.archive.jsonl` (appended,
//! with why) and the journal starts clean.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use baton_proto::v1::{Assignment, AssignmentFinished, Interrupted};
use serde::{Deserialize, Serialize};

const FILE_NAME: &str = "journal.jsonl";
const ARCHIVE_NAME: &str = "journal.archive.jsonl";

/// Why the journal cannot be used. Names the file.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
enum Record {
    Assignment {
        assignment_id: String,
        steps: u32,
        start_step: u32,
        /// The store that issued it; absent from journals written before stores had one.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        store_id: String,
    },
    StepStarted {
        index: u32,
        attempt: u32,
    },
    StepFinished {
        index: u32,
        attempt: u32,
        succeeded: bool,
    },
    Finished {
        succeeded: bool,
        detail: String,
    },
    /// Written to the archive only: why the entry above it left the journal.
    Archived {
        reason: String,
    },
}

/// What the journal says about the last assignment when the worker starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovered {
    /// No assignment recorded.
    Nothing,
    /// It ended; its result and its steps' results may not have reached the controller, so
    /// they are sent again (to the store that issued it only).
    Finished {
        result: AssignmentFinished,
        store_id: String,
        /// The steps that succeeded: (index, attempt).
        succeeded_steps: Vec<(u32, u32)>,
    },
    /// The worker went down while it ran.
    Interrupted {
        assignment_id: String,
        store_id: String,
        at: Interrupted,
    },
}

/// The journal of one worker. Writes are synchronous and synced: they are few (a handful per
/// step) and each must be on disk before the worker says anything about it.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    current: Mutex<Option<Current>>,
}

#[derive(Debug)]
struct Current {
    assignment_id: String,
    file: File,
}

impl Journal {
    /// Opens (creating the folder if needed) the journal in `state_dir` and reads what the last
    /// run of the worker left there.
    pub fn open(state_dir: &Path) -> Result<(Self, Recovered), JournalError> {
        let path = state_dir.join(FILE_NAME);
        let io_error = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(state_dir).map_err(io_error)?;
        let recovered = match fs::read_to_string(&path) {
            Ok(text) => recover(&path, &text),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Recovered::Nothing,
            Err(err) => return Err(io_error(err)),
        };
        let journal = Journal {
            path,
            current: Mutex::new(None),
        };
        Ok((journal, recovered))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts the journal of a new assignment, replacing the previous one atomically.
    pub fn begin(&self, assignment: &Assignment) -> Result<(), JournalError> {
        let io_error = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        let first = Record::Assignment {
            assignment_id: assignment.assignment_id.clone(),
            steps: u32::try_from(assignment.steps.len()).unwrap_or(u32::MAX),
            start_step: assignment.start_step,
            store_id: assignment.store_id.clone(),
        };
        let aside = self.path.with_extension("jsonl.new");
        let mut file = File::create(&aside).map_err(io_error)?;
        write_line(&mut file, &first).map_err(io_error)?;
        fs::rename(&aside, &self.path).map_err(io_error)?;
        sync_folder(&self.path).map_err(io_error)?;
        let file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io_error)?;
        *self.lock() = Some(Current {
            assignment_id: assignment.assignment_id.clone(),
            file,
        });
        Ok(())
    }

    pub fn step_started(
        &self,
        assignment_id: &str,
        index: u32,
        attempt: u32,
    ) -> Result<(), JournalError> {
        self.append(assignment_id, &Record::StepStarted { index, attempt })
    }

    pub fn step_finished(
        &self,
        assignment_id: &str,
        index: u32,
        attempt: u32,
        succeeded: bool,
    ) -> Result<(), JournalError> {
        self.append(
            assignment_id,
            &Record::StepFinished {
                index,
                attempt,
                succeeded,
            },
        )
    }

    pub fn finished(
        &self,
        assignment_id: &str,
        succeeded: bool,
        detail: &str,
    ) -> Result<(), JournalError> {
        self.append(
            assignment_id,
            &Record::Finished {
                succeeded,
                detail: detail.to_owned(),
            },
        )
    }

    /// Moves the journal's entry for `assignment_id` (if that is what it holds) to the archive,
    /// with `reason`, and leaves the journal empty: a restart then has nothing to report.
    /// Returns whether it did.
    pub fn archive(&self, assignment_id: &str, reason: &str) -> Result<bool, JournalError> {
        let io_error = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        let mut current = self.lock();
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(err) => return Err(io_error(err)),
        };
        let holds_it = text
            .lines()
            .next()
            .and_then(|line| serde_json::from_str::<Record>(line).ok())
            .is_some_and(|record| {
                matches!(record, Record::Assignment { assignment_id: id, .. } if id == assignment_id)
            });
        if !holds_it {
            return Ok(false);
        }
        let archive = self.path.with_file_name(ARCHIVE_NAME);
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&archive)
            .map_err(|source| JournalError::Io {
                path: archive.clone(),
                source,
            })?;
        let mut entry = String::new();
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            entry.push_str(line);
            entry.push('\n');
        }
        out.write_all(entry.as_bytes())
            .and_then(|()| {
                write_line(
                    &mut out,
                    &Record::Archived {
                        reason: reason.to_owned(),
                    },
                )
            })
            .map_err(|source| JournalError::Io {
                path: archive.clone(),
                source,
            })?;
        fs::remove_file(&self.path).map_err(io_error)?;
        sync_folder(&self.path).map_err(io_error)?;
        if current
            .as_ref()
            .is_some_and(|current| current.assignment_id == assignment_id)
        {
            *current = None;
        }
        Ok(true)
    }

    /// Appends to the current assignment's journal. Records of another assignment (one refused
    /// without running) are not the journal's business and are left out.
    fn append(&self, assignment_id: &str, record: &Record) -> Result<(), JournalError> {
        let mut current = self.lock();
        let Some(current) = current
            .as_mut()
            .filter(|current| current.assignment_id == assignment_id)
        else {
            return Ok(());
        };
        write_line(&mut current.file, record).map_err(|source| JournalError::Io {
            path: self.path.clone(),
            source,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Current>> {
        // A panic while holding the lock left at worst a partial line, which recovery skips.
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn write_line(file: &mut File, record: &Record) -> io::Result<()> {
    let mut line = serde_json::to_string(record).map_err(io::Error::other)?;
    line.push('\n');
    file.write_all(line.as_bytes())?;
    file.sync_data()
}

/// Makes a rename durable (Unix: sync the folder; elsewhere the rename is as durable as the
/// file system makes it).
fn sync_folder(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    if let Some(folder) = path.parent() {
        File::open(folder)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Reads a journal's text back into what the last run left.
fn recover(path: &Path, text: &str) -> Recovered {
    let mut lines = text.lines().enumerate().peekable();
    let mut records = Vec::new();
    while let Some((number, line)) = lines.next() {
        match serde_json::from_str::<Record>(line) {
            Ok(record) => records.push(record),
            // The last line may have been cut by a crash mid-write: it was never reported.
            Err(_) if lines.peek().is_none() => {
                tracing::warn!(journal = %path.display(), line = number + 1, "ignoring a torn last line");
            }
            Err(err) => {
                // Not a crash artefact: the journal cannot be trusted. Saying nothing makes the
                // controller hold the server for an operator, which is the safe answer.
                tracing::error!(journal = %path.display(), line = number + 1, %err, "unreadable journal line; reporting no assignment");
                return Recovered::Nothing;
            }
        }
    }
    replay(&records)
}

fn replay(records: &[Record]) -> Recovered {
    let Some(Record::Assignment {
        assignment_id,
        steps,
        start_step,
        store_id,
    }) = records.first()
    else {
        return Recovered::Nothing;
    };
    let mut next = *start_step;
    let mut started = false;
    let mut succeeded_steps = Vec::new();
    for record in &records[1..] {
        match record {
            Record::StepStarted { index, .. } => {
                next = *index;
                started = true;
            }
            Record::StepFinished {
                index,
                succeeded,
                attempt,
            } => {
                // A failed attempt may be retried: the step is where to go on from.
                next = if *succeeded { index + 1 } else { *index };
                started = false;
                if *succeeded {
                    succeeded_steps.push((*index, *attempt));
                }
            }
            Record::Finished { succeeded, detail } => {
                return Recovered::Finished {
                    result: AssignmentFinished {
                        assignment_id: assignment_id.clone(),
                        succeeded: *succeeded,
                        detail: detail.clone(),
                    },
                    store_id: store_id.clone(),
                    succeeded_steps,
                };
            }
            Record::Assignment { .. } | Record::Archived { .. } => return Recovered::Nothing,
        }
    }
    Recovered::Interrupted {
        assignment_id: assignment_id.clone(),
        store_id: store_id.clone(),
        at: Interrupted {
            step_index: next.min(*steps),
            step_started: started,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;
    use baton_proto::v1::Step;

    fn assignment(id: &str, steps: usize, start_step: u32) -> Assignment {
        Assignment {
            assignment_id: id.into(),
            steps: vec![Step::default(); steps],
            start_step,
            ..Assignment::default()
        }
    }

    fn reopen(dir: &TempDir) -> Recovered {
        Journal::open(dir.path()).expect("opens").1
    }

    fn interrupted(id: &str, step_index: u32, step_started: bool) -> Recovered {
        Recovered::Interrupted {
            assignment_id: id.into(),
            store_id: String::new(),
            at: Interrupted {
                step_index,
                step_started,
            },
        }
    }

    #[test]
    fn an_empty_folder_has_nothing_to_say() {
        let dir = TempDir::new();
        assert_eq!(reopen(&dir), Recovered::Nothing);
    }

    #[test]
    fn a_step_started_without_a_result_is_reported_started() {
        let dir = TempDir::new();
        let (journal, _) = Journal::open(dir.path()).unwrap();
        journal.begin(&assignment("a1", 3, 0)).unwrap();
        journal.step_started("a1", 0, 1).unwrap();
        journal.step_finished("a1", 0, 1, true).unwrap();
        journal.step_started("a1", 1, 1).unwrap();
        assert_eq!(reopen(&dir), interrupted("a1", 1, true));
    }

    #[test]
    fn between_steps_the_next_step_is_reported_not_started() {
        let dir = TempDir::new();
        let (journal, _) = Journal::open(dir.path()).unwrap();
        journal.begin(&assignment("a1", 3, 0)).unwrap();
        assert_eq!(reopen(&dir), interrupted("a1", 0, false));
        journal.step_started("a1", 0, 1).unwrap();
        journal.step_finished("a1", 0, 1, true).unwrap();
        assert_eq!(reopen(&dir), interrupted("a1", 1, false));
        // A failed attempt: the same step is where to go on from.
        journal.step_started("a1", 1, 1).unwrap();
        journal.step_finished("a1", 1, 1, false).unwrap();
        assert_eq!(reopen(&dir), interrupted("a1", 1, false));
    }

    #[test]
    fn a_resumed_assignment_starts_where_it_was_resumed() {
        let dir = TempDir::new();
        let (journal, _) = Journal::open(dir.path()).unwrap();
        journal.begin(&assignment("a1", 4, 2)).unwrap();
        assert_eq!(reopen(&dir), interrupted("a1", 2, false));
    }

    #[test]
    fn a_finished_assignment_is_reported_again() {
        let dir = TempDir::new();
        let (journal, _) = Journal::open(dir.path()).unwrap();
        journal.begin(&assignment("a1", 1, 0)).unwrap();
        journal.step_started("a1", 0, 1).unwrap();
        journal.step_finished("a1", 0, 1, false).unwrap();
        journal.finished("a1", false, "step s exited 3").unwrap();
        let expected = AssignmentFinished {
            assignment_id: "a1".into(),
            succeeded: false,
            detail: "step s exited 3".into(),
        };
        assert_eq!(
            reopen(&dir),
            Recovered::Finished {
                result: expected,
                store_id: String::new(),
                succeeded_steps: vec![],
            }
        );
    }

    #[test]
    fn a_finished_assignment_names_its_store_and_steps() {
        let dir = TempDir::new();
        let (journal, _) = Journal::open(dir.path()).unwrap();
        let mut a1 = assignment("s1-1-1-1", 2, 0);
        a1.store_id = "s1".into();
        journal.begin(&a1).unwrap();
        journal.step_started("s1-1-1-1", 0, 1).unwrap();
        journal.step_finished("s1-1-1-1", 0, 1, false).unwrap();
        journal.step_started("s1-1-1-1", 0, 2).unwrap();
        journal.step_finished("s1-1-1-1", 0, 2, true).unwrap();
        journal.step_started("s1-1-1-1", 1, 1).unwrap();
        journal.step_finished("s1-1-1-1", 1, 1, true).unwrap();
        journal.finished("s1-1-1-1", true, "").unwrap();
        match reopen(&dir) {
            Recovered::Finished {
                result,
                store_id,
                succeeded_steps,
            } => {
                assert!(result.succeeded);
                assert_eq!(store_id, "s1");
                assert_eq!(succeeded_steps, [(0, 2), (1, 1)]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn archiving_moves_the_entry_aside_and_leaves_a_clean_journal() {
        let dir = TempDir::new();
        let (journal, _) = Journal::open(dir.path()).unwrap();
        journal.begin(&assignment("a1", 1, 0)).unwrap();
        journal.finished("a1", true, "").unwrap();
        assert!(!journal.archive("a2", "not this one").unwrap());
        assert!(matches!(reopen(&dir), Recovered::Finished { .. }));
        assert!(journal.archive("a1", "issued by another store").unwrap());
        assert_eq!(reopen(&dir), Recovered::Nothing);
        let archived = fs::read_to_string(dir.path().join(ARCHIVE_NAME)).unwrap();
        assert!(archived.contains("\"assignment_id\":\"a1\""), "{archived}");
        assert!(archived.contains("issued by another store"), "{archived}");
        // Nothing left to archive; the journal takes the next assignment as usual.
        assert!(!journal.archive("a1", "again").unwrap());
        journal.begin(&assignment("a3", 1, 0)).unwrap();
        assert_eq!(reopen(&dir), interrupted("a3", 0, false));
    }

    #[test]
    fn a_new_assignment_replaces_the_last_and_others_are_left_out() {
        let dir = TempDir::new();
        let (journal, _) = Journal::open(dir.path()).unwrap();
        journal.begin(&assignment("a1", 1, 0)).unwrap();
        journal.finished("a1", true, "").unwrap();
        journal.begin(&assignment("a2", 2, 0)).unwrap();
        // A refused assignment's result is not this journal's.
        journal.finished("a3", false, "worker busy").unwrap();
        journal.step_started("a2", 0, 1).unwrap();
        assert_eq!(reopen(&dir), interrupted("a2", 0, true));
        assert!(!dir.path().join("journal.jsonl.new").exists());
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_a_corrupt_journal_says_nothing() {
        let dir = TempDir::new();
        let (journal, _) = Journal::open(dir.path()).unwrap();
        journal.begin(&assignment("a1", 2, 0)).unwrap();
        journal.step_started("a1", 0, 1).unwrap();
        let path = journal.path().to_owned();
        drop(journal);
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str("{\"record\":\"step_fini");
        fs::write(&path, &text).unwrap();
        assert_eq!(reopen(&dir), interrupted("a1", 0, true));

        fs::write(&path, format!("garbage\n{text}\n")).unwrap();
        assert_eq!(reopen(&dir), Recovered::Nothing);
    }

    #[test]
    fn a_state_dir_that_cannot_be_made_is_an_error_naming_the_file() {
        let dir = TempDir::new();
        let blocker = dir.path().join("file");
        fs::write(&blocker, "").unwrap();
        let err = Journal::open(&blocker.join("state")).unwrap_err();
        assert!(err.to_string().contains("journal.jsonl"), "{err}");
    }
}
