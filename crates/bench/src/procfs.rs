//! CPU time and memory of a process, from Linux's `/proc`.

use crate::error::BenchError;
use std::path::PathBuf;
use std::time::Duration;

/// Clock ticks per second of `utime`/`stime` in `/proc/<pid>/stat`.
fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// A process whose CPU time and memory can be read.
#[derive(Debug, Clone)]
pub struct ProcStats {
    pid: u32,
    ticks: u64,
}

/// One reading.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcSample {
    /// User + system CPU time so far (all threads, those gone included).
    pub cpu: Duration,
    /// The system (kernel) part of `cpu`: system calls, and on loopback
    /// also the delivery of what the process sends to the receiving sockets.
    pub system: Duration,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
}

impl ProcStats {
    /// Stats of process `pid`.
    pub fn new(pid: u32) -> Self {
        Self {
            pid,
            ticks: clock_ticks_cached(),
        }
    }

    /// Stats of this process.
    pub fn this_process() -> Self {
        Self::new(std::process::id())
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn path(&self, file: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/{file}", self.pid))
    }

    /// Read CPU time and resident memory now.
    pub fn sample(&self) -> Result<ProcSample, BenchError> {
        let stat = std::fs::read_to_string(self.path("stat"))?;
        let (user, system) = parse_cpu_ticks(&stat)
            .ok_or_else(|| BenchError::Server(format!("unreadable /proc/{}/stat", self.pid)))?;
        let status = std::fs::read_to_string(self.path("status"))?;
        let secs = |ticks: u64| Duration::from_secs_f64(ticks as f64 / self.ticks as f64);
        Ok(ProcSample {
            cpu: secs(user + system),
            system: secs(system),
            rss_bytes: parse_vm_rss(&status).unwrap_or(0),
        })
    }
}

/// utime and stime (fields 14 and 15) of a `/proc/<pid>/stat` line. The
/// command name (field 2) may hold spaces and parentheses: fields are
/// counted after the last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): field n is fields[n - 3].
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime, stime))
}

/// `VmRSS` of a `/proc/<pid>/status`, in bytes.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU time all cores of the host spent busy (not idle, not waiting for
/// I/O) since boot, from the `cpu` line of `/proc/stat`.
pub fn host_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is in user).
    let busy: u64 = v.iter().take(8).sum::<u64>() - v.get(3)? - v.get(4)?;
    Some(Duration::from_secs_f64(
        busy as f64 / clock_ticks_cached() as f64,
    ))
}

fn clock_ticks_cached() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(clock_ticks)
}

/// Datagrams the kernel dropped because a UDP receive buffer was full,
/// host-wide (`RcvbufErrors` in `/proc/net/snmp`).
pub fn udp_rcvbuf_errors() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = udp.next()?.split_whitespace().collect();
    let values: Vec<&str> = udp.next()?.split_whitespace().collect();
    let i = names.iter().position(|n| *n == "RcvbufErrors")?;
    values.get(i)?.parse().ok()
}

/// CPU time (user + system) so far of each thread of process `pid` whose
/// name starts with `prefix`, by name (sorted), from
/// `/proc/<pid>/task/*/stat`.
pub fn thread_cpu(pid: u32, prefix: &str) -> Vec<(String, Duration)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let ticks = clock_ticks_cached() as f64;
    let mut threads: Vec<(String, Duration)> = tasks
        .flatten()
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            let name = &stat[stat.find('(')? + 1..stat.rfind(')')?];
            if !name.starts_with(prefix) {
                return None;
            }
            let (user, system) = parse_cpu_ticks(&stat)?;
            let cpu = user + system;
            Some((name.to_owned(), Duration::from_secs_f64(cpu as f64 / ticks)))
        })
        .collect();
    threads.sort_by(|a, b| a.0.cmp(&b.0));
    threads
}

/// Datagrams dropped on arrival (full receive buffer) by open IPv4 UDP
/// sockets: `(on the local ports in `ports`, on every other socket)`, from
/// the `drops` column of `/proc/net/udp`. Closed sockets no longer count.
pub fn udp_socket_drops(ports: &[u16]) -> Option<(u64, u64)> {
    let table = std::fs::read_to_string("/proc/net/udp").ok()?;
    let (mut on_port, mut others) = (0, 0);
    for line in table.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(drops)) = (cols.get(1), cols.last()) else {
            continue;
        };
        let local_port = local
            .rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok());
        let drops: u64 = drops.parse().unwrap_or(0);
        if local_port.is_some_and(|p| ports.contains(&p)) {
            on_port += drops;
        } else {
            others += drops;
        }
    }
    Some((on_port, others))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_and_status() {
        let stat = "1234 (huddle (x) srv) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 8 0 100 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some((250, 50)));
        assert_eq!(
            parse_vm_rss("Name:\tx\nVmRSS:\t  2048 kB\n"),
            Some(2 * 1024 * 1024)
        );
        let me = ProcStats::this_process().sample().expect("own stats");
        assert!(me.rss_bytes > 0);
        assert!(udp_rcvbuf_errors().is_some());
        assert!(udp_socket_drops(&[1]).is_some());
        assert!(host_busy().is_some_and(|b| b > Duration::ZERO));
    }

    #[test]
    fn finds_threads_by_name() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::Builder::new()
            .name("procfs-probe-1".into())
            .spawn(move || rx.recv())
            .expect("spawn");
        let found = thread_cpu(std::process::id(), "procfs-probe-");
        let _ = tx.send(());
        let _ = t.join();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "procfs-probe-1");
    }
}
