//! The worker's journal: the current assignment's step starts and results, written to disk
//! (and synced) before they are reported. A worker that restarts, as a process or with its
//! machine, reads it back and tells the controller where its assignment stopped, so the
//! controller can resume it or hold the server for an operator, never guess.
//!
//! One file, `journal.jsonl` in the state folder, one JSON record per line. It holds only the
//! current assignment: a new assignment replaces the file (written aside, then renamed). A last
//! line torn by a crash is ignored: the record it would have held was not reported either.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use baton_proto::v1::{Assignment, AssignmentFinished, Interrupted};
use serde::{Deserialize, Serialize};

const FILE_NAME: &str = "journal.jsonl";

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
}

/// What the journal says about the last assignment when the worker starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovered {
    /// No assignment recorded.
    Nothing,
    /// It ended; its result may not have reached the controller, so it is sent again.
    Finished(AssignmentFinished),
    /// The worker went down while it ran.
    Interrupted {
        assignment_id: String,
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
    }) = records.first()
    else {
        return Recovered::Nothing;
    };
    let mut next = *start_step;
    let mut started = false;
    for record in &records[1..] {
        match record {
            Record::StepStarted { index, .. } => {
                next = *index;
                started = true;
            }
            Record::StepFinished {
                index, succeeded, ..
            } => {
                // A failed attempt may be retried: the step is where to go on from.
                next = if *succeeded { index + 1 } else { *index };
                started = false;
            }
            Record::Finished { succeeded, detail } => {
                return Recovered::Finished(AssignmentFinished {
                    assignment_id: assignment_id.clone(),
                    succeeded: *succeeded,
                    detail: detail.clone(),
                });
            }
            Record::Assignment { .. } => return Recovered::Nothing,
        }
    }
    Recovered::Interrupted {
        assignment_id: assignment_id.clone(),
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
        assert_eq!(reopen(&dir), Recovered::Finished(expected));
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
