//! The background writer: records arrive on a channel and are committed in
//! batches at most [`FLUSH_EVERY`] after the first of a batch arrived, on a
//! thread of their own so the load engine never waits on the disk.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fleetbench_core::RequestRecord;

use crate::{Store, StoreError};

/// Longest a completed record waits before it is committed.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Largest batch per transaction.
const MAX_BATCH: usize = 1024;

/// Handle to the writer thread of one run.
pub struct RecordWriter {
    tx: Option<mpsc::Sender<RequestRecord>>,
    handle: Option<JoinHandle<Result<u64, StoreError>>>,
}

impl RecordWriter {
    /// Opens its own connection to the database at `path` and starts the
    /// writer thread for `run_id`.
    pub fn start(path: &Path, run_id: i64) -> Result<RecordWriter, StoreError> {
        let mut store = Store::open(path)?;
        let (tx, rx) = mpsc::channel::<RequestRecord>();
        let handle = std::thread::Builder::new()
            .name("fleetbench-store".into())
            .spawn(move || {
                let mut written = 0u64;
                let mut batch: Vec<RequestRecord> = Vec::new();
                let mut first_at: Option<Instant> = None;
                loop {
                    let wait = match first_at {
                        Some(t) => FLUSH_EVERY.saturating_sub(t.elapsed()),
                        None => Duration::from_secs(3600),
                    };
                    let closed = match rx.recv_timeout(wait) {
                        Ok(r) => {
                            first_at.get_or_insert_with(Instant::now);
                            batch.push(r);
                            while batch.len() < MAX_BATCH {
                                match rx.try_recv() {
                                    Ok(r) => batch.push(r),
                                    Err(_) => break,
                                }
                            }
                            false
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => false,
                        Err(mpsc::RecvTimeoutError::Disconnected) => true,
                    };
                    let due = first_at.is_some_and(|t| t.elapsed() >= FLUSH_EVERY) || batch.len() >= MAX_BATCH;
                    if !batch.is_empty() && (due || closed) {
                        store.insert_records(run_id, &batch)?;
                        written += batch.len() as u64;
                        batch.clear();
                        first_at = None;
                    }
                    if closed {
                        return Ok(written);
                    }
                }
            })
            .map_err(|e| StoreError::CreateDir { path: path.to_path_buf(), source: e })?;
        Ok(RecordWriter { tx: Some(tx), handle: Some(handle) })
    }

    /// Queues a record; returns false if the writer has stopped (its error
    /// comes from [`finish`](RecordWriter::finish)).
    pub fn write(&self, record: RequestRecord) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.send(record).is_ok())
    }

    /// Flushes everything queued and stops; returns how many were written.
    pub fn finish(mut self) -> Result<u64, StoreError> {
        self.tx.take();
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Ok(0),
            None => Ok(0),
        }
    }
}

impl Drop for RecordWriter {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
