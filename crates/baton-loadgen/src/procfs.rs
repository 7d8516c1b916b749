//! What a process costs, from Linux' `/proc`: CPU time (`utime + stime` of `/proc/PID/stat`,
//! in clock ticks) sampled over wall time, as a percentage of one core, and resident memory
//! (`VmRSS`, peak `VmHWM` of `/proc/PID/status`). Also the file descriptor limit, raised at
//! start: one worker session is one TCP connection.

use std::time::Instant;

/// `utime + stime` (clock ticks) from the text of `/proc/PID/stat`.
///
/// The second field, the command name, is in parentheses and may itself hold spaces and
/// parentheses, so fields are counted after its *last* `)`: there, field 3 (`state`) is the
/// first, so `utime` (14) and `stime` (15) are the 12th and 13th.
pub fn parse_stat_cpu_ticks(stat: &str) -> Result<u64, String> {
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or("no command name in /proc/PID/stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| -> Result<u64, String> {
        fields
            .get(n - 3)
            .ok_or_else(|| format!("/proc/PID/stat has no field {n}"))?
            .parse::<u64>()
            .map_err(|e| format!("/proc/PID/stat field {n}: {e}"))
    };
    Ok(field(14)? + field(15)?)
}

/// A `Key:   1234 kB` line of `/proc/PID/status`, in KiB.
pub fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        let mut words = rest.split_whitespace();
        let value = words.next()?.parse().ok()?;
        (words.next() == Some("kB")).then_some(value)
    })
}

/// Whether a process whose `/proc/PID/cmdline` is `cmdline` (NUL-separated arguments) and
/// whose `/proc/PID/comm` is `comm` runs the program `name`. `comm` is cut to 15 bytes by
/// the kernel ("baton-controller" shows as "baton-controlle"), so the first argument is what
/// decides when it is there.
pub fn runs_program(cmdline: &[u8], comm: &str, name: &str) -> bool {
    let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    if !argv0.is_empty() {
        let argv0 = String::from_utf8_lossy(argv0);
        let base = argv0.rsplit('/').next().unwrap_or_default();
        return base == name;
    }
    let comm = comm.trim_end();
    comm == name || (comm.len() == 15 && name.starts_with(comm))
}

/// The processes (other than this one) running `name`, by pid.
pub fn find_processes(name: &str) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            runs_program(&cmdline, &comm, name)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// One reading of a process.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    pub at: Instant,
    /// CPU time used so far, in clock ticks.
    pub cpu_ticks: u64,
    pub rss_kib: u64,
    /// Peak resident memory so far.
    pub hwm_kib: u64,
}

/// Reads `/proc/PID` now (`pid` `None`: this process).
pub fn read(pid: Option<u32>) -> Result<Reading, String> {
    let dir = match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".to_owned(),
    };
    let at = Instant::now();
    let stat =
        std::fs::read_to_string(format!("{dir}/stat")).map_err(|e| format!("{dir}/stat: {e}"))?;
    let status = std::fs::read_to_string(format!("{dir}/status"))
        .map_err(|e| format!("{dir}/status: {e}"))?;
    Ok(Reading {
        at,
        cpu_ticks: parse_stat_cpu_ticks(&stat)?,
        rss_kib: parse_status_kib(&status, "VmRSS").unwrap_or(0),
        hwm_kib: parse_status_kib(&status, "VmHWM").unwrap_or(0),
    })
}

/// The soft "Max open files" limit in the text of `/proc/PID/limits`.
pub fn parse_open_files_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The soft open-files limit of process `pid`.
pub fn open_files_limit(pid: u32) -> Option<u64> {
    parse_open_files_limit(&std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?)
}

/// How many files process `pid` has open (readable for one's own processes).
pub fn open_fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// Clock ticks per second, the unit of `/proc/PID/stat` times.
pub fn clock_ticks_per_second() -> u64 {
    #[cfg(unix)]
    {
        // SAFETY: sysconf only reads a configuration value.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if ticks > 0 {
            return ticks as u64;
        }
    }
    100
}

/// CPU used between two readings, in percent of one core.
pub fn cpu_percent(earlier: &Reading, later: &Reading, ticks_per_second: u64) -> f64 {
    let wall = later.at.saturating_duration_since(earlier.at).as_secs_f64();
    if wall <= 0.0 || ticks_per_second == 0 {
        return 0.0;
    }
    let cpu = later.cpu_ticks.saturating_sub(earlier.cpu_ticks) as f64 / ticks_per_second as f64;
    100.0 * cpu / wall
}

/// The open-file limit before and after raising the soft limit to the hard one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimit {
    pub before: u64,
    pub soft: u64,
    pub hard: u64,
}

/// Raises this process' soft `RLIMIT_NOFILE` to its hard limit.
#[cfg(unix)]
pub fn raise_file_limit() -> std::io::Result<FileLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct passed, nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    #[allow(clippy::useless_conversion)] // rlim_t is u64 on Linux, not everywhere
    Ok(FileLimit {
        before: u64::from(before),
        soft: u64::from(limit.rlim_cur),
        hard: u64::from(limit.rlim_max),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    // A real /proc/PID/stat line, with a command name that holds a space and a parenthesis.
    const STAT: &str = "4242 (baton (ctl) x) S 1 4242 4242 0 -1 4194560 5215 0 0 0 1234 567 0 0 20 0 9 0 12345 123456789 4321 18446744073709551615 1 1 0 0 0 0 0 4096 17663 0 0 0 17 1 0 0 0 0 0\n";

    const STATUS: &str = "Name:\tbaton-controlle\nUmask:\t0022\nState:\tS (sleeping)\nVmPeak:\t  912345 kB\nVmHWM:\t   65432 kB\nVmRSS:\t   54321 kB\nThreads:\t9\n";

    #[test]
    fn cpu_ticks_are_utime_plus_stime_after_the_command_name() {
        assert_eq!(parse_stat_cpu_ticks(STAT).unwrap(), 1234 + 567);
        assert!(parse_stat_cpu_ticks("4242 (x) S 1 2").is_err());
        assert!(parse_stat_cpu_ticks("garbage").is_err());
    }

    #[test]
    fn memory_lines_of_status() {
        assert_eq!(parse_status_kib(STATUS, "VmRSS"), Some(54321));
        assert_eq!(parse_status_kib(STATUS, "VmHWM"), Some(65432));
        assert_eq!(parse_status_kib(STATUS, "VmSwap"), None);
        // "Vm" is a prefix of other keys: only the exact key counts.
        assert_eq!(parse_status_kib(STATUS, "Vm"), None);
    }

    #[test]
    fn finds_the_controller_by_its_first_argument_or_its_cut_name() {
        let name = "baton-controller";
        let cmdline = b"target/release/baton-controller\0--listen\x00127.0.0.1:7411\0";
        assert!(runs_program(cmdline, "baton-controlle\n", name));
        assert!(!runs_program(
            b"/usr/bin/baton-loadgen\0",
            "baton-loadgen\n",
            name
        ));
        // "baton-controller-old" also shows as "baton-controlle": argv[0] decides.
        assert!(!runs_program(
            b"/opt/baton-controller-old\0",
            "baton-controlle\n",
            name
        ));
        // A kernel thread or a zombie has no cmdline: the cut name decides.
        assert!(runs_program(b"", "baton-controlle\n", name));
        assert!(!runs_program(b"", "baton-cont\n", name));
    }

    #[test]
    fn the_open_files_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \nMax cpu time              unlimited            unlimited            seconds   \nMax open files            1024                 524288               files     \n";
        assert_eq!(parse_open_files_limit(limits), Some(1024));
        assert_eq!(parse_open_files_limit("Max processes 5 5\n"), None);
    }

    #[test]
    fn cpu_percent_of_one_core() {
        let t0 = Instant::now();
        let a = Reading {
            at: t0,
            cpu_ticks: 1000,
            rss_kib: 0,
            hwm_kib: 0,
        };
        let b = Reading {
            at: t0 + Duration::from_secs(2),
            cpu_ticks: 1150,
            ..a
        };
        assert!((cpu_percent(&a, &b, 100) - 75.0).abs() < 1e-9);
        assert_eq!(cpu_percent(&a, &a, 100), 0.0);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let me = read(None).unwrap();
        assert!(me.rss_kib > 0 && me.hwm_kib >= me.rss_kib);
        assert!(clock_ticks_per_second() > 0);
    }
}
