//! The run's one monotonic clock: every instant in a run is seconds since
//! its epoch (docs/METRICS.md, "Clock and events").

use std::time::{Duration, Instant};

/// Monotonic clock shared by everything that timestamps one run.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    epoch: Instant,
}

impl RunClock {
    pub fn start() -> RunClock {
        RunClock { epoch: Instant::now() }
    }

    /// Seconds since the epoch.
    pub fn now(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    /// The `Instant` of a run time (for sleeping until a scheduled send).
    pub fn instant_at(&self, t: f64) -> Instant {
        self.epoch + Duration::from_secs_f64(t.max(0.0))
    }

    pub fn epoch(&self) -> Instant {
        self.epoch
    }
}
