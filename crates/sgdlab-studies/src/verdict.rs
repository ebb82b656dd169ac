//! Verdicts: every claim decided from the records on disk alone (run records and metrics), then
//! summarised into the study's verdict (`verdict.json`).

use crate::error::StudyError;
use crate::records::{
    ClaimRecord, ClaimRunValue, ExcludedRun, GroupRecord, PlanRecord, RunCounts, RunState, RunSummary, Verdict,
    VerdictRecord, write_json,
};
use crate::spec::{ClaimSpec, PopulationSpec, StatisticSpec, StudySpec};
use crate::statistic::{self, Obs, in_arm};
use crate::value::{RunData, Val};
use sgdlab_linalg::{RngStream, stats};
use sgdlab_train::{RunContext, read_record};
use std::collections::BTreeSet;
use std::path::Path;

/// A planned run with its state and (for completed runs) its metric series.
pub struct LoadedRun {
    pub summary: RunSummary,
    pub data: RunData,
}

/// Reads every planned run's record and the rows of the metrics in `wanted` (all when `None`).
pub fn load_runs(
    dir: &Path,
    plan: &PlanRecord,
    wanted: Option<&BTreeSet<String>>,
) -> Result<Vec<LoadedRun>, StudyError> {
    let mut out = Vec::with_capacity(plan.runs.len());
    for r in &plan.runs {
        let rd = dir.join("runs").join(&r.id);
        let rec = read_record(&rd)?;
        let (status, step, message) = match &rec {
            None => (RunState::Missing, None, None),
            Some(rec) => (
                RunState::from_status(rec.status),
                rec.diverged_at_step.or(Some(rec.steps_completed)),
                rec.message.clone(),
            ),
        };
        let rows = if status == RunState::Completed {
            let all = sgdlab_train::read_metrics(&rd)?;
            match wanted {
                Some(w) => all.into_iter().filter(|m| w.contains(&format!("{}/{}", m.probe, m.name))).collect(),
                None => all,
            }
        } else {
            Vec::new()
        };
        out.push(LoadedRun {
            summary: RunSummary {
                id: r.id.clone(),
                seed: r.seed,
                axes: r.axes.clone(),
                sweeps: r.sweeps.clone(),
                status,
                step,
                message,
            },
            data: RunData::from_rows(r.seed, r.axes.clone(), &rows),
        });
    }
    // Values that read another run of the same seed (`partner`, `paired`) find it among the
    // completed runs of that seed.
    let completed: Vec<bool> = out.iter().map(|r| r.summary.status == RunState::Completed).collect();
    let mut data: Vec<&mut RunData> = out.iter_mut().map(|r| &mut r.data).collect();
    crate::value::link_peers(&mut data, &completed);
    Ok(out)
}

/// Whether a run belongs to a population.
pub fn in_population(p: &PopulationSpec, r: &RunSummary) -> bool {
    p.sweep.as_ref().is_none_or(|s| r.sweeps.contains(s)) && in_arm(&p.filter, &r.axes)
}

/// Why a run that did not complete is left out.
fn not_completed(r: &RunSummary) -> String {
    match r.status {
        RunState::Diverged => format!("diverged at step {}", r.step.unwrap_or(0)),
        RunState::Failed => format!("failed: {}", r.message.as_deref().unwrap_or("no message")),
        RunState::Interrupted => "interrupted (run the study again to resume)".into(),
        RunState::Running => "still running (or crashed)".into(),
        RunState::Missing => "not run yet".into(),
        RunState::Completed => String::new(),
    }
}

/// Orders JSON axis values: numbers numerically, then text.
pub fn value_order(a: &serde_json::Value, b: &serde_json::Value) -> std::cmp::Ordering {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.to_string().cmp(&b.to_string()),
    }
}

/// Decides one claim over the runs.
pub fn decide_claim(c: &ClaimSpec, runs: &[LoadedRun]) -> ClaimRecord {
    let mut rec = ClaimRecord::from_spec(c);
    // (run, value, elements of a vector value: paired_fraction compares vectors element-wise).
    let mut used: Vec<(&LoadedRun, f64, Vec<f64>)> = Vec::new();
    let vectors_allowed = matches!(c.statistic, StatisticSpec::PairedFraction(_));
    for r in runs.iter().filter(|r| in_population(&c.population, &r.summary)) {
        let s = &r.summary;
        let excluded = |reason: String| ExcludedRun { id: s.id.clone(), status: s.status, step: s.step, reason };
        if s.status != RunState::Completed {
            rec.excluded.push(excluded(not_completed(s)));
            continue;
        }
        match c.value.eval(&r.data).and_then(|v| match v {
            Val::Scalar(x) => Ok((x, Vec::new())),
            Val::Vector(xs) if vectors_allowed && !xs.is_empty() => Ok((stats::mean(&xs), xs)),
            Val::Vector(_) => Err("the value is a vector".to_string()),
        }) {
            Ok((x, xs)) if x.is_finite() && xs.iter().all(|v| v.is_finite()) => {
                rec.per_run.push(ClaimRunValue { id: s.id.clone(), value: Some(x) });
                used.push((r, x, xs));
            }
            Ok((x, xs)) => {
                rec.per_run.push(ClaimRunValue { id: s.id.clone(), value: None });
                let what = if xs.is_empty() { format!("{x}") } else { format!("{xs:?}") };
                rec.excluded.push(excluded(format!("its value is {what}")));
            }
            Err(e) => rec.excluded.push(excluded(e)),
        }
    }
    rec.runs_used = used.len();
    let mut groups: Vec<Option<serde_json::Value>> = match &c.within {
        None => vec![None],
        Some(w) => {
            let mut g: Vec<serde_json::Value> = Vec::new();
            for (r, _, _) in &used {
                if let Some(v) = r.summary.axes.get(w)
                    && !g.contains(v)
                {
                    g.push(v.clone());
                }
            }
            g.sort_by(value_order);
            g.into_iter().map(Some).collect()
        }
    };
    if groups.is_empty() {
        groups.push(None);
    }
    for (gi, g) in groups.iter().enumerate() {
        let obs: Vec<Obs<'_>> = used
            .iter()
            .filter(|(r, _, _)| match (g, &c.within) {
                (Some(v), Some(w)) => r.summary.axes.get(w) == Some(v),
                _ => true,
            })
            .map(|(r, x, xs)| Obs { seed: r.summary.seed, axes: &r.summary.axes, value: *x, elements: xs })
            .collect();
        let stream = RngStream::new(0).child("bootstrap").child(&c.id).child(&gi.to_string());
        let group = match statistic::effect(&c.statistic, &obs, c.level, c.resamples, &stream) {
            Ok(e) if e.seeds < c.min_seeds => GroupRecord {
                group: g.clone(),
                verdict: Verdict::Inconclusive,
                reason: Some(format!("only {} seed(s) ({} needed for an interval)", e.seeds, c.min_seeds)),
                effect: Some(e),
            },
            Ok(e) => GroupRecord {
                group: g.clone(),
                verdict: c.decision.decide(e.ci_low, e.ci_high),
                effect: Some(e),
                reason: None,
            },
            Err(reason) => {
                GroupRecord { group: g.clone(), verdict: Verdict::Inconclusive, effect: None, reason: Some(reason) }
            }
        };
        rec.groups.push(group);
    }
    let verdicts: Vec<Verdict> = rec.groups.iter().map(|g| g.verdict).collect();
    rec.verdict = if verdicts.iter().all(|v| *v == Verdict::Reproduced) {
        Verdict::Reproduced
    } else if verdicts.contains(&Verdict::NotReproduced) {
        Verdict::NotReproduced
    } else {
        Verdict::Inconclusive
    };
    // The headline: a group without an effect if there is one, else the one closest to failing.
    let head = rec.groups.iter().find(|g| g.effect.is_none()).or_else(|| {
        rec.groups.iter().min_by(|a, b| {
            let m = |g: &GroupRecord| {
                g.effect.as_ref().map_or(f64::NEG_INFINITY, |e| c.decision.margin(e.ci_low, e.ci_high))
            };
            m(a).total_cmp(&m(b))
        })
    });
    if let Some(h) = head {
        rec.effect = h.effect.clone();
        rec.reason = h.reason.clone().map(|r| match (&h.group, &c.within) {
            (Some(v), Some(w)) => format!("{w} = {v}: {r}"),
            _ => r,
        });
    }
    rec
}

/// Every metric the claims read (the rows a verdict needs).
pub fn claim_metrics(spec: &StudySpec) -> BTreeSet<String> {
    spec.claim.iter().flat_map(|c| c.value.metrics()).map(str::to_string).collect()
}

/// Computes the verdict of a study from its directory and writes `verdict.json`.
pub fn compute_verdict(
    dir: &Path,
    spec: &StudySpec,
    plan: &PlanRecord,
    context: &RunContext,
) -> Result<VerdictRecord, StudyError> {
    let wanted = claim_metrics(spec);
    let runs = load_runs(dir, plan, Some(&wanted))?;
    let claims: Vec<ClaimRecord> = spec.claim.iter().map(|c| decide_claim(c, &runs)).collect();
    let verdicts: Vec<Verdict> = claims.iter().map(|c| c.verdict).collect();
    let per_run: Vec<RunSummary> = runs.into_iter().map(|r| r.summary).collect();
    let yes = verdicts.iter().filter(|v| **v == Verdict::Reproduced).count();
    let verdict = VerdictRecord {
        study: spec.name.clone(),
        title: spec.title.clone(),
        section: spec.section.clone(),
        survey_claim: spec.survey_claim.clone(),
        verdict: Verdict::summarise(&verdicts),
        summary: format!("{yes} of {} claim{} reproduced", claims.len(), if claims.len() == 1 { "" } else { "s" }),
        complete: per_run.iter().all(|r| r.status.is_final()),
        claims,
        runs: RunCounts::of(&per_run),
        per_run,
        figures: spec.figure.clone(),
        notes: spec.notes.clone(),
        quick: plan.quick,
        overrides: plan.overrides.clone(),
        quick_reason: if plan.quick { spec.quick.reason.clone() } else { String::new() },
        spec_hash: plan.spec_hash.clone(),
        sgdlab_version: context.sgdlab_version.clone(),
        git_revision: context.git_revision.clone(),
    };
    write_json(&dir.join("verdict.json"), &verdict)?;
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::RunState;
    use crate::spec::ClaimSpec;
    use serde_json::json;
    use sgdlab_train::MetricRecord;

    /// A run of arm `b`, seed `seed`, whose final `m/x` is `x` (after two measurements).
    fn run(id: &str, seed: u64, b: i64, act: &str, status: RunState, x: f64) -> LoadedRun {
        let axes: std::collections::BTreeMap<String, serde_json::Value> =
            [("b".to_string(), json!(b)), ("act".to_string(), json!(act))].into();
        let rows: Vec<MetricRecord> = [(0u64, 2.0 * x), (10, x)]
            .iter()
            .map(|&(step, v)| MetricRecord {
                step,
                epoch: step as f64,
                probe: "m".into(),
                name: "x".into(),
                index: None,
                value: v.is_finite().then_some(v),
            })
            .collect();
        LoadedRun {
            summary: RunSummary {
                id: id.into(),
                seed,
                axes: axes.clone(),
                sweeps: vec!["s".into()],
                status,
                step: Some(if status == RunState::Diverged { 7 } else { 10 }),
                message: None,
            },
            data: RunData::from_rows(seed, axes, if status == RunState::Completed { &rows } else { &[] }),
        }
    }

    fn claim(extra: &str) -> ClaimSpec {
        let text = format!(
            "id = \"c\"\nstatement = \"s\"\nvalue = {{ last = \"m/x\" }}\nexpected = \"e\"\nprovenance = \"paper\"\nresamples = 500\n{extra}"
        );
        toml::from_str(&text).unwrap()
    }

    fn study() -> Vec<LoadedRun> {
        let mut runs = Vec::new();
        for seed in 0..4u64 {
            for act in ["relu", "tanh"] {
                let f = seed as f64 + 1.0;
                runs.push(run(&format!("{act}{seed}a"), seed, 1, act, RunState::Completed, f));
                runs.push(run(
                    &format!("{act}{seed}b"),
                    seed,
                    2,
                    act,
                    RunState::Completed,
                    if act == "relu" { 3.0 * f } else { 0.5 * f },
                ));
            }
        }
        runs
    }

    #[test]
    fn ratio_within_groups_decides_each_group() {
        let c = claim(
            "statistic = { ratio = { numerator = { b = 2 }, denominator = { b = 1 } } }\nwithin = \"act\"\ndecision = { greater = 1.0 }",
        );
        let r = decide_claim(&c, &study());
        assert_eq!(r.groups.len(), 2);
        // Groups in axis order: relu (ratio 3, reproduced), tanh (ratio 0.5, not reproduced).
        assert_eq!(r.groups[0].group, Some(json!("relu")));
        assert_eq!(r.groups[0].verdict, Verdict::Reproduced);
        assert!((r.groups[0].effect.as_ref().unwrap().value - 3.0).abs() < 1e-12);
        assert_eq!(r.groups[1].verdict, Verdict::NotReproduced);
        assert_eq!(r.verdict, Verdict::NotReproduced);
        // The headline is the group that fails.
        assert!((r.effect.as_ref().unwrap().value - 0.5).abs() < 1e-12);
        assert_eq!(r.runs_used, 16);
    }

    #[test]
    fn diverged_and_missing_runs_are_excluded_with_their_step() {
        let mut runs = study();
        runs[1] = run("relu0b", 0, 2, "relu", RunState::Diverged, f64::NAN);
        runs[3] = run("tanh0b", 0, 2, "tanh", RunState::Missing, f64::NAN);
        let c = claim(
            "population = { where = { act = \"relu\" } }\nstatistic = { ratio = { numerator = { b = 2 }, denominator = { b = 1 } } }\ndecision = { greater = 1.0 }",
        );
        let r = decide_claim(&c, &runs);
        assert_eq!(r.excluded.len(), 1, "{:?}", r.excluded);
        assert_eq!(r.excluded[0].status, RunState::Diverged);
        assert_eq!(r.excluded[0].step, Some(7));
        assert!(r.excluded[0].reason.contains("diverged at step 7"));
        // Seed 0 has no pair left: three seeds remain.
        assert_eq!(r.effect.as_ref().unwrap().seeds, 3);
        assert_eq!(r.verdict, Verdict::Reproduced);
    }

    #[test]
    fn a_missing_arm_gives_a_null_effect_and_an_inconclusive_claim() {
        let runs: Vec<LoadedRun> = study().into_iter().filter(|r| r.summary.axes["b"] == json!(1)).collect();
        let c = claim(
            "population = { where = { act = \"relu\" } }\nstatistic = { ratio = { numerator = { b = 2 }, denominator = { b = 1 } } }\ndecision = { greater = 1.0 }",
        );
        let r = decide_claim(&c, &runs);
        assert_eq!(r.verdict, Verdict::Inconclusive);
        assert!(r.effect.is_none());
        assert!(r.reason.as_deref().unwrap().contains("no seed has runs in both arms"), "{:?}", r.reason);
    }

    #[test]
    fn a_value_that_cannot_be_computed_excludes_the_run_with_the_reason() {
        let c = claim("statistic = \"mean\"\ndecision = { greater = 0.0 }");
        let mut c2 = c.clone();
        c2.value =
            toml::from_str::<std::collections::BTreeMap<String, crate::value::ValueSpec>>("v = { last = \"m/y\" }")
                .unwrap()["v"]
                .clone();
        let r = decide_claim(&c2, &study());
        assert_eq!(r.runs_used, 0);
        assert!(r.excluded.iter().all(|e| e.reason == "no m/y measured"));
        assert!(r.effect.is_none() && r.verdict == Verdict::Inconclusive);
        // Too few seeds: an effect, but no decision.
        let one: Vec<LoadedRun> = study().into_iter().filter(|r| r.summary.seed == 0).collect();
        let r = decide_claim(&c, &one);
        assert!(r.effect.is_some() && r.verdict == Verdict::Inconclusive);
        assert!(r.reason.as_deref().unwrap().contains("only 1 seed"));
    }

    #[test]
    fn two_runs_of_one_seed_in_an_arm_are_not_silently_paired() {
        let c = claim(
            "statistic = { ratio = { numerator = { b = 2 }, denominator = { b = 1 } } }\ndecision = { greater = 1.0 }",
        );
        let r = decide_claim(&c, &study());
        assert!(r.effect.is_none() && r.verdict == Verdict::Inconclusive);
        assert!(r.reason.as_deref().unwrap().contains("several runs with b = "), "{:?}", r.reason);
    }

    #[test]
    fn study_verdicts_summarise_claims() {
        use Verdict::*;
        assert_eq!(Verdict::summarise(&[Reproduced, Reproduced]), Reproduced);
        assert_eq!(Verdict::summarise(&[Reproduced, NotReproduced]), PartlyReproduced);
        assert_eq!(Verdict::summarise(&[NotReproduced, Inconclusive]), NotReproduced);
        assert_eq!(Verdict::summarise(&[Reproduced, Inconclusive]), Inconclusive);
        assert_eq!(Verdict::summarise(&[]), Inconclusive);
    }
}
