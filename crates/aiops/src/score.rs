//! The deterministic checklist scorer of docs/AIOPS.md: detection 10,
//! localization 25/12/5 (padding divides), root cause 25, action
//! 25/15/0/−10, onset ±60 s 10, evidence 5. No model judges a score.

use serde::Serialize;

use crate::diagnosis::{parse_answer, Diagnosis, Location};
use crate::scenario::{ActionClass, Scenario};

/// Points per item.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct ItemScores {
    pub detection: f64,
    pub localization: f64,
    pub root_cause: f64,
    pub action: f64,
    pub onset: f64,
    pub evidence: f64,
}

/// Full points per item.
pub const FULL: ItemScores =
    ItemScores { detection: 10.0, localization: 25.0, root_cause: 25.0, action: 25.0, onset: 10.0, evidence: 5.0 };

/// Onset tolerance, seconds.
pub const ONSET_TOLERANCE_S: i64 = 60;

impl ItemScores {
    pub fn total(&self) -> f64 {
        self.detection + self.localization + self.root_cause + self.action + self.onset + self.evidence
    }

    /// `(name, points, full points)` in a fixed order.
    pub fn named(&self) -> [(&'static str, f64, f64); 6] {
        [
            ("detection", self.detection, FULL.detection),
            ("localization", self.localization, FULL.localization),
            ("root_cause", self.root_cause, FULL.root_cause),
            ("action", self.action, FULL.action),
            ("onset", self.onset, FULL.onset),
            ("evidence", self.evidence, FULL.evidence),
        ]
    }
}

/// The score of one answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiagnosisScore {
    pub total: f64,
    pub items: ItemScores,
    pub unparseable: bool,
    pub parse_error: Option<String>,
    /// JSON had to be dug out of prose or a code fence.
    pub lenient: bool,
    pub action_class: Option<ActionClass>,
    pub over_remediation: bool,
    /// Something was reported on an episode where nothing was wrong.
    pub false_positive: bool,
}

/// Scores raw answer text against the truth of a scenario.
pub fn score_answer(scenario: Scenario, truth: &Diagnosis, raw: &str) -> (DiagnosisScore, Option<Diagnosis>) {
    match parse_answer(raw) {
        Ok(parsed) => {
            let mut s = score_diagnosis(scenario, truth, &parsed.diagnosis);
            s.lenient = parsed.lenient;
            (s, Some(parsed.diagnosis))
        }
        Err(e) => (
            DiagnosisScore {
                total: 0.0,
                items: ItemScores::default(),
                unparseable: true,
                parse_error: Some(e.to_string()),
                lenient: false,
                action_class: None,
                over_remediation: false,
                false_positive: false,
            },
            None,
        ),
    }
}

/// The rack a location names, directly or through a node name `rNN-nMM`.
fn rack_of(l: &Location) -> Option<String> {
    l.rack.clone().or_else(|| l.node.as_deref().and_then(|n| n.split_once("-n")).map(|(r, _)| r.to_string()))
}

fn eq_opt_ci(a: &Option<String>, b: &Option<String>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => x.trim().eq_ignore_ascii_case(y.trim()),
        _ => false,
    }
}

/// Localization points of one candidate against the truth location.
pub fn location_points(candidate: &Location, truth: &Location) -> f64 {
    let same_node = truth.node.is_some() && eq_opt_ci(&candidate.node, &truth.node);
    let exact = if truth.node.is_some() {
        same_node && candidate.gpu == truth.gpu && eq_opt_ci(&candidate.link, &truth.link)
    } else {
        candidate.node.is_none()
            && candidate.gpu.is_none()
            && candidate.link.is_none()
            && eq_opt_ci(&candidate.rack, &truth.rack)
    };
    let rack_ok = match (rack_of(candidate), rack_of(truth)) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(&b),
        _ => false,
    };
    if exact {
        FULL.localization
    } else if same_node {
        12.0
    } else if rack_ok {
        5.0
    } else {
        0.0
    }
}

/// Scores a validated diagnosis.
pub fn score_diagnosis(scenario: Scenario, truth: &Diagnosis, d: &Diagnosis) -> DiagnosisScore {
    let mut items = ItemScores::default();
    if d.detected == truth.detected {
        items.detection = FULL.detection;
    }
    items.localization = match truth.location.first() {
        None => {
            if d.location.is_empty() || !d.detected {
                FULL.localization
            } else {
                0.0
            }
        }
        Some(t) => {
            let best = d.location.iter().map(|c| location_points(c, t)).fold(0.0, f64::max);
            // Padding a list of guesses is penalised: the best candidate's
            // points are shared among all candidates.
            best / d.location.len().max(1) as f64
        }
    };
    if d.root_cause == truth.root_cause {
        items.root_cause = FULL.root_cause;
    }
    let class = scenario.judge(d.action);
    items.action = class.points();
    items.onset = match truth.onset {
        None => {
            if d.onset.is_none() || !d.detected {
                FULL.onset
            } else {
                0.0
            }
        }
        Some(t) => match d.onset {
            Some(o) if (o - t).abs() <= ONSET_TOLERANCE_S => FULL.onset,
            _ => 0.0,
        },
    };
    let signals = scenario.signature_signals();
    items.evidence = if signals.is_empty() {
        if d.detected {
            0.0
        } else {
            FULL.evidence
        }
    } else if d.evidence.iter().any(|e| {
        let e = e.to_ascii_lowercase();
        signals.iter().any(|s| e.contains(&s.to_ascii_lowercase()))
    }) {
        FULL.evidence
    } else {
        0.0
    };
    DiagnosisScore {
        total: items.total(),
        items,
        unparseable: false,
        parse_error: None,
        lenient: false,
        action_class: Some(class),
        over_remediation: class == ActionClass::OverRemediation,
        false_positive: !truth.detected && d.detected,
    }
}
