//! A node's kernel log (`dmesg -T`-like, one line per message) over the
//! episode's history: the injected events among the noise every real node
//! logs (Xid 13/31/43 from user jobs on healthy GPUs, mlx5 link flaps,
//! corrected AER errors, corrected-ECC chatter, unrelated driver lines).
//! Xid lines carry the PCI address, as the driver prints them.

use super::world::{Vendor, World, Xid, GPUS_PER_NODE};
use crate::telemetry::noise;
use crate::time::format_rfc3339;

/// Every line of node `n` between `since` and `until` (inclusive), in time order.
pub fn lines(w: &World, n: usize, since: i64, until: i64) -> Vec<(i64, String)> {
    let mut out: Vec<(i64, String)> = Vec::new();
    let since = since.max(w.history_start);
    let until = until.min(w.now);
    for x in w.xids.iter().filter(|x| x.node == n && x.t >= since && x.t <= until) {
        out.push((x.t, event_line(w, x)));
    }
    // Background noise: about one line every 20 minutes per node.
    let fid = (w.index as u64) << 20 | 0xa_0000 | n as u64;
    let first = (since - w.history_start).div_euclid(60);
    let last = (until - w.history_start).div_euclid(60);
    for k in first..=last {
        let t = w.history_start + k * 60 + ((noise(w.seed, fid, 1, k) + 1.0) * 29.0) as i64;
        if t < since || t > until || noise(w.seed, fid, 2, k) < 0.75 {
            continue;
        }
        let pick = ((noise(w.seed, fid, 3, k) + 1.0) * 50.0) as usize;
        out.push((t, noise_line(w, n, pick, k)));
    }
    out.sort();
    out
}

fn prefix(w: &World, n: usize, t: i64) -> String {
    format!("{} {} kernel:", format_rfc3339(t), w.topo.nodes[n].name)
}

fn noise_line(w: &World, n: usize, pick: usize, k: i64) -> String {
    let t = w.history_start + k * 60;
    let p = prefix(w, n, t);
    let g = pick % GPUS_PER_NODE;
    let pci = w.topo.pci(n, g);
    let amd = w.topo.kind(n).vendor == Vendor::Amd;
    match pick % 10 {
        0 if !amd => {
            let code = [13u32, 31, 43][pick % 3];
            let msg = match code {
                13 => "Graphics SM Warp Exception on (GPC 2, TPC 0, SM 1): Out Of Range Address",
                31 => "MMU Fault: ENGINE GRAPHICS GPCCLIENT_T1_3 faulted @ 0x7f1c_8a200000. Fault is of type FAULT_PDE ACCESS_TYPE_VIRT_READ",
                _ => "Ch 00000008, errorString CTX SWITCH TIMEOUT, Info 0x1c031",
            };
            format!("{p} NVRM: Xid (PCI:{}): {code}, pid={}, name=python3, {msg}", short_pci(&pci), 20_000 + pick * 37)
        }
        1 => format!("{p} mlx5_core 0000:{:02x}:00.0 mlx5_{}: Link down", 0x40 + pick % 2, pick % 2),
        2 => format!("{p} mlx5_core 0000:{:02x}:00.0 mlx5_{}: Link up", 0x40 + pick % 2, pick % 2),
        3 => format!(
            "{p} pcieport 0000:{:02x}:01.0: AER: Corrected error received: 0000:{:02x}:00.0",
            pick % 7 * 16,
            pick % 5 * 16 + 1
        ),
        4 => format!(
            "{p} pcieport 0000:{:02x}:01.0: PCIe Bus Error: severity=Corrected, type=Physical Layer, (Receiver ID)",
            pick % 7 * 16
        ),
        5 => format!("{p} EDAC MC0: 1 CE memory read error on CPU_SrcID#0_MC#0_Chan#{}_DIMM#0", pick % 4),
        6 => format!("{p} nvme nvme0: I/O 512 QID 7 timeout, completion polled"),
        7 => format!("{p} xfs filesystem being remounted at /var/lib/containerd supports timestamps until 2038"),
        8 if amd => format!("{p} amdgpu {pci}: amdgpu: 1 correctable hardware errors detected in UMC block"),
        8 => format!("{p} NVRM: GPU at PCI:{}: {} ECC single-bit errors corrected", short_pci(&pci), 1 + pick % 3),
        _ => format!("{p} IPv6: ADDRCONF(NETDEV_CHANGE): veth{:07x}: link becomes ready", pick * 7919),
    }
}

/// `0000:18:00` as the NVIDIA driver writes a bus id in an Xid line.
fn short_pci(pci: &str) -> &str {
    pci.strip_suffix(".0").unwrap_or(pci)
}

fn event_line(w: &World, x: &Xid) -> String {
    let p = prefix(w, x.node, x.t);
    let pci = w.topo.pci(x.node, x.gpu);
    match x.code {
        1000 => format!("{p} amdgpu {pci}: amdgpu: socket: 0, die: 0, 2 uncorrectable hardware errors detected in UMC block"),
        3000 => format!(
            "{p} dcgm-exporter[{}]: segfault at 0 ip 00005581c2a4f3b1 sp 00007ffd1d2c8e70 error 4 in dcgm-exporter[5581c2600000+9a4000]",
            2000 + x.t % 5000
        ),
        2000 => format!("{p} NVRM: loading NVIDIA UNIX x86_64 Kernel Module  550.90.07  Fri May 31 09:35:42 UTC 2024"),
        code => {
            let msg = crate::telemetry::xid_text(code, x.link);
            format!("{p} NVRM: Xid (PCI:{}): {code}, pid={}, name=python3, {msg}", short_pci(&pci), 1000 + x.t.rem_euclid(30_000))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::investigate::cases::Case;

    #[test]
    fn xid_lines_name_the_bus_not_the_index_among_noise() {
        let mut found = 0;
        for i in 0..60 {
            let w = World::generate(7, i);
            if w.case != Case::OffBus {
                continue;
            }
            let f = &w.faults[0];
            let (n, g) = (f.place.node.unwrap_or(0), f.place.gpu.unwrap_or(0));
            let all = lines(&w, n, w.history_start, w.now);
            let xid79: Vec<_> = all.iter().filter(|(_, l)| l.contains("): 79,")).collect();
            assert_eq!(xid79.len(), 1);
            assert!(xid79[0].1.contains(short_pci(&w.topo.pci(n, g))));
            assert!(!xid79[0].1.contains(&format!("GPU{g}")));
            assert!(all.len() > 3, "noise is there too");
            found += 1;
        }
        assert!(found > 0);
    }
}
