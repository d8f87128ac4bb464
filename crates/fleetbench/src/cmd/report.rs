//! `fleetbench report`: writes a self-contained HTML report (plus Markdown
//! and JSON) of stored runs; the rendering lives in fleetbench-report.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use fleetbench_store::Store;

use crate::context::Context;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
fleetbench report 12                          # one run -> ./fleetbench-report-12/index.html\n  \
fleetbench report 12 13 14 --out cmp          # three concurrencies: one curve, knee marked\n  \
fleetbench report bench-2026-12-01            # a sharded run, by its --run-id\n  \
fleetbench report --group sweep-2026-11-25    # every run of a sweep or demo\n  \
fleetbench report --latest --out /tmp/r       # the newest run\n\n\
The directory gets index.html (open it from disk: no network, no scripts), report.md (tables for a \
blog post) and report.json (every run's vLLM-keyed figures plus the chart data).")]
pub struct ReportArgs {
    /// Runs to put in the report: stored ids (see `fleetbench runs list`) or
    /// `--run-id` keys. Runs at different concurrencies against the same
    /// backend form one curve.
    #[arg(value_name = "RUN_ID")]
    pub run_ids: Vec<String>,
    /// Add every run of this group (a sweep or a demo).
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    /// Add the newest stored run.
    #[arg(long)]
    pub latest: bool,
    /// Directory to write into (created if missing). Default:
    /// ./fleetbench-report-<first id>[-<last id>].
    #[arg(long, short, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub async fn run(args: ReportArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let db = ctx.db.clone();
    let files = tokio::task::spawn_blocking(move || -> anyhow::Result<fleetbench_report::ReportFiles> {
        if !db.exists() {
            bail!("no results database at {db} (run something first, or pass --db)");
        }
        let store = Store::connect(&db)?;
        let mut ids = args.run_ids.iter().map(|r| store.resolve_run(r)).collect::<Result<Vec<i64>, _>>()?;
        if let Some(g) = &args.group {
            let runs = store.runs_in_group(g)?;
            if runs.is_empty() {
                bail!("no runs in group {g:?} (see `fleetbench runs list`)");
            }
            ids.extend(runs.iter().map(|r| r.meta.id));
        }
        if args.latest {
            match store.latest_run_id()? {
                Some(id) => ids.push(id),
                None => bail!("the results database {db} has no runs yet"),
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        ids.retain(|id| seen.insert(*id));
        if ids.is_empty() {
            bail!("name at least one run: `fleetbench report 12`, `--group NAME` or `--latest`");
        }
        let out = args.out.clone().unwrap_or_else(|| default_dir(&ids));
        fleetbench_report::write_report(&store, &ids, &out)
            .with_context(|| format!("writing the report of runs {ids:?}"))
    })
    .await??;
    crate::outln!("report: {}", files.index_html.display());
    if !ctx.quiet {
        crate::outln!("        {}", files.markdown.display());
        crate::outln!("        {}", files.json.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn default_dir(ids: &[i64]) -> PathBuf {
    match (ids.first(), ids.last()) {
        (Some(a), Some(b)) if a != b => PathBuf::from(format!("fleetbench-report-{a}-{b}")),
        (Some(a), _) => PathBuf::from(format!("fleetbench-report-{a}")),
        _ => PathBuf::from("fleetbench-report"),
    }
}
