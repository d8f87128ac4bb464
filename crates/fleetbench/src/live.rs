//! `--dashboard` on the measuring commands (`run`, `sweep`, `aiops run`): the
//! live dashboard of fleetbench-dash, served in this process for as long as
//! the command runs. Producers publish to the returned [`LiveBus`]; nothing
//! is computed for the page unless a browser is connected.

use std::net::SocketAddr;

use fleetbench_dash::{DashConfig, DashHandle, LiveBus};

use crate::context::Context;

/// The dashboard options every measuring command shares.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct DashboardArgs {
    /// Serve the live dashboard while this command runs: progress, rolling
    /// tok/s and latency, errors (and the arena leaderboard). Without a value
    /// it listens on 127.0.0.1:8686; it closes when the command ends.
    #[arg(
        long,
        value_name = "ADDR:PORT",
        num_args = 0..=1,
        default_missing_value = fleetbench_dash::DEFAULT_LISTEN,
        help_heading = "Dashboard"
    )]
    pub dashboard: Option<SocketAddr>,
    /// Token the dashboard requires (needed to listen beyond loopback).
    #[arg(
        long,
        env = "FLEETBENCH_DASH_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        help_heading = "Dashboard"
    )]
    pub dashboard_token: Option<String>,
}

/// A dashboard serving one command's live runs.
pub struct Dashboard {
    handle: DashHandle,
    bus: LiveBus,
}

impl DashboardArgs {
    /// Starts the dashboard when `--dashboard` was given and prints where.
    pub async fn start(&self, ctx: &Context) -> anyhow::Result<Option<Dashboard>> {
        let Some(listen) = self.dashboard else { return Ok(None) };
        let cfg = DashConfig {
            listen,
            token: self.dashboard_token.clone(),
            db_path: Some(ctx.db_path.clone()),
            ..DashConfig::default()
        };
        let protected = cfg.token.is_some();
        let bus = LiveBus::new();
        let handle = fleetbench_dash::serve(cfg, bus.clone()).await?;
        eprintln!(
            "live dashboard: {}{}",
            handle.url(),
            if protected { " (open it once with ?token=<your token>)" } else { "" }
        );
        Ok(Some(Dashboard { handle, bus }))
    }
}

impl Dashboard {
    pub fn bus(&self) -> &LiveBus {
        &self.bus
    }

    /// Stops serving. Errors only concern the dashboard, never the results.
    pub async fn close(self) {
        if let Err(e) = self.handle.shutdown().await {
            eprintln!("warning: the dashboard did not stop cleanly: {e}");
        }
    }
}
