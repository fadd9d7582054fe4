//! Reading a job's rooms ahead of its writer. Reading and decrypting cost about seven
//! times what writing does, so an export runs readers on connections of their own, each
//! taking every n-th room, and hands their events to the writer through bounded queues.
//! The writer takes the rooms in the job's order, so the output is byte for byte what
//! one connection reading room after room writes; memory stays bounded by the queues
//! whatever a room's size; and progress is still committed after each written room.

use super::{ArchiveSource, ExportError, JobScope, RoomArchive, RoomSink};
use crate::archive::ArchiveEvent;
use conclave_store::{Backend, DbConnection, StoreError};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// Events per hand-over: fewer, larger hand-overs keep the queues' locking cheap.
const EVENTS_PER_PIECE: usize = 256;
/// Hand-overs a reader may be ahead of the writer by (with the piece size, what bounds
/// the memory the read-ahead holds: a few thousand events per reader).
const PIECES_AHEAD: usize = 8;

/// Where a job reads its rooms: `readers` connections of their own to `backend`,
/// in parallel and ahead of the writer; with none, the job's own connection reads them
/// between writes.
#[derive(Clone, Debug)]
pub struct ReadAhead {
    pub backend: Backend,
    pub readers: usize,
}

impl ReadAhead {
    /// One reader per core, at most four (beyond that the database, not the export, is
    /// the limit).
    pub fn per_core(backend: Backend) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            backend,
            readers: cores.clamp(1, 4),
        }
    }

    fn connect(&self) -> Result<Vec<DbConnection>, ExportError> {
        (0..self.readers)
            .map(|_| {
                self.backend
                    .connect()
                    .map_err(|err| StoreError::Unavailable(err.to_string()).into())
            })
            .collect()
    }
}

/// What a reader hands the writer, in its rooms' order.
enum Piece {
    Events(Arc<RoomArchive>, Vec<ArchiveEvent>),
    /// The room is read: what [`ArchiveSource::room`] returned.
    End(Result<Option<RoomArchive>, ExportError>),
}

/// The rooms' events as the writer takes them, room by room.
pub(super) struct Feed<'a> {
    source: &'a dyn ArchiveSource,
    scope: &'a JobScope,
    files_dir: Option<&'a Path>,
    /// The readers' queues, the i-th room in the `i % len`-th; none: read on the job's
    /// connection.
    queues: Vec<Receiver<Piece>>,
}

impl Feed<'_> {
    /// Feeds the `index`-th of the job's rooms, `room_id`, into `sink`; returns what
    /// [`ArchiveSource::room`] returned for it.
    pub(super) fn room(
        &self,
        conn: &mut DbConnection,
        index: usize,
        room_id: &str,
        sink: &mut dyn RoomSink,
    ) -> Result<Option<RoomArchive>, ExportError> {
        if self.queues.is_empty() {
            return self
                .source
                .room(conn, room_id, self.scope, self.files_dir, sink);
        }
        let queue = &self.queues[index % self.queues.len()];
        loop {
            match queue.recv() {
                Ok(Piece::Events(room, events)) => {
                    for event in events {
                        sink.event(&room, event)?;
                    }
                }
                Ok(Piece::End(read)) => return read,
                // Only a reader that panicked hangs up early; the scope re-raises it.
                Err(_) => return Err(ExportError::Source("an export reader stopped".into())),
            }
        }
    }
}

/// Runs `write` with a feed of `rooms` (the job's remaining rooms, in order): read by
/// `read_ahead`'s readers, or on the writer's connection when there is none.
pub(super) fn with_feed<T>(
    read_ahead: Option<&ReadAhead>,
    source: &dyn ArchiveSource,
    scope: &JobScope,
    files_dir: Option<&Path>,
    rooms: &[String],
    write: impl FnOnce(&Feed) -> Result<T, ExportError>,
) -> Result<T, ExportError> {
    let connections = match read_ahead {
        Some(read_ahead) if read_ahead.readers > 0 && !rooms.is_empty() => read_ahead.connect()?,
        _ => Vec::new(),
    };
    if connections.is_empty() {
        return write(&Feed {
            source,
            scope,
            files_dir,
            queues: Vec::new(),
        });
    }
    let readers = connections.len();
    std::thread::scope(|threads| {
        let mut queues = Vec::with_capacity(readers);
        for (first, mut conn) in connections.into_iter().enumerate() {
            let (queue, from_reader) = sync_channel(PIECES_AHEAD);
            queues.push(from_reader);
            let span = tracing::Span::current();
            std::thread::Builder::new()
                .name(format!("export-reader-{first}"))
                .spawn_scoped(threads, move || {
                    let _in_job = span.enter();
                    let mine = rooms.iter().skip(first).step_by(readers);
                    read_rooms(&mut conn, source, scope, files_dir, mine, &queue);
                })?;
        }
        let feed = Feed {
            source,
            scope,
            files_dir,
            queues,
        };
        // The feed, and with it the queues, goes before the scope waits for the readers:
        // when the writer stops early, a reader's next hand-over fails and it stops too.
        write(&feed)
    })
}

/// One reader: its rooms, in order, each ended by what reading it returned; it stops at
/// the first failure, or when the writer has stopped.
fn read_rooms<'r>(
    conn: &mut DbConnection,
    source: &dyn ArchiveSource,
    scope: &JobScope,
    files_dir: Option<&Path>,
    rooms: impl Iterator<Item = &'r String>,
    queue: &SyncSender<Piece>,
) {
    for room_id in rooms {
        let mut forward = Forward {
            queue,
            room: None,
            events: Vec::new(),
        };
        let read = source
            .room(conn, room_id, scope, files_dir, &mut forward)
            .and_then(|opened| forward.hand_over().map(|()| opened));
        let failed = read.is_err();
        if queue.send(Piece::End(read)).is_err() || failed {
            return;
        }
    }
}

/// A reader's sink: collects a room's events into pieces and hands them over.
struct Forward<'q> {
    queue: &'q SyncSender<Piece>,
    room: Option<Arc<RoomArchive>>,
    events: Vec<ArchiveEvent>,
}

impl Forward<'_> {
    fn hand_over(&mut self) -> Result<(), ExportError> {
        let Some(room) = &self.room else {
            return Ok(());
        };
        if self.events.is_empty() {
            return Ok(());
        }
        let events = std::mem::replace(&mut self.events, Vec::with_capacity(EVENTS_PER_PIECE));
        self.queue
            .send(Piece::Events(room.clone(), events))
            .map_err(|_| ExportError::Source("the export's writer stopped".into()))
    }
}

impl RoomSink for Forward<'_> {
    fn event(&mut self, room: &RoomArchive, event: ArchiveEvent) -> Result<(), ExportError> {
        if self.room.is_none() {
            self.room = Some(Arc::new(room.clone()));
        }
        self.events.push(event);
        if self.events.len() == EVENTS_PER_PIECE {
            self.hand_over()?;
        }
        Ok(())
    }
}
