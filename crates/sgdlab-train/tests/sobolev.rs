//! Training with the Sobolev-weighted loss (PROTOCOLS 2.4): full-batch runs on a `sines` grid
//! train and evaluate the loss on the whole split in grid order; minibatches are refused.

use sgdlab_nn::{Batch, Loss, Model, Objective, Targets, load_checkpoint};
use sgdlab_train::{NoHook, Progress, RunContext, RunOptions, RunRecord, RunSpec, RunStatus, train};
use std::path::Path;

fn ctx() -> RunContext {
    RunContext { sgdlab_version: "test".into(), git_revision: "test".into() }
}

fn spec(text: &str) -> RunSpec {
    RunSpec::from_toml(text, "test.toml").unwrap()
}

fn run_in(spec: &RunSpec, dir: &Path) -> Result<RunRecord, sgdlab_train::TrainError> {
    let opts = RunOptions {
        out_dir: dir.to_path_buf(),
        stop: None,
        context: ctx(),
        dataset: None,
        fresh: false,
        base_dir: None,
    };
    train(spec, &opts, &mut NoHook, &mut |_: &Progress| {})
}

/// `(step, value)` of every `probe`/`name` row of a run's metrics.
fn metric(dir: &Path, probe: &str, name: &str) -> Vec<(u64, f64)> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["probe"] == probe && v["name"] == name)
        .map(|v| (v["step"].as_u64().unwrap(), v["value"].as_f64().unwrap()))
        .collect()
}

const SOBOLEV_GD: &str = r#"
seed = 1
dtype = "f64"
model = "mlp:1-64-1:relu"
data = "sines:n=64,freqs=2,step=1"
loss = "sobolev:s=1"
[init]
bias = "torch"
[optimizer]
name = "gd"
lr = 0.01
[budget]
steps = 200
[eval]
every = 50
log_every = 1
"#;

/// The Sobolev mean loss `L_s / N` of the final parameters on the whole grid, computed directly.
fn final_loss(dir: &Path, spec: &RunSpec) -> f64 {
    let data = sgdlab_data::DatasetSpec::parse(&spec.data).unwrap().load().unwrap();
    let split = data.train().unwrap();
    let x = split.features().mapv(f64::from);
    let y = split.targets().values().unwrap().mapv(f64::from);
    let ck = load_checkpoint::<f64>(&dir.join("final.safetensors"), None).unwrap();
    let model = Model::new(&spec.model);
    let b = Batch { x: x.view(), targets: Targets::Values(y.view()) };
    model.loss(ck.params.as_slice(), &b, &Objective::mean(spec.loss)).unwrap()
}

#[test]
fn full_batch_gd_trains_and_evaluates_the_whole_grid_in_order() {
    let s = spec(SOBOLEV_GD);
    assert_eq!(s.loss, Loss::Sobolev { s: 1.0 });
    let dir = tempfile::tempdir().unwrap();
    let rec = run_in(&s, dir.path()).unwrap();
    assert_eq!(rec.status, RunStatus::Completed);
    let train_loss = metric(dir.path(), "train", "loss");
    assert_eq!(train_loss.iter().map(|r| r.0).collect::<Vec<_>>(), vec![0, 50, 100, 150, 200]);
    let (first, last) = (train_loss[0].1, train_loss.last().unwrap().1);
    assert!(last < 0.7 * first, "the Sobolev loss did not decrease: {train_loss:?}");
    // The evaluated loss is L_s / N on the whole grid in order, at the final parameters.
    let direct = final_loss(dir.path(), &s);
    assert!((last - direct).abs() <= 1e-12 * direct, "evaluated {last}, direct {direct}");
    // The training batch is the grid in order: the loss of update t (logged at step t + 1, before
    // the update) equals the evaluation at step t.
    let batch = metric(dir.path(), "batch", "loss");
    for (step, v) in &train_loss[..train_loss.len() - 1] {
        let b = batch.iter().find(|r| r.0 == step + 1).unwrap().1;
        assert!((b - v).abs() <= 1e-12 * v, "step {step}: batch loss {b}, evaluated {v}");
    }
    // The resolved spec keeps the loss as a string and round-trips.
    let resolved = std::fs::read_to_string(dir.path().join("spec.toml")).unwrap();
    assert!(resolved.contains("loss = \"sobolev:s=1\""), "{resolved}");
    assert_eq!(RunSpec::from_toml(&resolved, "spec.toml").unwrap(), s);
}

#[test]
fn a_full_batch_of_a_minibatch_optimiser_is_the_grid_in_order() {
    // adam with batch_size = n trains on the split in grid order (not a shuffled permutation).
    let text = SOBOLEV_GD.replace("name = \"gd\"\nlr = 0.01", "name = \"adam\"\nlr = 0.003\nbatch_size = 64");
    let s = spec(&text);
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(run_in(&s, dir.path()).unwrap().status, RunStatus::Completed);
    let (train_loss, batch) = (metric(dir.path(), "train", "loss"), metric(dir.path(), "batch", "loss"));
    for (step, v) in &train_loss[..train_loss.len() - 1] {
        let b = batch.iter().find(|r| r.0 == step + 1).unwrap().1;
        assert!((b - v).abs() <= 1e-12 * v, "step {step}: batch loss {b}, evaluated {v}");
    }
    assert!(train_loss.last().unwrap().1 < train_loss[0].1);
}

#[test]
fn minibatches_and_wrong_targets_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = SOBOLEV_GD.replace("name = \"gd\"\nlr = 0.01", "name = \"sgd\"\nlr = 0.01\nbatch_size = 16");
    let e = run_in(&spec(&text), dir.path()).unwrap_err().to_string();
    assert!(e.contains("optimizer.batch_size = 16") && e.contains("sobolev:s=1"), "{e}");
    assert!(!e.contains('\n'), "{e}");
    let text = SOBOLEV_GD.replace("sines:n=64,freqs=2,step=1", "mnist1d:n=200").replace("1-64-1", "40-8-1");
    let e = run_in(&spec(&text), dir.path()).unwrap_err().to_string();
    assert!(e.contains("sobolev:s=1") && e.contains("real-valued targets"), "{e}");
}

#[test]
fn an_evaluation_subset_is_replaced_by_the_whole_grid() {
    let text =
        SOBOLEV_GD.replace("log_every = 1", "log_every = 1\ntrain_subset = 10").replace("steps = 200", "steps = 3");
    let s = spec(&text);
    let dir = tempfile::tempdir().unwrap();
    let rec = run_in(&s, dir.path()).unwrap();
    assert!(rec.warnings.iter().any(|w| w.contains("eval.train_subset = 10 ignored")), "{:?}", rec.warnings);
    let last = metric(dir.path(), "train", "loss").last().unwrap().1;
    let direct = final_loss(dir.path(), &s);
    assert!((last - direct).abs() <= 1e-12 * direct, "evaluated {last}, direct {direct}");
}
