//! The node's send queue: group commit for messages. Send requests from every HTTP
//! worker wait here, and a few sending threads each take whatever has queued up (at most
//! [`MAX_BATCH`]) and store it with [`messages::send_many`]: one transaction and about
//! fifteen statements for the whole batch, where one send alone is about as many. Under
//! light load a batch is one message and nothing waits; under heavy load batches grow by
//! themselves, because requests queue while the previous batch's transaction runs. The
//! batch's live events are announced to the other nodes with one notification statement
//! on the same connection, after the commit. A lone request's statements are traced
//! under its own span; a batch's under a `send batch` span that is the first request's
//! child and linked to the others'.
//!
//! Each request gets its own answer: one refused is refused alone (see `send_many`).

use crate::error::MessagingError;
use crate::messages::{self, SendRequest, Sent};
use crate::realtime::fanout;
use crate::realtime::hub::Hub;
use conclave_crypto::Keyring;
use conclave_store::{Db, StoreError};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// The most sends one transaction stores. Past a few dozen a larger batch saves little
/// and makes its first request wait for the last's encryption.
pub const MAX_BATCH: usize = 128;

/// How many sends may wait before a new one waits for room (backpressure on the HTTP
/// handlers, not an error).
const QUEUE_LEN: usize = 4096;

struct Job {
    request: SendRequest,
    answer: oneshot::Sender<Result<Sent, MessagingError>>,
    /// The request's span, so the statements that store it are traced under it.
    span: tracing::Span,
}

/// A handle on the queue; clones share it. The sending threads stop when the last handle
/// is dropped.
#[derive(Clone)]
pub struct SendQueue {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for SendQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendQueue").finish_non_exhaustive()
    }
}

impl SendQueue {
    /// Starts the sending threads: one per core, at most four (each holds one database
    /// connection while it stores a batch; two let one batch's encryption overlap the
    /// other's database round trips). On PostgreSQL, where other nodes may share the
    /// database, each batch is announced to them as from `hub`'s node.
    pub fn start(db: Db, keyring: Arc<Keyring>, hub: &Hub) -> Self {
        let announce_as =
            matches!(db.backend(), conclave_store::Backend::Postgres { .. }).then(|| hub.node_id());
        let (jobs, queue) = mpsc::channel(QUEUE_LEN);
        let queue = Arc::new(Mutex::new(queue));
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        for index in 0..threads {
            let (queue, db, keyring) = (Arc::clone(&queue), db.clone(), Arc::clone(&keyring));
            // Without its sending threads a node could not store a message; failing to
            // start an OS thread at start-up is fatal, like failing to start the server's.
            std::thread::Builder::new()
                .name(format!("conclave-send-{index}"))
                .spawn(move || send_batches(&queue, &db, &keyring, announce_as))
                .expect("could not start a sending thread");
        }
        Self { jobs }
    }

    /// Queues one send and waits for its answer.
    pub async fn send(&self, request: SendRequest) -> Result<Sent, MessagingError> {
        let (answer, answered) = oneshot::channel();
        let stopped =
            || MessagingError::Store(StoreError::Unavailable("the send queue stopped".into()));
        let span = tracing::Span::current();
        self.jobs
            .send(Job {
                request,
                answer,
                span,
            })
            .await
            .map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }
}

/// One sending thread: waits for a request, takes every other one already queued (up to
/// [`MAX_BATCH`]), stores them together and answers each.
fn send_batches(
    queue: &Mutex<mpsc::Receiver<Job>>,
    db: &Db,
    keyring: &Keyring,
    announce_as: Option<uuid::Uuid>,
) {
    loop {
        let jobs = {
            // A thread that panicked while holding the lock left the queue itself intact.
            let mut queue = queue
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let Some(first) = queue.blocking_recv() else {
                return;
            };
            let mut jobs = vec![first];
            while jobs.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            jobs
        };
        let span = batch_span(&jobs);
        let _in_batch = span.enter();
        let (requests, answers): (Vec<SendRequest>, Vec<_>) = jobs
            .into_iter()
            .map(|job| (job.request, job.answer))
            .unzip();
        conclave_metrics::send_batch(requests.len());
        let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            store_batch(db, keyring, &requests, announce_as)
        }))
        .unwrap_or_else(|_| {
            let failed = || {
                Err(MessagingError::Store(StoreError::Unavailable(
                    "sending failed unexpectedly; retry".into(),
                )))
            };
            requests.iter().map(|_| failed()).collect()
        });
        for (answer, result) in answers.into_iter().zip(results) {
            // A requester that went away (its client disconnected) needs no answer. What
            // was stored stays stored: a retry with its key returns it, and members' clients
            // fetch it when the next event shows them the gap, or when they resume.
            let _ = answer.send(result);
        }
    }
}

/// The span a batch's statements are traced under: a lone request's own; for several, a
/// `send batch` span under the first request's, linked to each of the others.
fn batch_span(jobs: &[Job]) -> tracing::Span {
    match jobs {
        [only] => only.span.clone(),
        [first, others @ ..] => {
            let batch = tracing::info_span!(parent: &first.span, "send batch", sends = jobs.len());
            for job in others {
                batch.follows_from(&job.span);
            }
            batch
        }
        [] => tracing::Span::none(),
    }
}

fn store_batch(
    db: &Db,
    keyring: &Keyring,
    requests: &[SendRequest],
    announce_as: Option<uuid::Uuid>,
) -> Vec<Result<Sent, MessagingError>> {
    let mut conn = match db.conn() {
        Ok(conn) => conn,
        Err(err) => {
            return requests
                .iter()
                .map(|_| {
                    Err(MessagingError::Store(StoreError::Unavailable(
                        err.to_string(),
                    )))
                })
                .collect();
        }
    };
    let results = messages::send_many(&mut conn, keyring, requests);
    if let Some(node) = announce_as {
        let published: Vec<_> = results
            .iter()
            .flatten()
            .flat_map(|sent| sent.published.iter().cloned())
            .collect();
        // The messages are committed, so a failure here only costs the other nodes'
        // clients a resume.
        if let Err(err) = fanout::announce(&mut conn, node, &published) {
            tracing::warn!(error = %err, "could not announce messages to other nodes; their clients will resume");
        }
    }
    results
}
