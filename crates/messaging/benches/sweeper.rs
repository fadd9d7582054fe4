//! `make bench`: the retention sweeper over a large archive, under live traffic.
//!
//! Seeds an archive of `RETAINED` kept messages in `ROOMS` rooms (each with an encrypted
//! version, its `message.created` room event, and every `REACTION_EVERY`th with a
//! reaction, plus the rooms' data keys), and
//! `SWEEPER_BENCH_DUE` more (one million by default, as the issue asks) past their
//! retention deadline under an org maximum of `RETENTION_DAYS` days (and announced), in
//! epochs of their own so that destroying them empties their keys. Then, on SQLite and
//! on PostgreSQL when `TESTKIT_PG_URL` names a cluster (as `make bench` arranges;
//! `SWEEPER_BENCH_BACKENDS=postgres` or `sqlite` picks one):
//!
//! - a baseline: real sends (`messages::send`), one after another, for
//!   `BASELINE_SECONDS`, with nothing else running;
//! - one due message among the whole archive: the wall time of the sweep that destroys it;
//! - a full sweep (the real `sweeper::sweep`, batches of `SWEEPER_BENCH_BATCH` (500, as
//!   `[retention] batch_size` by default) with 20 ms pauses, SQLite's default) while
//!   another connection sends as fast as it can, recording each send's latency and each
//!   batch's duration; then the due messages are seeded again and the same is measured
//!   with no pause between batches (PostgreSQL's default).
//!
//! Each full sweep reports messages destroyed per second and rows deleted per second:
//! every row destroying them deleted (messages, versions, reactions, read states, counted
//! in the database before and after), with the room events rewritten (an update each)
//! counted apart; and whether the target was met (at least 50,000 deleted rows
//! per second, live send p99 at most twice the baseline's).
//!
//! A sweep that live traffic makes fail is run again at once, until `SWEEP_BUDGET`; one
//! left unfinished is finished without traffic, unmeasured, before the next round.
//!
//! Figures are printed, never asserted: these machines are shared and noisy.

use conclave_core::{
    Clock, IdempotencyKey, ManualClock, MessageText, RoomId, RoomName, SystemClock, Timestamp,
    Topic, UserId,
};
use conclave_crypto::Keyring;
use conclave_messaging::messages::{self, NewMessageInput};
use conclave_messaging::rooms;
use conclave_policy::sweeper::{self, SweepCursor, SweepSettings};
use conclave_store::{Db, DbConnection};
use conclave_testkit::{TestBackend, TestDb};
use diesel::connection::SimpleConnection;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Messages kept (not due) in the archive.
const RETAINED: i64 = 1_000_000;
/// Due messages per round by default (`SWEEPER_BENCH_DUE` sets it).
const DEFAULT_DUE: i64 = 1_000_000;
/// Batch size by default (`SWEEPER_BENCH_BATCH`), as `[retention] batch_size`.
const DEFAULT_BATCH: i64 = 500;
/// Apart by this much, the sequence numbers of different seeded sets never collide.
const SEQ_PER_SET: i64 = 100_000_000;
const ROOMS: i64 = 1_000;
const REACTION_EVERY: i64 = 4;
const RETENTION_DAYS: u32 = 30;
const BASELINE_SECONDS: u64 = 5;
/// After this long, a failed sweep run is not followed by another.
const SWEEP_BUDGET: Duration = Duration::from_secs(120);
/// Rooms the live traffic sends into, round robin.
const LIVE_ROOMS: usize = 4;

const DAY_MICROS: i64 = 86_400_000_000;

fn count_var(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .filter(|n: &i64| *n > 0)
        .unwrap_or(default)
}

fn due_per_round() -> i64 {
    count_var("SWEEPER_BENCH_DUE", DEFAULT_DUE)
}

fn main() {
    let mut backends = vec![TestBackend::Sqlite];
    if std::env::var("TESTKIT_PG_URL").is_ok_and(|url| !url.is_empty()) {
        backends.push(TestBackend::Postgres);
    }
    // `SWEEPER_BENCH_BACKENDS=postgres` (or `sqlite`) runs one backend only.
    if let Ok(only) = std::env::var("SWEEPER_BENCH_BACKENDS") {
        backends.retain(|backend| {
            let name = name(*backend).to_ascii_lowercase();
            only.split(',')
                .any(|b| !b.is_empty() && name.starts_with(&b.trim().to_ascii_lowercase()))
        });
    }
    let mut sweeps = Vec::new();
    let mut single = Vec::new();
    for backend in backends {
        let (rows, one) = run(backend);
        sweeps.extend(rows);
        single.push(one);
    }
    println!(
        "| backend | archive | due | pause | destroyed | sweep wall | messages/s | rows deleted (rows/s) | room events rewritten | keys shredded | batch p50 / max (time in batches) | send p50 / p99 / max during sweep | baseline send p50 / p99 (p99 during / baseline) | sends during sweep | peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in sweeps {
        println!("{row}");
    }
    println!();
    println!("| backend | archive | due | destroyed | sweep wall |");
    println!("|---|---|---|---|---|");
    for row in single {
        println!("{row}");
    }
}

fn name(backend: TestBackend) -> &'static str {
    match backend {
        TestBackend::Sqlite => "SQLite",
        TestBackend::Postgres => "PostgreSQL",
    }
}

/// Measures one backend; returns its table rows (the full sweeps, and the single one).
fn run(backend: TestBackend) -> (Vec<String>, String) {
    let test_db = TestDb::new(backend);
    let db = test_db.db.clone();
    let attachments = tempfile::tempdir().unwrap();
    let keyring = Keyring::generate().unwrap();
    let now = SystemClock.now();
    let mut conn = db.conn().unwrap();

    let seeding = Instant::now();
    let user = seed(&mut conn, backend, now);
    seed_due(&mut conn, backend, now, user, 1);
    let single_deadline = seed_one_due(&mut conn, backend, now, user);
    // Start from a settled database, as a server's would be: on PostgreSQL what autovacuum
    // does within the minute after a bulk insert (the planner needs the row counts), and
    // the checkpoint the seeding's write-ahead log started, so that it does not write
    // during the baseline; on SQLite the checkpoint that folds the seeding's write-ahead
    // log into the database.
    conn.batch_execute(match backend {
        TestBackend::Postgres => "VACUUM ANALYZE",
        TestBackend::Sqlite => "PRAGMA wal_checkpoint(TRUNCATE)",
    })
    .unwrap();
    if backend == TestBackend::Postgres {
        // Alone: a statement list runs as one transaction, which VACUUM refuses.
        conn.batch_execute("CHECKPOINT").unwrap();
    }
    eprintln!(
        "{}: seeded {} messages ({} due) in {ROOMS} rooms in {:.1} s",
        name(backend),
        RETAINED + due_per_round() + 1,
        due_per_round() + 1,
        seeding.elapsed().as_secs_f64()
    );
    let live = live_rooms(&mut conn, now, user);
    let settings = |pause: Duration| SweepSettings {
        batch_size: count_var("SWEEPER_BENCH_BATCH", DEFAULT_BATCH),
        pause,
        grace: Duration::from_secs(60),
        abandoned_upload_after: Duration::from_secs(24 * 3600),
        attachments_dir: attachments.path().to_path_buf(),
        interval: Duration::from_secs(60),
    };

    let baseline = traffic(&db, &keyring, user, &live, || {
        std::thread::sleep(Duration::from_secs(BASELINE_SECONDS))
    })
    .0;

    // Exactly one message is due at a clock just past its deadline and the grace.
    let archive = count(&mut conn);
    let clock = ManualClock::starting_at(single_deadline.plus(Duration::from_secs(60)));
    let started = Instant::now();
    let report = sweeper::sweep(
        &mut conn,
        &settings(Duration::ZERO),
        &clock,
        &mut SweepCursor::default(),
        || {},
    )
    .unwrap();
    let single = format!(
        "| {} | {archive} | 1 | {} | {} |",
        name(backend),
        report.messages_destroyed,
        secs(started.elapsed()),
    );
    eprintln!("{}: one due message: {report:?}", name(backend));

    let mut table = Vec::new();
    for (round, pause) in [(1, Duration::from_millis(20)), (2, Duration::ZERO)] {
        if round > 1 {
            let reseeding = Instant::now();
            seed_due(&mut conn, backend, now, user, round);
            eprintln!(
                "{}: seeded {} due messages again in {:.1} s",
                name(backend),
                due_per_round(),
                reseeding.elapsed().as_secs_f64()
            );
        }
        let archive = count(&mut conn);
        let cutoff = || SystemClock.now().minus(Duration::from_secs(60));
        let (due_before, keys_before) = (due(&mut conn, cutoff()), keys(&mut conn));
        let rows_before = DueRows::count(&mut conn, cutoff());
        let rewritten_before = rewritten_events(&mut conn);
        let (during, sweep) = traffic(&db, &keyring, user, &live, || {
            timed_sweep(&db, &settings(pause), pause)
        });
        // Counted in the database: a failed run's batches are committed but not reported.
        let destroyed = due_before - due(&mut conn, cutoff());
        let shredded = keys_before - keys(&mut conn);
        let rows = rows_before.minus(&DueRows::count(&mut conn, cutoff()));
        let rewritten = rewritten_events(&mut conn) - rewritten_before;
        eprintln!(
            "{}: pause {pause:?}: {destroyed} destroyed, {shredded} keys shredded, {} runs failed",
            name(backend),
            sweep.errors.len()
        );
        if !sweep.finished {
            // Finish without traffic (not measured), so the next round starts clean.
            let catching_up = Instant::now();
            let mut conn = db.conn().unwrap();
            let settings = settings(Duration::ZERO);
            sweeper::sweep(
                &mut conn,
                &settings,
                &SystemClock,
                &mut SweepCursor::default(),
                || {},
            )
            .unwrap();
            eprintln!(
                "{}: finished the sweep without traffic in {:.1} s",
                name(backend),
                catching_up.elapsed().as_secs_f64()
            );
        }
        let wall = sweep.wall.as_secs_f64();
        let rows_per_second = rows.total() as f64 / wall;
        let p99_ratio = during.percentile(0.99) as f64 / baseline.percentile(0.99).max(1) as f64;
        eprintln!(
            "{}: pause {pause:?}: deleted {} messages, {} versions, {} reactions, {} read states ({} rows, {rows_per_second:.0} rows/s); rewrote {rewritten} room events; live p99 {p99_ratio:.2}x baseline; target (>= 50,000 rows/s, live p99 <= 2x): {}",
            name(backend),
            rows.messages,
            rows.versions,
            rows.reactions,
            rows.reads,
            rows.total(),
            if rows_per_second >= 50_000.0 && p99_ratio <= 2.0 {
                "met"
            } else {
                "missed"
            },
        );
        table.push(format!(
            "| {} | {archive} | {due_before} | {} ms | {destroyed}{} | {} | {:.0} | {} ({:.0}/s) | {rewritten} | {shredded} | {} / {} ({:.0}% of wall) | {} / {} / {} | {} / {} ({p99_ratio:.2}x) | {} | {} MiB |",
            name(backend),
            pause.as_millis(),
            match (sweep.errors.first(), sweep.finished) {
                (None, _) => String::new(),
                (Some(err), true) => format!(" ({} runs failed: {err})", sweep.errors.len()),
                (Some(err), false) => format!(
                    " (unfinished: {} runs failed: {err}; none started after {} s)",
                    sweep.errors.len(),
                    SWEEP_BUDGET.as_secs()
                ),
            },
            secs(sweep.wall),
            destroyed as f64 / wall,
            rows.total(),
            rows_per_second,
            ms(sweep.batches.percentile(0.50)),
            ms(sweep.batches.max()),
            100.0 * sweep.batches.micros.iter().sum::<u64>() as f64
                / sweep.wall.as_micros() as f64,
            ms(during.percentile(0.50)),
            ms(during.percentile(0.99)),
            ms(during.max()),
            ms(baseline.percentile(0.50)),
            ms(baseline.percentile(0.99)),
            during.sends(),
            peak_rss_mib(),
        ));
    }
    (table, single)
}

/// A sweep's wall time, how long each batch took (microseconds, sorted; each is one
/// write transaction, so on SQLite how long the sweeper waited for the writer lock and
/// then held it), the errors of the runs that failed, and whether it finished.
struct Sweep {
    wall: Duration,
    batches: Latencies,
    errors: Vec<String>,
    finished: bool,
}

/// Sweeps until nothing due is left, on a connection of its own with the real clock,
/// timing each batch from the pauses between them. A run that fails is followed by
/// another at once, from where it stopped (the worker would wait for its next tick),
/// until `SWEEP_BUDGET` has passed.
fn timed_sweep(db: &Db, settings: &SweepSettings, pause: Duration) -> Sweep {
    let mut conn = db.conn().unwrap();
    let mut cursor = SweepCursor::default();
    let mut batches = Vec::new();
    let mut errors = Vec::new();
    let mut finished = false;
    let started = Instant::now();
    while !finished && started.elapsed() < SWEEP_BUDGET {
        let mut batch_started = Instant::now();
        let outcome = sweeper::sweep(&mut conn, settings, &SystemClock, &mut cursor, || {
            batches.push(batch_started.elapsed().as_micros() as u64);
            std::thread::sleep(pause);
            batch_started = Instant::now();
        });
        match outcome {
            Ok(_) => finished = true,
            Err(err) => {
                eprintln!(
                    "  sweep failed after {:.1} s: {err}",
                    started.elapsed().as_secs_f64()
                );
                errors.push(err.to_string());
            }
        }
    }
    let wall = started.elapsed();
    // A run's last batch (and its tail: abandoned uploads, remembered keys) has no pause
    // after it, and is left out of the batch figures.
    batches.sort_unstable();
    Sweep {
        wall,
        batches: Latencies {
            micros: batches,
            failed: 0,
        },
        errors,
        finished,
    }
}

fn secs(elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    if secs < 1.0 {
        format!("{:.1} ms", secs * 1000.0)
    } else {
        format!("{secs:.1} s")
    }
}

fn ms(micros: u64) -> String {
    format!("{:.1} ms", micros as f64 / 1000.0)
}

/// Send latencies in microseconds, sorted, and how many sends failed.
struct Latencies {
    micros: Vec<u64>,
    failed: u64,
}

impl Latencies {
    fn percentile(&self, p: f64) -> u64 {
        let n = self.micros.len();
        self.micros
            .get(((n as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0)
    }

    fn max(&self) -> u64 {
        self.micros.last().copied().unwrap_or(0)
    }

    /// How many sends completed, how many of those took over 100 ms (percentiles hide a
    /// handful of long stalls among thousands of sends), and how many failed.
    fn sends(&self) -> String {
        let slow = self.micros.iter().filter(|&&m| m > 100_000).count();
        match self.failed {
            0 => format!("{} ({slow} over 100 ms)", self.micros.len()),
            failed => format!(
                "{} ({slow} over 100 ms, {failed} failed)",
                self.micros.len()
            ),
        }
    }
}

/// Runs `work` on this thread while another sends messages into `rooms` one after
/// another on a connection of its own; returns the sends' latencies and `work`'s result.
fn traffic<T>(
    db: &Db,
    keyring: &Keyring,
    sender: UserId,
    rooms: &[RoomId],
    work: impl FnOnce() -> T,
) -> (Latencies, T) {
    /// Stops the sender when `work` returns or panics.
    struct Stop<'a>(&'a AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let sending = scope.spawn(|| {
            let mut conn = db.conn().unwrap();
            let mut latencies = Latencies {
                micros: Vec::new(),
                failed: 0,
            };
            let mut i = 0_usize;
            while !stop.load(Ordering::Relaxed) {
                let key = uuid::Uuid::now_v7().to_string();
                let input = NewMessageInput {
                    text: MessageText::parse("Live traffic while the sweeper runs.", 16 * 1024)
                        .unwrap(),
                    idempotency_key: IdempotencyKey::parse(&key).unwrap(),
                    reply_to_id: None,
                    attachment_id: None,
                    expires_in: None,
                    burn_after_read: None,
                };
                let room = rooms[i % rooms.len()];
                i += 1;
                let started = Instant::now();
                let sent =
                    messages::send(&mut conn, keyring, SystemClock.now(), sender, room, input);
                let elapsed = started.elapsed().as_micros() as u64;
                match sent {
                    Ok(_) => latencies.micros.push(elapsed),
                    Err(err) => {
                        latencies.failed += 1;
                        eprintln!("send failed after {}: {err}", ms(elapsed));
                    }
                }
            }
            latencies.micros.sort_unstable();
            latencies
        });
        let result = {
            let _stop = Stop(&stop);
            work()
        };
        (sending.join().unwrap(), result)
    })
}

fn count(conn: &mut DbConnection) -> i64 {
    conclave_store::messages::count(conn, None).unwrap()
}

/// How many data keys are stored.
fn keys(conn: &mut DbConnection) -> i64 {
    use conclave_store::schema::room_keys::dsl::*;
    use diesel::prelude::*;
    room_keys.count().get_result(conn).unwrap()
}

/// How many messages are due by `cutoff`.
fn due(conn: &mut DbConnection, cutoff: Timestamp) -> i64 {
    use conclave_store::schema::messages::dsl::*;
    use diesel::prelude::*;
    messages
        .filter(retain_until.le(cutoff.as_micros()))
        .count()
        .get_result(conn)
        .unwrap()
}

/// The rows of messages due by a cutoff, table by table: what destroying them deletes.
struct DueRows {
    messages: i64,
    versions: i64,
    reactions: i64,
    reads: i64,
}

impl DueRows {
    fn count(conn: &mut DbConnection, cutoff: Timestamp) -> Self {
        #[derive(diesel::QueryableByName)]
        struct Counts {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            messages: i64,
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            versions: i64,
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            reactions: i64,
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            reads: i64,
        }
        use diesel::RunQueryDsl;
        let due = format!(
            "SELECT id FROM messages WHERE retain_until <= {}",
            cutoff.as_micros()
        );
        let counts: Counts = diesel::sql_query(format!(
            "SELECT (SELECT COUNT(*) FROM ({due}) d) AS messages,
                    (SELECT COUNT(*) FROM message_versions WHERE message_id IN ({due})) AS versions,
                    (SELECT COUNT(*) FROM reactions WHERE message_id IN ({due})) AS reactions,
                    (SELECT COUNT(*) FROM message_reads WHERE message_id IN ({due})) AS reads"
        ))
        .get_result(conn)
        .unwrap();
        Self {
            messages: counts.messages,
            versions: counts.versions,
            reactions: counts.reactions,
            reads: counts.reads,
        }
    }

    fn minus(&self, after: &Self) -> Self {
        Self {
            messages: self.messages - after.messages,
            versions: self.versions - after.versions,
            reactions: self.reactions - after.reactions,
            reads: self.reads - after.reads,
        }
    }

    fn total(&self) -> i64 {
        self.messages + self.versions + self.reactions + self.reads
    }
}

/// Room events stripped of what they said about a destroyed message (an update each).
fn rewritten_events(conn: &mut DbConnection) -> i64 {
    use conclave_store::schema::room_events::dsl::*;
    use diesel::prelude::*;
    room_events
        .filter(message_id.is_not_null())
        .filter(payload.eq("{}"))
        .filter(actor_id.is_null())
        .count()
        .get_result(conn)
        .unwrap()
}

/// The rooms the live traffic sends into, made as users make them.
fn live_rooms(conn: &mut DbConnection, now: Timestamp, owner: UserId) -> Vec<RoomId> {
    let members: Vec<UserId> = (0..3)
        .map(|i| conclave_testkit::fixtures::user(conn, &format!("member{i}"), now))
        .collect();
    (0..LIVE_ROOMS)
        .map(|i| {
            let (detail, _) = rooms::create_room(
                conn,
                now,
                owner,
                RoomName::parse(&format!("Live {i}")).unwrap(),
                Topic::parse("").unwrap(),
                members.clone(),
                500,
            )
            .unwrap();
            detail.room.id
        })
        .collect()
}

/// `0, 1, … n - 1` as rows of `s.n`.
fn series(backend: TestBackend, n: i64) -> String {
    match backend {
        TestBackend::Postgres => format!("generate_series(0::bigint, {}) AS s(n)", n - 1),
        TestBackend::Sqlite => format!(
            "(WITH RECURSIVE c(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM c WHERE n < {}) SELECT n FROM c) AS s",
            n - 1
        ),
    }
}

/// A UUID whose last group is the integer `expr`, zero-padded: `prefix-000000000042`.
fn uuid_of(backend: TestBackend, prefix: &str, expr: &str) -> String {
    match backend {
        TestBackend::Postgres => format!("'{prefix}-' || lpad(({expr})::text, 12, '0')"),
        TestBackend::Sqlite => {
            format!("'{prefix}-' || substr('000000000000' || ({expr}), -12, 12)")
        }
    }
}

const ROOM_PREFIX: &str = "00000000-0000-7000-9000";

/// The bench user, `ROOMS` rooms it owns, the org retention maximum, and the archive's
/// retained messages (sent over 8 days, within the last `RETENTION_DAYS` days). Returns
/// the user.
fn seed(conn: &mut DbConnection, backend: TestBackend, now: Timestamp) -> UserId {
    let user = conclave_testkit::fixtures::user(conn, "bench", now);
    conclave_store::retention::put_policy(
        conn,
        "org",
        None,
        Some(i64::from(RETENTION_DAYS)),
        user,
        now,
    )
    .unwrap();
    let room = uuid_of(backend, ROOM_PREFIX, "s.n");
    conn.batch_execute(&format!(
        "BEGIN;
         INSERT INTO rooms (id, kind, name, created_by, created_at, updated_at)
         SELECT {room}, 'room', 'bench', '{user}', {now}, {now} FROM {series};
         INSERT INTO room_members (room_id, user_id, role, joined_at)
         SELECT {room}, '{user}', 'owner', {now} FROM {series};
         COMMIT;",
        now = now.as_micros(),
        series = series(backend, ROOMS),
    ))
    .unwrap();
    let set = Set {
        round: 0,
        messages: RETAINED,
        first: now.as_micros() - 10 * DAY_MICROS,
        spread: 8 * DAY_MICROS,
    };
    insert(conn, backend, now, user, &set);
    user
}

/// `SWEEPER_BENCH_DUE` messages sent over 2 days, 35 days before `now` (so past the maximum, in epochs
/// no retained message uses), as the `round`th such set.
fn seed_due(
    conn: &mut DbConnection,
    backend: TestBackend,
    now: Timestamp,
    user: UserId,
    round: i64,
) {
    let set = Set {
        round,
        messages: due_per_round(),
        first: now.as_micros() - 35 * DAY_MICROS,
        spread: 2 * DAY_MICROS,
    };
    insert(conn, backend, now, user, &set);
}

/// One message sent an hour before the first due set, so that a clock can be set at
/// which it alone is due; returns its deadline.
fn seed_one_due(
    conn: &mut DbConnection,
    backend: TestBackend,
    now: Timestamp,
    user: UserId,
) -> Timestamp {
    let set = Set {
        round: 99,
        messages: 1,
        first: now.as_micros() - 35 * DAY_MICROS - 3_600_000_000,
        spread: 1,
    };
    insert(conn, backend, now, user, &set);
    Timestamp::from_micros(set.first + i64::from(RETENTION_DAYS) * DAY_MICROS)
}

/// A set of seeded messages: `messages` of them sent evenly over `spread` microseconds
/// from `first`; `round` tells sets' ids apart.
struct Set {
    round: i64,
    messages: i64,
    first: i64,
    spread: i64,
}

/// Inserts `set` round robin over the rooms, each message with one version and every
/// `REACTION_EVERY`th with a reaction, and the data keys of their rooms' epochs. Deadlines
/// already past were announced (as the timer worker does).
fn insert(conn: &mut DbConnection, backend: TestBackend, now: Timestamp, user: UserId, set: &Set) {
    let step = (set.spread / set.messages).max(1);
    let id = uuid_of(
        backend,
        &format!("00000000-0000-7000-a{:03}", set.round),
        "s.n",
    );
    let room = uuid_of(backend, ROOM_PREFIX, &format!("s.n % {ROOMS}"));
    let sent = format!("({} + s.n * {step})", set.first);
    let until = format!("({sent} + {})", i64::from(RETENTION_DAYS) * DAY_MICROS);
    // Sequence numbers need only be unique per room; these are unique overall.
    let seq = format!("({} + s.n)", set.round * SEQ_PER_SET + 1);
    let (ciphertext, wrapped_key) = match backend {
        TestBackend::Postgres => (
            "decode(repeat(md5(s.n::text), 10), 'hex')",
            "decode(repeat('00', 72), 'hex')",
        ),
        TestBackend::Sqlite => ("randomblob(160)", "zeroblob(72)"),
    };
    conn.batch_execute(&format!(
        "BEGIN;
         INSERT INTO messages (id, room_id, seq, sender_id, current_version, idempotency_key, created_at, retain_until, expiry_announced_at)
         SELECT {id}, {room}, {seq}, '{user}', 1, {id}, {sent}, {until}, CASE WHEN {until} <= {now} THEN {until} END
         FROM {series};
         INSERT INTO message_versions (message_id, room_id, version, epoch, ciphertext, created_at)
         SELECT {id}, {room}, 1, {sent} / {DAY_MICROS}, {ciphertext}, {sent} FROM {series};
         INSERT INTO reactions (message_id, user_id, emoji, created_at)
         SELECT {id}, '{user}', '👍', {sent} FROM {series} WHERE s.n % {REACTION_EVERY} = 0;
         INSERT INTO room_events (room_id, seq, kind, message_id, actor_id, payload, created_at)
         SELECT {room}, {seq}, 'message.created', {id}, '{user}', '{{\"seq\":' || {seq} || '}}', {sent}
         FROM {series};
         INSERT INTO room_keys (room_id, epoch, master_key_id, wrapped_key, created_at)
         SELECT DISTINCT {room}, {sent} / {DAY_MICROS}, 'bench', {wrapped_key}, {now} FROM {series}
         WHERE true ON CONFLICT DO NOTHING;
         COMMIT;",
        now = now.as_micros(),
        series = series(backend, set.messages),
    ))
    .unwrap();
}

fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_owned)
        })
        .and_then(|line| {
            line.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}
