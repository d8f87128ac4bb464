//! Investigate mode's closed vocabulary: the scenarios (cases), their
//! signatures and weights, and the runbook's action table that the scorer
//! uses (docs/RUNBOOK.md prints the same table; a test keeps them equal).

use serde::Serialize;

use crate::scenario::{Action, ActionClass, LABELS};

/// The truth granularity of a case's location.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Gpu,
    /// A GPU and one of its NVLink links.
    GpuLink,
    Node,
    /// A node and one of its InfiniBand ports.
    NodePort,
    Rack,
    Loop,
}

/// One kind of investigate-mode episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Case {
    Healthy,
    DecoyOnly,
    HbmRemap,
    HbmUce,
    AmdHbmUce,
    OffBus,
    Nvlink,
    PcieGen,
    Gsp,
    SmHw,
    ThermalGpu,
    AmdThermalGpu,
    PsuBrake,
    IbPhy,
    IbCongestion,
    KvPressure,
    CudaFault,
    TwoFaults,
    BrakeRecurring,
    ThermalDrift,
    LoopSpan,
    StaleXid,
    ExporterOffBus,
    NcclHang,
    PowerCapMisset,
    EccDisabled,
}

/// Root-cause labels investigate mode adds to the triage list.
pub const EXTRA_LABELS: [&str; 3] = ["app.nccl_hang", "config.power_cap_misset", "config.ecc_disabled"];

/// Every label a submission may name.
pub fn labels() -> Vec<&'static str> {
    LABELS.iter().copied().chain(EXTRA_LABELS).collect()
}

/// One row of the runbook's action table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActionRow {
    pub label: &'static str,
    pub preferred: Action,
    pub acceptable: &'static [Action],
    pub harmful: &'static [Action],
}

use Action as A;

/// The runbook's action table: every root cause, its preferred action
/// (full credit), acceptable ones (partial) and harmful ones (negative).
/// Any other action earns nothing. docs/RUNBOOK.md prints exactly this.
pub const ACTION_TABLE: [ActionRow; 19] = [
    ActionRow {
        label: "none",
        preferred: A::None,
        acceptable: &[A::Monitor],
        harmful: &[A::RmaGpu, A::ReplaceCable, A::Reseat, A::RebootNode, A::DrainNode, A::DrainRack, A::ResetGpu],
    },
    ActionRow {
        label: "thermal.cooling_loop_degraded",
        preferred: A::EscalateFacilities,
        acceptable: &[A::DrainRack],
        harmful: &[A::RmaGpu, A::Reseat, A::ReplaceCable],
    },
    ActionRow {
        label: "straggler.thermal_single_gpu",
        preferred: A::DrainNode,
        acceptable: &[A::ResetGpu, A::EscalateFacilities],
        harmful: &[A::RmaGpu, A::ReplaceCable, A::Reseat],
    },
    ActionRow {
        label: "power.cap_enforced",
        preferred: A::None,
        acceptable: &[A::Monitor],
        harmful: &[A::RmaGpu, A::ReplaceCable, A::Reseat, A::RebootNode, A::DrainNode],
    },
    ActionRow {
        label: "power.psu_brake",
        preferred: A::EscalateFacilities,
        acceptable: &[A::DrainRack, A::DrainNode],
        harmful: &[A::RmaGpu, A::ReplaceCable, A::Reseat],
    },
    ActionRow {
        label: "memory.hbm_row_remap_pending",
        preferred: A::ResetGpuAtNextDrain,
        acceptable: &[A::ResetGpu, A::DrainNode, A::Monitor],
        harmful: &[A::RmaGpu, A::ReplaceCable, A::Reseat],
    },
    ActionRow {
        label: "memory.hbm_uncorrectable",
        preferred: A::DrainNode,
        acceptable: &[A::ResetGpu, A::RmaGpu],
        harmful: &[A::ReplaceCable, A::Reseat],
    },
    ActionRow {
        label: "pcie.gpu_off_bus",
        preferred: A::RebootNode,
        acceptable: &[A::Reseat, A::DrainNode],
        harmful: &[A::RmaGpu, A::ReplaceCable],
    },
    ActionRow {
        label: "nvlink.link_degraded",
        preferred: A::DrainNode,
        acceptable: &[A::ResetGpu],
        harmful: &[A::RmaGpu, A::ReplaceCable, A::Reseat],
    },
    ActionRow {
        label: "pcie.link_degraded",
        preferred: A::Reseat,
        acceptable: &[A::DrainNode],
        harmful: &[A::RmaGpu, A::ReplaceCable],
    },
    ActionRow {
        label: "fabric.congestion_pfc",
        preferred: A::RescheduleTraffic,
        acceptable: &[A::Monitor, A::ReduceConcurrency],
        harmful: &[A::RmaGpu, A::ReplaceCable, A::Reseat],
    },
    ActionRow {
        label: "fabric.link_phy",
        preferred: A::ReplaceCable,
        acceptable: &[A::RescheduleTraffic, A::DrainNode],
        harmful: &[A::RmaGpu, A::Reseat],
    },
    ActionRow {
        label: "serving.kv_cache_pressure",
        preferred: A::ScaleOut,
        acceptable: &[A::ReduceConcurrency, A::RescheduleTraffic],
        harmful: &[A::RmaGpu, A::ReplaceCable, A::Reseat, A::ResetGpu, A::RebootNode],
    },
    ActionRow {
        label: "app.cuda_fault",
        preferred: A::RestartApp,
        acceptable: &[],
        harmful: &[A::RmaGpu, A::ReplaceCable, A::Reseat],
    },
    ActionRow {
        label: "gpu.sm_hw",
        preferred: A::DrainNode,
        acceptable: &[A::RmaGpu, A::ResetGpu],
        harmful: &[A::ReplaceCable, A::Reseat],
    },
    ActionRow {
        label: "driver.gsp_timeout",
        preferred: A::ResetGpu,
        acceptable: &[A::UpdateFirmware, A::DrainNode, A::RebootNode],
        harmful: &[A::RmaGpu, A::ReplaceCable, A::Reseat],
    },
    ActionRow {
        label: "app.nccl_hang",
        preferred: A::RestartApp,
        acceptable: &[A::DrainNode],
        harmful: &[A::RmaGpu, A::ReplaceCable, A::Reseat, A::DrainRack],
    },
    ActionRow {
        label: "config.power_cap_misset",
        preferred: A::RestoreConfig,
        acceptable: &[A::DrainNode],
        harmful: &[A::RmaGpu, A::ReplaceCable, A::Reseat],
    },
    ActionRow {
        label: "config.ecc_disabled",
        preferred: A::RestoreConfig,
        acceptable: &[A::DrainNode],
        harmful: &[A::RmaGpu, A::ReplaceCable, A::Reseat, A::RestartApp],
    },
];

/// The table row of `label` (`monitoring.exporter_down` is never a truth
/// and has no row).
pub fn action_row(label: &str) -> Option<&'static ActionRow> {
    ACTION_TABLE.iter().find(|r| r.label == label)
}

/// How `action` is judged for the root cause `label`.
pub fn judge(label: &str, action: Action) -> ActionClass {
    match action_row(label) {
        Some(r) if r.preferred == action => ActionClass::Correct,
        Some(r) if r.acceptable.contains(&action) => ActionClass::Acceptable,
        Some(r) if r.harmful.contains(&action) => ActionClass::OverRemediation,
        _ => ActionClass::Wrong,
    }
}

impl Case {
    pub const ALL: [Case; 26] = [
        Case::Healthy,
        Case::DecoyOnly,
        Case::HbmRemap,
        Case::HbmUce,
        Case::AmdHbmUce,
        Case::OffBus,
        Case::Nvlink,
        Case::PcieGen,
        Case::Gsp,
        Case::SmHw,
        Case::ThermalGpu,
        Case::AmdThermalGpu,
        Case::PsuBrake,
        Case::IbPhy,
        Case::IbCongestion,
        Case::KvPressure,
        Case::CudaFault,
        Case::TwoFaults,
        Case::BrakeRecurring,
        Case::ThermalDrift,
        Case::LoopSpan,
        Case::StaleXid,
        Case::ExporterOffBus,
        Case::NcclHang,
        Case::PowerCapMisset,
        Case::EccDisabled,
    ];

    /// The id used in files and tables (`I01` .. `I24`, `healthy`, `decoy_only`).
    pub fn id(self) -> &'static str {
        const IDS: [&str; 26] = [
            "healthy",
            "decoy_only",
            "I01",
            "I02",
            "I03",
            "I04",
            "I05",
            "I06",
            "I07",
            "I08",
            "I09",
            "I10",
            "I11",
            "I12",
            "I13",
            "I14",
            "I15",
            "I16",
            "I17",
            "I18",
            "I19",
            "I20",
            "I21",
            "I22",
            "I23",
            "I24",
        ];
        IDS[self as usize]
    }

    pub fn from_id(id: &str) -> Option<Case> {
        Case::ALL.into_iter().find(|c| c.id() == id)
    }

    /// The key in per-scenario tables: `I07 driver.gsp_timeout` style.
    pub fn key(self) -> String {
        if self.is_fault() {
            format!("{} {}", self.id(), self.name())
        } else {
            self.id().to_string()
        }
    }

    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            Case::Healthy => "healthy",
            Case::DecoyOnly => "decoy_only",
            Case::HbmRemap => "hbm_remap_pending",
            Case::HbmUce => "hbm_uncorrectable",
            Case::AmdHbmUce => "mi300x_hbm_uncorrectable",
            Case::OffBus => "gpu_off_bus",
            Case::Nvlink => "nvlink_degraded",
            Case::PcieGen => "pcie_link_degraded",
            Case::Gsp => "gsp_timeout",
            Case::SmHw => "sm_hardware",
            Case::ThermalGpu => "thermal_straggler",
            Case::AmdThermalGpu => "mi300x_thermal_straggler",
            Case::PsuBrake => "psu_brake",
            Case::IbPhy => "ib_link_phy",
            Case::IbCongestion => "ib_congestion",
            Case::KvPressure => "kv_cache_pressure",
            Case::CudaFault => "cuda_fault",
            Case::TwoFaults => "two_faults",
            Case::BrakeRecurring => "recurring_brake",
            Case::ThermalDrift => "slow_thermal_drift",
            Case::LoopSpan => "cooling_loop_across_racks",
            Case::StaleXid => "stale_gauge_hides_xid",
            Case::ExporterOffBus => "exporter_down_hides_off_bus",
            Case::NcclHang => "nccl_hang",
            Case::PowerCapMisset => "power_cap_set_by_hand",
            Case::EccDisabled => "ecc_disabled",
        }
    }

    pub fn is_fault(self) -> bool {
        !matches!(self, Case::Healthy | Case::DecoyOnly)
    }

    /// Cases a single-fault runbook cannot solve by construction.
    pub fn beyond_runbook(self) -> bool {
        matches!(
            self,
            Case::TwoFaults
                | Case::BrakeRecurring
                | Case::ThermalDrift
                | Case::LoopSpan
                | Case::StaleXid
                | Case::ExporterOffBus
                | Case::NcclHang
                | Case::PowerCapMisset
                | Case::EccDisabled
        )
    }

    /// The root-cause label of the (first) fault.
    pub fn label(self) -> &'static str {
        match self {
            Case::Healthy | Case::DecoyOnly => "none",
            Case::HbmRemap => "memory.hbm_row_remap_pending",
            Case::HbmUce | Case::AmdHbmUce | Case::StaleXid => "memory.hbm_uncorrectable",
            Case::OffBus | Case::ExporterOffBus => "pcie.gpu_off_bus",
            Case::Nvlink => "nvlink.link_degraded",
            Case::PcieGen => "pcie.link_degraded",
            Case::Gsp => "driver.gsp_timeout",
            Case::SmHw => "gpu.sm_hw",
            Case::ThermalGpu | Case::AmdThermalGpu => "straggler.thermal_single_gpu",
            Case::PsuBrake | Case::BrakeRecurring => "power.psu_brake",
            Case::IbPhy => "fabric.link_phy",
            Case::IbCongestion => "fabric.congestion_pfc",
            Case::KvPressure => "serving.kv_cache_pressure",
            Case::CudaFault => "app.cuda_fault",
            // The label of a two-fault episode's faults come from their own cases.
            Case::TwoFaults => "mixed",
            Case::ThermalDrift | Case::LoopSpan => "thermal.cooling_loop_degraded",
            Case::NcclHang => "app.nccl_hang",
            Case::PowerCapMisset => "config.power_cap_misset",
            Case::EccDisabled => "config.ecc_disabled",
        }
    }

    /// The granularity the truth names.
    pub fn level(self) -> Level {
        match self {
            Case::Nvlink => Level::GpuLink,
            Case::IbPhy => Level::NodePort,
            Case::KvPressure | Case::CudaFault | Case::PowerCapMisset | Case::EccDisabled => Level::Node,
            Case::PsuBrake | Case::BrakeRecurring | Case::IbCongestion | Case::NcclHang => Level::Rack,
            Case::ThermalDrift | Case::LoopSpan => Level::Loop,
            _ => Level::Gpu,
        }
    }

    /// Relative frequency in a generated stream (section "Weights" of
    /// docs/AIOPS.md says why).
    pub fn weight(self) -> u32 {
        match self {
            Case::Healthy | Case::DecoyOnly => 10,
            Case::TwoFaults => 8,
            Case::HbmRemap | Case::OffBus | Case::StaleXid | Case::ExporterOffBus => 5,
            Case::HbmUce | Case::BrakeRecurring | Case::ThermalDrift | Case::NcclHang | Case::PowerCapMisset => 4,
            Case::Nvlink | Case::PcieGen | Case::IbPhy | Case::CudaFault | Case::LoopSpan | Case::EccDisabled => 3,
            Case::AmdHbmUce | Case::Gsp | Case::SmHw | Case::ThermalGpu | Case::IbCongestion | Case::KvPressure => 2,
            Case::AmdThermalGpu | Case::PsuBrake => 1,
        }
    }

    /// Seconds an onset may be off and still earn its points: the instant the
    /// runbook names (the precursor or the hard event) is in docs/AIOPS.md.
    pub fn onset_tolerance_s(self) -> i64 {
        match self {
            Case::ThermalDrift => 1800,
            Case::SmHw | Case::BrakeRecurring | Case::PowerCapMisset | Case::EccDisabled => 600,
            Case::LoopSpan | Case::ThermalGpu | Case::AmdThermalGpu | Case::PcieGen => 180,
            Case::IbPhy | Case::IbCongestion | Case::KvPressure | Case::AmdHbmUce | Case::NcclHang => 120,
            _ => 60,
        }
    }

    /// Signals (metric names or kernel-log markers) whose naming in the
    /// evidence, on the right entity, earns the evidence point.
    pub fn signals(self) -> &'static [&'static str] {
        match self {
            Case::Healthy | Case::DecoyOnly | Case::TwoFaults => &[],
            Case::HbmRemap => &["DCGM_FI_DEV_ROW_REMAP_PENDING", "Xid 63", "Xid 94", "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL"],
            Case::HbmUce | Case::StaleXid => {
                &["Xid 48", "Xid 95", "Xid 64", "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "DCGM_FI_DEV_ROW_REMAP_FAILURE"]
            }
            Case::AmdHbmUce => &["gpu_ecc_uncorrect_total", "amdgpu uncorrectable"],
            Case::OffBus | Case::ExporterOffBus => &["Xid 79", "fallen off the bus"],
            Case::Nvlink => &["Xid 74", "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL"],
            Case::PcieGen => &["DCGM_FI_DEV_PCIE_LINK_GEN", "DCGM_FI_DEV_PCIE_LINK_WIDTH"],
            Case::Gsp => &["Xid 119", "Xid 120"],
            Case::SmHw => &["Xid 13"],
            Case::ThermalGpu | Case::ThermalDrift | Case::LoopSpan => {
                &["DCGM_FI_DEV_GPU_TEMP", "gpu_junction_temperature", "DCGM_FI_DEV_CLOCKS_EVENT_REASONS"]
            }
            Case::AmdThermalGpu => &["gpu_junction_temperature"],
            Case::PsuBrake | Case::BrakeRecurring => &["DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "DCGM_FI_DEV_POWER_USAGE"],
            Case::IbPhy => &["node_infiniband_symbol_error_total", "node_infiniband_link_downed_total"],
            Case::IbCongestion => &["node_infiniband_port_transmit_wait_total"],
            Case::KvPressure => &["vllm:kv_cache_usage_perc", "vllm:num_preemptions_total"],
            Case::CudaFault => &["Xid 13", "Xid 31"],
            Case::NcclHang => &["DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_POWER_USAGE"],
            Case::PowerCapMisset => &["DCGM_FI_DEV_ENFORCED_POWER_LIMIT"],
            Case::EccDisabled => &["DCGM_FI_DEV_ECC_CURRENT"],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_has_a_row_and_a_share_beyond_the_runbook() {
        let total: u32 = Case::ALL.iter().map(|c| c.weight()).sum();
        let beyond: u32 = Case::ALL.iter().filter(|c| c.beyond_runbook()).map(|c| c.weight()).sum();
        assert!(f64::from(beyond) / f64::from(total) >= 0.30, "{beyond}/{total}");
        assert!(Case::ALL.iter().filter(|c| c.is_fault()).count() >= 24);
        for c in Case::ALL {
            assert_eq!(Case::from_id(c.id()), Some(c));
            if c != Case::TwoFaults {
                let row = action_row(c.label()).unwrap_or_else(|| panic!("{c:?} has no runbook row"));
                assert!(!row.acceptable.contains(&row.preferred) && !row.harmful.contains(&row.preferred));
                assert!(labels().contains(&c.label()));
            }
            if c.is_fault() && c != Case::TwoFaults {
                assert!(!c.signals().is_empty());
            }
        }
        assert_eq!(judge("memory.hbm_row_remap_pending", Action::RmaGpu), ActionClass::OverRemediation);
        assert_eq!(judge("config.ecc_disabled", Action::RestartApp), ActionClass::OverRemediation);
        assert_eq!(judge("none", Action::Monitor), ActionClass::Acceptable);
    }

    /// docs/RUNBOOK.md prints the scorer's table: same rows, same actions.
    #[test]
    fn the_runbook_doc_is_the_scorers_table() {
        let doc = crate::investigate::episode_tools::RUNBOOK;
        let actions = |cell: &str| -> Vec<String> {
            cell.split(',')
                .map(|a| a.trim().trim_matches('`').to_string())
                .filter(|a| !a.is_empty() && a != "–")
                .collect()
        };
        let rows: Vec<Vec<String>> = doc
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().to_string()).collect())
            .collect();
        assert_eq!(rows.len(), ACTION_TABLE.len(), "one doc row per root cause");
        for (row, want) in rows.iter().zip(ACTION_TABLE.iter()) {
            assert_eq!(row[0].trim_matches('`'), want.label);
            assert_eq!(actions(&row[1]), vec![want.preferred.as_str().to_string()], "{}", want.label);
            let names = |a: &[Action]| a.iter().map(|x| x.as_str().to_string()).collect::<Vec<_>>();
            assert_eq!(actions(&row[2]), names(want.acceptable), "{}", want.label);
            assert_eq!(actions(&row[3]), names(want.harmful), "{}", want.label);
        }
    }
}
