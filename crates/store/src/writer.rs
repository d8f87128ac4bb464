//! The background writers: items arrive on a channel and are committed in
//! batches on a thread of their own, so the load engine (or the arena)
//! never waits on the disk. [`RecordWriter`] commits request records at
//! most [`FLUSH_EVERY`] after the first of a batch arrived; the answer
//! writer ([`crate::AnswerWriter`]) shares the same thread and batching.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fleetbench_core::RequestRecord;

use crate::heartbeat::{Beat, HEARTBEAT_EVERY};
use crate::{Db, Store, StoreError};

/// Longest a completed record waits before it is committed.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Largest batch per transaction.
const MAX_BATCH: usize = 1024;

/// A writer thread with its own connection: what is sent is committed by
/// `commit` in batches, a batch at most `flush_every` after its first item
/// arrived (zero: as soon as the queue is drained).
pub(crate) struct BatchWriter<T> {
    tx: Option<mpsc::Sender<T>>,
    handle: Option<JoinHandle<Result<u64, StoreError>>>,
}

impl<T: Send + 'static> BatchWriter<T> {
    pub(crate) fn start(
        db: &Db,
        thread_name: &str,
        flush_every: Duration,
        beat: Beat,
        mut commit: impl FnMut(&mut Store, &[T]) -> Result<(), StoreError> + Send + 'static,
    ) -> Result<BatchWriter<T>, StoreError> {
        let mut store = Store::connect(db)?;
        let (tx, rx) = mpsc::channel::<T>();
        let handle = std::thread::Builder::new()
            .name(thread_name.into())
            .spawn(move || {
                let mut written = 0u64;
                let mut batch: Vec<T> = Vec::new();
                let mut beaten = Instant::now();
                loop {
                    if beaten.elapsed() >= HEARTBEAT_EVERY {
                        // A failed stamp is not the run's failure: a store
                        // that cannot be written fails the next commit, which
                        // ends the writer with its error.
                        let _ = store.beat(beat);
                        beaten = Instant::now();
                    }
                    // Wait for the first item of a batch...
                    match rx.recv_timeout(HEARTBEAT_EVERY.saturating_sub(beaten.elapsed())) {
                        Ok(r) => batch.push(r),
                        Err(mpsc::RecvTimeoutError::Timeout) => continue,
                        Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(written),
                    }
                    // ...then take what arrives until it is due, without
                    // being woken by each item (a parked receiver costs
                    // every send a wake-up; `finish` unparks this thread).
                    let due = Instant::now() + flush_every;
                    let closed = loop {
                        match drain(&rx, &mut batch) {
                            Some(closed) => break closed,
                            None if Instant::now() >= due => break false,
                            None => std::thread::park_timeout(due.saturating_duration_since(Instant::now())),
                        }
                    };
                    // `drain` stops at MAX_BATCH: one transaction.
                    commit(&mut store, &batch)?;
                    written += batch.len() as u64;
                    batch.clear();
                    if closed {
                        return Ok(written);
                    }
                }
            })
            .map_err(|e| StoreError::Thread(e.to_string()))?;
        Ok(BatchWriter { tx: Some(tx), handle: Some(handle) })
    }

    /// Queues an item; false if the writer has stopped (its error comes
    /// from [`finish`](BatchWriter::finish)).
    pub(crate) fn write(&self, item: T) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.send(item).is_ok())
    }

    /// Commits everything queued and stops; returns how many were written.
    pub(crate) fn finish(mut self) -> Result<u64, StoreError> {
        self.stop()
    }
}

impl<T> BatchWriter<T> {
    /// Closes the queue, wakes the thread if it is parked on a batch, and
    /// waits for it to commit what is queued (once; later calls return 0).
    fn stop(&mut self) -> Result<u64, StoreError> {
        self.tx.take();
        let Some(h) = self.handle.take() else { return Ok(0) };
        h.thread().unpark();
        h.join().unwrap_or(Ok(0))
    }
}

/// Moves what is queued into `batch`: `Some(true)` once the senders are
/// gone, `Some(false)` when the batch is full, `None` when the queue is
/// empty.
fn drain<T>(rx: &mpsc::Receiver<T>, batch: &mut Vec<T>) -> Option<bool> {
    loop {
        match rx.try_recv() {
            Ok(r) => {
                batch.push(r);
                if batch.len() >= MAX_BATCH {
                    return Some(false);
                }
            }
            Err(mpsc::TryRecvError::Empty) => return None,
            Err(mpsc::TryRecvError::Disconnected) => return Some(true),
        }
    }
}

impl<T> Drop for BatchWriter<T> {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Handle to the writer thread of one run's request records.
pub struct RecordWriter {
    inner: BatchWriter<RequestRecord>,
}

impl RecordWriter {
    /// Opens its own connection to the database `db` and starts the
    /// writer thread for `run_id`, which also stamps the run's heartbeat.
    pub fn start(db: &Db, run_id: i64) -> Result<RecordWriter, StoreError> {
        Self::beating(db, Beat { run_id, shard: None })
    }

    /// The writer of one shard of `run_id`: the records go to the run, the
    /// heartbeat to the shard's row.
    pub fn for_shard(db: &Db, run_id: i64, shard: u32) -> Result<RecordWriter, StoreError> {
        Self::beating(db, Beat { run_id, shard: Some(shard) })
    }

    fn beating(db: &Db, beat: Beat) -> Result<RecordWriter, StoreError> {
        let run_id = beat.run_id;
        let inner = BatchWriter::start(db, "fleetbench-store", FLUSH_EVERY, beat, move |store, batch| {
            store.insert_records(run_id, batch)
        })?;
        Ok(RecordWriter { inner })
    }

    /// Queues a record; returns false if the writer has stopped (its error
    /// comes from [`finish`](RecordWriter::finish)).
    pub fn write(&self, record: RequestRecord) -> bool {
        self.inner.write(record)
    }

    /// Flushes everything queued and stops; returns how many were written.
    pub fn finish(self) -> Result<u64, StoreError> {
        self.inner.finish()
    }
}
