//! What a run measured, as a serializable [`Report`], and its rendering as a table a
//! reader can paste into `docs/performance.md`.

use crate::ledger::Outcome;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// A histogram of microseconds from 1 µs to 10 minutes at three significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

impl Latency {
    pub fn of_micros(values: impl IntoIterator<Item = u64>) -> Self {
        let mut hist = histogram();
        for value in values {
            hist.saturating_record(value.max(1));
        }
        Self::of(&hist)
    }

    pub fn of(hist: &Histogram<u64>) -> Self {
        if hist.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| (us as f64 / 1000.0 * 100.0).round() / 100.0;
        Self {
            count: hist.len(),
            p50_ms: ms(hist.value_at_quantile(0.50)),
            p90_ms: ms(hist.value_at_quantile(0.90)),
            p99_ms: ms(hist.value_at_quantile(0.99)),
            max_ms: ms(hist.max()),
        }
    }
}

/// The server's memory and CPU over the run (present when its pid was given).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ServerUsage {
    pub pid: u32,
    /// Resident set once users and rooms exist, before any WebSocket opens.
    pub rss_before_connections_kib: u64,
    /// Resident set once every WebSocket is open and ready.
    pub rss_with_connections_kib: u64,
    /// The largest resident set sampled during the run.
    pub peak_rss_kib: u64,
    /// The kernel's high-water mark for the process's whole life (`VmHWM`).
    pub hwm_kib: u64,
    /// (with connections − before) / connections opened.
    pub kib_per_connection: Option<f64>,
    /// User plus system CPU seconds the server spent in the measured phase, and that
    /// over its wall time (2.0 is both cores of a two-core machine).
    pub cpu_seconds: f64,
    pub cpu_cores_busy: f64,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Report {
    /// `conclave` or `matrix`.
    pub target: String,
    /// Free text naming the setup, e.g. `sqlite` or `postgresql`.
    pub label: String,
    pub scenario: String,
    pub users: usize,
    pub rooms: usize,
    pub room_size: usize,
    pub connections: usize,
    /// Messages per second asked for; `None`: as fast as possible.
    pub target_rate: Option<f64>,
    pub concurrency: usize,
    pub setup_seconds: f64,
    /// Length of the measured phase (sending, or holding idle connections).
    pub measured_seconds: f64,
    pub connections_failed: u64,
    /// Connections the server closed (or that broke) before the bench closed them.
    pub connections_lost: u64,
    /// `error` frames received on the WebSockets (the bench does not resume after them,
    /// so what they skipped counts as missing).
    pub error_frames: u64,
    pub sends_attempted: u64,
    pub sends_acknowledged: u64,
    /// Failed sends by HTTP status and error code (or transport failure).
    pub errors: BTreeMap<String, u64>,
    pub messages_per_second: f64,
    pub deliveries_per_second: f64,
    /// Send request to acknowledgement (the HTTP response).
    pub send_latency: Latency,
    /// Send to receipt, each (message, recipient connection) once.
    pub delivery_latency: Latency,
    /// Send to receipt by the last recipient, per message that reached every recipient.
    pub delivery_all_members_latency: Latency,
    pub exactly_once: bool,
    pub delivery: Outcome,
    pub server: Option<ServerUsage>,
    /// CPU the bench itself used in the measured phase, in cores (it shares the machine
    /// with the server).
    pub bench_cpu_cores_busy: f64,
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn latency_row(out: &mut String, name: &str, latency: &Latency) {
    let _ = writeln!(
        out,
        "| {name:<42} | {:>8} | {:>8.2} | {:>8.2} | {:>8.2} | {:>8.2} |",
        latency.count, latency.p50_ms, latency.p90_ms, latency.p99_ms, latency.max_ms
    );
}

impl Report {
    /// A Markdown table (readable in a terminal too).
    pub fn table(&self) -> String {
        let mut out = String::new();
        let rate = self
            .target_rate
            .map_or("as fast as possible".to_owned(), |r| format!("{r} msg/s"));
        let _ = writeln!(
            out,
            "### {} `{}` ({}): {} users, {} rooms of {}, {} connections, {}, {} in flight, {:.1} s",
            self.target,
            self.scenario,
            if self.label.is_empty() {
                "-"
            } else {
                &self.label
            },
            self.users,
            self.rooms,
            self.room_size,
            self.connections,
            rate,
            self.concurrency,
            self.measured_seconds
        );
        out.push('\n');
        let _ = writeln!(out, "| {:<42} | {:>48} |", "figure", "value");
        let _ = writeln!(out, "|{:-<44}|{:->50}|", "", "");
        let mut row = |name: &str, value: String| {
            let _ = writeln!(out, "| {name:<42} | {value:>48} |");
        };
        row(
            "messages acknowledged / attempted",
            format!("{} / {}", self.sends_acknowledged, self.sends_attempted),
        );
        row(
            "throughput",
            format!("{:.0} msg/s", self.messages_per_second),
        );
        row(
            "deliveries",
            format!("{:.0} /s", self.deliveries_per_second),
        );
        let errors = if self.errors.is_empty() {
            "none".to_owned()
        } else {
            self.errors
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        row("send errors", errors);
        row(
            "connections failed / lost / error frames",
            format!(
                "{} / {} / {}",
                self.connections_failed, self.connections_lost, self.error_frames
            ),
        );
        let d = &self.delivery;
        row(
            "exactly once",
            format!(
                "{} ({} of {} delivered; {} missing, {} dup, {} stray)",
                if self.exactly_once { "yes" } else { "NO" },
                d.delivered,
                d.expected_deliveries,
                d.missing,
                d.duplicates,
                d.misdelivered
            ),
        );
        if let Some(server) = &self.server {
            row(
                "server RSS before / with sockets",
                format!(
                    "{} / {}",
                    mib(server.rss_before_connections_kib),
                    mib(server.rss_with_connections_kib)
                ),
            );
            row(
                "server peak RSS (sampled / VmHWM)",
                format!("{} / {}", mib(server.peak_rss_kib), mib(server.hwm_kib)),
            );
            if let Some(per) = server.kib_per_connection {
                row("server memory per connection", format!("{per:.1} KiB"));
            }
            row(
                "server CPU (measured phase)",
                format!(
                    "{:.1} s, {:.2} cores busy",
                    server.cpu_seconds, server.cpu_cores_busy
                ),
            );
        }
        row(
            "bench CPU (measured phase)",
            format!("{:.2} cores busy", self.bench_cpu_cores_busy),
        );
        out.push('\n');
        let _ = writeln!(
            out,
            "| {:<42} | {:>8} | {:>8} | {:>8} | {:>8} | {:>8} |",
            "latency (ms)", "count", "p50", "p90", "p99", "max"
        );
        let _ = writeln!(
            out,
            "|{:-<44}|{:->10}|{:->10}|{:->10}|{:->10}|{:->10}|",
            "", "", "", "", "", ""
        );
        latency_row(&mut out, "send (request to ack)", &self.send_latency);
        latency_row(
            &mut out,
            "delivery (each recipient)",
            &self.delivery_latency,
        );
        latency_row(
            &mut out,
            "delivery (to every member)",
            &self.delivery_all_members_latency,
        );
        for example in &self.delivery.examples {
            let _ = writeln!(out, "  violation: {example}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_in_milliseconds() {
        let latency = Latency::of_micros((1..=1000).map(|i| i * 1000));
        assert_eq!(latency.count, 1000);
        assert!((latency.p50_ms - 500.0).abs() < 1.0, "{latency:?}");
        assert!((latency.p99_ms - 990.0).abs() < 1.0, "{latency:?}");
        assert!((latency.max_ms - 1000.0).abs() < 1.0, "{latency:?}");
        assert_eq!(Latency::of_micros([]), Latency::default());
    }

    #[test]
    fn the_table_names_every_figure() {
        let report = Report {
            target: "conclave".into(),
            scenario: "steady".into(),
            sends_acknowledged: 7,
            sends_attempted: 8,
            errors: BTreeMap::from([("503 unavailable".to_owned(), 1)]),
            server: Some(ServerUsage {
                kib_per_connection: Some(12.5),
                ..ServerUsage::default()
            }),
            ..Report::default()
        };
        let table = report.table();
        for needle in [
            "7 / 8",
            "503 unavailable: 1",
            "exactly once",
            "NO",
            "12.5 KiB",
            "send (request to ack)",
        ] {
            assert!(table.contains(needle), "{needle} missing from\n{table}");
        }
    }
}
