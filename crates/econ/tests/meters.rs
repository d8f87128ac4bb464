//! The local meters against stand-ins: a scripted `nvidia-smi`, a
//! sysfs-like powercap tree, and the modelled meter through the sampler.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetbench_econ::energy::{
    measure_idle, open_meter, EnergySampler, IntegrationMethod, MeterKind, MeterProbe, MeterSpec, ModelledMeter,
    NvidiaSmiMeter, Provenance, RaplMeter,
};
use fleetbench_econ::EnergyMeter;

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let p = std::env::temp_dir().join(format!("fleetbench-econ-it-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes an executable stand-in for `nvidia-smi` that checks its
/// arguments and prints `body`; each call adds a line to `dir/calls`.
fn fake_nvidia_smi(dir: &Path, body: &str, exit: i32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("nvidia-smi");
    let script = format!(
        "#!/bin/sh\n\
         if [ \"$1\" != \"--query-gpu=index,power.draw\" ] || [ \"$2\" != \"--format=csv,noheader,nounits\" ]; then\n\
           echo \"unexpected arguments: $*\" >&2; exit 9\n\
         fi\n\
         echo call >> \"$(dirname \"$0\")/calls\"\n\
         printf '{body}'\n\
         echo 'stand-in diagnostics' >&2\n\
         exit {exit}\n"
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn nvidia_smi_meter_sums_gpus_and_the_sampler_integrates_them() {
    let dir = TempDir::new("smi");
    let cmd = fake_nvidia_smi(dir.path(), "0, 250.50\\n1, 149.50\\n", 0);
    let mut meter = NvidiaSmiMeter::new(cmd.clone(), Duration::from_secs(5));
    let r = meter.read().await.unwrap();
    assert_eq!(r.power_w, Some(400.0));
    assert_eq!(r.energy_j, None);
    assert!(meter.description().contains("2 GPUs"), "{}", meter.description());

    let origin = Instant::now();
    let sampler = EnergySampler::start(Box::new(meter), Duration::from_millis(40), origin);
    // Stop once the sampler has started its third reading (the first call
    // was the read above); stopping adds a last one.
    let calls = || std::fs::read_to_string(dir.path().join("calls")).map(|s| s.lines().count()).unwrap_or(0);
    fleetbench_testkit::wait_until(Duration::from_secs(30), Duration::from_millis(10), async || calls() >= 4)
        .await
        .unwrap_or_else(|e| panic!("the sampler did not read the meter three times ({} calls): {e}", calls()));
    let (timeline, _meter) = sampler.stop().await.unwrap();
    assert_eq!(timeline.meter, MeterKind::NvidiaSmi);
    assert_eq!(timeline.provenance, Provenance::Measured);
    assert!(timeline.samples.len() >= 3, "{} samples", timeline.samples.len());
    assert!(timeline.samples.iter().all(|s| s.power_w == Some(400.0)));
    // Constant 400 W: energy is exactly 400 × the sampled span.
    let (a, b) = timeline.span().unwrap();
    let e = timeline.energy_between(a, b, 10.0).unwrap();
    assert_eq!(e.method, IntegrationMethod::PowerTrapezoid);
    assert!((e.joules - 400.0 * (b - a)).abs() < 1e-6);
}

#[tokio::test]
async fn nvidia_smi_failures_are_explained() {
    let dir = TempDir::new("smi-bad");
    let failing = fake_nvidia_smi(dir.path(), "", 6);
    let probe = MeterProbe { nvidia_smi: failing, ..MeterProbe::default() };
    let e = open_meter(&MeterSpec::NvidiaSmi, &probe).await.unwrap_err().to_string();
    assert!(e.contains("nvidia-smi meter unavailable") && e.contains("stand-in diagnostics"), "{e}");

    let missing = MeterProbe { nvidia_smi: dir.path().join("absent"), ..MeterProbe::default() };
    let e = open_meter(&MeterSpec::NvidiaSmi, &missing).await.unwrap_err().to_string();
    assert!(e.contains("not found"), "{e}");

    let na_dir = TempDir::new("smi-na");
    let na = fake_nvidia_smi(na_dir.path(), "0, [N/A]\\n", 0);
    let mut meter = NvidiaSmiMeter::new(na, Duration::from_secs(5));
    let e = meter.read().await.unwrap_err().to_string();
    assert!(e.contains("[N/A]"), "{e}");
}

fn write_zone(root: &Path, zone: &str, name: &str, energy_uj: u64, max_uj: u64) {
    let d = root.join(zone);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("name"), format!("{name}\n")).unwrap();
    std::fs::write(d.join("energy_uj"), format!("{energy_uj}\n")).unwrap();
    std::fs::write(d.join("max_energy_range_uj"), format!("{max_uj}\n")).unwrap();
}

#[tokio::test]
async fn rapl_reads_packages_only_and_unfolds_wraps() {
    let dir = TempDir::new("rapl");
    let root = dir.path();
    let max = 262_143_328_850u64;
    write_zone(root, "intel-rapl:0", "package-0", max - 2_000_000, max);
    write_zone(root, "intel-rapl:1", "package-1", 5_000_000, max);
    // A sub-zone inside package 0 and an unrelated entry: not added again.
    write_zone(root, "intel-rapl:0:0", "core", 1_000, max);
    std::fs::create_dir_all(root.join("dtpm")).unwrap();

    let mut meter = RaplMeter::open(root).unwrap();
    assert_eq!(meter.description(), format!("RAPL ({}), package-0 + package-1", root.display()));
    assert_eq!(meter.read().await.unwrap().energy_j, Some(0.0));
    // Package 0 wraps: 2 J to the top of its range, then 3 J more.
    std::fs::write(root.join("intel-rapl:0/energy_uj"), "3000000\n").unwrap();
    std::fs::write(root.join("intel-rapl:1/energy_uj"), "6500000\n").unwrap();
    std::fs::write(root.join("intel-rapl:0:0/energy_uj"), "999999999\n").unwrap();
    let r = meter.read().await.unwrap();
    assert_eq!(r.energy_j, Some(5.0 + 1.5));

    // auto picks RAPL when no NVIDIA meter answers, and says so; on a host
    // where the real NVML answers, that comes first (the probe cannot leave
    // it out).
    let probe =
        MeterProbe { nvidia_smi: root.join("no-nvidia-smi"), rapl_root: root.to_path_buf(), ..MeterProbe::default() };
    let choice = open_meter(&MeterSpec::Auto, &probe).await.unwrap();
    if choice.meter.as_ref().map(|m| m.kind()) == Some(MeterKind::Nvml) {
        assert!(choice.reason.contains("the NVIDIA driver library loaded"), "{}", choice.reason);
    } else {
        assert_eq!(choice.meter.as_ref().map(|m| m.kind()), Some(MeterKind::Rapl), "{}", choice.reason);
        assert!(choice.reason.contains("auto picked RAPL"), "{}", choice.reason);
        assert_eq!(choice.passed_over.len(), 2, "{:?}", choice.passed_over);
    }

    // A tree without zones, or with an unreadable counter, is unavailable.
    let empty = TempDir::new("rapl-empty");
    let e = RaplMeter::open(empty.path()).err().unwrap().to_string();
    assert!(e.contains("no intel-rapl:N zones"), "{e}");
    let garbled = TempDir::new("rapl-garbled");
    write_zone(garbled.path(), "intel-rapl:0", "package-0", 1, 10);
    std::fs::write(garbled.path().join("intel-rapl:0/energy_uj"), "lots\n").unwrap();
    let e = RaplMeter::open(garbled.path()).err().unwrap().to_string();
    assert!(e.contains("not a whole number"), "{e}");
}

#[tokio::test]
async fn auto_prefers_nvidia_smi_over_rapl() {
    let dir = TempDir::new("auto-smi");
    let cmd = fake_nvidia_smi(dir.path(), "0, 80.0\\n", 0);
    write_zone(dir.path(), "intel-rapl:0", "package-0", 0, 1000);
    let probe = MeterProbe { nvidia_smi: cmd, rapl_root: dir.path().to_path_buf(), ..MeterProbe::default() };
    let choice = open_meter(&MeterSpec::Auto, &probe).await.unwrap();
    let kind = choice.meter.as_ref().map(|m| m.kind());
    if kind == Some(MeterKind::Nvml) {
        // A host where the NVIDIA library answers: NVML comes first, ahead
        // of both stand-ins (the probe cannot leave the real NVML out).
        assert!(choice.reason.contains("the NVIDIA driver library loaded"), "{}", choice.reason);
    } else {
        assert_eq!(kind, Some(MeterKind::NvidiaSmi), "{}", choice.reason);
        assert!(choice.reason.contains("NVML was unavailable"), "{}", choice.reason);
    }
}

#[tokio::test]
async fn modelled_meter_is_labelled_modelled_and_idle_is_measured_apart() {
    let idle_model: fleetbench_econ::energy::PowerModel = Arc::new(|_| 90.0);
    let meter = ModelledMeter::new("sim: 1x H100", idle_model);
    assert_eq!(meter.provenance(), Provenance::Modelled);
    let (idle, meter) =
        measure_idle(Box::new(meter), Duration::from_millis(150), Duration::from_millis(20)).await.unwrap();
    assert!((idle.mean_power_w.unwrap() - 90.0).abs() < 1e-9);
    assert!(meter.description().contains("not measured"));
    assert_eq!(idle.timeline.provenance, Provenance::Modelled);
}
