//! Everything the binary writes: standard output that ends quietly on a
//! closed pipe (`fleetbench runs list | head -1` exits 0), the output files
//! of `--json-out`/`--csv-out`/`--md-out` written through the report
//! crate's one exporter, and the progress bar measuring commands draw.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use fleetbench_load::measure::Progress;
use fleetbench_report::{render, Export, Format};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::args::OutputArgs;

/// Exit status when the error rate passed `--max-error-rate`.
pub const EXIT_ERROR_RATE: u8 = 3;
/// Exit status when the user interrupted a measuring command (what finished
/// is kept).
pub const EXIT_INTERRUPTED: u8 = 130;

/// Prints a line to standard output (`println!` that survives `| head`).
#[macro_export]
macro_rules! outln {
    () => { $crate::output::emit("\n") };
    ($($arg:tt)*) => { $crate::output::emit(&format!("{}\n", format_args!($($arg)*))) };
}

/// Writes `text` to standard output. A reader that went away (a closed
/// pipe) ends the process with status 0: everything measured is already
/// stored, and the rest of the output has no one to read it.
pub fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to standard output: {e}");
        std::process::exit(2);
    }
}

/// Writes `doc` to standard output in `format`.
pub fn emit_doc(doc: &dyn Export, format: Format) -> anyhow::Result<()> {
    let bytes = render(doc, format)?;
    emit(&String::from_utf8_lossy(&bytes));
    Ok(())
}

/// Writes a file, creating its directory.
pub fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

impl OutputArgs {
    /// Writes every file asked for.
    pub fn write(&self, doc: &dyn Export) -> anyhow::Result<()> {
        for (path, format) in
            [(&self.json_out, Format::Json), (&self.csv_out, Format::Csv), (&self.md_out, Format::Markdown)]
        {
            if let Some(p) = path {
                write_file(p, &render(doc, format)?)?;
            }
        }
        Ok(())
    }
}

/// The terminal's progress bar for measured runs (hidden with `--quiet`).
pub struct Bar {
    bar: ProgressBar,
    quiet: bool,
}

impl Bar {
    pub fn new(quiet: bool) -> Arc<Bar> {
        Arc::new(Bar { bar: ProgressBar::hidden(), quiet })
    }
}

impl Progress for Bar {
    fn start(&self, total: Option<u64>) {
        if self.quiet {
            return;
        }
        self.bar.reset();
        self.bar.set_position(0);
        match total {
            Some(n) => self.bar.set_length(n),
            None => self.bar.unset_length(),
        }
        let template = if total.is_some() {
            "{elapsed_precise} [{bar:30}] {pos}/{len} {msg}"
        } else {
            "{elapsed_precise} {spinner} {pos} requests {msg}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            self.bar.set_style(style.progress_chars("=> "));
        }
        self.bar.set_draw_target(ProgressDrawTarget::stderr());
        self.bar.enable_steady_tick(std::time::Duration::from_millis(250));
    }

    fn record(&self, ok: u64, failed: u64, output_tok_s: f64) {
        self.bar.set_message(format!("ok {ok} · failed {failed} · {output_tok_s:.0} tok/s"));
        self.bar.inc(1);
    }

    fn finish(&self) {
        self.bar.disable_steady_tick();
        self.bar.finish_and_clear();
        self.bar.set_draw_target(ProgressDrawTarget::hidden());
    }
}

/// Notes and warnings a library handed back, on standard error.
pub fn notes(prefix: &str, lines: &[String]) {
    for l in lines {
        eprintln!("{prefix}: {l}");
    }
}
