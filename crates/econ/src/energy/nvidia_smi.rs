//! The `nvidia-smi` meter: power draw of every GPU from the CSV query, for
//! hosts where the NVML library cannot be loaded by fleetbench itself.

use std::path::PathBuf;
use std::time::Duration;

use super::{EnergyMeter, MeterError, MeterFuture, MeterKind, MeterReading};

/// The arguments fleetbench passes; power only, integrated over time
/// (the energy counter is not a stable CSV field across driver versions).
pub const NVIDIA_SMI_ARGS: [&str; 2] = ["--query-gpu=index,power.draw", "--format=csv,noheader,nounits"];

pub struct NvidiaSmiMeter {
    command: PathBuf,
    timeout: Duration,
    gpus: usize,
}

impl NvidiaSmiMeter {
    /// `command` is a name looked up on PATH (`nvidia-smi`) or a path.
    pub fn new(command: PathBuf, timeout: Duration) -> NvidiaSmiMeter {
        NvidiaSmiMeter { command, timeout, gpus: 0 }
    }

    async fn read_now(&mut self) -> Result<MeterReading, MeterError> {
        let cmd = self.command.display().to_string();
        let run = tokio::process::Command::new(&self.command).args(NVIDIA_SMI_ARGS).kill_on_drop(true).output();
        let out = match tokio::time::timeout(self.timeout, run).await {
            Err(_) => return Err(read_err(format!("`{cmd}` took longer than {:?}", self.timeout))),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(MeterError::Unavailable {
                    meter: "nvidia-smi",
                    why: format!(
                        "`{cmd}` not found on PATH; install the NVIDIA driver utilities or pick another meter"
                    ),
                })
            }
            Ok(Err(e)) => return Err(read_err(format!("cannot run `{cmd}`: {e}"))),
            Ok(Ok(o)) => o,
        };
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(read_err(format!("`{cmd}` exited with {}: {}", out.status, stderr.trim())));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let (power, gpus) = parse_power_csv(&text).map_err(read_err)?;
        self.gpus = gpus;
        Ok(MeterReading { power_w: Some(power), energy_j: None })
    }
}

fn read_err(why: String) -> MeterError {
    MeterError::Read { meter: "nvidia-smi", why }
}

/// Sums `index, power.draw` lines. A GPU reporting `[N/A]` makes the read
/// fail: a sum missing one GPU would be silently low.
pub fn parse_power_csv(text: &str) -> Result<(f64, usize), String> {
    let mut total = 0.0;
    let mut gpus = 0;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut fields = line.split(',').map(str::trim);
        let index = fields.next().unwrap_or("");
        let power = fields.next().ok_or_else(|| format!("expected `index, power.draw` but got '{line}'"))?;
        let w: f64 =
            power.parse().map_err(|_| format!("GPU {index} reports power.draw '{power}', not a number of watts"))?;
        if !(w.is_finite() && w >= 0.0) {
            return Err(format!("GPU {index} reports an impossible power of {w} W"));
        }
        total += w;
        gpus += 1;
    }
    if gpus == 0 {
        return Err("nvidia-smi listed no GPUs".into());
    }
    Ok((total, gpus))
}

impl EnergyMeter for NvidiaSmiMeter {
    fn kind(&self) -> MeterKind {
        MeterKind::NvidiaSmi
    }

    fn description(&self) -> String {
        format!(
            "nvidia-smi ({}), {} GPU{}, power samples",
            self.command.display(),
            self.gpus,
            if self.gpus == 1 { "" } else { "s" }
        )
    }

    fn read(&mut self) -> MeterFuture<'_> {
        Box::pin(self.read_now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!(parse_power_csv("0, 312.45\n1, 100.00\n").unwrap(), (412.45, 2));
        assert!(parse_power_csv("0, [N/A]\n").unwrap_err().contains("[N/A]"));
        assert!(parse_power_csv("").unwrap_err().contains("no GPUs"));
    }
}
