//! The exact-timing server of `fleetbench selftest` ([`fleetbench_sim::fixed`])
//! as a program, so that a client under test (fleetbench or a peer) can run
//! in its own process, pinned to its own core:
//!
//!   fleetbench-fixed-server [--tokens N] [--itl-ms I]
//!
//! `--itl-ms 0` (the default) sends each response's N tokens in one write
//! (zero delay: a client's throughput); more paces them. Prints its base URL
//! on the first line and serves until killed.

use std::time::Duration;

use fleetbench_sim::fixed::FixedServer;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let (mut tokens, mut itl_ms) = (200u32, 0u64);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|_| format!("{flag}: '{v}' is not a whole number"));
        match flag.as_str() {
            "--tokens" => tokens = u32::try_from(number(value()?)?).map_err(|_| "--tokens: too many".to_string())?,
            "--itl-ms" => itl_ms = number(value()?)?,
            "-h" | "--help" => {
                println!("fleetbench-fixed-server [--tokens N] [--itl-ms I]");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other} (see --help)")),
        }
    }
    if tokens == 0 {
        return Err("--tokens must be at least 1".into());
    }
    let server = FixedServer::new(tokens, Duration::from_millis(itl_ms));
    let addr = server.start().map_err(|e| format!("starting the server: {e}"))?;
    println!("http://{addr}/v1");
    loop {
        std::thread::park();
    }
}
