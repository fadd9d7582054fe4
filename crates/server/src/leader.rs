//! Which node runs the singleton workers (timers, sweeper, exports, syslog forwarding,
//! audit checkpoints, directory sync). On PostgreSQL a dedicated connection tries a
//! session-level advisory lock every second; the node holding it leads, and checks the
//! connection every second while it does. The workers run only while leading: they start
//! on winning and are aborted on losing the lock or the connection. PostgreSQL releases a
//! dead session's lock, so when a leader dies another node takes over within seconds (as
//! soon as PostgreSQL notices: at once for a killed process, after TCP keepalive for a
//! vanished host). On SQLite there is one node, and it always leads.

use conclave_store::{Backend, DbConnection, org_settings};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// The advisory lock key of the worker leadership ("CONCLWRK").
pub const WORKER_LOCK: i64 = 0x434f_4e43_4c57_524b;
const RETRY: Duration = Duration::from_secs(1);

/// Whether this node leads the workers now; shared with `/readyz` and `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct Leadership {
    leading: Arc<AtomicBool>,
    /// On SQLite, the election's sender, kept for the life of the process: the workers
    /// run as long as it lives (an election that ends any other way stops them).
    settled: Arc<std::sync::OnceLock<watch::Sender<bool>>>,
}

impl Leadership {
    pub fn is_leader(&self) -> bool {
        self.leading.load(Ordering::Relaxed)
    }

    fn set(&self, leading: bool) {
        self.leading.store(leading, Ordering::Relaxed);
    }
}

/// One step of the election on an open connection: try the lock when not leading, check
/// that this session still holds it when leading. Returns whether this node leads; an
/// error means the connection (and with it any lock) is gone.
pub fn step(conn: &mut DbConnection, leading: bool) -> Result<bool, conclave_store::StoreError> {
    if leading {
        org_settings::holds_singleton(conn, WORKER_LOCK)
    } else {
        org_settings::try_lock_singleton(conn, WORKER_LOCK)
    }
}

/// Runs the election for the life of the process on a thread of its own; the receiver
/// follows whether this node leads.
pub fn elect(backend: Backend, leadership: Leadership) -> std::io::Result<watch::Receiver<bool>> {
    let (tx, rx) = watch::channel(false);
    if let Backend::Sqlite { .. } = backend {
        leadership.set(true);
        let _ = tx.send(true);
        let _ = leadership.settled.set(tx);
        return Ok(rx);
    }
    std::thread::Builder::new()
        .name("conclave-leader".to_owned())
        .spawn(move || {
            let announce = |leading: bool| {
                if leadership.is_leader() != leading {
                    leadership.set(leading);
                    if leading {
                        tracing::info!("this node now leads the singleton workers");
                    } else {
                        tracing::warn!("this node no longer leads the singleton workers");
                    }
                    let _ = tx.send(leading);
                }
            };
            loop {
                let mut conn = match backend.connect() {
                    Ok(conn) => conn,
                    Err(err) => {
                        tracing::warn!(error = %err, "worker election cannot connect; retrying");
                        std::thread::sleep(RETRY);
                        continue;
                    }
                };
                let mut leading = false;
                loop {
                    match step(&mut conn, leading) {
                        Ok(now) => {
                            leading = now;
                            announce(leading);
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "worker election lost its connection");
                            announce(false);
                            break;
                        }
                    }
                    std::thread::sleep(RETRY);
                }
            }
        })?;
    Ok(rx)
}

/// Runs the workers `start` spawns while `leading` says so: spawned on winning, aborted
/// on losing, and aborted too if the election itself ends (its thread died: another node
/// may lead by now).
pub async fn run_while_leading<F>(mut leading: watch::Receiver<bool>, start: F)
where
    F: Fn() -> Vec<tokio::task::JoinHandle<()>>,
{
    let mut running: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    loop {
        let now = *leading.borrow_and_update();
        if now && running.is_empty() {
            running = start();
            tracing::info!(workers = running.len(), "singleton workers started");
        } else if !now && !running.is_empty() {
            for task in running.drain(..) {
                task.abort();
            }
            tracing::info!("singleton workers stopped");
        }
        if leading.changed().await.is_err() {
            for task in running.drain(..) {
                task.abort();
            }
            if *leading.borrow() {
                tracing::error!("the worker election ended; singleton workers stopped");
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_testkit::{TestBackend, TestDb};

    #[test]
    fn one_postgres_session_leads_and_the_other_takes_over_when_it_goes() {
        let db = TestDb::new(TestBackend::Postgres);
        let backend = db.db.backend().clone();
        let mut first = backend.connect().unwrap();
        let mut second = backend.connect().unwrap();
        assert!(step(&mut first, false).unwrap(), "the first session wins");
        assert!(!step(&mut second, false).unwrap(), "the lock is held");
        assert!(
            step(&mut first, true).unwrap(),
            "the leader's connection is alive and holds the lock"
        );
        assert!(!org_settings::holds_singleton(&mut second, WORKER_LOCK).unwrap());
        // A session that lost its lock (a pooler's reset, say) stops leading.
        org_settings::unlock_singleton(&mut first, WORKER_LOCK).unwrap();
        assert!(
            !step(&mut first, true).unwrap(),
            "the lock is gone: no longer leading"
        );
        assert!(step(&mut first, false).unwrap(), "and can be won again");
        drop(first);
        let mut took_over = false;
        for _ in 0..100 {
            if step(&mut second, false).unwrap() {
                took_over = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(took_over, "the lock is released with its session");
    }

    #[tokio::test]
    async fn workers_start_on_winning_and_are_aborted_on_losing() {
        use std::sync::atomic::AtomicUsize;
        let (tx, rx) = watch::channel(false);
        let started = Arc::new(AtomicUsize::new(0));
        let (alive_tx, mut alive_rx) = tokio::sync::mpsc::channel::<()>(1);
        let counter = Arc::clone(&started);
        let runner = tokio::spawn(run_while_leading(rx, move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let alive = alive_tx.clone();
            // A worker that lives until aborted, holding a sender to show it is alive.
            vec![tokio::spawn(async move {
                let _alive = alive;
                std::future::pending::<()>().await;
            })]
        }));
        let settle = || tokio::time::sleep(Duration::from_millis(50));
        settle().await;
        assert_eq!(
            started.load(Ordering::SeqCst),
            0,
            "not leading: nothing runs"
        );
        tx.send(true).unwrap();
        settle().await;
        assert_eq!(started.load(Ordering::SeqCst), 1);
        tx.send(false).unwrap();
        settle().await;
        tx.send(true).unwrap();
        settle().await;
        assert_eq!(
            started.load(Ordering::SeqCst),
            2,
            "started again on winning again"
        );
        tx.send(false).unwrap();
        drop(tx);
        runner.await.unwrap();
        // Every worker was aborted: the only sender left is the start closure's, dropped
        // with the runner, so the channel closes.
        assert!(
            tokio::time::timeout(Duration::from_secs(10), alive_rx.recv())
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn workers_stop_when_the_election_itself_ends() {
        let (tx, rx) = watch::channel(false);
        let (alive_tx, mut alive_rx) = tokio::sync::mpsc::channel::<()>(1);
        let runner = tokio::spawn(run_while_leading(rx, move || {
            let alive = alive_tx.clone();
            vec![tokio::spawn(async move {
                let _alive = alive;
                std::future::pending::<()>().await;
            })]
        }));
        tx.send(true).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The election thread dies while this node leads: another may lead by now.
        drop(tx);
        runner.await.unwrap();
        assert!(
            tokio::time::timeout(Duration::from_secs(10), alive_rx.recv())
                .await
                .unwrap()
                .is_none(),
            "the workers were aborted"
        );
    }

    #[tokio::test]
    async fn on_sqlite_the_workers_keep_running() {
        let db = TestDb::new(TestBackend::Sqlite);
        let leadership = Leadership::default();
        let rx = elect(db.db.backend().clone(), leadership.clone()).unwrap();
        let runner = tokio::spawn(run_while_leading(rx, || {
            vec![tokio::spawn(std::future::pending::<()>())]
        }));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !runner.is_finished(),
            "the settled election keeps the workers"
        );
        runner.abort();
    }

    #[test]
    fn sqlite_always_leads() {
        let db = TestDb::new(TestBackend::Sqlite);
        let leadership = Leadership::default();
        let rx = elect(db.db.backend().clone(), leadership.clone()).unwrap();
        assert!(*rx.borrow());
        assert!(leadership.is_leader());
    }
}
