//! The server's memory and CPU time, read from `/proc/<pid>` (Linux): resident set size
//! now (`VmRSS`), the kernel's high-water mark (`VmHWM`), and user plus system CPU time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Kernel clock ticks per second for `/proc/<pid>/stat` times (100 on every Linux
/// architecture the bench runs on).
const TICKS_PER_SECOND: f64 = 100.0;

/// Memory figures of `/proc/<pid>/status`, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

/// Parses `VmRSS` and `VmHWM` from the text of `/proc/<pid>/status`.
pub fn parse_status(status: &str) -> Option<Memory> {
    let field = |name: &str| {
        status.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
    };
    Some(Memory {
        rss_kib: field("VmRSS")?,
        hwm_kib: field("VmHWM")?,
    })
}

/// Parses user plus system CPU seconds from the text of `/proc/<pid>/stat`.
pub fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name, field 3 (state) is index 0: utime (14) and stime (15) are 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SECOND)
}

pub fn memory(pid: u32) -> Option<Memory> {
    parse_status(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

pub fn cpu_seconds(pid: u32) -> Option<f64> {
    parse_cpu_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Samples a process's resident set every `every` and keeps the largest seen, so a peak
/// inside a run is caught even when the process's lifetime high-water mark is older.
#[derive(Clone)]
pub struct PeakSampler {
    peak_kib: Arc<AtomicU64>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl PeakSampler {
    pub fn start(pid: u32, every: Duration) -> Self {
        let peak_kib = Arc::new(AtomicU64::new(0));
        let peak = Arc::clone(&peak_kib);
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            loop {
                ticker.tick().await;
                match memory(pid) {
                    Some(now) => {
                        peak.fetch_max(now.rss_kib, Ordering::Relaxed);
                    }
                    None => return,
                }
            }
        });
        Self {
            peak_kib,
            task: Arc::new(task),
        }
    }

    /// The largest resident set sampled so far, in KiB.
    pub fn peak_kib(&self) -> u64 {
        self.peak_kib.load(Ordering::Relaxed)
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_stat() {
        let status =
            "Name:\tconclave\nVmPeak:\t  900 kB\nVmHWM:\t   51234 kB\nVmRSS:\t   40960 kB\n";
        assert_eq!(
            parse_status(status),
            Some(Memory {
                rss_kib: 40960,
                hwm_kib: 51234
            })
        );
        assert_eq!(parse_status("Name: x\n"), None);
        let stat = "4242 (tokio worker (1)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 1 0 0";
        assert_eq!(parse_cpu_seconds(stat), Some(3.0));
        assert_eq!(parse_cpu_seconds("garbage"), None);
    }

    #[tokio::test]
    async fn reads_this_process() {
        let me = std::process::id();
        let memory = memory(me).expect("this process's status");
        assert!(memory.rss_kib > 0 && memory.hwm_kib >= memory.rss_kib);
        assert!(cpu_seconds(me).is_some());
        let sampler = PeakSampler::start(me, Duration::from_millis(5));
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(sampler.peak_kib() > 0);
        sampler.stop();
    }
}
