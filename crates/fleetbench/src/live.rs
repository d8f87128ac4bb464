//! `--dashboard` on the measuring commands (`run`, `sweep`, `aiops run`): the
//! live dashboard of fleetbench-dash, served in this process for as long as
//! the command runs. Producers publish to the returned [`LiveBus`]; nothing
//! is computed for the page unless a browser is connected.

use fleetbench_dash::{DashConfig, DashHandle, LiveBus};

use crate::args::DashboardArgs;
use crate::context::Context;

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
            db: Some(ctx.db.clone()),
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

/// Stops the dashboard when there is one.
pub async fn close(dashboard: Option<Dashboard>) {
    if let Some(d) = dashboard {
        d.close().await;
    }
}
