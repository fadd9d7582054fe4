//! One load run against Conclave: provision users and rooms through the API, open the
//! WebSockets, send for the measured phase (at a fixed rate or as fast as the server
//! acknowledges), wait for deliveries to drain, and check exactly-once delivery.
//!
//! Timing: each message's text carries the microseconds since the run's epoch at which
//! its send request started, so every receiving connection (in this process) measures
//! send-to-receipt latency without a shared map on the hot path. Send latency is the
//! request's start to its acknowledgement (the HTTP response after the commit).

use crate::conclave::{Account, Client, Socket, message_created};
use crate::error::BenchError;
use crate::ledger::{self, Connection, Expected, Receipt};
use crate::procfs::{self, PeakSampler};
use crate::report::{Latency, Report, ServerUsage};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Chat at a fixed rate: 1,000 users, 100 rooms of 10, 1,000 messages/s.
    Steady,
    /// As fast as the server acknowledges, for 30 s.
    Burst,
    /// One room of 500 members.
    Fanout,
    /// 10,000 idle WebSockets: the server's memory per connection.
    Connections,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Self::Steady => "steady",
            Self::Burst => "burst",
            Self::Fanout => "fanout",
            Self::Connections => "connections",
        }
    }
}

/// The sizes of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub scenario: Scenario,
    pub users: usize,
    pub rooms: usize,
    pub room_size: usize,
    /// WebSockets opened, spread over the users in turn.
    pub connections: usize,
    /// Messages per second; `None`: as fast as possible; zero: send nothing.
    pub rate: Option<f64>,
    /// The measured phase: sending, or holding the connections idle.
    pub duration: Duration,
    /// Sends in flight at most.
    pub concurrency: usize,
    /// Users and rooms provisioned at once (user creation hashes passwords: CPU-bound).
    pub setup_concurrency: usize,
    pub connect_concurrency: usize,
    /// How long to wait after the last acknowledgement for outstanding deliveries.
    pub drain_timeout: Duration,
    pub request_timeout: Duration,
    /// Where to write every acknowledged send as a JSON line (`room_id`, `message_id`,
    /// `acknowledged_unix_us`), the record a crash test checks the database against.
    pub acknowledged_log: Option<std::path::PathBuf>,
}

impl Plan {
    /// The issue's sizes for each scenario.
    pub fn defaults(scenario: Scenario) -> Self {
        let base = Self {
            scenario,
            users: 1000,
            rooms: 100,
            room_size: 10,
            connections: 1000,
            rate: Some(1000.0),
            duration: Duration::from_secs(30),
            concurrency: 256,
            setup_concurrency: 8,
            connect_concurrency: 64,
            drain_timeout: Duration::from_secs(15),
            request_timeout: Duration::from_secs(30),
            acknowledged_log: None,
        };
        match scenario {
            Scenario::Steady => base,
            Scenario::Burst => Self {
                rate: None,
                concurrency: 64,
                ..base
            },
            Scenario::Fanout => Self {
                users: 500,
                rooms: 1,
                room_size: 500,
                connections: 500,
                rate: Some(20.0),
                concurrency: 64,
                ..base
            },
            Scenario::Connections => Self {
                users: 500,
                rooms: 0,
                room_size: 0,
                connections: 10_000,
                rate: Some(0.0),
                ..base
            },
        }
    }

    pub fn validate(&self) -> Result<(), BenchError> {
        let bad = |why: &str| Err(BenchError::Setup(why.to_owned()));
        if self.users == 0 {
            return bad("at least one user");
        }
        if self.rooms > 0 && !(2..=self.users).contains(&self.room_size) {
            return bad("room size must be at least 2 and at most the number of users");
        }
        if self.connections == 0 {
            return bad("at least one connection");
        }
        if self.rate.is_some_and(|r| !(r >= 0.0 && r.is_finite())) {
            return bad("the rate must be a non-negative number");
        }
        if self.concurrency == 0 || self.setup_concurrency == 0 || self.connect_concurrency == 0 {
            return bad("concurrency must be at least 1");
        }
        Ok(())
    }

    fn sends(&self) -> bool {
        self.rooms > 0 && self.rate != Some(0.0)
    }
}

/// Which kind of server is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum System {
    /// Conclave: admin API, WebSocket.
    Conclave,
    /// A Matrix homeserver (Synapse) through the client-server API: open registration,
    /// `/sync` long-polls instead of WebSockets.
    Matrix,
}

/// The server under test.
#[derive(Clone, Debug)]
pub struct Target {
    pub system: System,
    pub url: String,
    pub admin_user: String,
    pub admin_password: String,
    /// Set when the admin must still replace a one-time password.
    pub admin_new_password: Option<String>,
    /// The server process, for its memory and CPU.
    pub server_pid: Option<u32>,
    /// Names the setup in the report (e.g. `sqlite`).
    pub label: String,
}

struct Room {
    id: String,
    members: Vec<usize>,
    /// Every open connection of every member.
    recipients: Arc<[Connection]>,
}

struct Acknowledged {
    expected: Expected,
    send_us: u64,
    room_id: String,
    /// Wall-clock time of the acknowledgement (a crash test compares it with the kill).
    at_unix_us: u128,
}

/// Writes the acknowledged sends as JSON lines.
fn write_acknowledged(path: &std::path::Path, acks: &[Acknowledged]) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for ack in acks {
        let line = serde_json::json!({
            "room_id": ack.room_id,
            "message_id": ack.expected.message_id,
            "acknowledged_unix_us": ack.at_unix_us,
        });
        writeln!(out, "{line}")?;
    }
    out.flush()
}

/// One of the two clients; the scenario code is the same for both.
#[derive(Clone)]
enum Api {
    Conclave(Client),
    Matrix(crate::matrix::Client),
}

impl Api {
    async fn provision_user(&self, admin: &str, name: &str) -> Result<Account, BenchError> {
        match self {
            Self::Conclave(client) => client.provision_user(admin, name).await,
            Self::Matrix(client) => client.register(name).await,
        }
    }

    async fn create_room(
        &self,
        owner: &Account,
        name: &str,
        others: &[&Account],
        concurrency: usize,
    ) -> Result<String, BenchError> {
        match self {
            Self::Conclave(client) => {
                let ids: Vec<String> = others.iter().map(|a| a.id.clone()).collect();
                client.create_room(&owner.token, name, &ids).await
            }
            Self::Matrix(client) => {
                let room = client.create_room(&owner.token, name).await?;
                stream::iter(others)
                    .map(|member| client.join(&member.token, &room))
                    .buffer_unordered(concurrency)
                    .try_collect::<Vec<()>>()
                    .await?;
                Ok(room)
            }
        }
    }

    async fn send(
        &self,
        token: &str,
        room: &str,
        key: &str,
        text: &str,
    ) -> Result<Uuid, BenchError> {
        match self {
            Self::Conclave(client) => client.send(token, room, key, text).await,
            Self::Matrix(client) => client.send(token, room, key, text).await,
        }
    }
}

/// A receiving side that is open and caught up: a WebSocket after its `ready` frame, or
/// a Matrix account's `/sync` position.
enum Inbox {
    Socket(Box<Socket>),
    Sync(SyncInbox),
}

/// A Matrix account's receiving side: where its next `/sync` starts.
struct SyncInbox {
    client: crate::matrix::Client,
    token: String,
    since: String,
}

/// State the send tasks share.
struct Sending {
    client: Api,
    tokens: Vec<String>,
    rooms: Vec<Room>,
    run_id: String,
    epoch: Instant,
    attempted: AtomicU64,
    expected_deliveries: AtomicU64,
    acks: Mutex<Vec<Acknowledged>>,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Sending {
    /// Sends message `k`: rooms in turn, and within a room its members in turn.
    async fn send(&self, k: u64) {
        let room = &self.rooms[(k % self.rooms.len() as u64) as usize];
        let round = k / self.rooms.len() as u64;
        let sender = room.members[(round % room.members.len() as u64) as usize];
        let sent_us = self.epoch.elapsed().as_micros() as u64;
        let text = format!("bench:{}:{k}:{sent_us}", self.run_id);
        let key = format!("{}-{k}", self.run_id);
        self.attempted.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        match self
            .client
            .send(&self.tokens[sender], &room.id, &key, &text)
            .await
        {
            Ok(message_id) => {
                let send_us = started.elapsed().as_micros() as u64;
                self.expected_deliveries
                    .fetch_add(room.recipients.len() as u64, Ordering::Relaxed);
                lock(&self.acks).push(Acknowledged {
                    expected: Expected {
                        message_id,
                        recipients: Arc::clone(&room.recipients),
                    },
                    send_us,
                    room_id: room.id.clone(),
                    at_unix_us: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |since| since.as_micros()),
                });
            }
            Err(err) => *lock(&self.errors).entry(err.kind()).or_default() += 1,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What one connection's reader collected.
struct Received {
    receipts: Vec<Receipt>,
    /// The server closed it, or it broke, before the bench closed it.
    lost: bool,
    /// `error` frames the server sent (e.g. a replay that failed: events were skipped).
    error_frames: u64,
}

/// A received message's text, if it is one of this run's: its send time.
fn sent_at(prefix: &str, body: &str) -> Option<u64> {
    body.strip_prefix(prefix)
        .and_then(|rest| rest.rsplit_once(':'))
        .and_then(|(_, sent)| sent.parse::<u64>().ok())
}

/// Long-polls one Matrix account's `/sync` until shut down, recording this run's
/// messages.
async fn read_sync(
    inbox: SyncInbox,
    connection: Connection,
    prefix: Arc<str>,
    epoch: Instant,
    mut shutdown: watch::Receiver<bool>,
    received: Arc<AtomicU64>,
) -> Received {
    let SyncInbox {
        client,
        token,
        mut since,
    } = inbox;
    let mut receipts = Vec::new();
    let mut error_frames = 0;
    loop {
        let poll = client.sync(&token, Some(&since), Duration::from_secs(10));
        tokio::select! {
            _ = shutdown.changed() => {
                return Received { receipts, lost: false, error_frames };
            }
            batch = poll => match batch {
                Ok((next, messages)) => {
                    let now_us = epoch.elapsed().as_micros() as u64;
                    since = next;
                    for (message_id, body) in messages {
                        if let Some(sent_us) = sent_at(&prefix, &body) {
                            receipts.push(Receipt {
                                message_id,
                                connection,
                                latency_us: now_us.saturating_sub(sent_us),
                            });
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                // Counted, then polled again from the same position: nothing is lost.
                Err(_) => {
                    error_frames += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Reads one connection until shut down, recording this run's message events.
async fn read(
    mut socket: Socket,
    connection: Connection,
    prefix: Arc<str>,
    epoch: Instant,
    mut shutdown: watch::Receiver<bool>,
    received: Arc<AtomicU64>,
) -> Received {
    let mut receipts = Vec::new();
    let mut error_frames = 0;
    loop {
        tokio::select! {
            _ = shutdown.changed() => {
                let _ = socket.close(None).await;
                return Received { receipts, lost: false, error_frames };
            }
            frame = socket.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let now_us = epoch.elapsed().as_micros() as u64;
                    if let Some((message_id, body)) = message_created(&text)
                        && let Some(sent_us) = sent_at(&prefix, &body)
                    {
                        receipts.push(Receipt {
                            message_id,
                            connection,
                            latency_us: now_us.saturating_sub(sent_us),
                        });
                        received.fetch_add(1, Ordering::Relaxed);
                    } else if text.starts_with("{\"type\":\"error\"") {
                        error_frames += 1;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    return Received { receipts, lost: true, error_frames };
                }
                Some(Ok(_)) => {}
            }
        }
    }
}

/// Runs `plan` against `target` and reports what it measured.
pub async fn run(target: &Target, plan: &Plan) -> Result<Report, BenchError> {
    plan.validate()?;
    let sampler = target
        .server_pid
        .map(|pid| PeakSampler::start(pid, Duration::from_millis(100)));
    let result = run_sampled(target, plan, sampler.as_ref()).await;
    if let Some(sampler) = &sampler {
        sampler.stop();
    }
    result
}

async fn run_sampled(
    target: &Target,
    plan: &Plan,
    sampler: Option<&PeakSampler>,
) -> Result<Report, BenchError> {
    let setup_started = Instant::now();
    let (client, admin_token) = match target.system {
        System::Conclave => {
            let client = Client::new(&target.url, plan.request_timeout)?;
            let admin = client
                .login(
                    &target.admin_user,
                    &target.admin_password,
                    target.admin_new_password.as_deref(),
                )
                .await?;
            (Api::Conclave(client), admin.token)
        }
        // Open registration: no admin.
        System::Matrix => (
            Api::Matrix(crate::matrix::Client::new(
                &target.url,
                plan.request_timeout,
            )?),
            String::new(),
        ),
    };
    let run_id = Uuid::new_v4().simple().to_string()[..8].to_owned();
    eprintln!(
        "[{}] creating {} users ({} at a time)…",
        plan.scenario.name(),
        plan.users,
        plan.setup_concurrency
    );
    let accounts: Vec<Account> = stream::iter(0..plan.users)
        .map(|i| {
            let (client, admin, name) = (&client, &admin_token, format!("bench-{run_id}-{i}"));
            async move { client.provision_user(admin, &name).await }
        })
        .buffered(plan.setup_concurrency)
        .try_collect()
        .await?;
    // Connection c belongs to user c % users.
    let users = plan.users;
    let connections_of = |user: usize| (user..plan.connections).step_by(users);
    eprintln!("[{}] creating {} rooms…", plan.scenario.name(), plan.rooms);
    let rooms: Vec<(String, Vec<usize>)> = stream::iter(0..plan.rooms)
        .map(|r| {
            let members: Vec<usize> = (0..plan.room_size)
                .map(|j| (r * plan.room_size + j) % users)
                .collect();
            let (client, accounts, name) = (&client, &accounts, format!("bench {run_id} {r}"));
            async move {
                let others: Vec<&Account> = members[1..].iter().map(|&m| &accounts[m]).collect();
                let id = client
                    .create_room(
                        &accounts[members[0]],
                        &name,
                        &others,
                        plan.setup_concurrency,
                    )
                    .await?;
                Ok::<_, BenchError>((id, members))
            }
        })
        .buffered(plan.setup_concurrency)
        .try_collect()
        .await?;
    let setup_seconds = setup_started.elapsed().as_secs_f64();
    let rss_before = target
        .server_pid
        .and_then(procfs::memory)
        .map_or(0, |m| m.rss_kib);

    eprintln!(
        "[{}] opening {} WebSockets…",
        plan.scenario.name(),
        plan.connections
    );
    let opened: Vec<Result<Inbox, BenchError>> = stream::iter(0..plan.connections)
        .map(|c| {
            let (client, token) = (&client, &accounts[c % users].token);
            async move {
                match client {
                    Api::Conclave(client) => client
                        .connect(token, plan.request_timeout)
                        .await
                        .map(|socket| Inbox::Socket(Box::new(socket))),
                    Api::Matrix(client) => {
                        let (since, _) = client.sync(token, None, Duration::ZERO).await?;
                        Ok(Inbox::Sync(SyncInbox {
                            client: client.clone(),
                            token: token.clone(),
                            since,
                        }))
                    }
                }
            }
        })
        .buffered(plan.connect_concurrency)
        .collect()
        .await;
    let epoch = Instant::now();
    let prefix: Arc<str> = format!("bench:{run_id}:").into();
    let received = Arc::new(AtomicU64::new(0));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut is_open = vec![false; plan.connections];
    let mut connections_failed = 0;
    let mut first_failure = None;
    let mut readers = Vec::with_capacity(plan.connections);
    for (c, socket) in opened.into_iter().enumerate() {
        match socket {
            Ok(Inbox::Socket(socket)) => {
                is_open[c] = true;
                readers.push(tokio::spawn(read(
                    *socket,
                    c as Connection,
                    Arc::clone(&prefix),
                    epoch,
                    shutdown_rx.clone(),
                    Arc::clone(&received),
                )));
            }
            Ok(Inbox::Sync(inbox)) => {
                is_open[c] = true;
                readers.push(tokio::spawn(read_sync(
                    inbox,
                    c as Connection,
                    Arc::clone(&prefix),
                    epoch,
                    shutdown_rx.clone(),
                    Arc::clone(&received),
                )));
            }
            Err(err) => {
                connections_failed += 1;
                first_failure.get_or_insert(err.to_string());
            }
        }
    }
    if let Some(failure) = &first_failure {
        eprintln!(
            "[{}] {connections_failed} WebSockets failed to open, first: {failure}",
            plan.scenario.name()
        );
    }
    let opened_count = plan.connections - connections_failed as usize;
    // Let the server settle (allocations of the new connections) before measuring it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_with = target
        .server_pid
        .and_then(procfs::memory)
        .map_or(0, |m| m.rss_kib);

    let rooms: Vec<Room> = rooms
        .into_iter()
        .map(|(id, members)| {
            let recipients: Vec<Connection> = members
                .iter()
                .flat_map(|&m| connections_of(m))
                .filter(|&c| is_open[c])
                .map(|c| c as Connection)
                .collect();
            Room {
                id,
                members,
                recipients: recipients.into(),
            }
        })
        .collect();
    let sending = Arc::new(Sending {
        client: client.clone(),
        tokens: accounts.iter().map(|a| a.token.clone()).collect(),
        rooms,
        run_id: run_id.clone(),
        epoch,
        attempted: AtomicU64::new(0),
        expected_deliveries: AtomicU64::new(0),
        acks: Mutex::new(Vec::new()),
        errors: Mutex::new(BTreeMap::new()),
    });

    eprintln!(
        "[{}] measuring for {:?}…",
        plan.scenario.name(),
        plan.duration
    );
    let cpu_before = target.server_pid.and_then(procfs::cpu_seconds);
    let bench_cpu_before = procfs::cpu_seconds(std::process::id());
    let started = Instant::now();
    if plan.sends() {
        match plan.rate {
            Some(rate) => send_at_rate(&sending, rate, plan).await,
            None => send_flat_out(&sending, plan).await,
        }
    } else {
        tokio::time::sleep(plan.duration).await;
    }
    let measured_seconds = started.elapsed().as_secs_f64();
    let cpu_after = target.server_pid.and_then(procfs::cpu_seconds);
    let bench_cpu = match (bench_cpu_before, procfs::cpu_seconds(std::process::id())) {
        (Some(before), Some(after)) => after - before,
        _ => 0.0,
    };

    // Drain: wait for every expected delivery, or the timeout.
    let drain_deadline = Instant::now() + plan.drain_timeout;
    while received.load(Ordering::Relaxed) < sending.expected_deliveries.load(Ordering::Relaxed)
        && Instant::now() < drain_deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = shutdown_tx.send(true);
    let mut receipts = Vec::new();
    let mut connections_lost = 0;
    let mut error_frames = 0;
    for reader in readers {
        match reader.await {
            Ok(got) => {
                connections_lost += u64::from(got.lost);
                error_frames += got.error_frames;
                receipts.extend(got.receipts);
            }
            Err(_) => connections_lost += 1,
        }
    }

    let acks = std::mem::take(&mut *lock(&sending.acks));
    if let Some(path) = &plan.acknowledged_log {
        write_acknowledged(path, &acks)
            .map_err(|err| BenchError::Setup(format!("writing {}: {err}", path.display())))?;
    }
    let expected: Vec<Expected> = acks.iter().map(|a| a.expected.clone()).collect();
    let (delivery, complete) = ledger::check(&expected, &receipts);
    let server = target.server_pid.map(|pid| {
        let hwm_kib = procfs::memory(pid).map_or(0, |m| m.hwm_kib);
        let cpu_seconds = match (cpu_before, cpu_after) {
            (Some(before), Some(after)) => after - before,
            _ => 0.0,
        };
        ServerUsage {
            pid,
            rss_before_connections_kib: rss_before,
            rss_with_connections_kib: rss_with,
            peak_rss_kib: sampler.map_or(0, PeakSampler::peak_kib).max(rss_with),
            hwm_kib,
            kib_per_connection: (opened_count > 0 && rss_with > 0)
                .then(|| rss_with.saturating_sub(rss_before) as f64 / opened_count as f64),
            cpu_seconds,
            cpu_cores_busy: cpu_seconds / measured_seconds.max(f64::EPSILON),
        }
    });
    Ok(Report {
        target: match target.system {
            System::Conclave => "conclave",
            System::Matrix => "matrix",
        }
        .into(),
        label: target.label.clone(),
        scenario: plan.scenario.name().into(),
        users: plan.users,
        rooms: plan.rooms,
        room_size: plan.room_size,
        connections: plan.connections,
        target_rate: plan.rate,
        concurrency: plan.concurrency,
        setup_seconds,
        measured_seconds,
        connections_failed,
        connections_lost,
        error_frames,
        sends_attempted: sending.attempted.load(Ordering::Relaxed),
        sends_acknowledged: acks.len() as u64,
        errors: std::mem::take(&mut *lock(&sending.errors)),
        messages_per_second: acks.len() as f64 / measured_seconds.max(f64::EPSILON),
        deliveries_per_second: delivery.delivered as f64 / measured_seconds.max(f64::EPSILON),
        send_latency: Latency::of_micros(acks.iter().map(|a| a.send_us)),
        delivery_latency: Latency::of_micros(receipts.iter().map(|r| r.latency_us)),
        delivery_all_members_latency: Latency::of_micros(complete),
        exactly_once: delivery.exactly_once(),
        delivery,
        server,
        bench_cpu_cores_busy: bench_cpu / measured_seconds.max(f64::EPSILON),
    })
}

/// Starts message k at epoch + k / rate, with at most `concurrency` in flight (a
/// server slower than the rate makes the bench fall behind, which lowers throughput).
async fn send_at_rate(sending: &Arc<Sending>, rate: f64, plan: &Plan) {
    let permits = Arc::new(Semaphore::new(plan.concurrency));
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0u64.. {
        let due = start + Duration::from_secs_f64(k as f64 / rate);
        if due >= start + plan.duration {
            break;
        }
        tokio::time::sleep_until(due).await;
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let sending = Arc::clone(sending);
        tasks.spawn(async move {
            sending.send(k).await;
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// `concurrency` senders, each sending its next message as soon as the last is
/// acknowledged, until the duration is up.
async fn send_flat_out(sending: &Arc<Sending>, plan: &Plan) {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..plan.concurrency {
        let (sending, next, duration) = (Arc::clone(sending), Arc::clone(&next), plan.duration);
        tasks.spawn(async move {
            while start.elapsed() < duration {
                sending.send(next.fetch_add(1, Ordering::Relaxed)).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_issue_sizes_and_valid() {
        let steady = Plan::defaults(Scenario::Steady);
        assert_eq!(
            (steady.users, steady.rooms, steady.room_size),
            (1000, 100, 10)
        );
        assert_eq!(steady.rate, Some(1000.0));
        assert_eq!(Plan::defaults(Scenario::Burst).rate, None);
        assert_eq!(Plan::defaults(Scenario::Fanout).room_size, 500);
        let idle = Plan::defaults(Scenario::Connections);
        assert_eq!(idle.connections, 10_000);
        assert!(!idle.sends());
        for scenario in [
            Scenario::Steady,
            Scenario::Burst,
            Scenario::Fanout,
            Scenario::Connections,
        ] {
            Plan::defaults(scenario).validate().unwrap();
        }
    }

    #[test]
    fn bad_sizes_are_refused() {
        let mut plan = Plan::defaults(Scenario::Steady);
        plan.room_size = 1001;
        assert!(plan.validate().is_err());
        plan.room_size = 1;
        assert!(plan.validate().is_err());
        let mut plan = Plan::defaults(Scenario::Steady);
        plan.rate = Some(-1.0);
        assert!(plan.validate().is_err());
        plan.rate = Some(f64::NAN);
        assert!(plan.validate().is_err());
    }
}
