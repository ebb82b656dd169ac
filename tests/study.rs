//! A tiny study end to end: plan, run (interrupted, then resumed), verdict, report; identical
//! seeds give identical verdict files whatever the number of parallel jobs.

use sgdlab_studies::{RunnerOptions, StudyOutcome, StudySpec, read_plan, run_study};
use sgdlab_train::RunContext;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const TINY: &str = r#"
name = "tiny-batch"
title = "Tiny batch-size study"
section = "7.1"
claim = "Larger batches give a larger top Hessian eigenvalue (tiny smoke version)."
seeds = [0, 1, 2]

[base]
model = "mlp:40-16-10:relu"
data = "mnist1d:n=500"
[base.optimizer]
name = "sgd"
lr = 0.1
batch_size = 8
[base.budget]
steps = 40
[base.eval]
train_subset = 0
log_every = 10

[[axes]]
name = "batch_size"
key = "optimizer.batch_size"
values = [8, 128]

[[measure]]
probe = "hessian"
samples = 100
options = { k = 1 }

[[measure]]
probe = "loss"
at = "every"
every = 20
samples = 100

[verdict]
statistic = "ratio"
metric = "hessian/top_eigenvalue"
knob = "batch_size"
direction = "greater"
threshold = 1.0

[[figures]]
name = "top_eigenvalue_vs_batch"
kind = "final_vs_knob"
knob = "batch_size"
metric = "hessian/top_eigenvalue"
log_x = true

[[figures]]
name = "loss_over_training"
kind = "over_training"
knob = "batch_size"
metric = "loss/loss"

[quick]
seeds = 2
set = ["budget.steps=10"]
"#;

fn ctx() -> RunContext {
    RunContext { sgdlab_version: "test".into(), git_revision: "test".into() }
}

fn run(spec: &StudySpec, dir: &Path, jobs: usize, stop_after: Option<usize>) -> StudyOutcome {
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let progress = move |done: usize, _total: usize, _secs: f64| {
        if stop_after.is_some_and(|n| done >= n) {
            s2.store(true, Ordering::SeqCst);
        }
    };
    let opts = RunnerOptions { jobs, quick: false, stop: Some(stop), context: ctx(), progress: Some(&progress) };
    run_study(spec, dir, &opts).unwrap()
}

#[test]
fn tiny_study_plans_runs_resumes_and_reports() {
    let spec = StudySpec::from_toml(TINY, "tiny.toml").unwrap();
    let plan = spec.plan(false).unwrap();
    assert_eq!(plan.runs.len(), 6);
    assert_eq!(spec.plan(true).unwrap().runs.len(), 4);
    // Ids are content hashes: stable, distinct.
    assert_eq!(plan, spec.plan(false).unwrap());

    let a = tempfile::tempdir().unwrap();
    // Interrupted after two finished runs (one job, so in plan order).
    match run(&spec, a.path(), 1, Some(2)) {
        StudyOutcome::Interrupted { finished, planned } => {
            assert_eq!(planned, 6);
            assert!((2..6).contains(&finished), "{finished}");
        }
        o => panic!("expected an interruption, got {o:?}"),
    }
    assert!(!a.path().join("verdict.json").exists());
    assert_eq!(read_plan(a.path()).unwrap(), plan);
    // Resumed to the end.
    let StudyOutcome::Finished { verdict, .. } = run(&spec, a.path(), 1, None) else { panic!("not finished") };
    assert!(["reproduced", "not reproduced", "inconclusive"].contains(&verdict["verdict"].as_str().unwrap()));
    assert_eq!(verdict["runs"]["planned"], 6);
    assert_eq!(verdict["runs"]["used"], 6);
    assert!(verdict["effect"]["ci_low"].as_f64().unwrap() <= verdict["effect"]["value"].as_f64().unwrap());
    let report = sgdlab_report::build_study_report(a.path()).unwrap();
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("<svg") && html.contains("Tiny batch-size study"));
    for bad in ["http://", "https://", "<script", "@import", "url("] {
        assert!(!html.contains(bad), "report refers to an external resource: {bad}");
    }
    // The same study with two parallel jobs and no interruption: identical verdict file.
    let b = tempfile::tempdir().unwrap();
    let StudyOutcome::Finished { .. } = run(&spec, b.path(), 2, None) else { panic!("not finished") };
    assert_eq!(
        std::fs::read(a.path().join("verdict.json")).unwrap(),
        std::fs::read(b.path().join("verdict.json")).unwrap()
    );
    // Rebuilding the report from records alone gives the same file.
    let r1 = std::fs::read(sgdlab_report::build_study_report(b.path()).unwrap()).unwrap();
    let r2 = std::fs::read(sgdlab_report::build_study_report(b.path()).unwrap()).unwrap();
    assert_eq!(r1, r2);
    // A directory holding another plan is refused.
    let other = StudySpec::from_toml(&TINY.replace("seeds = [0, 1, 2]", "seeds = [5, 6]"), "other.toml").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let opts = RunnerOptions { jobs: 1, quick: false, stop: Some(stop), context: ctx(), progress: None };
    let e = run_study(&other, a.path(), &opts).unwrap_err().to_string();
    assert!(e.contains("different plan"), "{e}");
}

#[test]
fn a_diverged_run_is_excluded_and_the_study_goes_on() {
    let text = TINY
        .replace(
            "[[axes]]\nname = \"batch_size\"",
            "[[axes]]\nname = \"lr\"\nkey = \"optimizer.lr\"\nvalues = [0.1, 1e7]\n\n[[axes]]\nname = \"batch_size\"",
        )
        .replace("seeds = [0, 1, 2]", "seeds = [0, 1]");
    let spec = StudySpec::from_toml(&text, "div.toml").unwrap();
    let d = tempfile::tempdir().unwrap();
    let StudyOutcome::Finished { verdict, .. } = run(&spec, d.path(), 2, None) else { panic!("not finished") };
    assert_eq!(verdict["runs"]["planned"], 8);
    let excluded = verdict["runs"]["excluded"].as_array().unwrap();
    assert_eq!(excluded.len(), 4, "{excluded:?}");
    assert!(excluded.iter().all(|e| e["status"] == "diverged" && e["step"].as_u64().unwrap() >= 1));
}

#[test]
fn malformed_study_specs_are_named_errors() {
    let e = StudySpec::from_toml(&TINY.replace("section = \"7.1\"", "section = \"7.1\"\nfoo = 1"), "s.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("s.toml") && e.contains("unknown field `foo`"), "{e}");
    let e = StudySpec::from_toml(
        &TINY.replace("knob = \"batch_size\"\ndirection", "knob = \"depth\"\ndirection"),
        "s.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("verdict.knob 'depth' is not an axis"), "{e}");
    let e = StudySpec::from_toml(&TINY.replace("probe = \"hessian\"", "probe = \"hessain\""), "s.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown probe 'hessain'"), "{e}");
    let e = StudySpec::from_toml(&TINY.replace("options = { k = 1 }", "options = { kk = 1 }"), "s.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown option 'kk'"), "{e}");
}
