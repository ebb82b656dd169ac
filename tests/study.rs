//! Studies end to end: plan, run (interrupted, then resumed), claims, verdict, report; the same
//! seeds give identical verdict files whatever the number of parallel jobs; diverged and failed
//! runs are recorded, excluded with their step, and failed ones retried.

use sgdlab_studies::records::RunState;
use sgdlab_studies::{LoadedStudy, RunnerOptions, StudyOutcome, Verdict, read_plan, run_study};
use sgdlab_train::RunContext;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const TINY: &str = r#"
name = "tiny-batch"
title = "Tiny batch-size study"
section = "7.1"
survey_claim = "Larger batches end with a larger top Hessian eigenvalue (tiny smoke version)."
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
every = 20
train_subset = 0
log_every = 10

[[sweep]]
name = "batch"
[[sweep.axis]]
name = "batch_size"
key = "optimizer.batch_size"
values = [8, 128]

[[measure]]
probe = "hessian"
samples = 100
options = { top_k = 1 }

[[measure]]
probe = "loss"
at = "every"
every = 20
samples = 100

[[claim]]
id = "sharper"
statement = "The top Hessian eigenvalue is larger after large-batch training."
value = { last = "hessian/top_eigenvalue" }
statistic = { ratio = { numerator = { batch_size = 128 }, denominator = { batch_size = 8 } } }
decision = { greater = 1.0 }
expected = "lambda_max(LB) > lambda_max(SB)"
provenance = "paper"
source = "PROTOCOLS 7.1"

[[claim]]
id = "loss-drop"
statement = "Training lowers the loss: final loss / initial loss below 1."
value = { ratio = [{ last = "loss/loss" }, { at = { metric = "loss/loss", step = 0 } }] }
statistic = "median"
decision = { less = 1.0 }
expected = "the loss falls"
provenance = "computed"

[[figure]]
name = "top_eigenvalue_vs_batch"
kind = "final_vs_axis"
claim = "sharper"
x_axis = "batch_size"
y = { last = "hessian/top_eigenvalue" }
log_x = true

[[figure]]
name = "loss_over_training"
kind = "over_training"
metric = "loss/loss"

[quick]
set = ["seeds=[0, 1]", "base.budget.steps=10"]
reason = "smoke"
"#;

fn ctx() -> RunContext {
    RunContext { sgdlab_version: "test".into(), git_revision: "test".into() }
}

fn load(text: &str) -> LoadedStudy {
    LoadedStudy::parse(text, "tiny.toml", false, &[]).unwrap()
}

fn run(study: &LoadedStudy, dir: &Path, jobs: usize, stop_after: Option<usize>) -> StudyOutcome {
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let progress = move |done: usize, _total: usize, _secs: f64| {
        if stop_after.is_some_and(|n| done >= n) {
            s2.store(true, Ordering::SeqCst);
        }
    };
    let opts = RunnerOptions { jobs, retry_failed: true, stop: Some(stop), context: ctx(), progress: Some(&progress) };
    run_study(study, dir, &opts).unwrap()
}

#[test]
fn tiny_study_plans_runs_resumes_and_reports() {
    let study = load(TINY);
    let plan = sgdlab_studies::plan::plan(&study).unwrap();
    assert_eq!(plan.runs.len(), 6);
    let a = tempfile::tempdir().unwrap();
    // Interrupted after two finished runs (one job, so in plan order).
    match run(&study, a.path(), 1, Some(2)) {
        StudyOutcome::Interrupted { finished, planned } => {
            assert_eq!(planned, 6);
            assert!((2..6).contains(&finished), "{finished}");
        }
        o => panic!("expected an interruption, got {o:?}"),
    }
    assert!(!a.path().join("verdict.json").exists());
    assert_eq!(read_plan(a.path()).unwrap(), plan);
    // Resumed to the end.
    let StudyOutcome::Finished { verdict, .. } = run(&study, a.path(), 1, None) else { panic!("not finished") };
    assert!(verdict.complete);
    assert_eq!(verdict.runs.planned, 6);
    assert_eq!(verdict.runs.completed, 6);
    assert_eq!(verdict.claims.len(), 2);
    let loss = &verdict.claims[1];
    assert_eq!(loss.runs_used, 6);
    assert_eq!(loss.verdict, Verdict::Reproduced, "{loss:?}");
    let e = verdict.claims[0].effect.as_ref().expect("an effect");
    assert!(e.ci_low <= e.value && e.value <= e.ci_high && e.seeds == 3);
    // Vector metrics are rows with an index.
    let rows = sgdlab_train::read_metrics(&a.path().join("runs").join(&plan.runs[0].id)).unwrap();
    assert!(rows.iter().any(|r| r.probe == "hessian" && r.name == "top_eigenvalues" && r.index == Some(0)));
    let report = sgdlab_report::build_study_report(a.path()).unwrap();
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("<svg") && html.contains("Tiny batch-size study"));
    for bad in ["http://", "https://", "<script", "@import", "url("] {
        assert!(!html.contains(bad), "report refers to an external resource: {bad}");
    }
    // The same study with two parallel jobs and no interruption: identical verdict file.
    let b = tempfile::tempdir().unwrap();
    let StudyOutcome::Finished { .. } = run(&study, b.path(), 2, None) else { panic!("not finished") };
    assert_eq!(
        std::fs::read(a.path().join("verdict.json")).unwrap(),
        std::fs::read(b.path().join("verdict.json")).unwrap()
    );
    // Rebuilding the report from records alone gives the same file.
    let r1 = std::fs::read(sgdlab_report::build_study_report(b.path()).unwrap()).unwrap();
    let r2 = std::fs::read(sgdlab_report::build_study_report(b.path()).unwrap()).unwrap();
    assert_eq!(r1, r2);
    // A directory holding another plan is refused.
    let other = LoadedStudy::parse(TINY, "tiny.toml", false, &["seeds=[5, 6]".into()]).unwrap();
    let opts = RunnerOptions { jobs: 1, retry_failed: true, stop: None, context: ctx(), progress: None };
    let e = run_study(&other, a.path(), &opts).unwrap_err().to_string();
    assert!(e.contains("different plan"), "{e}");
}

#[test]
fn diverged_runs_are_excluded_with_their_step_and_the_study_goes_on() {
    let text = TINY.replace(
        "[[sweep]]\nname = \"batch\"",
        "[[sweep]]\nname = \"batch\"\n[[sweep.axis]]\nname = \"lr\"\nkey = \"optimizer.lr\"\nvalues = [0.1, 1e7]",
    );
    let study = LoadedStudy::parse(&text, "div.toml", false, &["seeds=[0, 1]".into()]).unwrap();
    let d = tempfile::tempdir().unwrap();
    let StudyOutcome::Finished { verdict, .. } = run(&study, d.path(), 2, None) else { panic!("not finished") };
    assert_eq!(verdict.runs.planned, 8);
    assert_eq!(verdict.runs.diverged, 4, "{:?}", verdict.runs);
    let c = &verdict.claims[1];
    assert_eq!(c.excluded.len(), 4, "{:?}", c.excluded);
    assert!(c.excluded.iter().all(|e| e.status == RunState::Diverged && e.step.is_some_and(|s| s >= 1)));
    assert!(c.excluded.iter().all(|e| e.reason.starts_with("diverged at step")));
    // The ratio pairs two runs of one seed in each arm (two learning rates): no number is made up.
    assert!(verdict.claims[0].effect.is_none() || verdict.claims[0].runs_used == 4);
}

#[test]
fn failed_and_truncated_runs_are_run_again() {
    let study = load(TINY);
    let d = tempfile::tempdir().unwrap();
    let StudyOutcome::Finished { verdict, .. } = run(&study, d.path(), 2, None) else { panic!("not finished") };
    let plan = read_plan(d.path()).unwrap();
    // One record marked failed, one truncated: the next run does both again, with the same result.
    let r0 = d.path().join("runs").join(&plan.runs[0].id);
    let r1 = d.path().join("runs").join(&plan.runs[1].id);
    let rec = std::fs::read_to_string(r0.join("record.json")).unwrap();
    std::fs::remove_dir_all(&r0).unwrap();
    std::fs::create_dir_all(&r0).unwrap();
    std::fs::write(r0.join("record.json"), rec.replace("\"completed\"", "\"failed\"")).unwrap();
    let rec1 = std::fs::read_to_string(r1.join("record.json")).unwrap();
    std::fs::write(r1.join("record.json"), &rec1[..rec1.len() / 2]).unwrap();
    let StudyOutcome::Finished { verdict: again, .. } = run(&study, d.path(), 1, None) else { panic!("not finished") };
    assert_eq!(again.runs.completed, 6, "{:?}", again.runs);
    assert_eq!(again.claims, verdict.claims);
}
