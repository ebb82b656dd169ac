//! Values that read two runs of one seed (`paired`, `partner`) end to end: the runner trains two
//! arms per seed on log-spaced evaluations, and the verdict's per-run values equal what the
//! metrics files of the two runs give when paired by hand; a difference that is never sustained
//! leaves the run out with the reason; a partner that is not planned is a plan error.

use sgdlab_studies::plan::plan;
use sgdlab_studies::{LoadedStudy, RunnerOptions, StudyOutcome, run_study};
use sgdlab_train::RunContext;
use std::collections::BTreeMap;
use std::path::Path;

const STUDY: &str = r#"name = "paired"
title = "Paired"
section = "6.2"
survey_claim = "test"
seeds = [0, 1]

[base]
model = "mlp:40-16-10:relu"
data = "mnist1d:n=300"

[base.optimizer]
name = "sgd"
lr = 0.01
batch_size = 30

[base.budget]
steps = 40

[base.eval]
log_spaced = 12
train_subset = 0

[[sweep]]
name = "arms"
mode = "zip"
[[sweep.axis]]
name = "arm"
values = ["slow", "fast"]
[[sweep.axis]]
name = "lr"
key = "optimizer.lr"
values = [0.01, 0.5]

[[claim]]
id = "parts"
statement = "The fast arm's training loss parts from the slow arm's."
population = { where = { arm = "fast" } }
value = { first_crossing = { metric = "train/loss", paired = { where = { arm = "slow" }, difference = "abs" }, above = 0.05, sustained = 2, if_never = "end" } }
statistic = "mean"
decision = { greater = 0.0 }
expected = "e"
provenance = "paper"

[[claim]]
id = "order"
statement = "The slow arm's own crossing, read from the fast run, minus the fast arm's."
population = { where = { arm = "fast" } }
value = { difference = [
  { partner = { where = { arm = "slow" }, value = { first_crossing = { metric = "train/loss", below = 2.0, if_never = "end" } } } },
  { first_crossing = { metric = "train/loss", below = 2.0, if_never = "end" } },
] }
statistic = "mean"
decision = { greater = 0.0 }
expected = "e"
provenance = "paper"

[[claim]]
id = "never"
statement = "A difference that is never that large."
population = { where = { arm = "fast" } }
value = { first_crossing = { metric = "train/loss", paired = { where = { arm = "slow" }, difference = "abs" }, above = 1e9, sustained = 2 } }
statistic = "mean"
decision = { greater = 0.0 }
expected = "e"
provenance = "paper"
"#;

fn run(dir: &Path) -> sgdlab_studies::VerdictRecord {
    let st = LoadedStudy::parse(STUDY, "paired.toml", false, &[]).unwrap();
    let opts = RunnerOptions {
        jobs: 2,
        retry_failed: true,
        stop: None,
        context: RunContext { sgdlab_version: "test".into(), git_revision: "test".into() },
        progress: None,
    };
    match run_study(&st, dir, &opts).unwrap() {
        StudyOutcome::Finished { verdict, .. } => *verdict,
        StudyOutcome::Interrupted { .. } => panic!("not interrupted"),
    }
}

/// step -> train/loss of one run.
fn losses(dir: &Path) -> BTreeMap<u64, f64> {
    sgdlab_train::read_metrics(dir)
        .unwrap()
        .into_iter()
        .filter(|m| m.probe == "train" && m.name == "loss")
        .map(|m| (m.step, m.value.unwrap()))
        .collect()
}

#[test]
fn paired_values_match_the_two_runs_metrics_paired_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let v = run(dir.path());
    assert_eq!(v.runs.completed, 4, "{:?}", v.per_run);
    let plan = sgdlab_studies::read_plan(dir.path()).unwrap();
    let of = |seed: u64, arm: &str| {
        let r = plan.runs.iter().find(|r| r.seed == seed && r.axes["arm"] == arm).unwrap();
        (r.id.clone(), losses(&dir.path().join("runs").join(&r.id)))
    };
    let claim = |id: &str| v.claims.iter().find(|c| c.id == id).unwrap();
    for seed in [0, 1] {
        let (fast_id, fast) = of(seed, "fast");
        let (_, slow) = of(seed, "slow");
        // Log-spaced evaluations: round(40^(i/11)), with step 0, the same in both arms.
        let steps: Vec<u64> = fast.keys().copied().collect();
        assert_eq!(steps, [0, 1, 2, 3, 4, 5, 7, 10, 15, 20, 29, 40]);
        assert_eq!(slow.keys().copied().collect::<Vec<_>>(), steps);
        // By hand: the first step of two consecutive evaluations with |fast - slow| > 0.05.
        let big: Vec<bool> = steps.iter().map(|s| (fast[s] - slow[s]).abs() > 0.05).collect();
        let want = (0..steps.len() - 1).find(|&i| big[i] && big[i + 1]).map_or(40, |i| steps[i]) as f64;
        let got = claim("parts").per_run.iter().find(|p| p.id == fast_id).unwrap().value.unwrap();
        assert_eq!(got, want, "seed {seed}");
        // Identical initialisation: the two arms agree at step 0, and part later.
        assert_eq!(fast[&0], slow[&0]);
        assert!(want > 0.0);
        // The partner's value, read from the fast run.
        let cross = |l: &BTreeMap<u64, f64>| l.iter().find(|(_, v)| **v < 2.0).map_or(40, |(s, _)| *s) as f64;
        let got = claim("order").per_run.iter().find(|p| p.id == fast_id).unwrap().value.unwrap();
        assert_eq!(got, cross(&slow) - cross(&fast), "seed {seed}");
    }
    // Never sustained: no value, and the verdict says why.
    let never = claim("never");
    assert_eq!(never.runs_used, 0);
    assert_eq!(never.excluded.len(), 2);
    for e in &never.excluded {
        assert_eq!(
            e.reason,
            "never crossed: first step at which |train/loss minus its partner's (arm = \"slow\")| rises above 1000000000 for 2 consecutive measurements (if_never = \"end\" gives the last step)"
        );
    }
}

#[test]
fn a_partner_that_no_run_has_is_a_plan_error() {
    let t = STUDY.replace("where = { arm = \"slow\" }, value", "where = { arm = \"slwo\" }, value");
    let st = LoadedStudy::parse(&t, "paired.toml", false, &[]).unwrap();
    let e = plan(&st).map(|_| ()).unwrap_err().to_string();
    assert!(e.starts_with("paired.toml:"), "{e}");
    assert!(e.contains("partner/paired where = { arm = \"slwo\" } matches no planned run"), "{e}");
    assert_eq!(e.lines().count(), 1);
    let t = STUDY.replace("where = { arm = \"slow\" }, difference", "where = { lr = 0.01, side = 1 }, difference");
    let e = LoadedStudy::parse(&t, "paired.toml", false, &[]).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("partner/paired where names 'side', which is not an axis (axes: arm, lr)"), "{e}");
}
