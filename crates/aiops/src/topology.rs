//! The fleet: sites → cooling loops → racks → nodes of 8 GPUs (NVLink inside
//! the node) with InfiniBand ports to the rack's leaf switch, built from a seed.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// GPUs per node (an HGX board).
pub const GPUS_PER_NODE: usize = 8;
/// NVLink links per GPU (H100 SXM).
pub const NVLINKS_PER_GPU: usize = 18;
/// InfiniBand ports per node.
pub const IB_PORTS_PER_NODE: usize = 2;
/// PCI bus numbers of the eight GPUs of an HGX H100 board.
pub const PCI_BUS: [&str; GPUS_PER_NODE] = ["18", "2a", "3a", "5d", "9a", "ab", "ba", "db"];
/// Board power limit of every simulated GPU, watts.
pub const POWER_LIMIT_W: f64 = 700.0;
/// GPU model name as dcgm-exporter reports it.
pub const GPU_MODEL: &str = "NVIDIA H100 80GB HBM3";

/// What a node runs; shapes its healthy baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    DenseServing,
    MoeServing,
    Training,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::DenseServing => "dense_serving",
            Profile::MoeServing => "moe_serving",
            Profile::Training => "training",
        }
    }
    pub fn is_serving(self) -> bool {
        !matches!(self, Profile::Training)
    }
}

/// One node of 8 GPUs.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    /// e.g. `r03-n07`.
    pub name: String,
    pub rack: usize,
    pub profile: Profile,
    /// Highest PCIe generation the node's switches allow (4 on a few older
    /// boards: a limit by design, not a fault).
    pub pcie_max_gen: u8,
    /// Per-GPU temperature offset in °C (some GPUs simply run warmer).
    pub temp_offset: [f64; GPUS_PER_NODE],
    /// Per-GPU UUIDs as dcgm-exporter prints them.
    pub uuids: Vec<String>,
}

/// One rack, with its leaf switch.
#[derive(Debug, Clone, Serialize)]
pub struct Rack {
    /// e.g. `r03`.
    pub name: String,
    pub cooling_loop: usize,
    /// Indices into [`Fleet::nodes`].
    pub nodes: Vec<usize>,
}

/// One cooling loop.
#[derive(Debug, Clone, Serialize)]
pub struct CoolingLoop {
    /// e.g. `s0-l1`.
    pub name: String,
    pub site: usize,
    pub racks: Vec<usize>,
}

/// The whole simulated fleet.
#[derive(Debug, Clone, Serialize)]
pub struct Fleet {
    pub seed: u64,
    pub sites: Vec<String>,
    pub loops: Vec<CoolingLoop>,
    pub racks: Vec<Rack>,
    pub nodes: Vec<Node>,
}

/// A GPU addressed by node index and local index 0..8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct GpuRef {
    pub node: usize,
    pub gpu: usize,
}

impl GpuRef {
    /// Fleet-wide index.
    pub fn flat(self) -> usize {
        self.node * GPUS_PER_NODE + self.gpu
    }
}

/// An InfiniBand port addressed by node index and port index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PortRef {
    pub node: usize,
    pub port: usize,
}

impl PortRef {
    pub fn flat(self) -> usize {
        self.node * IB_PORTS_PER_NODE + self.port
    }
    pub fn device(self) -> String {
        format!("mlx5_{}", self.port)
    }
}

const NODES_PER_RACK: usize = 4;
const RACKS_PER_LOOP: usize = 2;
const LOOPS_PER_SITE: usize = 8;

/// Errors building a fleet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    #[error("a fleet needs at least 16 GPUs (2 nodes of 8); got {0}")]
    TooSmall(usize),
    #[error("{0} GPUs is more than the simulator supports (at most 65,536)")]
    TooLarge(usize),
}

impl Fleet {
    /// Builds a fleet of `gpus` GPUs (rounded up to whole nodes) from `seed`.
    pub fn build(gpus: usize, seed: u64) -> Result<Fleet, TopologyError> {
        if gpus < 2 * GPUS_PER_NODE {
            return Err(TopologyError::TooSmall(gpus));
        }
        if gpus > 65_536 {
            return Err(TopologyError::TooLarge(gpus));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x70b0_1096);
        let n_nodes = gpus.div_ceil(GPUS_PER_NODE);
        let per_rack = NODES_PER_RACK.min(n_nodes.div_ceil(2)).max(1);
        let n_racks = n_nodes.div_ceil(per_rack);
        let n_loops = n_racks.div_ceil(RACKS_PER_LOOP);
        let n_sites = n_loops.div_ceil(LOOPS_PER_SITE);
        let sites = (0..n_sites).map(|s| format!("s{s}")).collect();
        let loops = (0..n_loops)
            .map(|l| CoolingLoop {
                name: format!("s{}-l{}", l / LOOPS_PER_SITE, l % LOOPS_PER_SITE),
                site: l / LOOPS_PER_SITE,
                racks: (l * RACKS_PER_LOOP..((l + 1) * RACKS_PER_LOOP).min(n_racks)).collect(),
            })
            .collect();
        let width = if n_racks > 100 { 3 } else { 2 };
        let racks: Vec<Rack> = (0..n_racks)
            .map(|r| Rack {
                name: format!("r{r:0width$}"),
                cooling_loop: r / RACKS_PER_LOOP,
                nodes: (r * per_rack..((r + 1) * per_rack).min(n_nodes)).collect(),
            })
            .collect();
        let mut nodes = Vec::with_capacity(n_nodes);
        for n in 0..n_nodes {
            let rack = n / per_rack;
            let profile = match rng.random_range(0..100) {
                0..40 => Profile::DenseServing,
                40..65 => Profile::MoeServing,
                _ => Profile::Training,
            };
            let pcie_max_gen = if rng.random_range(0..10) == 0 { 4 } else { 5 };
            let mut temp_offset = [0.0; GPUS_PER_NODE];
            for t in &mut temp_offset {
                *t = (rng.random_range(-40..=40) as f64) / 10.0;
            }
            let uuids = (0..GPUS_PER_NODE)
                .map(|_| {
                    let a: u64 = rng.random();
                    let b: u64 = rng.random();
                    format!(
                        "GPU-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                        a >> 32,
                        (a >> 16) & 0xffff,
                        a & 0xffff,
                        b >> 48,
                        b & 0xffff_ffff_ffff
                    )
                })
                .collect();
            nodes.push(Node {
                name: format!("{}-n{:02}", racks[rack].name, n - rack * per_rack),
                rack,
                profile,
                pcie_max_gen,
                temp_offset,
                uuids,
            });
        }
        Ok(Fleet { seed, sites, loops, racks, nodes })
    }

    pub fn gpu_count(&self) -> usize {
        self.nodes.len() * GPUS_PER_NODE
    }

    pub fn gpus(&self) -> impl Iterator<Item = GpuRef> + '_ {
        (0..self.nodes.len()).flat_map(|node| (0..GPUS_PER_NODE).map(move |gpu| GpuRef { node, gpu }))
    }

    pub fn ports(&self) -> impl Iterator<Item = PortRef> + '_ {
        (0..self.nodes.len()).flat_map(|node| (0..IB_PORTS_PER_NODE).map(move |port| PortRef { node, port }))
    }

    pub fn node_by_name(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    pub fn rack_by_name(&self, name: &str) -> Option<usize> {
        self.racks.iter().position(|r| r.name == name)
    }

    /// A compact text description for prompts: one line per rack.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "fleet: {} GPUs ({}), {} nodes x 8 GPUs (NVLink/NVSwitch inside each node), {} racks, {} cooling loops; each node has {} IB ports (mlx5_0..) to its rack's leaf switch; power limit {} W\n",
            self.gpu_count(),
            GPU_MODEL,
            self.nodes.len(),
            self.racks.len(),
            self.loops.len(),
            IB_PORTS_PER_NODE,
            POWER_LIMIT_W
        );
        for l in &self.loops {
            for &r in &l.racks {
                let rack = &self.racks[r];
                s.push_str(&format!("  {} loop={}:", rack.name, l.name));
                for &n in &rack.nodes {
                    let node = &self.nodes[n];
                    s.push_str(&format!(" {}({}", node.name, node.profile.as_str()));
                    if node.pcie_max_gen != 5 {
                        s.push_str(&format!(",pcie_max_gen={}", node.pcie_max_gen));
                    }
                    s.push(')');
                }
                s.push('\n');
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_from_lab_to_large() {
        let lab = Fleet::build(16, 1).unwrap();
        assert_eq!(lab.nodes.len(), 2);
        assert_eq!(lab.racks.len(), 2);
        let big = Fleet::build(8192, 1).unwrap();
        assert_eq!(big.gpu_count(), 8192);
        assert!(big.sites.len() >= 2);
        assert!(big.racks.iter().all(|r| r.nodes.len() <= NODES_PER_RACK));
        assert!(Fleet::build(8, 1).is_err());
        let names: std::collections::BTreeSet<_> = big.nodes.iter().map(|n| n.name.clone()).collect();
        assert_eq!(names.len(), big.nodes.len(), "node names are unique");
    }

    #[test]
    fn same_seed_same_fleet() {
        let a = serde_json::to_string(&Fleet::build(512, 7).unwrap()).unwrap();
        let b = serde_json::to_string(&Fleet::build(512, 7).unwrap()).unwrap();
        let c = serde_json::to_string(&Fleet::build(512, 8).unwrap()).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
