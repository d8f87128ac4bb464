//! The live web dashboard: an axum app that lists stored runs, serves their
//! HTML reports, and streams runs in progress from a [`LiveBus`] to browsers
//! by server-sent events, at most four times a second per client, with
//! charts the page draws itself (inline SVG) from each run's bounded series.
//!
//! A producer (`fleetbench run`, `sweep`, `aiops run`) starts a [`LiveRun`]
//! on a bus and publishes snapshots; publishing is a `watch` store, so it
//! costs next to nothing when no browser is connected. [`serve`] starts the
//! app in-process on the caller's runtime and returns a [`DashHandle`].
//!
//! ```no_run
//! # async fn demo(record: fleetbench_core::RequestRecord) -> Result<(), fleetbench_dash::DashError> {
//! use fleetbench_dash::{serve, DashConfig, LiveBus, LiveRunInfo, LiveState};
//! let bus = LiveBus::new();
//! let dash = serve(DashConfig::default(), bus.clone()).await?;
//! let url = dash.url(); // the binary prints this
//! let live = bus.start(LiveRunInfo {
//!     kind: "run".into(),
//!     title: "run 12: closed loop, concurrency 8".into(),
//!     run_id: Some(12),
//!     total: Some(200),
//!     ..Default::default()
//! });
//! live.observe(&record, 3.5); // for each finished request, at the run clock's now
//! live.update(|s| s.in_flight = 8); // anything else, any time
//! live.finish(LiveState::Finished);
//! dash.shutdown().await?;
//! # let _ = url; Ok(()) }
//! ```

mod server;

use std::net::SocketAddr;
use std::time::Duration;

pub use fleetbench_load::live::{
    CurvePoint, InvestigateFigures, LeaderboardRow, LiveBus, LivePoint, LiveRun, LiveRunInfo, LiveSnapshot, LiveState,
    ScenarioRow, ServerPoint, SweepCurve, ROLLING_WINDOW_S, SERIES_POINTS,
};
pub use server::DashHandle;

/// Where the dashboard listens by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8686";
/// The environment variable `fleetbench dash` reads a token from.
pub const TOKEN_ENV: &str = "FLEETBENCH_DASH_TOKEN";

/// How to run the dashboard.
#[derive(Debug, Clone)]
pub struct DashConfig {
    /// Address to bind. Anything but a loopback address needs `token`.
    pub listen: SocketAddr,
    /// When set, every request must carry it (`Authorization: Bearer`, the
    /// `fleetbench_dash_token` cookie, or `?token=` once, which sets the
    /// cookie). Loopback binds without a token answer everyone on the host.
    pub token: Option<String>,
    /// The results database whose runs are listed; `None` lists none.
    pub db: Option<fleetbench_store::Db>,
    /// Most browsers streaming live updates at once; more get 503.
    pub max_clients: usize,
    /// Least time between two updates sent to one client.
    pub update_interval: Duration,
}

impl Default for DashConfig {
    fn default() -> Self {
        DashConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8686)),
            token: None,
            db: None,
            max_clients: 32,
            update_interval: Duration::from_millis(250),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DashError {
    #[error("the dashboard would listen on {0}, which is not a loopback address: give --token (or set FLEETBENCH_DASH_TOKEN) so that only people with the token can see it, or listen on 127.0.0.1")]
    TokenRequired(SocketAddr),
    #[error("the dashboard token is too short ({0} characters): use at least 16 random characters")]
    TokenTooShort(usize),
    #[error("cannot listen on {addr}: {source} (is another dashboard running there? try --listen 127.0.0.1:0 for a free port)")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the dashboard server stopped: {0}")]
    Serve(#[source] std::io::Error),
}

/// Shortest token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// Starts the dashboard on the current tokio runtime and returns once it is
/// listening. Checks the bind/token rules before binding anything.
pub async fn serve(cfg: DashConfig, bus: LiveBus) -> Result<DashHandle, DashError> {
    let token = cfg.token.clone().filter(|t| !t.is_empty());
    if let Some(t) = &token {
        if t.chars().count() < MIN_TOKEN_LEN {
            return Err(DashError::TokenTooShort(t.chars().count()));
        }
    }
    if token.is_none() && !cfg.listen.ip().is_loopback() {
        return Err(DashError::TokenRequired(cfg.listen));
    }
    server::start(DashConfig { token, ..cfg }, bus).await
}
