//! Waiting on a condition instead of sleeping a fixed time: poll it with a
//! short interval until it holds, and give up with an error at a deadline.

use std::fmt;
use std::time::Duration;

/// The condition still did not hold when the deadline passed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TimedOut {
    /// The deadline that passed.
    pub after: Duration,
    /// How many times the condition was checked.
    pub polls: u32,
}

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the condition did not hold within {:?} ({} checks)", self.after, self.polls)
    }
}

impl fmt::Debug for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for TimedOut {}

/// Checks `condition` at once, then every `poll`, until it returns true;
/// `Err` once `deadline` (counted from the call) has passed without it.
///
/// ```text
/// wait_until(Duration::from_secs(10), Duration::from_millis(20), async || done() >= 30)
///     .await
///     .expect("30 requests completed");
/// ```
pub async fn wait_until(
    deadline: Duration,
    poll: Duration,
    mut condition: impl AsyncFnMut() -> bool,
) -> Result<(), TimedOut> {
    wait_for(deadline, poll, async || condition().await.then_some(())).await
}

/// Like [`wait_until`], for a condition that yields a value once it holds
/// (`Some`); returns that value.
pub async fn wait_for<T>(
    deadline: Duration,
    poll: Duration,
    mut condition: impl AsyncFnMut() -> Option<T>,
) -> Result<T, TimedOut> {
    let end = tokio::time::Instant::now() + deadline;
    let mut polls = 0u32;
    loop {
        polls += 1;
        if let Some(v) = condition().await {
            return Ok(v);
        }
        let now = tokio::time::Instant::now();
        if now >= end {
            return Err(TimedOut { after: deadline, polls });
        }
        tokio::time::sleep(poll.min(end - now)).await;
    }
}

/// Whether a server listens on loopback port `port`: a connection is made
/// and is not the socket talking to itself. While nothing listens on a port
/// in the ephemeral range, a loop of connects to it eventually gets that very
/// port as its own source and TCP's simultaneous open connects the socket to
/// itself: "connected" then says nothing about the server.
pub fn listening_on_loopback(port: u16) -> bool {
    match std::net::TcpStream::connect(("127.0.0.1", port)) {
        Ok(s) => match (s.local_addr(), s.peer_addr()) {
            (Ok(local), Ok(peer)) => local != peer,
            _ => false,
        },
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn returns_once_the_condition_holds() {
        let n = AtomicU32::new(0);
        let r = wait_until(Duration::from_secs(60), Duration::from_millis(1), async || {
            n.fetch_add(1, Ordering::SeqCst) + 1 >= 3
        })
        .await;
        assert_eq!(r, Ok(()));
        assert_eq!(n.load(Ordering::SeqCst), 3);
        let v = wait_for(Duration::from_secs(60), Duration::from_millis(1), async || Some(7)).await;
        assert_eq!(v, Ok(7));
    }

    #[tokio::test]
    async fn fails_at_the_deadline_saying_so() {
        let e = wait_until(Duration::from_millis(50), Duration::from_millis(20), async || false).await.unwrap_err();
        assert_eq!(e.after, Duration::from_millis(50));
        // Checked at once and again at (or after) the deadline at least.
        assert!(e.polls >= 2, "{e}");
        assert!(e.to_string().contains("did not hold within 50ms"), "{e}");
    }

    #[test]
    fn a_listener_is_seen_and_a_closed_port_is_not() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        assert!(listening_on_loopback(port));
        drop(l);
        assert!(!listening_on_loopback(port));
    }
}
