//! Scoring an investigation: the submission is validated strictly, then
//! checked item by item against the world's faults. Detection 10, location
//! 25 (loop, rack, node, GPU, link levels), root cause 25, action 25 / 15 /
//! 0 / −10 from the runbook's table ([`super::cases::ACTION_TABLE`]), onset
//! 10 within the case's tolerance, evidence 5 for one `{entity, signal}`
//! pair that names a faulty entity and a signature signal. With two faults,
//! location, root cause, action and onset are shared between them.

use serde::Serialize;
use serde_json::{Map, Value};

use super::cases::{judge, labels, Level};
use super::world::{Fault, World};
use crate::scenario::{Action, ActionClass};
use crate::score::{ItemScores, FULL};
use crate::time::parse_rfc3339;

/// A location as submitted (names, not indices).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Loc {
    pub cooling_loop: Option<String>,
    pub rack: Option<String>,
    pub node: Option<String>,
    pub gpu: Option<u32>,
    pub link: Option<String>,
}

/// One fault as submitted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Claim {
    pub root_cause: String,
    pub location: Loc,
    pub onset: Option<i64>,
    pub action: Action,
}

/// A validated submission.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Submission {
    pub detected: bool,
    /// The main fault, then the `second` one when given.
    pub claims: Vec<Claim>,
    pub evidence: Vec<(String, String)>,
}

const TOP_KEYS: [&str; 10] =
    ["detected", "root_cause", "location", "onset", "action", "second", "evidence", "confidence", "summary", "decoys"];

fn short(obj: &Map<String, Value>, key: &str, max: usize) -> Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.trim().to_string())),
        Some(_) => Err(format!("'{key}' must be a string of at most {max} characters or null")),
    }
}

fn location(v: Option<&Value>) -> Result<Loc, String> {
    let obj = match v {
        None | Some(Value::Null) => return Ok(Loc::default()),
        Some(Value::Object(o)) => o,
        Some(_) => return Err("'location' must be an object {loop, rack, node, gpu, link} or null".into()),
    };
    if let Some(k) = obj.keys().find(|k| !matches!(k.as_str(), "loop" | "rack" | "node" | "gpu" | "link")) {
        return Err(format!("unknown location field '{}'", k.chars().take(40).collect::<String>()));
    }
    let gpu = crate::diagnosis::location_gpu(obj)?;
    Ok(Loc {
        cooling_loop: short(obj, "loop", 64)?,
        rack: short(obj, "rack", 64)?,
        node: short(obj, "node", 64)?,
        gpu,
        link: short(obj, "link", 64)?,
    })
}

fn claim(obj: &Map<String, Value>) -> Result<Claim, String> {
    let root_cause = match obj.get("root_cause") {
        Some(Value::String(s)) if labels().contains(&s.as_str()) => s.clone(),
        Some(Value::String(s)) => {
            return Err(format!("root_cause '{}' is not one of the labels", s.chars().take(40).collect::<String>()))
        }
        _ => return Err("'root_cause' must be a label".into()),
    };
    let action = match obj.get("action") {
        Some(Value::String(s)) => Action::parse_any(s)
            .ok_or_else(|| format!("action '{}' is not one of the actions", s.chars().take(40).collect::<String>()))?,
        _ => return Err("'action' must be an action name".into()),
    };
    let onset = match obj.get("onset") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            Some(parse_rfc3339(s).ok_or("'onset' must be an RFC 3339 time such as 2026-05-12T10:04:30Z")?)
        }
        Some(_) => return Err("'onset' must be a time string or null".into()),
    };
    Ok(Claim { root_cause, location: location(obj.get("location"))?, onset, action })
}

/// Validates `submit_diagnosis` arguments (untrusted) into a submission.
pub fn parse_submission(v: &Value) -> Result<Submission, String> {
    if v.to_string().len() > 64 * 1024 {
        return Err("the submission is larger than 64 KiB".into());
    }
    let obj = v.as_object().ok_or("the submission must be a JSON object")?;
    if let Some(k) = obj.keys().find(|k| !TOP_KEYS.contains(&k.as_str())) {
        return Err(format!("unknown field '{}'", k.chars().take(40).collect::<String>()));
    }
    let detected = obj.get("detected").and_then(Value::as_bool).ok_or("'detected' must be true or false")?;
    let mut claims = vec![claim(obj)?];
    match obj.get("second") {
        None | Some(Value::Null) => {}
        Some(Value::Object(o)) => {
            if let Some(k) = o.keys().find(|k| !matches!(k.as_str(), "root_cause" | "location" | "onset" | "action")) {
                return Err(format!("unknown field 'second.{}'", k.chars().take(40).collect::<String>()));
            }
            claims.push(claim(o)?);
        }
        Some(_) => return Err("'second' must be an object or null".into()),
    }
    let evidence = match obj.get("evidence") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if items.len() <= 20 => items
            .iter()
            .map(|it| {
                let o = it.as_object().ok_or("each evidence item must be {\"entity\": ..., \"signal\": ...}")?;
                match (short(o, "entity", 128)?, short(o, "signal", 128)?) {
                    (Some(e), Some(s)) => Ok((e, s)),
                    _ => Err("each evidence item needs both 'entity' and 'signal'".to_string()),
                }
            })
            .collect::<Result<_, String>>()?,
        Some(_) => return Err("'evidence' must be a list of at most 20 {entity, signal} objects".into()),
    };
    short(obj, "summary", 2000)?;
    Ok(Submission { detected, claims, evidence })
}

/// The score of one investigation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InvestigationScore {
    pub total: f64,
    pub items: ItemScores,
    /// No valid submission within budget.
    pub unanswered: bool,
    pub over_remediation: bool,
    pub false_positive: bool,
}

fn eq(a: &Option<String>, b: &str) -> bool {
    a.as_deref().is_some_and(|a| a.eq_ignore_ascii_case(b))
}

/// The rack a location names, directly or through its node's name.
fn rack_of(l: &Loc) -> Option<String> {
    l.rack.clone().or_else(|| l.node.as_deref().and_then(|n| n.split_once("-n")).map(|(r, _)| r.to_string()))
}

/// Location points of a claim against a fault.
pub fn location_points(w: &World, l: &Loc, f: &Fault) -> f64 {
    let t = &w.topo;
    let p = &f.place;
    let node = p.node.map(|n| t.nodes[n].name.as_str());
    let rack = p.rack.map(|r| t.racks[r].name.as_str());
    let lp = p.cooling_loop.map(|x| t.loops[x].name.as_str());
    let same_node = node.is_some_and(|n| eq(&l.node, n));
    let rack_ok = rack.is_some_and(|r| rack_of(l).is_some_and(|x| x.eq_ignore_ascii_case(r)));
    let link_ok = match &p.link {
        Some(k) => eq(&l.link, k),
        None => l.link.is_none(),
    };
    let exact = match f.level {
        Level::Gpu | Level::GpuLink => same_node && l.gpu == p.gpu.map(|g| g as u32) && link_ok,
        Level::Node | Level::NodePort => same_node && l.gpu.is_none() && link_ok,
        Level::Rack => rack_ok && l.node.is_none() && l.gpu.is_none(),
        Level::Loop => lp.is_some_and(|x| eq(&l.cooling_loop, x)) && l.rack.is_none() && l.node.is_none(),
    };
    let in_loop = || {
        lp.is_some_and(|x| {
            let li = t.loop_by_name(x);
            rack_of(l).and_then(|r| t.rack_by_name(&r)).is_some_and(|r| Some(t.racks[r].cooling_loop) == li)
        })
    };
    if exact {
        FULL.localization
    } else if same_node {
        12.0
    } else if rack_ok || (f.level == Level::Loop && in_loop()) {
        5.0
    } else {
        0.0
    }
}

fn evidence_matches(w: &World, f: &Fault, entity: &str, signal: &str) -> bool {
    let t = &w.topo;
    let e = entity.to_ascii_lowercase();
    let s = signal.to_ascii_lowercase();
    let names: Vec<String> = match f.level {
        Level::Loop => f.place.cooling_loop.map(|l| t.loops[l].name.clone()).into_iter().collect(),
        Level::Rack => f.place.rack.map(|r| t.racks[r].name.clone()).into_iter().collect(),
        _ => f.place.node.map(|n| t.nodes[n].name.clone()).into_iter().collect(),
    };
    names.iter().any(|n| e.contains(&n.to_ascii_lowercase()))
        && f.case.signals().iter().any(|sig| s.contains(&sig.to_ascii_lowercase()))
}

/// Scores a submission (or none) against the world's truth.
pub fn score_submission(w: &World, sub: Option<&Submission>) -> InvestigationScore {
    let Some(sub) = sub else {
        return InvestigationScore {
            total: 0.0,
            items: ItemScores::default(),
            unanswered: true,
            over_remediation: false,
            false_positive: false,
        };
    };
    let mut items = ItemScores::default();
    let truth_detected = !w.faults.is_empty();
    if sub.detected == truth_detected {
        items.detection = FULL.detection;
    }
    let mut over = false;
    if w.faults.is_empty() {
        let main = &sub.claims[0];
        let class = judge("none", main.action);
        over = class == ActionClass::OverRemediation;
        items.action = class.points();
        if !sub.detected {
            items.localization = FULL.localization;
            items.onset = FULL.onset;
            items.evidence = FULL.evidence;
            if main.root_cause == "none" {
                items.root_cause = FULL.root_cause;
            }
        }
    } else {
        let share = 1.0 / w.faults.len() as f64;
        let mut used = vec![false; sub.claims.len()];
        for f in &w.faults {
            // The claim that best matches this fault (each claim used once).
            let best = (0..sub.claims.len()).filter(|&i| !used[i]).max_by(|&a, &b| {
                let k = |i: usize| {
                    let c = &sub.claims[i];
                    f64::from(u8::from(c.root_cause == f.label)) * 100.0 + location_points(w, &c.location, f)
                };
                k(a).total_cmp(&k(b))
            });
            let Some(i) = best else { continue };
            used[i] = true;
            let c = &sub.claims[i];
            items.localization += share * location_points(w, &c.location, f);
            if c.root_cause == f.label {
                items.root_cause += share * FULL.root_cause;
            }
            let class = judge(f.label, c.action);
            over |= class == ActionClass::OverRemediation;
            items.action += share * class.points();
            if c.onset.is_some_and(|o| (o - f.onset).abs() <= f.tolerance_s) {
                items.onset += share * FULL.onset;
            }
        }
        // A second claim on a one-fault episode costs what a false alarm does.
        if used.iter().any(|u| !u) {
            items.detection -= 5.0;
        }
        if sub.evidence.iter().any(|(e, s)| w.faults.iter().any(|f| evidence_matches(w, f, e, s))) {
            items.evidence = FULL.evidence;
        }
    }
    InvestigationScore {
        total: items.total(),
        items,
        unanswered: false,
        over_remediation: over,
        false_positive: !truth_detected && sub.detected,
    }
}

/// The submission that names the truth exactly (what `oracle` submits).
pub fn truth_submission(w: &World) -> Value {
    let claim = |f: &Fault| {
        let mut location = w.place_json(&f.place);
        trim_location(&mut location, f.level);
        serde_json::json!({
            "root_cause": f.label,
            "location": location,
            "onset": crate::time::format_rfc3339(f.onset),
            "action": super::cases::action_row(f.label).map_or("NONE", |r| r.preferred.as_str()),
        })
    };
    let mut v = match w.faults.first() {
        None => {
            serde_json::json!({"detected": false, "root_cause": "none", "location": null, "onset": null, "action": "NONE"})
        }
        Some(f) => {
            let mut c = claim(f);
            c["detected"] = Value::Bool(true);
            c
        }
    };
    if let Some(f) = w.faults.get(1) {
        v["second"] = claim(f);
    }
    let t = &w.topo;
    let evidence: Vec<Value> = w
        .faults
        .iter()
        .map(|f| {
            let entity = match f.level {
                Level::Loop => f.place.cooling_loop.map(|l| t.loops[l].name.clone()),
                Level::Rack => f.place.rack.map(|r| t.racks[r].name.clone()),
                _ => f.place.node.map(|n| t.nodes[n].name.clone()),
            };
            serde_json::json!({"entity": entity.unwrap_or_default(), "signal": f.case.signals().first().copied().unwrap_or("")})
        })
        .collect();
    v["evidence"] = Value::Array(evidence);
    v
}

fn trim_location(loc: &mut Value, level: Level) {
    let Some(o) = loc.as_object_mut() else { return };
    let keep: &[&str] = match level {
        Level::Loop => &["loop"],
        Level::Rack => &["rack"],
        Level::Node | Level::NodePort => &["rack", "node", "link"],
        Level::Gpu | Level::GpuLink => &["rack", "node", "gpu", "link"],
    };
    o.retain(|k, _| keep.contains(&k.as_str()));
}
