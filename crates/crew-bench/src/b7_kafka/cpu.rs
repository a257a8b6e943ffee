//! CPU time of this process and of the broker, read at the edges of a
//! timed window.

use std::time::Duration;

use super::CpuUse;
use crate::measure;

/// CPU times read at one moment.
#[derive(Debug, Clone, Copy)]
pub(super) struct CpuSample {
    process: Duration,
    broker: Option<Duration>,
}

impl CpuSample {
    pub(super) fn take(broker_pid: Option<i32>) -> CpuSample {
        CpuSample {
            process: measure::process_cpu_time(),
            broker: broker_pid.and_then(process_cpu_of),
        }
    }

    pub(super) fn since(&self, earlier: &CpuSample) -> CpuUse {
        CpuUse {
            process: self.process.saturating_sub(earlier.process),
            broker: match (self.broker, earlier.broker) {
                (Some(now), Some(then)) => Some(now.saturating_sub(then)),
                _ => None,
            },
        }
    }
}

/// The pid of the broker this process started for `bootstrap`: a child of
/// this process whose command line listens there.
pub(super) fn broker_pid(bootstrap: &str) -> Option<i32> {
    let me = std::process::id() as i32;
    let listen = format!("tcp://{bootstrap}");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid: i32 = stat_fields(&stat)?.get(1)?.parse().ok()?;
            if ppid != me {
                return None;
            }
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            cmdline
                .split(|&b| b == 0)
                .any(|arg| arg == listen.as_bytes())
                .then_some(pid)
        })
}

/// The fields of `/proc/PID/stat` after the command name (which may hold
/// spaces and parentheses): state, ppid, ...
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let after = &stat[stat.rfind(')')? + 1..];
    Some(after.split_whitespace().collect())
}

/// User + system CPU time of process `pid`, from `/proc/PID/stat`.
fn process_cpu_of(pid: i32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields = stat_fields(&stat)?;
    // utime and stime are fields 14 and 15 of proc(5)'s stat; `fields`
    // starts at field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf only reads a constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks <= 0 {
        return None;
    }
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / ticks as f64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_skip_a_command_name_with_spaces() {
        let stat = "42 (tan su) S 7 42 42 0 -1 4194560 1 0 0 0 150 25 0 0 20 0";
        let f = stat_fields(stat).unwrap();
        assert_eq!(f[0], "S");
        assert_eq!(f[1], "7");
        assert_eq!((f[11], f[12]), ("150", "25"));
    }
}
