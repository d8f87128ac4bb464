//! The test server as a program, for peer comparisons (benches/peers) and
//! the soak (scripts/soak.sh): exact timing, and every fault in turn with
//! `--fault mixed`.
//!
//!   fleetbench-testserver [--port P] [--ttft-ms T] [--itl-ms I] [--tokens N]
//!                         [--fault none|mixed] [--capacity C] [--scripted]
//!
//! Without faults or a capacity it serves with the lean server
//! (`fleetbench_testkit::lean`: one task per connection, one write per
//! token, on one thread), so that its own work stays out of the timing at
//! 1,000 streams; `--scripted` serves with the axum-based scripted server
//! instead. Prints its base URL on the first line and serves until killed.

use std::time::Duration;

use fleetbench_testkit::lean::{self, LeanScript};
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
    let mut scripted = false;
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
            "--scripted" => scripted = true,
            "--port" => port = u16::try_from(number(value()?)?).map_err(|_| "--port: at most 65535".to_string())?,
            "-h" | "--help" => {
                println!("fleetbench-testserver [--port P] [--ttft-ms T] [--itl-ms I] [--tokens N] [--fault none|mixed] [--capacity C] [--scripted]");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other} (see --help)")),
        }
    }
    if !scripted && script.fault == Fault::None && script.capacity.is_none() {
        let lean = LeanScript {
            ttft: script.ttft,
            itl: script.itl,
            tokens: script.tokens,
            prompt_tokens: script.prompt_tokens,
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        return rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .map_err(|e| format!("listening on 127.0.0.1:{port}: {e}"))?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            println!("http://{addr}/v1");
            lean::serve(listener, lean).await.map_err(|e| format!("serving: {e}"))
        });
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let server = try_start_on(script, port).await.map_err(|e| format!("listening on 127.0.0.1:{port}: {e}"))?;
        println!("{}", server.base_url());
        std::future::pending::<()>().await;
        Ok(())
    })
}
