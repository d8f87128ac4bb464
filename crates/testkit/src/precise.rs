//! Deadlines kept to tens of microseconds. tokio's timer wheel has a
//! millisecond grid and its driver sleeps in whole milliseconds, so a
//! token due at 50.0 ms leaves at 50.0 to about 51.3 ms: that lateness
//! would count as latency added by the client under test. The scripted
//! server waits on this for the deadlines that decide its figures: one
//! timer thread keeps every pending deadline in a heap, sleeps to the
//! earliest with the kernel's timer slack at one microsecond, and wakes
//! each waiting task when its deadline has come. Each wake-up crosses
//! threads (about 2 µs of the server's CPU), which is why the scripted
//! server does not wait on it for every token.
//!
//! A woken task still waits its turn on its runtime: behind a few hundred
//! other ready tasks, at 1,000 streams, milliseconds. [`send_at`] has the
//! timer thread write the bytes itself at the deadline, so that the writes
//! that decide a figure (the lean server's first and last tokens) leave on
//! time however long the runtime's queue is.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Instant;

use tokio::sync::oneshot;

/// A deadline waiting in the heap; ordered by instant, then by arrival.
struct Pending {
    at: Instant,
    seq: u64,
    due: Due,
}

/// What to do at the deadline.
enum Due {
    /// Wake the waiting task.
    Wake(oneshot::Sender<()>),
    /// Write the bytes to the socket (a duplicate of the task's descriptor,
    /// so that it stays open however the task ends), then tell the task
    /// how many were written.
    Send { socket: OwnedFd, bytes: Vec<u8>, sent: oneshot::Sender<(usize, Instant)> },
}

impl Due {
    fn fire(self) {
        match self {
            Due::Wake(wake) => {
                let _ = wake.send(());
            }
            Due::Send { socket, bytes, sent } => {
                // Non-blocking (the descriptor shares the task's socket's
                // flags): what does not fit now is left to the task.
                let mut tcp = std::net::TcpStream::from(socket);
                let n = tcp.write(&bytes).unwrap_or(0);
                let _ = sent.send((n, Instant::now()));
            }
        }
    }
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Default)]
struct Heap {
    pending: BinaryHeap<Reverse<Pending>>,
    seq: u64,
}

struct Timers {
    heap: Mutex<Heap>,
    changed: Condvar,
}

/// The timer thread's shared state, started on first use; `None` where the
/// thread could not be started (then tokio's timer is used).
fn timers() -> Option<&'static Timers> {
    static TIMERS: OnceLock<Option<&'static Timers>> = OnceLock::new();
    *TIMERS.get_or_init(|| {
        let timers: &'static Timers =
            Box::leak(Box::new(Timers { heap: Mutex::new(Heap::default()), changed: Condvar::new() }));
        std::thread::Builder::new().name("precise-timers".into()).spawn(move || run(timers)).ok().map(|_| timers)
    })
}

fn run(timers: &'static Timers) {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer (nanoseconds) and
    // changes only this thread's timer slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1_000 as libc::c_ulong);
    }
    let Ok(mut heap) = timers.heap.lock() else { return };
    let mut due = Vec::new();
    loop {
        let now = Instant::now();
        while heap.pending.peek().is_some_and(|Reverse(p)| p.at <= now) {
            if let Some(Reverse(p)) = heap.pending.pop() {
                due.push(p.due);
            }
        }
        if !due.is_empty() {
            // Writes take microseconds each: not with the heap locked.
            drop(heap);
            due.drain(..).for_each(Due::fire);
            heap = match timers.heap.lock() {
                Ok(h) => h,
                Err(_) => return,
            };
            continue;
        }
        let wait = heap.pending.peek().map(|Reverse(p)| p.at.saturating_duration_since(now));
        heap = match wait {
            Some(d) => match timers.changed.wait_timeout(heap, d) {
                Ok((h, _)) => h,
                Err(_) => return,
            },
            None => match timers.changed.wait(heap) {
                Ok(h) => h,
                Err(_) => return,
            },
        };
    }
}

/// Puts `due` in the timer thread's heap for `at`; false where there is
/// no timer thread (or its lock was poisoned), and nothing was scheduled.
fn schedule(at: Instant, due: Due) -> bool {
    let Some(timers) = timers() else { return false };
    let Ok(mut heap) = timers.heap.lock() else { return false };
    heap.seq += 1;
    let seq = heap.seq;
    let earliest = heap.pending.peek().is_none_or(|Reverse(p)| at < p.at);
    heap.pending.push(Reverse(Pending { at, seq, due }));
    if earliest {
        timers.changed.notify_one();
    }
    true
}

/// Waits until `deadline`, waking within tens of microseconds of it.
pub async fn sleep_until(deadline: tokio::time::Instant) {
    let at = deadline.into_std();
    if at <= Instant::now() {
        return;
    }
    let (wake, woken) = oneshot::channel();
    if !schedule(at, Due::Wake(wake)) || woken.await.is_err() {
        tokio::time::sleep_until(deadline).await;
    }
}

/// Writes `bytes` to `socket` at `deadline`, from the timer thread, within
/// tens of microseconds of it; returns how many bytes it wrote and when the
/// write returned (the caller writes the rest, if any: a full send buffer,
/// or no timer thread: then nothing was written, and no instant).
pub async fn send_at(
    deadline: tokio::time::Instant,
    socket: &tokio::net::TcpStream,
    bytes: Vec<u8>,
) -> (usize, Option<Instant>) {
    use std::os::fd::AsFd;
    let Ok(socket) = socket.as_fd().try_clone_to_owned() else { return (0, None) };
    let (sent, written) = oneshot::channel();
    if !schedule(deadline.into_std(), Due::Send { socket, bytes, sent }) {
        return (0, None);
    }
    written.await.map_or((0, None), |(n, when)| (n, Some(when)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::sleep_until;

    /// Many sleepers at once, with deadlines out of order: none wakes
    /// before its deadline, and they wake in the order of their deadlines.
    #[tokio::test(flavor = "current_thread")]
    async fn sleepers_wake_at_or_after_their_deadlines_in_order() {
        let start = tokio::time::Instant::now() + Duration::from_millis(5);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for k in 0..200u32 {
            // 0, 7, 14, ... modulo 200: every slot once, pushed out of order.
            let slot = (k * 7) % 200;
            let at = start + Duration::from_micros(u64::from(slot) * 100);
            let tx = tx.clone();
            tokio::spawn(async move {
                sleep_until(at).await;
                let _ = tx.send((slot, tokio::time::Instant::now() >= at));
            });
        }
        drop(tx);
        let mut woke = Vec::new();
        while let Some(w) = rx.recv().await {
            woke.push(w);
        }
        assert_eq!(woke.len(), 200);
        assert!(woke.iter().all(|(_, on_time)| *on_time), "a sleeper woke before its deadline");
        let slots: Vec<u32> = woke.iter().map(|(s, _)| *s).collect();
        assert!(slots.windows(2).all(|w| w[0] < w[1]), "woken out of deadline order: {slots:?}");
    }

    /// A deadline already past returns at once.
    #[tokio::test(flavor = "current_thread")]
    async fn a_past_deadline_does_not_wait() {
        let past = tokio::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(2)).await;
        sleep_until(past).await;
    }
}
