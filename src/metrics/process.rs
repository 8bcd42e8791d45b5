//! The standard `process_*` series of Prometheus client libraries, read from `/proc` at each
//! scrape: CPU seconds, resident and virtual memory, open and maximum file descriptors, start
//! time. The names and meanings are those of the Go and Python clients, so the dashboards and
//! alerts written for any exporter work on weir too.
//!
//! Hand-written because `prometheus-client` has no process collector; the few `/proc` files
//! read here are stable kernel interfaces (proc(5)). On a system without `/proc` the series
//! are left out rather than reported as 0.

use std::fmt::Error;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Encodes the `process_*` series on each scrape.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// One reading of the process's figures.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Reading {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<i64>,
    pub virtual_bytes: Option<i64>,
    pub open_fds: Option<i64>,
    pub max_fds: Option<i64>,
    pub start_time_seconds: Option<f64>,
}

impl Reading {
    /// Reads `/proc/self`; a file that cannot be read leaves its figures out.
    pub fn now() -> Self {
        let ticks = clock_ticks();
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let fields = stat.as_deref().and_then(stat_fields);
        let field =
            |i: usize| fields.as_ref().and_then(|f| f.get(i)).and_then(|v| v.parse::<f64>().ok());
        // proc(5) numbers the fields from 1 with the command name as 2; `stat_fields` starts
        // after it, at field 3 (state): field n is at index n - 3.
        let cpu_seconds = match (field(14 - 3), field(15 - 3)) {
            (Some(user), Some(system)) => Some((user + system) / ticks),
            _ => None,
        };
        let start_time_seconds =
            field(22 - 3).zip(boot_time()).map(|(since_boot, boot)| boot + since_boot / ticks);
        let virtual_bytes = field(23 - 3).map(|v| v as i64);
        let resident_bytes = field(24 - 3).map(|pages| pages as i64 * page_size());
        let open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as i64);
        let max_fds =
            std::fs::read_to_string("/proc/self/limits").ok().and_then(|l| max_open_files(&l));
        Self { cpu_seconds, resident_bytes, virtual_bytes, open_fds, max_fds, start_time_seconds }
    }
}

/// The fields of `/proc/self/stat` after the command name (which may hold spaces and
/// parentheses, so it is skipped up to its last `)`).
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().collect())
}

/// The soft limit of open files in `/proc/self/limits` (`unlimited` is left out).
fn max_open_files(limits: &str) -> Option<i64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

/// When the system booted, in seconds since the epoch (`btime` of `/proc/stat`).
fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

fn page_size() -> i64 {
    // SAFETY: as above.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p } else { 4096 }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), Error> {
        let r = Reading::now();
        if let Some(v) = r.cpu_seconds {
            let c = ConstCounter::new(v);
            c.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                c.metric_type(),
            )?)?;
        }
        let gauges = [
            ("process_resident_memory_bytes", "Resident memory size in bytes.", r.resident_bytes),
            ("process_virtual_memory_bytes", "Virtual memory size in bytes.", r.virtual_bytes),
            ("process_open_fds", "Number of open file descriptors.", r.open_fds),
            ("process_max_fds", "Maximum number of open file descriptors.", r.max_fds),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                let g = ConstGauge::new(v);
                g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
            }
        }
        if let Some(v) = r.start_time_seconds {
            let g = ConstGauge::new(v);
            g.encode(encoder.encode_descriptor(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                None,
                g.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let r = Reading::now();
        assert!(r.cpu_seconds.is_some_and(|c| c >= 0.0), "{r:?}");
        assert!(r.resident_bytes.is_some_and(|b| b > 1024 * 1024), "{r:?}");
        assert!(r.virtual_bytes >= r.resident_bytes, "{r:?}");
        // Other tests open and close files meanwhile: only the bounds hold.
        let open = r.open_fds.unwrap();
        assert!(open > 0, "{r:?}");
        assert!(r.max_fds.is_some_and(|m| m >= open), "{r:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = r.start_time_seconds.unwrap();
        assert!(start <= now + 1.0 && start > now - 24.0 * 3600.0, "{start} vs {now}");
    }

    #[test]
    fn command_names_with_parentheses_and_unlimited_limits() {
        let f = stat_fields("42 (we ir) (x)) S 1 2 3").unwrap();
        assert_eq!(f, ["S", "1", "2", "3"]);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
        assert_eq!(max_open_files("Max open files unlimited unlimited files\n"), None);
    }
}
