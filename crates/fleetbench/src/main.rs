//! The `fleetbench` binary: parses arguments, builds the one tokio runtime,
//! and hands each subcommand to its module under `cmd/`. Each command parses
//! its arguments (shared groups in `args.rs`), calls one library entry point
//! and prints (`output.rs`); `provenance.rs` fills a new run's row.
//! Libraries do the work; this crate only wires them and prints.

mod args;
mod cmd;
mod context;
mod live;
mod output;
mod provenance;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cmd::Cli::parse();
    raise_open_file_limit();
    let one_cpu = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let mut builder = if one_cpu {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(cmd::dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", chain_text(&e));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes, joined by ": ", leaving out a cause whose text
/// an earlier message already quotes (many errors say "{source}" in their
/// own message and also name it as their source).
fn chain_text(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

/// Thousands of concurrent streams need thousands of sockets: lift the soft
/// limit on open files to the hard limit.
fn raise_open_file_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::chain_text;

    /// An error that quotes its source and also names it as its source.
    #[derive(Debug)]
    struct Quoting {
        source: std::io::Error,
    }

    impl std::fmt::Display for Quoting {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "results database x.db: {}", self.source)
        }
    }

    impl std::error::Error for Quoting {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn a_cause_already_quoted_is_said_once() {
        let io = std::io::Error::other("database is locked");
        let e = anyhow::Error::new(Quoting { source: io }).context("cannot start the run");
        assert_eq!(chain_text(&e), "cannot start the run: results database x.db: database is locked");
    }

    #[test]
    fn a_cause_not_quoted_is_kept() {
        let e = anyhow::anyhow!("connection refused").context("backend http://h/v1");
        assert_eq!(chain_text(&e), "backend http://h/v1: connection refused");
    }
}
