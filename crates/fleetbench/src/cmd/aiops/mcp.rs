//! `fleetbench aiops mcp`: serve the episodes of a generated directory to
//! any agent as a Model Context Protocol server; each submitted diagnosis
//! is scored and stored as one backend's answer of an arena run. The
//! library does the work (`fleetbench_aiops::mcp`,
//! `fleetbench_aiops::investigate::exam`); this module wires and prints.
//! It prints to standard error only: with `--stdio` standard output is the
//! MCP channel.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use fleetbench_aiops::investigate::exam::{FleetDir, StoredSubmissions};
use fleetbench_aiops::mcp::{check_listen, serve_http, serve_stdio, AnswersFile, McpServer};

use crate::context::Context;

/// How long the server stays up after the last episode's submission, so
/// that its reply reaches the agent.
const GRACE: Duration = Duration::from_millis(500);

#[derive(clap::Args)]
pub(super) struct McpArgs {
    /// The directory `fleetbench aiops generate --mode investigate --out DIR` wrote
    /// (its episodes.jsonl: the episodes served, in order).
    #[arg(long, value_name = "DIR")]
    fleet: PathBuf,
    /// Serve streamable HTTP at http://ADDR:PORT/mcp (loopback unless a token is given).
    /// The server stops once every episode is submitted, or on Ctrl-C.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8765")]
    listen: SocketAddr,
    /// Serve over standard input and output instead of HTTP.
    #[arg(long, conflicts_with = "listen")]
    stdio: bool,
    /// Require `Authorization: Bearer TOKEN` on every HTTP request (needed to listen beyond loopback).
    #[arg(long, env = "FLEETBENCH_MCP_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    token: Option<String>,
    /// The backend name the agent's answers are stored under.
    #[arg(long, default_value = "mcp")]
    name: String,
    /// Also append each submission to this answers file (the format `aiops score --answers` reads).
    #[arg(long, value_name = "PATH")]
    answers_out: Option<PathBuf>,
    /// The PromQL tools' engine: embedded (the default), prometheus (each episode
    /// backfilled into a real Prometheus as it opens) or auto.
    #[arg(long, value_name = "ENGINE", default_value = "embedded")]
    promql: fleetbench_aiops::investigate::PromqlChoice,
}

impl std::fmt::Debug for McpArgs {
    // By hand: the token never shows.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpArgs")
            .field("fleet", &self.fleet)
            .field("listen", &self.listen)
            .field("stdio", &self.stdio)
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("name", &self.name)
            .field("answers_out", &self.answers_out)
            .finish()
    }
}

pub(super) async fn run(a: McpArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let fleet = FleetDir::open(&a.fleet).with_context(|| format!("reading --fleet {}", a.fleet.display()))?;
    let fleet = Arc::new(fleet.with_prometheus(a.promql.resolve().context("--promql")?));
    let token = a.token.filter(|t| !t.trim().is_empty());
    if a.name.trim().is_empty() || a.name.len() > 64 || a.name.contains('/') {
        anyhow::bail!("--name must be 1 to 64 characters without '/'");
    }
    // Bound before anything is stored: a port in use fails the command.
    let listener = match a.stdio {
        true => None,
        false => {
            check_listen(a.listen, token.as_deref())?;
            let l = tokio::net::TcpListener::bind(a.listen).await.with_context(|| format!("binding {}", a.listen))?;
            Some(l)
        }
    };
    let file = match &a.answers_out {
        Some(p) => Some(AnswersFile::append(p).with_context(|| format!("opening {}", p.display()))?),
        None => None,
    };
    let meta = crate::provenance::run_meta("", "", "");
    let sink = Arc::new(StoredSubmissions::start(&ctx.db, fleet.clone(), &a.name, meta, file)?);
    let server = McpServer::new(fleet.clone(), sink.clone())?;
    let (total, run_id) = (fleet.len(), sink.run_id());
    let mut count = sink.submitted_count();
    let all_done = async move {
        let _ = count.wait_for(|n| *n >= total).await;
        tokio::time::sleep(GRACE).await;
    };
    let stored = format!("diagnoses stored as backend '{}' of run {run_id} in {}", a.name, ctx.db);
    let served = match listener {
        None => {
            eprintln!("serving {total} episodes over stdio; {stored}");
            tokio::select! {
                r = serve_stdio(server) => r,
                _ = tokio::signal::ctrl_c() => Ok(()),
            }
        }
        Some(l) => {
            let addr = l.local_addr()?;
            let guard = if token.is_some() { " (a bearer token is required)" } else { "" };
            eprintln!("serving {total} episodes at http://{addr}/mcp{guard}; {stored}");
            let stop = async move {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    () = all_done => {}
                }
            };
            serve_http(server, l, token, stop).await
        }
    };
    let submitted = *sink.submitted_count().borrow();
    let (board, status) = sink.finish().with_context(|| format!("finishing run {run_id} in {}", ctx.db))?;
    eprintln!(
        "{}: mean score {:.1} [{:.1}, {:.1}] over {} episodes ({} submitted); run {run_id} {}",
        board.name,
        board.mean_score,
        board.ci95[0],
        board.ci95[1],
        board.n,
        submitted,
        status.as_str()
    );
    served?;
    Ok(ExitCode::SUCCESS)
}
