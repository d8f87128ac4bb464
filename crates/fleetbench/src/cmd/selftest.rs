//! `fleetbench selftest`: measures fleetbench's own client and load engine
//! (`fleetbench_load::selftest`) against a server with exact timing
//! (`fleetbench_sim::fixed`), so you know the tool is never the bottleneck.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use fleetbench_core::parse_duration;
use fleetbench_load::selftest::{drive, paced_stream, report, Placement, SelftestReport, SimPacing};
use fleetbench_sim::fixed::FixedServer;
use fleetbench_sim::server::{start_server, SimServerConfig};
use fleetbench_sim::{Catalog, Deployment, DeploymentSpec};

use crate::context::Context;
use crate::outln;

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  # throughput: 5,000 streams against a zero-delay server
  fleetbench selftest --streams 5000 --tokens 200 --duration 10s
  # added latency: 1,000 streams, server sends a token every 20 ms
  fleetbench selftest --streams 1000 --itl 20ms --duration 10s")]
pub struct SelftestArgs {
    /// Concurrent streams (closed-loop agents).
    #[arg(long, default_value_t = 1000)]
    pub streams: u32,
    /// Tokens per response.
    #[arg(long, default_value_t = 200)]
    pub tokens: u32,
    /// How long to measure.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Gap between tokens on the server: 0 for zero-delay (throughput),
    /// more to measure the latency the client adds to each token.
    #[arg(long, default_value = "0ms", value_parser = parse_duration)]
    pub itl: Duration,
    /// Let the OS place the client and server threads (by default they are
    /// pinned to two different CPUs where two are allowed).
    #[arg(long)]
    pub no_pin: bool,
    /// Run both threads at normal priority (by default they ask for the
    /// lowest real-time priority, SCHED_FIFO 1, which needs root or
    /// CAP_SYS_NICE; without it the selftest says so and goes on). At normal
    /// priority, kernel threads and other processes that take the client's
    /// CPU for milliseconds show in the tail.
    #[arg(long)]
    pub no_realtime: bool,
    /// Start every stream at once (by default paced streams join evenly
    /// over one response's duration, so that requests end and restart
    /// spread out, as independent users' do).
    #[arg(long)]
    pub all_at_once: bool,
    /// Time tokens by when the client read them, not by the kernel's
    /// receive stamps (as `run --read-timestamps`): the added latency then
    /// includes the client's own lag behind its streams, not only the
    /// figures' error.
    #[arg(long)]
    pub read_timestamps: bool,
    /// Also stream 64 tokens from a simulated server (`sim serve`: Llama 3.1
    /// 8B in FP8 on an H100, about 5 ms a decode step) running this many
    /// times faster than the hardware, and report the gaps between its
    /// tokens against the step: whether this machine paces `sim serve`
    /// faithfully at that time scale. 0 skips it.
    #[arg(long, default_value_t = 10.0)]
    pub sim_time_scale: f64,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: SelftestArgs, _ctx: &Context) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.streams > 0 && args.tokens > 0, "--streams and --tokens must be at least 1");
    anyhow::ensure!(
        args.sim_time_scale == 0.0 || (args.sim_time_scale.is_finite() && args.sim_time_scale > 0.0),
        "--sim-time-scale must be a positive number, or 0 to skip the simulated server's stream; got {}",
        args.sim_time_scale
    );
    let placement = Placement { pin: !args.no_pin, realtime: !args.no_realtime };
    let server = FixedServer::new(args.tokens, args.itl);
    let (addr, server_placed) =
        server.start_with(move || placement.apply(true)).context("starting the selftest server")?;
    // One response's duration: paced streams joining over it end and
    // restart spread out in the steady state.
    let join_over = if args.all_at_once { Duration::ZERO } else { args.itl * args.tokens };
    if !args.json {
        eprintln!(
            "selftest: {} streams × {} tokens for {:?} against {addr} (server ITL {:?})",
            args.streams, args.tokens, args.duration, args.itl
        );
    }
    let client =
        drive(format!("http://{addr}/v1"), args.streams, args.duration, join_over, placement, !args.read_timestamps)
            .context("starting the client thread")?;
    let joined = tokio::task::spawn_blocking(move || client.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the client thread panicked"))??;
    let mut r = report(&joined, args.streams, args.tokens, args.itl, (server.max_in_flight(), server_placed), |id| {
        server.token_instants(id)
    });
    if args.sim_time_scale != 0.0 {
        let pacing = sim_pacing(args.sim_time_scale, !args.read_timestamps).await;
        r.sim_pacing = Some(pacing.context("measuring the simulated server's pacing (--sim-time-scale 0 skips it)")?);
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print_report(&r);
    }
    Ok(ExitCode::SUCCESS)
}

/// One stream of 64 tokens from a simulated server `scale` times faster
/// than an H100 serving Llama 3.1 8B in FP8.
async fn sim_pacing(scale: f64, kernel_stamps: bool) -> anyhow::Result<SimPacing> {
    let (prompt, tokens) = (200, 64);
    let spec = DeploymentSpec {
        gpu: "h100".into(),
        model: "llama-3.1-8b".into(),
        quant: "fp8".into(),
        ..DeploymentSpec::default()
    };
    let d = Deployment::resolve(&Catalog::embedded()?, &spec)?;
    let name = format!("{} on {} ({})", d.model.name, d.gpu.name, d.quant.id);
    let step = d.decode_step(1, f64::from(prompt) + f64::from(tokens) / 2.0).time_s;
    let mut cfg = SimServerConfig::new(d);
    cfg.time_scale = scale;
    let server = start_server(cfg, SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let streamed = paced_stream(server.base_url(), prompt, tokens, kernel_stamps).await;
    server.shutdown().await;
    let (scale, gaps) = streamed?;
    Ok(SimPacing::new(name, scale, step, tokens, &gaps))
}

fn print_report(r: &SelftestReport) {
    let place = |cpu: Option<usize>| cpu.map_or_else(|| "not pinned".to_string(), |c| format!("CPU {c}"));
    outln!(
        "threads                client {}, server {}, {}",
        place(r.client_cpu),
        place(r.server_cpu),
        if r.realtime {
            "real-time priority (SCHED_FIFO 1)"
        } else {
            "normal priority (real-time refused or --no-realtime: other tasks' CPU time shows in the tail)"
        }
    );
    if r.streams_joined_over_s > 0.0 {
        outln!("streams joined over    {:.1} s (one response), then closed loop", r.streams_joined_over_s);
    }
    if r.server_itl_ms > 0.0 {
        outln!("streams in flight      {} (server saw {})", r.max_streams_in_flight, r.server_max_in_flight);
    } else {
        outln!("streams in flight      {}", r.max_streams_in_flight);
    }
    outln!("requests               {} completed, {} failed in {:.1} s", r.completed, r.failed, r.wall_s);
    for (kind, n) in &r.errors_by_kind {
        outln!("  failed: {n} x {kind}");
    }
    if let Some(first) = &r.first_error {
        outln!("  first failure: {first}");
    }
    outln!("streamed tokens        {} = {:.0} tokens/s on one client thread", r.streamed_tokens, r.tokens_per_s);
    outln!(
        "client CPU             {:.2} s ({:.0} % of one core), {:.4} s per 1,000 tokens",
        r.client_cpu_s,
        r.client_cpu_utilisation * 100.0,
        r.client_cpu_s_per_1000_tokens
    );
    if let (Some(start), Some(end), Some(peak)) = (r.rss_start_mb, r.rss_end_mb, r.rss_peak_mb) {
        outln!("resident memory        {start:.0} MB at start, {end:.0} MB at the end, {peak:.0} MB at the peak");
    }
    if let (Some(p50), Some(p90), Some(p99), Some(max)) =
        (r.added_latency_p50_ms, r.added_latency_p90_ms, r.added_latency_p99_ms, r.added_latency_max_ms)
    {
        let to = if r.kernel_timestamps { "kernel receive stamp" } else { "client read" };
        outln!(
            "added latency / token  p50 {p50:.3} ms, p90 {p90:.3} ms, p99 {p99:.3} ms, max {max:.1} ms \
             (server hands the token to HTTP -> {to})"
        );
    }
    if let Some(p) = &r.sim_pacing {
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.2} ms"));
        outln!(
            "sim serve pacing       {} at time scale {}: a {:.2} ms step ({:.0} µs on the wall)",
            p.deployment,
            p.time_scale,
            p.model_step_ms,
            p.model_step_ms / p.time_scale * 1000.0
        );
        outln!(
            "                       gaps between its {} tokens, model time: p10 {}, p50 {}, p90 {}, max {}",
            p.tokens,
            ms(p.gap_p10_ms),
            ms(p.gap_p50_ms),
            ms(p.gap_p90_ms),
            ms(p.gap_max_ms)
        );
    }
}
