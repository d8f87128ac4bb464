//! `fleetbench dash`: serves the live web dashboard until Ctrl-C; the app
//! lives in fleetbench-dash.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use fleetbench_dash::{DashConfig, LiveBus};

use crate::context::Context;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
fleetbench dash                                   # http://127.0.0.1:8686/ for this machine only\n  \
fleetbench dash --listen 127.0.0.1:0              # any free port (printed)\n  \
FLEETBENCH_DASH_TOKEN=$(openssl rand -hex 16) fleetbench dash --listen 0.0.0.0:8686\n                                                    # reachable from the network, token required\n\n\
With a token, open http://HOST:PORT/?token=TOKEN once (a cookie keeps it) or send \
`Authorization: Bearer TOKEN`. Requests without it get 401. Runs started elsewhere with \
--dashboard serve their own live view; this command lists stored runs and opens their reports.")]
pub struct DashArgs {
    /// Address and port to listen on. Anything but loopback requires a token.
    #[arg(long, value_name = "ADDR:PORT", default_value = fleetbench_dash::DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Token every request must present (at least 16 characters).
    #[arg(long, env = "FLEETBENCH_DASH_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Most browsers streaming live updates at once.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub max_clients: usize,
}

pub async fn run(args: DashArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let cfg = DashConfig {
        listen: args.listen,
        token: args.token,
        db: Some(ctx.db.clone()),
        max_clients: args.max_clients,
        ..DashConfig::default()
    };
    let protected = cfg.token.is_some();
    let handle = fleetbench_dash::serve(cfg, LiveBus::new()).await?;
    crate::outln!("dashboard: {}", handle.url());
    if protected {
        crate::outln!("           token required: open {}?token=<your token> once", handle.url());
    }
    if !ctx.quiet {
        crate::outln!("           results database {}; Ctrl-C stops", ctx.db);
    }
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    handle.shutdown().await?;
    Ok(ExitCode::SUCCESS)
}
