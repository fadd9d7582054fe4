//! `make bench`: the compliance export over a large archive.
//!
//! Seeds an archive of `EXPORT_BENCH_MESSAGES` messages (250,000 by default, see below)
//! round robin over `EXPORT_BENCH_ROOMS` rooms (1,000 by default) of `MEMBERS` members
//! each, drawn from `USERS` users, sent evenly over `SPREAD_DAYS` days: the users, rooms,
//! members and membership periods, the messages, one version each sealed under its
//! room's epoch data key exactly as `messages::send` seals it (so the export decrypts
//! every one), and their `message.created` room events. Then, on SQLite and on
//! PostgreSQL when `TESTKIT_PG_URL` names a cluster (as `make bench` arranges), runs one
//! export job over the whole archive in each format with the real job runner
//! (`exports::run_next`) over the messaging service's archive source, and prints its wall
//! time, events per second, output size and the peak RSS of this process during the
//! export (reset before each; RSS is also sampled while the export runs and printed to
//! stderr at 10/25/50/75/90/100 % of the run, so growth shows); then times
//! `exports::verify` of each bundle and removes it.
//!
//! The default size keeps a run to a few minutes per backend on two cores (seeding one
//! million messages alone takes about 90 s per backend; a JSONL export of them about 30 s
//! on SQLite and 60 s on PostgreSQL, measured 2026-12-04). `EXPORT_BENCH_MESSAGES=1000000` runs that; `EXPORT_BENCH_PG_MESSAGES`
//! sets the size on PostgreSQL alone, `EXPORT_BENCH_FORMATS` the formats (comma
//! separated; default `jsonl,csv,xml,eml`), `EXPORT_BENCH_READERS` the connections
//! reading ahead of the writer (default as a server: one per core, at most four; 0: none;
//! a comma-separated list measures each in turn over the same archive),
//! `EXPORT_BENCH_BACKENDS=sqlite` or `postgres` one backend. Figures are printed, never asserted: these
//! machines are shared and noisy.

use conclave_audit::exports::{self, ExportRequest, ReadAhead, Verification};
use conclave_core::{AuditContext, Clock, RoomId, SystemClock, Timestamp};
use conclave_crypto::envelope::{EPOCH_MICROS, seal};
use conclave_crypto::{BodyBinding, CheckpointKey, Keyring, SecretKey};
use conclave_messaging::archive::ConversationArchive;
use conclave_messaging::keys;
use conclave_store::{Db, DbConnection, write_transaction};
use conclave_testkit::{TestBackend, TestDb};
use diesel::connection::SimpleConnection;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The allocator the `conclave` binary runs with (see `crates/server/src/main.rs`), so
/// the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEFAULT_MESSAGES: i64 = 250_000;
const DEFAULT_ROOMS: i64 = 1_000;
const MEMBERS: i64 = 10;
const USERS: i64 = 2_000;
const SPREAD_DAYS: i64 = 5;
/// Message versions per multi-row insert.
const BATCH: i64 = 5_000;

const USER_PREFIX: &str = "00000000-0000-7000-8001";
const ROOM_PREFIX: &str = "00000000-0000-7000-9000";
const MESSAGE_PREFIX: &str = "00000000-0000-7000-a000";

fn main() {
    let mut backends = vec![TestBackend::Sqlite];
    if std::env::var("TESTKIT_PG_URL").is_ok_and(|url| !url.is_empty()) {
        backends.push(TestBackend::Postgres);
    }
    // `EXPORT_BENCH_BACKENDS=postgres` (or `postgresql`, or `sqlite`) runs one backend.
    if let Ok(only) = std::env::var("EXPORT_BENCH_BACKENDS") {
        let only = only.trim().to_ascii_lowercase();
        backends.retain(|backend| name(*backend).to_ascii_lowercase().starts_with(&only));
    }
    let formats: Vec<String> = std::env::var("EXPORT_BENCH_FORMATS")
        .unwrap_or_else(|_| "jsonl,csv,xml,eml".into())
        .split(',')
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty())
        .collect();
    let mut rows = Vec::new();
    let mut verifies = Vec::new();
    for backend in backends {
        let (r, v) = run(backend, &formats);
        rows.extend(r);
        verifies.extend(v);
    }
    println!(
        "| backend | format | messages | readers | wall time | events/s | output MiB | peak RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for row in &rows {
        println!("{}", row.line());
    }
    println!();
    println!("| backend | format | bundle files | bundle MiB | verify time | MiB/s | result |");
    println!("|---|---|---|---|---|---|---|");
    for verify in &verifies {
        println!("{}", verify.line());
    }
    if let Some(largest) = verifies.iter().max_by_key(|v| v.bytes) {
        println!();
        println!(
            "verify of the largest bundle ({} {}, {:.0} MiB in {} files): {}",
            largest.backend,
            largest.format,
            mib(largest.bytes),
            largest.files,
            secs(largest.wall)
        );
    }
}

fn name(backend: TestBackend) -> &'static str {
    match backend {
        TestBackend::Sqlite => "SQLite",
        TestBackend::Postgres => "PostgreSQL",
    }
}

/// A positive count from the environment (`1_000_000` and `1000000` alike).
fn count_var(name: &str) -> Option<i64> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().replace('_', "").parse::<i64>().ok())
        .filter(|n| *n > 0)
}

/// How the exports read: as a server does (one reader per core, at most four), or as
/// `EXPORT_BENCH_READERS` says, a comma-separated list of reader counts (0: on the job's
/// own connection, no read-ahead) each measured in turn over the same archive.
fn read_aheads(db: &Db) -> Vec<ReadAhead> {
    let backend = db.backend().clone();
    let asked: Vec<usize> = std::env::var("EXPORT_BENCH_READERS")
        .unwrap_or_default()
        .split(',')
        .filter_map(|readers| readers.trim().parse().ok())
        .collect();
    if asked.is_empty() {
        return vec![ReadAhead::per_core(backend)];
    }
    asked
        .into_iter()
        .map(|readers| ReadAhead {
            backend: backend.clone(),
            readers,
        })
        .collect()
}

/// The rooms the archive is spread over.
fn rooms() -> i64 {
    static ROOMS: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *ROOMS.get_or_init(|| count_var("EXPORT_BENCH_ROOMS").unwrap_or(DEFAULT_ROOMS))
}

fn messages_for(backend: TestBackend) -> i64 {
    let all = count_var("EXPORT_BENCH_MESSAGES");
    match backend {
        TestBackend::Sqlite => all,
        TestBackend::Postgres => count_var("EXPORT_BENCH_PG_MESSAGES").or(all),
    }
    .unwrap_or(DEFAULT_MESSAGES)
}

struct Row {
    backend: &'static str,
    format: String,
    messages: i64,
    readers: usize,
    events: u64,
    wall: Duration,
    bytes: u64,
    peak_rss_mib: u64,
}

impl Row {
    fn line(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {} | {:.0} | {:.1} | {} |",
            self.backend,
            self.format,
            self.messages,
            self.readers,
            secs(self.wall),
            self.events as f64 / self.wall.as_secs_f64(),
            mib(self.bytes),
            self.peak_rss_mib,
        )
    }
}

struct VerifyRow {
    backend: &'static str,
    format: String,
    files: u64,
    bytes: u64,
    wall: Duration,
    result: String,
}

impl VerifyRow {
    fn line(&self) -> String {
        format!(
            "| {} | {} | {} | {:.1} | {} | {:.0} | {} |",
            self.backend,
            self.format,
            self.files,
            mib(self.bytes),
            secs(self.wall),
            mib(self.bytes) / self.wall.as_secs_f64(),
            self.result,
        )
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn secs(elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    if secs < 1.0 {
        format!("{:.1} ms", secs * 1000.0)
    } else {
        format!("{secs:.1} s")
    }
}

/// Seeds one backend and exports its archive in each format.
fn run(backend: TestBackend, formats: &[String]) -> (Vec<Row>, Vec<VerifyRow>) {
    let messages = messages_for(backend);
    let rooms = rooms();
    let test_db = TestDb::new(backend);
    let db = test_db.db.clone();
    let keyring = Arc::new(Keyring::generate().unwrap());
    let seeding = Instant::now();
    let (from, until) = seed(&mut db.conn().unwrap(), backend, &keyring, messages);
    eprintln!(
        "{}: seeded {messages} messages in {rooms} rooms of {MEMBERS} members ({USERS} users) in {:.1} s; RSS now {} MiB",
        name(backend),
        seeding.elapsed().as_secs_f64(),
        rss_mib("VmRSS:"),
    );
    let attachments = tempfile::tempdir().unwrap();
    let exports_dir = tempfile::tempdir().unwrap();
    let source = ConversationArchive {
        keyring: Arc::clone(&keyring),
        attachments_dir: attachments.path().to_path_buf(),
    };
    let key = CheckpointKey::generate().unwrap();
    let mut rows = Vec::new();
    let mut verifies = Vec::new();
    for (format, read_ahead) in formats
        .iter()
        .flat_map(|format| read_aheads(&db).into_iter().map(move |r| (format, r)))
    {
        let (row, verify) = export(
            &db,
            &source,
            &read_ahead,
            &key,
            exports_dir.path(),
            backend,
            format,
            messages,
            from,
            until,
        );
        eprintln!("{}", row.line());
        eprintln!("{}", verify.line());
        rows.push(row);
        verifies.push(verify);
    }
    (rows, verifies)
}

/// Runs one export job over the whole archive; measures it and the verification of its
/// bundle, then removes the bundle (they are large).
#[allow(clippy::too_many_arguments)]
fn export(
    db: &Db,
    source: &ConversationArchive,
    read_ahead: &ReadAhead,
    key: &CheckpointKey,
    exports_dir: &Path,
    backend: TestBackend,
    format: &str,
    messages: i64,
    from: Timestamp,
    until: Timestamp,
) -> (Row, VerifyRow) {
    let mut conn = db.conn().unwrap();
    let request = ExportRequest {
        format: format.into(),
        from,
        until,
        rooms: Vec::new(),
        custodians: Vec::new(),
        hold_id: None,
        include_files: true,
    };
    let job = exports::start(
        &mut conn,
        &AuditContext::system("bench"),
        SystemClock.now(),
        &request,
        None,
    )
    .unwrap();
    let before = rss_mib("VmRSS:");
    let reset = reset_peak_rss();
    let sampler = Sampler::start();
    let started = Instant::now();
    let ran = exports::run_next(
        &mut conn,
        source,
        Some(read_ahead),
        key,
        exports_dir,
        &SystemClock,
    )
    .unwrap();
    let wall = started.elapsed();
    let samples = sampler.stop();
    let peak = if reset {
        rss_mib("VmHWM:")
    } else {
        samples.iter().map(|(_, kib)| kib / 1024).max().unwrap_or(0)
    };
    assert_eq!(ran.as_deref(), Some(job.id.as_str()));
    let done = exports::get(&mut conn, &job.id).unwrap();
    assert_eq!(done.status, "done", "{format}: {:?}", done.error);
    let bundle = exports::bundle_dir(exports_dir, &job.id).unwrap();
    let (files, bytes) = bundle_size(&bundle);
    eprintln!(
        "{} {format}: {} events ({:?}), {} rooms, {files} files; RSS before {before} MiB, during (at 10/25/50/75/90/100% of the run): {}",
        name(backend),
        done.progress.events_written,
        done.progress.events_by_kind,
        done.progress.rooms_done,
        curve(&samples, wall),
    );
    if format == "jsonl" {
        check_decrypted(&bundle.join("messages.jsonl"));
    }

    let verifying = Instant::now();
    let verification = exports::verify(&bundle, Some(&key.public_key_base64())).unwrap();
    let verify_wall = verifying.elapsed();
    let result = match verification {
        Verification::Intact { files, events } => {
            format!("intact ({files} files, {events} events)")
        }
        Verification::Broken(why) => format!("BROKEN: {why}"),
    };
    std::fs::remove_dir_all(&bundle).unwrap();
    (
        Row {
            backend: name(backend),
            format: format.to_owned(),
            messages,
            readers: read_ahead.readers,
            events: done.progress.events_written,
            wall,
            bytes,
            peak_rss_mib: peak,
        },
        VerifyRow {
            backend: name(backend),
            format: format.to_owned(),
            files,
            bytes,
            wall: verify_wall,
            result,
        },
    )
}

/// The first exported event must carry its decrypted text.
fn check_decrypted(path: &Path) {
    use std::io::BufRead;
    let mut first = String::new();
    std::io::BufReader::new(std::fs::File::open(path).unwrap())
        .read_line(&mut first)
        .unwrap();
    let event: serde_json::Value = serde_json::from_str(&first).unwrap();
    let text = event["text"].as_str().unwrap_or_default();
    assert!(text.starts_with("Message "), "not decrypted: {first}");
}

/// Files and bytes under `dir`.
fn bundle_size(dir: &Path) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            let (f, b) = bundle_size(&entry.path());
            files += f;
            bytes += b;
        } else {
            files += 1;
            bytes += meta.len();
        }
    }
    (files, bytes)
}

/// `0, 1, … n - 1` as rows of `s.n`.
fn series(backend: TestBackend, n: i64) -> String {
    match backend {
        TestBackend::Postgres => format!("generate_series(0, {}) AS s(n)", n - 1),
        TestBackend::Sqlite => format!(
            "(WITH RECURSIVE c(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM c WHERE n < {}) SELECT n FROM c) AS s",
            n - 1
        ),
    }
}

/// A UUID whose last group is the integer `expr`, zero-padded: `prefix-000000000042`
/// (as [`uuid_for`] spells it in Rust).
fn uuid_of(backend: TestBackend, prefix: &str, expr: &str) -> String {
    match backend {
        TestBackend::Postgres => format!("('{prefix}-' || lpad(({expr})::text, 12, '0'))"),
        TestBackend::Sqlite => {
            format!("('{prefix}-' || substr('000000000000' || ({expr}), -12, 12))")
        }
    }
}

fn uuid_for(prefix: &str, n: i64) -> String {
    format!("{prefix}-{n:012}")
}

/// The index of member `k` of room `room` among the users.
fn member(room: i64, k: i64) -> i64 {
    (room + k * (USERS / MEMBERS)) % USERS
}

/// Message `n` of the archive: its room, its sequence number in the room, its sender and
/// when it was sent (`first` + `n` steps).
fn message(n: i64, first: i64, step: i64) -> (i64, i64, i64, i64) {
    let rooms = rooms();
    let room = n % rooms;
    let seq = n / rooms + 1;
    (
        room,
        seq,
        member(room, (n / rooms) % MEMBERS),
        first + n * step,
    )
}

fn text(n: i64, room: i64) -> String {
    format!(
        "Message {n} in room {room}: the quarterly figures are attached, let us go over them at the standup."
    )
}

/// Seeds the archive; returns the export window that covers all of it.
fn seed(
    conn: &mut DbConnection,
    backend: TestBackend,
    keyring: &Keyring,
    messages: i64,
) -> (Timestamp, Timestamp) {
    let now = SystemClock.now().as_micros();
    let created = now - SPREAD_DAYS * EPOCH_MICROS - 7_200_000_000;
    let first = created + 3_600_000_000;
    let step = SPREAD_DAYS * EPOCH_MICROS / messages;
    let n = "CAST(s.n AS BIGINT)";
    let user = |expr: &str| uuid_of(backend, USER_PREFIX, expr);
    let room = |expr: &str| uuid_of(backend, ROOM_PREFIX, expr);
    let stride = USERS / MEMBERS;
    let rooms = rooms();
    let started = Instant::now();
    conn.batch_execute(&format!(
        "BEGIN;
         INSERT INTO users (id, username, display_name, email, status, auth_source, must_change_password, created_at, updated_at)
         SELECT {uid}, 'user' || {n}, 'User ' || {n}, 'user' || {n} || '@example.org', 'active', 'local', FALSE, {created}, {created}
         FROM {users};
         INSERT INTO rooms (id, kind, name, created_by, created_at, updated_at, last_message_seq, last_event_seq)
         SELECT {rid}, 'room', 'Room ' || {n}, {owner}, {created}, {created}, ({messages} - {n} + {rooms} - 1) / {rooms}, ({messages} - {n} + {rooms} - 1) / {rooms}
         FROM {room_rows};
         INSERT INTO room_members (room_id, user_id, role, joined_at)
         SELECT {member_room}, {member_user}, CASE WHEN {n} % {MEMBERS} = 0 THEN 'owner' ELSE 'member' END, {created}
         FROM {members};
         INSERT INTO room_membership_periods (room_id, user_id, joined_at, left_at)
         SELECT {member_room}, {member_user}, {created}, NULL FROM {members};
         COMMIT;",
        uid = user(n),
        rid = room(n),
        owner = user(&format!("{n} % {USERS}")),
        member_room = room(&format!("{n} / {MEMBERS}")),
        member_user = user(&format!(
            "({n} / {MEMBERS} + ({n} % {MEMBERS}) * {stride}) % {USERS}"
        )),
        users = series(backend, USERS),
        room_rows = series(backend, rooms),
        members = series(backend, rooms * MEMBERS),
    ))
    .unwrap();
    let message_id = uuid_of(backend, MESSAGE_PREFIX, n);
    let message_room = room(&format!("{n} % {rooms}"));
    let seq = format!("({n} / {rooms} + 1)");
    let sender = user(&format!(
        "({n} % {rooms} + (({n} / {rooms}) % {MEMBERS}) * {stride}) % {USERS}"
    ));
    let sent = format!("({first} + {n} * {step})");
    conn.batch_execute(&format!(
        "BEGIN;
         INSERT INTO messages (id, room_id, seq, sender_id, current_version, idempotency_key, created_at)
         SELECT {message_id}, {message_room}, {seq}, {sender}, 1, {message_id}, {sent} FROM {series};
         INSERT INTO room_events (room_id, seq, kind, message_id, actor_id, payload, created_at)
         SELECT {message_room}, {seq}, 'message.created', {message_id}, {sender}, '{{\"seq\":' || {seq} || '}}', {sent}
         FROM {series};
         COMMIT;",
        series = series(backend, messages),
    ))
    .unwrap();
    eprintln!(
        "{}: seeded users, rooms, members, messages and room events in {:.1} s",
        name(backend),
        started.elapsed().as_secs_f64()
    );

    // The rooms' data keys, made as the first send of each epoch makes them.
    let started = Instant::now();
    let mut data_keys: HashMap<(i64, i64), SecretKey> = HashMap::new();
    write_transaction(conn, |conn| {
        for i in 0..messages {
            let (room, _, _, at) = message(i, first, step);
            let epoch = at.div_euclid(EPOCH_MICROS);
            if data_keys.contains_key(&(room, epoch)) {
                continue;
            }
            let room_id: RoomId = uuid_for(ROOM_PREFIX, room).parse().unwrap();
            let key = keys::data_key_for_writing(
                conn,
                keyring,
                room_id,
                epoch,
                Timestamp::from_micros(at),
            )
            .unwrap();
            data_keys.insert((room, epoch), key);
        }
        Ok::<_, conclave_store::StoreError>(())
    })
    .unwrap();
    let keys_made = data_keys.len();

    // One version each, sealed as `messages::send` seals it.
    let blob = |bytes: &[u8]| match backend {
        TestBackend::Postgres => format!("decode('{}', 'hex')", hex::encode(bytes)),
        TestBackend::Sqlite => format!("X'{}'", hex::encode(bytes)),
    };
    let mut start = 0;
    while start < messages {
        let end = (start + BATCH).min(messages);
        let mut sql = String::with_capacity((end - start) as usize * 400);
        sql.push_str(
            "INSERT INTO message_versions (message_id, room_id, version, epoch, ciphertext, created_at) VALUES ",
        );
        for i in start..end {
            let (room, _, sender, at) = message(i, first, step);
            let epoch = at.div_euclid(EPOCH_MICROS);
            let (message_id, room_id, sender_id) = (
                uuid_for(MESSAGE_PREFIX, i),
                uuid_for(ROOM_PREFIX, room),
                uuid_for(USER_PREFIX, sender),
            );
            let binding = BodyBinding {
                message_id: &message_id,
                room_id: &room_id,
                sender_id: &sender_id,
                epoch,
                version: 1,
            };
            let sealed = seal(
                &data_keys[&(room, epoch)],
                &binding.aad(),
                text(i, room).as_bytes(),
            )
            .unwrap();
            if i > start {
                sql.push(',');
            }
            write!(
                sql,
                "('{message_id}', '{room_id}', 1, {epoch}, {}, {at})",
                blob(&sealed)
            )
            .unwrap();
        }
        conn.batch_execute(&sql).unwrap();
        start = end;
    }
    eprintln!(
        "{}: made {keys_made} data keys and sealed and stored {messages} message versions in {:.1} s",
        name(backend),
        started.elapsed().as_secs_f64()
    );
    if backend == TestBackend::Postgres {
        // What autovacuum does within the minute of a bulk insert (PostgreSQL 13+ also
        // vacuums after inserts): the planner's row counts, and the tuples' hint bits and
        // visibility map set, as an archive older than a minute has them. Without it the
        // first read of every page sets the hint bits, dirtying and writing it again.
        conn.batch_execute("VACUUM (ANALYZE)").unwrap();
    }
    (
        Timestamp::from_micros(created),
        Timestamp::from_micros(SystemClock.now().as_micros()),
    )
}

/// Samples this process's resident memory while an export runs.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(Duration, u64)>>,
}

impl Sampler {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                let started = Instant::now();
                let mut samples = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    samples.push((started.elapsed(), rss_kib("VmRSS:")));
                    std::thread::sleep(Duration::from_millis(100));
                }
                samples
            }
        });
        Self { stop, thread }
    }

    /// The samples: time since the start, and RSS in KiB.
    fn stop(self) -> Vec<(Duration, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// RSS in MiB at fractions of the run.
fn curve(samples: &[(Duration, u64)], wall: Duration) -> String {
    [0.10, 0.25, 0.50, 0.75, 0.90, 1.0]
        .iter()
        .map(|fraction| {
            let at = wall.mul_f64(*fraction);
            let kib = samples
                .iter()
                .rev()
                .find(|(t, _)| *t <= at)
                .or(samples.first())
                .map_or(0, |(_, kib)| *kib);
            format!("{}", kib / 1024)
        })
        .collect::<Vec<_>>()
        .join(" / ")
        + " MiB"
}

/// Resets the peak RSS (`VmHWM`) of this process to its current RSS (Linux 4.0+).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with(field))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .unwrap_or(0)
}

fn rss_mib(field: &str) -> u64 {
    rss_kib(field) / 1024
}
