//! The RAPL meter: CPU package energy from Linux powercap
//! (`intel-rapl:N/energy_uj`), unfolding wraps at `max_energy_range_uj`.

use std::path::{Path, PathBuf};

use super::timeline::{CounterUnwrap, CounterWrap};
use super::{EnergyMeter, MeterError, MeterFuture, MeterKind, MeterReading};

pub const DEFAULT_POWERCAP_ROOT: &str = "/sys/class/powercap";

struct Zone {
    dir: PathBuf,
    name: String,
    counter: CounterUnwrap,
}

/// Every top-level RAPL package zone (`intel-rapl:0`, `intel-rapl:1`, ...);
/// sub-zones (`intel-rapl:0:0`, core, uncore, dram) are inside their package
/// and are not added again.
pub struct RaplMeter {
    root: PathBuf,
    zones: Vec<Zone>,
}

impl RaplMeter {
    /// Finds the package zones under `root` (normally /sys/class/powercap).
    pub fn open(root: &Path) -> Result<RaplMeter, MeterError> {
        let unavailable = |why: String| MeterError::Unavailable { meter: "rapl", why };
        let entries = std::fs::read_dir(root).map_err(|e| {
            unavailable(format!("cannot list {}: {e}; this kernel exposes no powercap RAPL", root.display()))
        })?;
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                n.strip_prefix("intel-rapl:")
                    .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()))
            })
            .map(|e| e.path())
            .collect();
        dirs.sort();
        if dirs.is_empty() {
            return Err(unavailable(format!("no intel-rapl:N zones under {}", root.display())));
        }
        let mut zones = Vec::new();
        for dir in dirs {
            let max = read_u64(&dir.join("max_energy_range_uj")).map_err(unavailable)?;
            read_u64(&dir.join("energy_uj")).map_err(unavailable)?;
            let name = std::fs::read_to_string(dir.join("name"))
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
            zones.push(Zone { dir, name, counter: CounterUnwrap::new(CounterWrap::Modulo(u128::from(max))) });
        }
        Ok(RaplMeter { root: root.to_path_buf(), zones })
    }

    fn read_now(&mut self) -> Result<MeterReading, MeterError> {
        let mut total_uj: u64 = 0;
        for z in &mut self.zones {
            let raw = read_u64(&z.dir.join("energy_uj")).map_err(|why| MeterError::Read { meter: "rapl", why })?;
            total_uj += z.counter.push(raw);
        }
        Ok(MeterReading { power_w: None, energy_j: Some(total_uj as f64 / 1e6) })
    }
}

fn read_u64(path: &Path) -> Result<u64, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            format!("cannot read {}: permission denied (energy_uj is root-only on most kernels; run as root or grant read access)", path.display())
        } else {
            format!("cannot read {}: {e}", path.display())
        }
    })?;
    text.trim().parse().map_err(|_| format!("{} holds '{}', not a whole number", path.display(), text.trim()))
}

impl EnergyMeter for RaplMeter {
    fn kind(&self) -> MeterKind {
        MeterKind::Rapl
    }

    fn description(&self) -> String {
        let names: Vec<&str> = self.zones.iter().map(|z| z.name.as_str()).collect();
        format!("RAPL ({}), {}", self.root.display(), names.join(" + "))
    }

    fn read(&mut self) -> MeterFuture<'_> {
        let r = self.read_now();
        Box::pin(async move { r })
    }
}
