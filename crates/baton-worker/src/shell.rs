//! The command line that runs one step's command in a fresh, non-interactive shell.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// The arguments before the command for PowerShell: no profile (a profile could change
/// behaviour per server or prompt), never prompt (nobody is there to answer).
pub const POWERSHELL_ARGS: [&str; 3] = ["-NoProfile", "-NonInteractive", "-Command"];

/// A program and its arguments, ready to spawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    pub program: OsString,
    pub args: Vec<OsString>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShellError {
    #[error("unknown shell {0:?} (expected \"sh\" or \"powershell\")")]
    Unknown(String),
}

/// The command line for `command` in the runbook shell `shell` (`"sh"` or `"powershell"`).
/// `program_override` (`--shell PATH`) replaces the program and keeps the arguments, so a test
/// can stand in a fake PowerShell that records what it was given.
pub fn command_line(
    shell: &str,
    program_override: Option<&Path>,
    command: &str,
) -> Result<CommandLine, ShellError> {
    let (default_program, mut args): (fn() -> OsString, Vec<OsString>) = match shell {
        "sh" => (|| OsString::from("sh"), vec!["-c".into()]),
        "powershell" => (
            powershell_program,
            POWERSHELL_ARGS.iter().map(OsString::from).collect(),
        ),
        other => return Err(ShellError::Unknown(other.to_owned())),
    };
    args.push(command.into());
    let program = match program_override {
        Some(path) => path.as_os_str().to_owned(),
        None => default_program(),
    };
    Ok(CommandLine { program, args })
}

/// Windows PowerShell on Windows; elsewhere PowerShell 7 (`pwsh`) when installed, the name
/// under which it ships on Linux and macOS.
fn powershell_program() -> OsString {
    if cfg!(windows) {
        "powershell.exe".into()
    } else if find_in_path(OsStr::new("pwsh")).is_some() {
        "pwsh".into()
    } else {
        "powershell".into()
    }
}

/// The first file called `name` in a `PATH` directory.
pub fn find_in_path(name: &OsStr) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(line: &CommandLine) -> Vec<String> {
        line.args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn sh_runs_the_command_with_dash_c() {
        let line = command_line("sh", None, "echo hi; exit 3").unwrap();
        assert_eq!(line.program, OsString::from("sh"));
        assert_eq!(strings(&line), ["-c", "echo hi; exit 3"]);
    }

    #[test]
    fn powershell_is_non_interactive_without_profile() {
        let line = command_line("powershell", None, "Get-Service W3SVC").unwrap();
        let program = line.program.to_string_lossy();
        assert!(
            ["powershell.exe", "pwsh", "powershell"].contains(&program.as_ref()),
            "{program}"
        );
        assert_eq!(
            strings(&line),
            [
                "-NoProfile",
                "-NonInteractive",
                "-Command",
                "Get-Service W3SVC"
            ]
        );
    }

    #[test]
    fn override_replaces_the_program_only() {
        let line = command_line("powershell", Some(Path::new("/opt/fake-ps")), "x").unwrap();
        assert_eq!(line.program, OsString::from("/opt/fake-ps"));
        assert_eq!(strings(&line)[..3], POWERSHELL_ARGS);
    }

    #[test]
    fn unknown_shell_is_an_error() {
        assert_eq!(
            command_line("bash", None, "true"),
            Err(ShellError::Unknown("bash".into()))
        );
    }
}
