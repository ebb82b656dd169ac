//! Verdicts: the claim's statistic over runs, a bootstrap confidence interval over seeds, and the
//! decision rule, computed from the records on disk alone.

use crate::error::StudyError;
use crate::plan::Plan;
use crate::spec::{Direction, Statistic, StudySpec};
use serde::Serialize;
use serde_json::{Value, json};
use sgdlab_linalg::RngStream;
use sgdlab_linalg::stats::{bootstrap_ci, spearman};
use sgdlab_train::{RunStatus, read_record};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A run as the verdict sees it.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub id: String,
    pub seed: u64,
    pub knobs: BTreeMap<String, Value>,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<u64>,
    /// Last value of every `probe/name` in the run's metrics.jsonl.
    pub metrics: BTreeMap<String, f64>,
}

/// Reads every planned run's record and final metrics.
pub fn summarise_runs(dir: &Path, plan: &Plan) -> Result<Vec<RunSummary>, StudyError> {
    let mut out = Vec::new();
    for r in &plan.runs {
        let rd = dir.join("runs").join(&r.id);
        let rec = read_record(&rd)?;
        let (status, step) = match &rec {
            None => ("missing".to_string(), None),
            Some(rec) => (
                serde_json::to_value(rec.status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
                rec.diverged_at_step.or(Some(rec.steps_completed)),
            ),
        };
        let mut metrics = BTreeMap::new();
        if rec.is_some() && rd.join("metrics.jsonl").exists() {
            // Rows are in step order, so the last row of each probe/name wins.
            for m in sgdlab_train::read_metrics(&rd)? {
                if let Some(v) = m.value {
                    metrics.insert(format!("{}/{}", m.probe, m.name), v);
                }
            }
        }
        out.push(RunSummary { id: r.id.clone(), seed: r.seed, knobs: r.knobs.clone(), status, step, metrics });
    }
    Ok(out)
}

fn knob_f64(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// A knob value as a label: strings without quotes.
fn label(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// The statistic of one group with its interval and decision.
#[derive(Debug, Clone, Serialize)]
pub struct GroupEffect {
    pub group: Value,
    pub value: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub seeds: usize,
    pub verdict: String,
}

fn decide(direction: Direction, threshold: f64, lo: f64, hi: f64) -> &'static str {
    match direction {
        Direction::Greater if lo > threshold => "reproduced",
        Direction::Greater if hi < threshold => "not reproduced",
        Direction::Less if hi < threshold => "reproduced",
        Direction::Less if lo > threshold => "not reproduced",
        _ => "inconclusive",
    }
}

/// Computes the verdict of a study from its directory and writes `verdict.json`.
pub fn compute_verdict(
    dir: &Path,
    spec: &StudySpec,
    plan: &Plan,
    context: &sgdlab_train::RunContext,
) -> Result<Value, StudyError> {
    let runs = summarise_runs(dir, plan)?;
    let v = &spec.verdict;
    let used: Vec<&RunSummary> =
        runs.iter().filter(|r| r.status == "completed" && r.metrics.contains_key(&v.metric)).collect();
    let excluded: Vec<Value> = runs
        .iter()
        .filter(|r| !(r.status == "completed" && r.metrics.contains_key(&v.metric)))
        .map(|r| {
            let mut e = json!({"id": r.id, "status": r.status});
            if r.status == "diverged" {
                e["step"] = json!(r.step);
            }
            if r.status == "completed" {
                e["reason"] = json!(format!("no {} measured", v.metric));
            }
            e
        })
        .collect();
    let groups: BTreeSet<String> =
        used.iter().map(|r| if v.group.is_empty() { String::new() } else { label(&r.knobs[&v.group]) }).collect();
    let mut effects = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        let in_group: Vec<&&RunSummary> =
            used.iter().filter(|r| v.group.is_empty() || &label(&r.knobs[&v.group]) == g).collect();
        let seeds: Vec<u64> = in_group.iter().map(|r| r.seed).collect::<BTreeSet<_>>().into_iter().collect();
        let stream = RngStream::new(0).child("bootstrap").child(&gi.to_string());
        let (value, lo, hi, n) = match v.statistic {
            Statistic::Ratio => {
                let knobs: Vec<f64> = in_group.iter().filter_map(|r| knob_f64(&r.knobs[&v.knob])).collect();
                if knobs.len() != in_group.len() {
                    return Err(StudyError::Verdict(format!(
                        "{}: knob '{}' must be numeric for a ratio",
                        spec.name, v.knob
                    )));
                }
                let (kmin, kmax) =
                    knobs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &k| (a.min(k), b.max(k)));
                let mut logs = Vec::new();
                for s in &seeds {
                    let at = |k: f64| {
                        in_group
                            .iter()
                            .find(|r| r.seed == *s && knob_f64(&r.knobs[&v.knob]) == Some(k))
                            .map(|r| r.metrics[&v.metric])
                    };
                    if let (Some(a), Some(b)) = (at(kmax), at(kmin)) {
                        if a > 0.0 && b > 0.0 {
                            logs.push((a / b).ln());
                        } else {
                            return Err(StudyError::Verdict(format!(
                                "{}: a ratio needs positive {} values, got {a} and {b}",
                                spec.name, v.metric
                            )));
                        }
                    }
                }
                if logs.is_empty() {
                    effects.push(GroupEffect {
                        group: json!(g),
                        value: f64::NAN,
                        ci_low: f64::NAN,
                        ci_high: f64::NAN,
                        seeds: 0,
                        verdict: "inconclusive".into(),
                    });
                    continue;
                }
                let ci = bootstrap_ci(
                    logs.len(),
                    |idx| idx.iter().map(|&i| logs[i]).sum::<f64>() / idx.len() as f64,
                    v.resamples,
                    v.level,
                    &stream,
                )
                .map_err(|e| StudyError::Verdict(e.to_string()))?;
                (ci.estimate.exp(), ci.lower.exp(), ci.upper.exp(), logs.len())
            }
            Statistic::Spearman => {
                let pts: Vec<(u64, f64, f64)> = in_group
                    .iter()
                    .filter_map(|r| Some((r.seed, knob_f64(&r.knobs[&v.knob])?, r.metrics[&v.metric])))
                    .collect();
                let stat = |idx: &[usize]| {
                    let (mut x, mut y) = (Vec::new(), Vec::new());
                    for &i in idx {
                        for p in pts.iter().filter(|p| p.0 == seeds[i]) {
                            x.push(p.1);
                            y.push(p.2);
                        }
                    }
                    spearman(&x, &y).unwrap_or(f64::NAN)
                };
                let ci = bootstrap_ci(seeds.len(), stat, v.resamples, v.level, &stream)
                    .map_err(|e| StudyError::Verdict(e.to_string()))?;
                (ci.estimate, ci.lower, ci.upper, seeds.len())
            }
        };
        let verdict = if n < 2 { "inconclusive" } else { decide(v.direction, v.threshold, lo, hi) };
        effects.push(GroupEffect {
            group: json!(g),
            value,
            ci_low: lo,
            ci_high: hi,
            seeds: n,
            verdict: verdict.into(),
        });
    }
    let overall = if effects.is_empty() {
        "inconclusive"
    } else if effects.iter().all(|e| e.verdict == "reproduced") {
        "reproduced"
    } else if effects.iter().any(|e| e.verdict == "not reproduced") {
        "not reproduced"
    } else {
        "inconclusive"
    };
    // The headline effect: the group closest to failing the rule.
    let head = effects
        .iter()
        .min_by(|a, b| {
            let margin = |e: &GroupEffect| match v.direction {
                Direction::Greater => e.ci_low - v.threshold,
                Direction::Less => v.threshold - e.ci_high,
            };
            margin(a).total_cmp(&margin(b))
        })
        .cloned();
    let (probe, name) = v.metric.split_once('/').expect("checked in spec");
    let statistic_description = if v.description.is_empty() {
        match v.statistic {
            Statistic::Ratio => format!(
                "geometric mean over seeds of {m}({k} = largest) / {m}({k} = smallest)",
                m = v.metric,
                k = v.knob
            ),
            Statistic::Spearman => format!("Spearman correlation between {} and {} over runs", v.knob, v.metric),
        }
    } else {
        v.description.clone()
    };
    let cmp = match v.direction {
        Direction::Greater => "above",
        Direction::Less => "below",
    };
    let other = match v.direction {
        Direction::Greater => "below",
        Direction::Less => "above",
    };
    let group_text = if v.group.is_empty() { String::new() } else { format!(", in every {} group", v.group) };
    let verdict = json!({
        "study": spec.name,
        "title": spec.title,
        "section": spec.section,
        "claim": spec.claim,
        "verdict": overall,
        "statistic": {"name": match v.statistic { Statistic::Ratio => "ratio", Statistic::Spearman => "spearman" }, "metric": {"probe": probe, "name": name}, "description": statistic_description},
        "effect": head.as_ref().map(|h| json!({"value": h.value, "ci_low": h.ci_low, "ci_high": h.ci_high, "level": v.level, "group": h.group,
            "method": format!("percentile bootstrap over seeds, {} resamples, seed 0", v.resamples)})),
        "groups": effects,
        "decision_rule": format!("reproduced if the {:.0}% interval lies {cmp} {}{group_text}; not reproduced if it lies {other} it in some group; otherwise inconclusive", 100.0 * v.level, v.threshold),
        "runs": {"planned": runs.len(), "used": used.len(), "excluded": excluded},
        "per_run": runs,
        "figures": spec.figures.iter().map(|f| {
            let (p, n) = f.metric.split_once('/').unwrap_or((&f.metric, ""));
            json!({"name": f.name, "kind": f.kind, "knob": f.knob, "metric": {"probe": p, "name": n}, "log_x": f.log_x, "log_y": f.log_y})
        }).collect::<Vec<_>>(),
        "notes": spec.notes,
        "quick": plan.quick,
        "spec_hash": plan.spec_hash,
        "sgdlab_version": context.sgdlab_version,
        "git_revision": context.git_revision,
    });
    let text = serde_json::to_string_pretty(&verdict).expect("serialises");
    sgdlab_train::record::write_text_atomic(&dir.join("verdict.json"), &text)?;
    let _ = RunStatus::Completed;
    Ok(verdict)
}
