//! The `conclave-bench` command: parses flags into a [`Plan`], runs it, prints the table
//! and writes the JSON report. Exits 2 when a message was not delivered exactly once.

use clap::Parser;
use conclave_bench::{Plan, Scenario, System, Target};
use std::path::PathBuf;
use std::time::Duration;

/// Load generator for Conclave: creates users and rooms through the API, opens one
/// WebSocket per user (or more), sends messages, and reports throughput, latency,
/// server memory and exactly-once delivery. Every size has the default for the
/// scenario and can be overridden.
#[derive(Parser)]
#[command(name = "conclave-bench", version, args_override_self = true)]
struct Cli {
    /// What is measured: Conclave, or a Matrix homeserver (Synapse) for comparison.
    #[arg(long, value_enum, default_value_t = System::Conclave)]
    target: System,
    /// The server's base URL.
    #[arg(
        long,
        env = "CONCLAVE_BENCH_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
    /// An admin account, which creates the bench's users.
    #[arg(long, env = "CONCLAVE_BENCH_ADMIN_USER", default_value = "admin")]
    admin_user: String,
    /// The admin's password (Conclave only; Matrix users register themselves).
    #[arg(long, env = "CONCLAVE_BENCH_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
    /// Set as the admin's password if it still has a one-time password.
    #[arg(
        long,
        env = "CONCLAVE_BENCH_ADMIN_NEW_PASSWORD",
        hide_env_values = true
    )]
    admin_new_password: Option<String>,
    /// The server's process id: its memory (VmRSS, VmHWM) and CPU are read from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Names the setup in the report, e.g. `sqlite` or `postgresql`.
    #[arg(long, default_value = "")]
    label: String,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Scenario::Steady)]
    scenario: Scenario,
    /// Users to create.
    #[arg(long)]
    users: Option<usize>,
    /// Rooms to create (0: none, nothing is sent).
    #[arg(long)]
    rooms: Option<usize>,
    /// Members per room.
    #[arg(long)]
    room_size: Option<usize>,
    /// WebSockets to open, spread over the users (default: one per user; 10,000 for
    /// `connections`).
    #[arg(long)]
    connections: Option<usize>,
    /// Messages per second (0: send nothing).
    #[arg(long, conflicts_with = "flat_out")]
    rate: Option<f64>,
    /// Send as fast as the server acknowledges (the `burst` default).
    #[arg(long)]
    flat_out: bool,
    /// Seconds of sending (or of holding the connections idle).
    #[arg(long)]
    duration: Option<f64>,
    /// Sends in flight at most.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Users created at once.
    #[arg(long)]
    setup_concurrency: Option<usize>,
    /// WebSocket handshakes at once.
    #[arg(long)]
    connect_concurrency: Option<usize>,
    /// Seconds to wait for outstanding deliveries after the last send.
    #[arg(long)]
    drain_timeout: Option<f64>,
    /// Write every acknowledged send here as a JSON line (room_id, message_id,
    /// acknowledged_unix_us): the record to check a database against after a crash.
    #[arg(long)]
    acknowledged_log: Option<std::path::PathBuf>,
}

impl Cli {
    fn plan(&self) -> Plan {
        let mut plan = Plan::defaults(self.scenario);
        let users_given = self.users.is_some();
        if let Some(users) = self.users {
            plan.users = users;
        }
        if let Some(rooms) = self.rooms {
            plan.rooms = rooms;
        }
        if let Some(size) = self.room_size {
            plan.room_size = size;
        }
        plan.connections = match self.connections {
            Some(connections) => connections,
            // One per user unless the scenario is about connections.
            None if users_given && self.scenario != Scenario::Connections => plan.users,
            None => plan.connections,
        };
        if self.flat_out {
            plan.rate = None;
        } else if let Some(rate) = self.rate {
            plan.rate = Some(rate);
        }
        let seconds = |s: f64| Duration::from_secs_f64(s.max(0.0));
        if let Some(duration) = self.duration {
            plan.duration = seconds(duration);
        }
        if let Some(drain) = self.drain_timeout {
            plan.drain_timeout = seconds(drain);
        }
        if let Some(n) = self.concurrency {
            plan.concurrency = n;
        }
        if let Some(n) = self.setup_concurrency {
            plan.setup_concurrency = n;
        }
        if let Some(n) = self.connect_concurrency {
            plan.connect_concurrency = n;
        }
        plan.acknowledged_log = self.acknowledged_log.clone();
        plan
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let plan = cli.plan();
    if cli.target == System::Conclave && cli.admin_password.is_none() {
        eprintln!(
            "conclave-bench: --admin-password (or CONCLAVE_BENCH_ADMIN_PASSWORD) is required"
        );
        return std::process::ExitCode::FAILURE;
    }
    let target = Target {
        system: cli.target,
        url: cli.url.clone(),
        admin_user: cli.admin_user.clone(),
        admin_password: cli.admin_password.clone().unwrap_or_default(),
        admin_new_password: cli.admin_new_password.clone(),
        server_pid: cli.server_pid,
        label: cli.label.clone(),
    };
    let report = match conclave_bench::run(&target, &plan).await {
        Ok(report) => report,
        Err(err) => {
            eprintln!("conclave-bench: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("{}", report.table());
    if let Some(path) = &cli.json {
        let json = serde_json::to_string_pretty(&report).expect("a report serializes");
        if let Err(err) = std::fs::write(path, json + "\n") {
            eprintln!("conclave-bench: writing {}: {err}", path.display());
            return std::process::ExitCode::FAILURE;
        }
    }
    if report.exactly_once {
        std::process::ExitCode::SUCCESS
    } else {
        eprintln!("conclave-bench: some messages were not delivered exactly once");
        std::process::ExitCode::from(2)
    }
}
