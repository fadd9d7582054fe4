//! `make bench`: the timer worker under one million pending timers.
//!
//! Seeds one million messages whose deadlines are spread evenly over the next
//! `SPREAD_SECONDS`, runs the real worker (`expiry::run`) for `RUN_SECONDS` on the real
//! clock, then reads each announced deadline's lag (announced_at - visible_until) from the
//! database and prints p50/p90/p99/max, the throughput, the peak memory of this process,
//! and that no read saw a message past its deadline. On SQLite, and on PostgreSQL when
//! `TESTKIT_PG_URL` names a cluster (as `make bench` arranges). Figures are printed,
//! never asserted: these machines are shared and noisy.

use conclave_core::{Clock, RoleSet, SystemClock, Timestamp, UserId};
use conclave_crypto::Keyring;
use conclave_messaging::settings::WebSocketSettings;
use conclave_messaging::{Hub, MessagingSettings, MessagingState, expiry};
use conclave_store::{Db, DbConnection};
use conclave_testkit::{TestBackend, TestDb};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const TIMERS: i64 = 1_000_000;
const SPREAD_SECONDS: i64 = 2_000;
const RUN_SECONDS: u64 = 20;

fn main() {
    println!(
        "| backend | pending timers | expired in run | announced/s | lag p50 | lag p90 | lag p99 | lag max | late reads | peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut backends = vec![TestBackend::Sqlite];
    if std::env::var("TESTKIT_PG_URL").is_ok_and(|url| !url.is_empty()) {
        backends.push(TestBackend::Postgres);
    }
    for backend in backends {
        run(backend);
    }
}

fn run(backend: TestBackend) {
    let test_db = TestDb::new(backend);
    let db = test_db.db.clone();
    let seeding = Instant::now();
    let start = seed(&mut db.conn().unwrap(), backend);
    eprintln!(
        "{backend:?}: seeded {TIMERS} timers in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );
    // Seeding takes a while, and the deadlines were laid out a day ahead: the worker runs
    // on a clock shifted so the first deadline falls 2 s from now. (Shifting the rows
    // instead takes long enough on PostgreSQL to create the very backlog it should avoid.)
    let clock = ShiftedClock::new(start.minus(Duration::from_secs(2)));
    let state = state(&db, clock);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let late = Arc::new(AtomicU64::new(0));
    runtime.block_on(async {
        let worker = tokio::spawn(expiry::run(state.clone()));
        // Meanwhile, read as users do: nothing past its deadline may come back.
        let reader = tokio::spawn(check_reads(db.clone(), clock, Arc::clone(&late)));
        tokio::time::sleep(Duration::from_secs(RUN_SECONDS)).await;
        worker.abort();
        reader.abort();
    });
    let late_reads = late.load(Ordering::Relaxed);

    let mut conn = db.conn().unwrap();
    let lags = lags(&mut conn, start);
    let announced = lags.len();
    let per_second = announced as f64 / RUN_SECONDS as f64;
    let percentile = |p: f64| {
        lags.get(((announced as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "| {} | {TIMERS} | {announced} | {per_second:.0} | {} | {} | {} | {} | {late_reads} | {} MiB |",
        match backend {
            TestBackend::Sqlite => "SQLite",
            TestBackend::Postgres => "PostgreSQL",
        },
        ms(percentile(0.50)),
        ms(percentile(0.90)),
        ms(percentile(0.99)),
        ms(lags.last().copied().unwrap_or(0)),
        peak_rss_mib(),
    );
}

fn ms(micros: i64) -> String {
    format!("{:.1} ms", micros as f64 / 1000.0)
}

/// The system clock, shifted by a fixed amount.
#[derive(Clone, Copy, Debug)]
struct ShiftedClock {
    shift_micros: i64,
}

impl ShiftedClock {
    /// A clock that reads `now` at the moment of creation.
    fn new(now: Timestamp) -> Self {
        Self {
            shift_micros: now.as_micros() - SystemClock.now().as_micros(),
        }
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_micros(SystemClock.now().as_micros() + self.shift_micros)
    }
}

fn state(db: &Db, clock: ShiftedClock) -> MessagingState {
    let (keyring, hub) = (Arc::new(Keyring::generate().unwrap()), Hub::default());
    MessagingState {
        auth: conclave_auth::AuthState {
            db: db.clone(),
            clock: Arc::new(clock),
            settings: conclave_auth::AuthSettings {
                sessions: conclave_core::SessionPolicy {
                    absolute_lifetime: Duration::from_secs(3600),
                    idle_timeout: Duration::from_secs(600),
                },
                throttle: conclave_core::LoginThrottle {
                    max_failures_per_account: 5,
                    max_failures_per_address: 20,
                    window: Duration::from_secs(60),
                },
                secure_cookies: true,
                account_policy: None,
                login_rate: conclave_auth::LoginRate::unlimited(),
            },
            revocations: conclave_auth::Revocations::default(),
        },
        keyring: Arc::clone(&keyring),
        settings: Arc::new(MessagingSettings {
            max_room_members: 500,
            max_message_bytes: 16 * 1024,
            max_attachment_bytes: 1024,
            attachments_dir: std::env::temp_dir(),
            max_rooms_per_user: 1000,
            max_sends_per_minute: 1_000_000,
            websocket: WebSocketSettings::default(),
        }),
        sends: conclave_messaging::send_queue::SendQueue::start(db.clone(), keyring, &hub),
        hub,
        send_limiter: conclave_core::RateLimiter::new(1_000_000),
    }
}

/// One user, one room per thousand messages, and a million messages whose deadlines start
/// a day from now and spread evenly over `SPREAD_SECONDS`. Returns the first deadline.
fn seed(conn: &mut DbConnection, backend: TestBackend) -> Timestamp {
    let now = SystemClock.now();
    let user = UserId::new();
    conclave_store::users::insert(
        conn,
        &conclave_store::users::NewUser {
            id: user,
            username: &conclave_core::Username::parse("bench").unwrap(),
            display_name: &conclave_core::DisplayName::parse("Bench").unwrap(),
            email: None,
            auth_source: conclave_store::users::AuthSource::Local,
            password_hash: None,
            must_change_password: false,
            roles: &RoleSet::new([]),
            now,
        },
    )
    .unwrap();
    let first = now.as_micros() + 86_400_000_000;
    let step = SPREAD_SECONDS * 1_000_000 / TIMERS;
    let rooms = TIMERS / 1_000;
    let series = |n: i64| match backend {
        TestBackend::Postgres => format!("generate_series(0, {}) AS s(n)", n - 1),
        TestBackend::Sqlite => format!(
            "(WITH RECURSIVE c(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM c WHERE n < {}) SELECT n FROM c) AS s",
            n - 1
        ),
    };
    let room_id = "'00000000-0000-7000-9000-' || substr('000000000000' || s.n, -12, 12)";
    let (pad, cast) = match backend {
        TestBackend::Postgres => ("lpad(s.n::text, 12, '0')", "CAST(s.n AS BIGINT)"),
        TestBackend::Sqlite => ("substr('000000000000' || s.n, -12, 12)", "s.n"),
    };
    let room_expr = room_id.replace("substr('000000000000' || s.n, -12, 12)", pad);
    conn.batch_execute(&format!(
        "INSERT INTO rooms (id, kind, name, created_by, created_at, updated_at)
         SELECT {room_expr}, 'room', 'bench', '{user}', {now}, {now} FROM {series};
         INSERT INTO room_members (room_id, user_id, role, joined_at)
         SELECT {room_expr}, '{user}', 'owner', {now} FROM {series};",
        now = now.as_micros(),
        series = series(rooms),
    ))
    .unwrap();
    let message_room = match backend {
        TestBackend::Postgres => "'00000000-0000-7000-9000-' || lpad((s.n % 1000)::text, 12, '0')"
            .replace("1000", &rooms.to_string()),
        TestBackend::Sqlite => format!(
            "'00000000-0000-7000-9000-' || substr('000000000000' || (s.n % {rooms}), -12, 12)"
        ),
    };
    let message_id = match backend {
        TestBackend::Postgres => {
            "'00000000-0000-7000-a000-' || lpad(s.n::text, 12, '0')".to_owned()
        }
        TestBackend::Sqlite => {
            "'00000000-0000-7000-a000-' || substr('000000000000' || s.n, -12, 12)".to_owned()
        }
    };
    conn.batch_execute(&format!(
        "INSERT INTO messages (id, room_id, seq, sender_id, current_version, idempotency_key, created_at, visible_until)
         SELECT {message_id}, {message_room}, {cast} + 1, '{user}', 1, {message_id}, {now}, {first} + {cast} * {step}
         FROM {series};",
        now = now.as_micros(),
        series = series(TIMERS),
    ))
    .unwrap();
    Timestamp::from_micros(first)
}

/// Lags, in microseconds, of every deadline announced, sorted.
fn lags(conn: &mut DbConnection, start: Timestamp) -> Vec<i64> {
    use conclave_store::schema::messages::dsl::*;
    let rows: Vec<(Option<i64>, Option<i64>)> = messages
        .filter(expiry_announced_at.is_not_null())
        .filter(visible_until.ge(start.as_micros()))
        .select((visible_until, expiry_announced_at))
        .load(conn)
        .unwrap();
    let mut lags: Vec<i64> = rows
        .into_iter()
        .filter_map(|(until, at)| Some((at? - until?).max(0)))
        .collect();
    lags.sort_unstable();
    lags
}

/// Reads pages of expiring messages as a user would and counts any returned past its
/// deadline (there must be none: reads check the deadline themselves).
async fn check_reads(db: Db, clock: ShiftedClock, late: Arc<AtomicU64>) {
    loop {
        let found = db
            .run(move |conn| {
                use conclave_store::schema::messages::dsl::*;
                let now = clock.now();
                let sample: Vec<String> = messages
                    .filter(visible_until.le(now.as_micros() + 50_000))
                    .filter(visible_until.ge(now.as_micros() - 50_000))
                    .select(room_id)
                    .limit(1)
                    .load(conn)?;
                let Some(room) = sample.first() else {
                    return Ok::<u64, conclave_store::StoreError>(0);
                };
                let room: conclave_core::RoomId = room.parse().unwrap();
                let listed = conclave_store::messages::list(
                    conn,
                    room,
                    conclave_store::messages::Page::Before(None),
                    1_000,
                    now,
                )?;
                Ok(listed
                    .iter()
                    .filter(|m| m.visible_until.is_some_and(|until| until <= now))
                    .count() as u64)
            })
            .await
            .unwrap_or(0);
        late.fetch_add(found, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
