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
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(cmd::dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
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
