//! The progress bars of `aiops run`: one per HTTP backend (hidden with
//! `--quiet`), with its running mean score.

use std::collections::BTreeMap;
use std::sync::Mutex;

use fleetbench_aiops::{ArenaObserver, BackendProgress, Prepared};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// One progress bar per HTTP backend (hidden with --quiet), with its
/// running mean score.
pub(super) struct Bars {
    pub(super) multi: MultiProgress,
    pub(super) quiet: bool,
    pub(super) bars: Mutex<BTreeMap<String, ProgressBar>>,
}

impl ArenaObserver for Bars {
    fn prepared(&self, p: &Prepared) {
        if !self.quiet {
            let (n, gpus, seed, chars) = (p.episodes, p.fleet_gpus, p.seed, p.mean_prompt_chars);
            let tokens = chars / 4.0;
            eprintln!(
                "{n} episodes on a {gpus}-GPU fleet (seed {seed}); prompt mean {chars:.0} chars (~{tokens:.0} tokens)"
            );
        }
    }

    fn progress(&self, backend: &str, p: &BackendProgress) {
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        let bar = bars.entry(backend.to_string()).or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new(p.episodes as u64));
            if let Ok(style) =
                ProgressStyle::with_template("{prefix:>16} [{bar:30}] {pos}/{len} {elapsed_precise} {msg}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(backend.to_string());
            bar
        });
        bar.set_position(p.answered as u64);
        if p.answered == 0 {
            return;
        }
        bar.set_message(format!("mean score {:.1}, unparseable {:.0}%", p.mean_score, 100.0 * p.unparseable_rate));
    }

    fn backend_finished(&self, backend: &str) {
        if let Some(bar) = self.bars.lock().unwrap_or_else(|p| p.into_inner()).get(backend) {
            bar.finish();
        }
    }
}
