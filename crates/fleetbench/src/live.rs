//! `--dashboard` on the measuring commands (`run`, `sweep`, `aiops run`): the
//! live dashboard of fleetbench-dash, served in this process for as long as
//! the command runs. Producers publish to the returned [`LiveBus`]; nothing
//! is computed for the page unless a browser is connected.

use std::sync::Arc;

use fleetbench_dash::{DashConfig, DashHandle, LiveBus};
use fleetbench_econ::instruments::Instruments;
use fleetbench_load::exposition::{LiveMetrics, MetricsServer};
use fleetbench_load::interrupt::Interrupt;
use fleetbench_load::measure::Observers;

use crate::args::{DashboardArgs, InstrumentArgs, MetricsArgs};
use crate::context::Context;
use crate::output::{notes, Bar};

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

/// What watches the runs of `run` and `sweep` besides the store: the price
/// entry and energy meter, the dashboard, `--metrics-listen`, and Ctrl-C
/// (requests that finished are kept). Started before the first run, closed
/// after the last.
pub struct Watch {
    instruments: Arc<Instruments>,
    dashboard: Option<Dashboard>,
    exporter: Option<(Arc<LiveMetrics>, MetricsServer)>,
    interrupt: Interrupt,
}

impl Watch {
    pub async fn start(
        instruments: &InstrumentArgs,
        dashboard: &DashboardArgs,
        metrics: &MetricsArgs,
        ctx: &Context,
    ) -> anyhow::Result<Watch> {
        let (instruments, prepared) = Instruments::prepare(&instruments.spec()).await?;
        notes("energy", &prepared);
        Ok(Watch {
            instruments: Arc::new(instruments),
            dashboard: dashboard.start(ctx).await?,
            exporter: metrics.start().await?,
            interrupt: Interrupt::watch(|| eprintln!("\ninterrupted: stopping; requests finished so far are kept")),
        })
    }

    /// The drivers' observers, with a progress bar (unless `quiet`) and
    /// `on_measured` told of each measured run.
    pub fn observers<'a, T>(&'a self, quiet: bool, on_measured: &'a mut dyn FnMut(&T)) -> Observers<'a, T> {
        Observers {
            instruments: Some(self.instruments.clone()),
            bus: self.dashboard.as_ref().map(Dashboard::bus),
            progress: Some(Bar::new(quiet)),
            stop: Some(self.interrupt.receiver()),
            on_measured: Some(on_measured),
            metrics: self.exporter.as_ref().map(|(m, _)| m.clone()),
        }
    }

    /// Stops the dashboard once the runs are measured; the metrics endpoint
    /// and the Ctrl-C watch last until the watch is dropped.
    pub async fn close_dashboard(&mut self) {
        close(self.dashboard.take()).await;
    }
}
