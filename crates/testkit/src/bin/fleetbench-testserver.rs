//! The scripted server as a program, for the soak (scripts/soak.sh) and peer
//! comparisons: exact timing, and every fault in turn with `--fault mixed`.
//!
//!   fleetbench-testserver [--port P] [--ttft-ms T] [--itl-ms I] [--tokens N]
//!                         [--fault none|mixed] [--capacity C]
//!
//! Prints its base URL on the first line and serves until killed.

use std::time::Duration;

use fleetbench_testkit::{try_start_on, Fault, Script};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let mut script = Script::default();
    let mut port = 0u16;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|_| format!("{flag}: '{v}' is not a whole number"));
        match flag.as_str() {
            "--ttft-ms" => script.ttft = Duration::from_millis(number(value()?)?),
            "--itl-ms" => script.itl = Duration::from_millis(number(value()?)?),
            "--tokens" => script.tokens = number(value()?)? as u32,
            "--capacity" => script.capacity = Some(number(value()?)? as u32),
            "--fault" => {
                script.fault = match value()?.as_str() {
                    "none" => Fault::None,
                    "mixed" => Fault::Mixed,
                    other => return Err(format!("--fault {other}: none or mixed")),
                }
            }
            "--port" => port = u16::try_from(number(value()?)?).map_err(|_| "--port: at most 65535".to_string())?,
            "-h" | "--help" => {
                println!("fleetbench-testserver [--port P] [--ttft-ms T] [--itl-ms I] [--tokens N] [--fault none|mixed] [--capacity C]");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other} (see --help)")),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let server = try_start_on(script, port).await.map_err(|e| format!("listening on 127.0.0.1:{port}: {e}"))?;
        println!("{}", server.base_url());
        std::future::pending::<()>().await;
        Ok(())
    })
}
