//! A two-stage study end to end: the second stage starts from the first stage's final
//! parameters of the same seed, runs after it whatever the job count, and resumes.

use sgdlab_studies::{LoadedStudy, RunnerOptions, StudyOutcome, run_study};
use sgdlab_train::RunContext;
use std::path::Path;

const STUDY: &str = r#"name = "staged"
title = "Staged"
section = "8.1"
survey_claim = "test"
seeds = [0, 1]

[base]
model = "mlp:40-16-10:relu"
data = "mnist1d:n=300"

[base.optimizer]
name = "gd"
lr = 0.1

[base.budget]
steps = 5

[base.eval]
every = 5
train_subset = 0

[[sweep]]
name = "minimum"
[[sweep.axis]]
name = "stage1_steps"
key = "budget.steps"
values = [15]

[[sweep]]
name = "escape"
from = { sweep = "minimum" }
[[sweep.axis]]
name = "opt"
key = "optimizer"
values = [{ name = "sgd", lr = 0.05, batch_size = 20 }, { name = "noisy_gd", lr = 0.05, noise = { kind = "match_sgd", shape = "iso", batch_size = 20 } }]

[[claim]]
id = "rise"
statement = "s"
value = { difference = [{ max = { metric = "train/loss" } }, { at = { metric = "train/loss", step = 0 } }] }
population = { sweep = "escape" }
statistic = "mean"
decision = { at_least = 0.0 }
expected = "e"
provenance = "paper"
"#;

fn run(dir: &Path, jobs: usize) -> sgdlab_studies::VerdictRecord {
    let st = LoadedStudy::parse(STUDY, "staged.toml", false, &[]).unwrap();
    let opts = RunnerOptions {
        jobs,
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

fn loss_rows(dir: &Path, step: u64) -> Vec<f64> {
    sgdlab_train::read_metrics(dir)
        .unwrap()
        .into_iter()
        .filter(|m| m.probe == "train" && m.name == "loss" && m.step == step)
        .map(|m| m.value.unwrap())
        .collect()
}

#[test]
fn the_second_stage_starts_where_the_first_ended_and_is_independent_of_jobs() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let va = run(a.path(), 1);
    let vb = run(b.path(), 2);
    assert_eq!(va.runs.completed, 6, "{:?}", va.per_run);
    let plan = sgdlab_studies::read_plan(a.path()).unwrap();
    for r in plan.runs.iter().filter(|r| r.from.is_some()) {
        let src = a.path().join("runs").join(r.from.as_ref().unwrap());
        let dst = a.path().join("runs").join(&r.id);
        // Step 0 of the second stage is the first stage's last evaluation, bit for bit.
        assert_eq!(loss_rows(&dst, 0), loss_rows(&src, 15));
        // The same numbers with one job or two.
        let other = b.path().join("runs").join(&r.id);
        assert_eq!(
            std::fs::read_to_string(dst.join("metrics.jsonl")).unwrap(),
            std::fs::read_to_string(other.join("metrics.jsonl")).unwrap()
        );
    }
    assert_eq!(va.claims[0].per_run, vb.claims[0].per_run);
    // A finished study resumes to the same verdict without running anything.
    let again = run(a.path(), 2);
    assert_eq!(again.claims[0].per_run, va.claims[0].per_run);
    // A dependent run whose source is gone is redone after its source.
    let first = plan.runs.iter().find(|r| r.from.is_none()).unwrap();
    std::fs::remove_dir_all(a.path().join("runs").join(&first.id)).unwrap();
    for r in plan.runs.iter().filter(|r| r.from.as_ref() == Some(&first.id)) {
        std::fs::remove_dir_all(a.path().join("runs").join(&r.id)).unwrap();
    }
    let redone = run(a.path(), 2);
    assert_eq!(redone.claims[0].per_run, va.claims[0].per_run);
}
