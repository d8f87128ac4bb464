//! The closed vocabularies of the arena: scenarios (docs/AIOPS.md S1..S12 plus
//! healthy and decoy-only), root-cause labels, actions, and how each action
//! is judged for each scenario.

use serde::{Deserialize, Serialize};

/// One kind of episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scenario {
    Healthy,
    DecoyOnly,
    S1CoolingLoop,
    S2ThermalStraggler,
    S3PowerCap,
    S3PowerBrake,
    S4RowRemapPending,
    S5HbmUncorrectable,
    S6GpuOffBus,
    S7NvlinkDegraded,
    S8PcieDegraded,
    S9aFabricCongestion,
    S9bFabricPhy,
    S10KvCachePressure,
    S11CudaFault,
    S12GspTimeout,
}

/// Root-cause label of healthy and decoy-only episodes.
pub const LABEL_NONE: &str = "none";

impl Scenario {
    pub const ALL: [Scenario; 16] = [
        Scenario::Healthy,
        Scenario::DecoyOnly,
        Scenario::S1CoolingLoop,
        Scenario::S2ThermalStraggler,
        Scenario::S3PowerCap,
        Scenario::S3PowerBrake,
        Scenario::S4RowRemapPending,
        Scenario::S5HbmUncorrectable,
        Scenario::S6GpuOffBus,
        Scenario::S7NvlinkDegraded,
        Scenario::S8PcieDegraded,
        Scenario::S9aFabricCongestion,
        Scenario::S9bFabricPhy,
        Scenario::S10KvCachePressure,
        Scenario::S11CudaFault,
        Scenario::S12GspTimeout,
    ];

    /// Short id: `S1` .. `S12`, `S3cap`, `S3brake`, `S9a`, `S9b`, `healthy`, `decoy_only`.
    pub fn id(self) -> &'static str {
        match self {
            Scenario::Healthy => "healthy",
            Scenario::DecoyOnly => "decoy_only",
            Scenario::S1CoolingLoop => "S1",
            Scenario::S2ThermalStraggler => "S2",
            Scenario::S3PowerCap => "S3cap",
            Scenario::S3PowerBrake => "S3brake",
            Scenario::S4RowRemapPending => "S4",
            Scenario::S5HbmUncorrectable => "S5",
            Scenario::S6GpuOffBus => "S6",
            Scenario::S7NvlinkDegraded => "S7",
            Scenario::S8PcieDegraded => "S8",
            Scenario::S9aFabricCongestion => "S9a",
            Scenario::S9bFabricPhy => "S9b",
            Scenario::S10KvCachePressure => "S10",
            Scenario::S11CudaFault => "S11",
            Scenario::S12GspTimeout => "S12",
        }
    }

    pub fn from_id(id: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.id() == id)
    }

    /// The root-cause label a perfect operator answers.
    pub fn label(self) -> &'static str {
        match self {
            Scenario::Healthy | Scenario::DecoyOnly => LABEL_NONE,
            Scenario::S1CoolingLoop => "thermal.cooling_loop_degraded",
            Scenario::S2ThermalStraggler => "straggler.thermal_single_gpu",
            Scenario::S3PowerCap => "power.cap_enforced",
            Scenario::S3PowerBrake => "power.psu_brake",
            Scenario::S4RowRemapPending => "memory.hbm_row_remap_pending",
            Scenario::S5HbmUncorrectable => "memory.hbm_uncorrectable",
            Scenario::S6GpuOffBus => "pcie.gpu_off_bus",
            Scenario::S7NvlinkDegraded => "nvlink.link_degraded",
            Scenario::S8PcieDegraded => "pcie.link_degraded",
            Scenario::S9aFabricCongestion => "fabric.congestion_pfc",
            Scenario::S9bFabricPhy => "fabric.link_phy",
            Scenario::S10KvCachePressure => "serving.kv_cache_pressure",
            Scenario::S11CudaFault => "app.cuda_fault",
            Scenario::S12GspTimeout => "driver.gsp_timeout",
        }
    }

    /// The key of this scenario in per-scenario tables: its label, or
    /// `healthy` / `decoy_only`.
    pub fn table_key(self) -> &'static str {
        match self {
            Scenario::Healthy | Scenario::DecoyOnly => self.id(),
            _ => self.label(),
        }
    }

    pub fn is_fault(self) -> bool {
        !matches!(self, Scenario::Healthy | Scenario::DecoyOnly)
    }

    /// Relative frequency in a generated stream (faulty GPUs and HBM most
    /// common, after published large-run interruption reports).
    pub fn weight(self) -> u32 {
        match self {
            Scenario::Healthy => 12,
            Scenario::DecoyOnly => 12,
            Scenario::S1CoolingLoop => 4,
            Scenario::S2ThermalStraggler => 6,
            Scenario::S3PowerCap => 5,
            Scenario::S3PowerBrake => 3,
            Scenario::S4RowRemapPending => 8,
            Scenario::S5HbmUncorrectable => 7,
            Scenario::S6GpuOffBus => 8,
            Scenario::S7NvlinkDegraded => 6,
            Scenario::S8PcieDegraded => 5,
            Scenario::S9aFabricCongestion => 5,
            Scenario::S9bFabricPhy => 5,
            Scenario::S10KvCachePressure => 6,
            Scenario::S11CudaFault => 5,
            Scenario::S12GspTimeout => 4,
        }
    }

    /// The canonical (correct) action.
    pub fn action(self) -> Action {
        match self {
            Scenario::Healthy | Scenario::DecoyOnly | Scenario::S3PowerCap => Action::None,
            Scenario::S1CoolingLoop | Scenario::S3PowerBrake => Action::EscalateFacilities,
            Scenario::S2ThermalStraggler | Scenario::S5HbmUncorrectable | Scenario::S7NvlinkDegraded => {
                Action::DrainNode
            }
            Scenario::S4RowRemapPending => Action::ResetGpuAtNextDrain,
            Scenario::S6GpuOffBus => Action::RebootNode,
            Scenario::S8PcieDegraded => Action::Reseat,
            Scenario::S9aFabricCongestion => Action::RescheduleTraffic,
            Scenario::S9bFabricPhy => Action::ReplaceCable,
            Scenario::S10KvCachePressure => Action::ScaleOut,
            Scenario::S11CudaFault => Action::RestartApp,
            Scenario::S12GspTimeout => Action::ResetGpu,
        }
    }

    /// How `action` is judged for this scenario.
    pub fn judge(self, action: Action) -> ActionClass {
        use Action as A;
        use ActionClass::*;
        if action == self.action() {
            return Correct;
        }
        let costly = matches!(action, A::RmaGpu | A::ReplaceCable | A::Reseat);
        let passive = matches!(action, A::None | A::Monitor);
        match self {
            Scenario::Healthy | Scenario::DecoyOnly | Scenario::S3PowerCap => match action {
                A::Monitor => Acceptable,
                A::RmaGpu | A::ReplaceCable | A::Reseat | A::RebootNode | A::DrainNode | A::DrainRack | A::ResetGpu => {
                    OverRemediation
                }
                _ => Wrong,
            },
            Scenario::S1CoolingLoop => match action {
                A::DrainRack => Acceptable,
                A::RmaGpu | A::Reseat | A::ReplaceCable => OverRemediation,
                _ if passive => UnderReaction,
                _ => Wrong,
            },
            Scenario::S2ThermalStraggler => match action {
                A::ResetGpu | A::EscalateFacilities => Acceptable,
                _ if costly => OverRemediation,
                _ if passive => UnderReaction,
                _ => Wrong,
            },
            Scenario::S3PowerBrake => match action {
                A::DrainRack | A::DrainNode => Acceptable,
                _ if costly => OverRemediation,
                _ if passive => UnderReaction,
                _ => Wrong,
            },
            Scenario::S4RowRemapPending => match action {
                A::ResetGpu | A::DrainNode | A::Monitor => Acceptable,
                _ if costly => OverRemediation,
                A::None => UnderReaction,
                _ => Wrong,
            },
            Scenario::S5HbmUncorrectable => match action {
                A::ResetGpu | A::RmaGpu => Acceptable,
                A::ReplaceCable | A::Reseat => OverRemediation,
                _ if passive => UnderReaction,
                _ => Wrong,
            },
            Scenario::S6GpuOffBus => match action {
                A::Reseat | A::DrainNode => Acceptable,
                A::RmaGpu | A::ReplaceCable => OverRemediation,
                _ if passive => UnderReaction,
                _ => Wrong,
            },
            Scenario::S7NvlinkDegraded => match action {
                A::ResetGpu => Acceptable,
                _ if costly => OverRemediation,
                _ if passive => UnderReaction,
                _ => Wrong,
            },
            Scenario::S8PcieDegraded => match action {
                A::DrainNode => Acceptable,
                A::RmaGpu | A::ReplaceCable => OverRemediation,
                _ if passive => UnderReaction,
                _ => Wrong,
            },
            Scenario::S9aFabricCongestion => match action {
                A::Monitor | A::ReduceConcurrency => Acceptable,
                _ if costly => OverRemediation,
                A::None => UnderReaction,
                _ => Wrong,
            },
            Scenario::S9bFabricPhy => match action {
                A::RescheduleTraffic | A::DrainNode => Acceptable,
                A::RmaGpu | A::Reseat => OverRemediation,
                _ if passive => UnderReaction,
                _ => Wrong,
            },
            Scenario::S10KvCachePressure => match action {
                A::ReduceConcurrency | A::RescheduleTraffic => Acceptable,
                A::RmaGpu | A::ReplaceCable | A::Reseat | A::ResetGpu | A::RebootNode => OverRemediation,
                _ if passive => UnderReaction,
                _ => Wrong,
            },
            Scenario::S11CudaFault => match action {
                A::RmaGpu | A::ReplaceCable | A::Reseat => OverRemediation,
                _ if passive => UnderReaction,
                _ => Wrong,
            },
            Scenario::S12GspTimeout => match action {
                A::UpdateFirmware | A::DrainNode | A::RebootNode => Acceptable,
                _ if costly => OverRemediation,
                _ if passive => UnderReaction,
                _ => Wrong,
            },
        }
    }

    /// Signal names (metrics or kernel-log markers) whose mention in the
    /// evidence earns the evidence point.
    pub fn signature_signals(self) -> &'static [&'static str] {
        match self {
            Scenario::Healthy | Scenario::DecoyOnly => &[],
            Scenario::S1CoolingLoop | Scenario::S2ThermalStraggler => &[
                "DCGM_FI_DEV_GPU_TEMP",
                "DCGM_FI_DEV_MEMORY_TEMP",
                "DCGM_FI_DEV_CLOCKS_EVENT_REASONS",
                "DCGM_FI_DEV_SM_CLOCK",
                "DCGM_FI_DEV_THERMAL_VIOLATION",
            ],
            Scenario::S3PowerCap | Scenario::S3PowerBrake => &[
                "DCGM_FI_DEV_POWER_USAGE",
                "DCGM_FI_DEV_ENFORCED_POWER_LIMIT",
                "DCGM_FI_DEV_CLOCKS_EVENT_REASONS",
                "DCGM_FI_DEV_POWER_VIOLATION",
            ],
            Scenario::S4RowRemapPending => &[
                "DCGM_FI_DEV_ROW_REMAP_PENDING",
                "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
                "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
                "Xid 63",
                "Xid 94",
            ],
            Scenario::S5HbmUncorrectable => &[
                "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
                "DCGM_FI_DEV_ROW_REMAP_FAILURE",
                "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
                "Xid 48",
                "Xid 95",
                "Xid 64",
            ],
            Scenario::S6GpuOffBus => &["Xid 79", "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "fallen off the bus"],
            Scenario::S7NvlinkDegraded => &[
                "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
                "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL",
                "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
                "Xid 74",
            ],
            Scenario::S8PcieDegraded => {
                &["DCGM_FI_DEV_PCIE_LINK_GEN", "DCGM_FI_DEV_PCIE_LINK_WIDTH", "DCGM_FI_DEV_PCIE_REPLAY_COUNTER"]
            }
            Scenario::S9aFabricCongestion => {
                &["node_infiniband_port_transmit_wait_total", "node_ethtool_rx_prio3_pause", "rx_prio3_pause"]
            }
            Scenario::S9bFabricPhy => &[
                "node_infiniband_symbol_error_total",
                "node_infiniband_link_error_recovery_total",
                "node_infiniband_link_downed_total",
                "node_infiniband_port_errors_received_total",
            ],
            Scenario::S10KvCachePressure => &[
                "vllm:kv_cache_usage_perc",
                "vllm:num_preemptions_total",
                "vllm:num_requests_waiting",
                "vllm:time_to_first_token_seconds",
            ],
            Scenario::S11CudaFault => &["Xid 13", "Xid 31", "DCGM_FI_DEV_XID_ERRORS"],
            Scenario::S12GspTimeout => &["Xid 119", "Xid 120"],
        }
    }
}

/// Every root-cause label an operator may answer (the closed list).
pub const LABELS: [&str; 17] = [
    LABEL_NONE,
    "thermal.cooling_loop_degraded",
    "straggler.thermal_single_gpu",
    "power.cap_enforced",
    "power.psu_brake",
    "memory.hbm_row_remap_pending",
    "memory.hbm_uncorrectable",
    "pcie.gpu_off_bus",
    "nvlink.link_degraded",
    "pcie.link_degraded",
    "fabric.congestion_pfc",
    "fabric.link_phy",
    "serving.kv_cache_pressure",
    "app.cuda_fault",
    "gpu.sm_hw",
    "driver.gsp_timeout",
    "monitoring.exporter_down",
];

/// The action vocabulary of docs/AIOPS.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    None,
    Monitor,
    RestartApp,
    ResetGpu,
    ResetGpuAtNextDrain,
    RebootNode,
    DrainNode,
    DrainRack,
    Reseat,
    ReplaceCable,
    RmaGpu,
    ScaleOut,
    ReduceConcurrency,
    RescheduleTraffic,
    EscalateFacilities,
    UpdateFirmware,
    /// Put a setting changed by hand back (investigate mode only).
    RestoreConfig,
}

impl Action {
    pub const ALL: [Action; 16] = [
        Action::None,
        Action::Monitor,
        Action::RestartApp,
        Action::ResetGpu,
        Action::ResetGpuAtNextDrain,
        Action::RebootNode,
        Action::DrainNode,
        Action::DrainRack,
        Action::Reseat,
        Action::ReplaceCable,
        Action::RmaGpu,
        Action::ScaleOut,
        Action::ReduceConcurrency,
        Action::RescheduleTraffic,
        Action::EscalateFacilities,
        Action::UpdateFirmware,
    ];

    /// Every action of investigate mode: the triage list plus `RESTORE_CONFIG`.
    pub fn every() -> impl Iterator<Item = Action> {
        Action::ALL.into_iter().chain([Action::RestoreConfig])
    }

    /// An investigate-mode action by name.
    pub fn parse_any(s: &str) -> Option<Action> {
        Action::every().find(|a| a.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::None => "NONE",
            Action::Monitor => "MONITOR",
            Action::RestartApp => "RESTART_APP",
            Action::ResetGpu => "RESET_GPU",
            Action::ResetGpuAtNextDrain => "RESET_GPU_AT_NEXT_DRAIN",
            Action::RebootNode => "REBOOT_NODE",
            Action::DrainNode => "DRAIN_NODE",
            Action::DrainRack => "DRAIN_RACK",
            Action::Reseat => "RESEAT",
            Action::ReplaceCable => "REPLACE_CABLE",
            Action::RmaGpu => "RMA_GPU",
            Action::ScaleOut => "SCALE_OUT",
            Action::ReduceConcurrency => "REDUCE_CONCURRENCY",
            Action::RescheduleTraffic => "RESCHEDULE_TRAFFIC",
            Action::EscalateFacilities => "ESCALATE_FACILITIES",
            Action::UpdateFirmware => "UPDATE_FIRMWARE",
            Action::RestoreConfig => "RESTORE_CONFIG",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// The verdict on an action for a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionClass {
    /// 25 points.
    Correct,
    /// 15 points (another rung of the escalation ladder).
    Acceptable,
    /// 0 points: none/monitor when action was needed (dangerous).
    UnderReaction,
    /// 0 points: a different action that neither helps nor costs much.
    Wrong,
    /// −10 points: RMA/replace/reboot when a reset (or nothing) fixes it.
    OverRemediation,
}

impl ActionClass {
    pub fn points(self) -> f64 {
        match self {
            ActionClass::Correct => 25.0,
            ActionClass::Acceptable => 15.0,
            ActionClass::UnderReaction | ActionClass::Wrong => 0.0,
            ActionClass::OverRemediation => -10.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_has_a_listed_label_and_a_correct_action() {
        for s in Scenario::ALL {
            assert!(LABELS.contains(&s.label()), "{s:?}");
            assert_eq!(s.judge(s.action()), ActionClass::Correct);
            assert_eq!(Scenario::from_id(s.id()), Some(s));
            if s.is_fault() {
                assert!(!s.signature_signals().is_empty());
            }
        }
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(a));
        }
    }

    #[test]
    fn rma_on_pending_remap_is_over_remediation() {
        assert_eq!(Scenario::S4RowRemapPending.judge(Action::RmaGpu), ActionClass::OverRemediation);
        assert_eq!(Scenario::S3PowerCap.judge(Action::DrainNode), ActionClass::OverRemediation);
        assert_eq!(Scenario::S5HbmUncorrectable.judge(Action::Monitor), ActionClass::UnderReaction);
    }
}
