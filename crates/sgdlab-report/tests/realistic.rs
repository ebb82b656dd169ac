//! The built-in studies' specs (and an edge-of-stability study with reference lines, spectra
//! and per-function scatter) reported over synthetic runs shaped like real ones: early stopping
//! at different steps, zipped axes, fifty-odd seeds, vector metrics. Checks what a reader relies
//! on across figures: the same arm has the same colour, epochs where the spec asks for them,
//! labels without redundant axes, one reference line per arm.
//!
//! Set `SGDLAB_REPORT_DEMO_DIR=/some/dir` to leave the studies, their reports and an index
//! there.

mod common;

use common::{Csv, End, FakeRun, assert_self_contained, copy_dir, demo_dir, row};
use serde_json::json;
use sgdlab_report::{build_index, build_study_report};
use sgdlab_train::MetricRecord;
use std::path::{Path, PathBuf};

/// A number in [-1, 1) from a seed and a salt (splitmix64), so that every run differs
/// reproducibly.
fn noise(seed: u64, salt: u64) -> f64 {
    let mut z = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(salt.wrapping_mul(0xbf58_476d_1ce4_e5b9));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

fn builtin(name: &str) -> &'static str {
    sgdlab_studies::BUILTIN.iter().find(|b| b.name == name).unwrap().toml
}

/// Batch-sharpness: batch 32 against 2000 on 4000 examples, each run stopping when its loss
/// reaches 0.02 (checked every 50 steps), so seeds stop at different steps.
fn batch_sharpness_runs() -> Vec<FakeRun> {
    let mut out = Vec::new();
    for (arm, batch) in [32u64, 2000].into_iter().enumerate() {
        for seed in 0..5u64 {
            let per_epoch = 4000.0 / batch as f64;
            let rate = if batch == 32 { 0.16 } else { 0.016 } * (1.0 + 0.15 * noise(seed, 1 + arm as u64));
            let mut rows = Vec::new();
            let mut step = 0u64;
            loop {
                let epoch = step as f64 / per_epoch;
                let loss = 2.3 * (-rate * epoch).exp();
                rows.push(row(step, epoch, "train", "loss", None, loss));
                rows.push(row(step, epoch, "test", "accuracy", None, 0.1 + 0.65 * (1.0 - loss / 2.3)));
                if loss <= 0.02 {
                    break;
                }
                step += 50;
            }
            let (e, last) = (step as f64 / per_epoch, step);
            let lb = batch == 2000;
            rows.push(row(
                last,
                e,
                "sharpness",
                "sharpness",
                None,
                if lb { 3.1 } else { 0.9 } * (1.0 + 0.2 * noise(seed, 7 + arm as u64)),
            ));
            rows.push(row(
                last,
                e,
                "hessian",
                "top_eigenvalue",
                None,
                if lb { 95.0 } else { 22.0 } * (1.0 + 0.15 * noise(seed, 9 + arm as u64)),
            ));
            rows.push(row(
                last,
                e,
                "test",
                "accuracy",
                None,
                if lb { 0.74 } else { 0.785 } + 0.01 * noise(seed, 11 + arm as u64),
            ));
            out.push(FakeRun {
                id: format!("bs{batch}-{seed}"),
                seed,
                axes: [("batch_size".to_string(), json!(batch))].into(),
                end: End::Completed,
                rows,
            });
        }
    }
    out
}

/// Rank-depth at initialisation: 5 depths x 2 activations x 10 seeds, the effective rank
/// falling with depth.
fn rank_depth_runs() -> Vec<FakeRun> {
    let mut out = Vec::new();
    for depth in [1u64, 2, 4, 8, 16] {
        for act in ["identity", "relu"] {
            for seed in 0..10u64 {
                let slope = if act == "relu" { 0.45 } else { 0.3 };
                let erank = 40.0 * (depth as f64).powf(-slope) * (1.0 + 0.05 * noise(seed, depth));
                let rows = vec![
                    row(0, 0.0, "representation-rank", "effective_rank", None, erank),
                    row(0, 0.0, "representation-rank", "effective_rank_gram", None, erank.sqrt() * 3.0),
                ];
                let axes = [("depth".to_string(), json!(depth)), ("act".to_string(), json!(act))].into();
                out.push(FakeRun { id: format!("rd{depth}-{act}-{seed}"), seed, axes, end: End::Completed, rows });
            }
        }
    }
    out
}

/// Matrix completion: depths 1-4 zipped with their architecture strings, held-out loss every
/// 1000 steps; one depth-4 seed diverged.
fn completion_runs() -> Vec<FakeRun> {
    let archs = [
        "mlp:32-32:identity:nobias",
        "mlp:32-32-32:identity:nobias",
        "mlp:32-32-32-32:identity:nobias",
        "mlp:32-32-32-32-32:identity:nobias",
    ];
    let mut out = Vec::new();
    for (d, arch) in archs.iter().enumerate() {
        let depth = d as u64 + 1;
        for seed in 0..5u64 {
            let floor = if depth == 1 { 0.2 } else { 0.2 / (depth * depth * 4) as f64 };
            let mut rows: Vec<MetricRecord> = (0..=30)
                .map(|k| {
                    let step = 1000 * k;
                    let loss = floor + 0.3 * (-(k as f64) / (2.0 + depth as f64)).exp() * (1.0 + 0.1 * noise(seed, k));
                    row(step, step as f64, "test", "loss", None, loss)
                })
                .collect();
            rows.push(row(
                30000,
                30000.0,
                "representation-rank",
                "effective_rank",
                None,
                9.0 - depth as f64 * 1.4 + 0.3 * noise(seed, 3),
            ));
            let end = if depth == 4 && seed == 4 { End::Diverged(17000) } else { End::Completed };
            let axes = [("depth".to_string(), json!(depth)), ("arch".to_string(), json!(arch))].into();
            out.push(FakeRun { id: format!("mc{depth}-{seed}"), seed, axes, end, rows });
        }
    }
    out
}

const EOS_TOML: &str = r#"
name = "edge-of-stability"
title = "Full-batch GD settles at the edge of stability"
section = "7.2"
survey_claim = "Under full-batch GD the top Hessian eigenvalue rises to 2/eta and hovers there."
seeds = [0, 1, 2]
base = { model = "mlp:10-32-2:relu" }

[[sweep]]
name = "lr"
[[sweep.axis]]
name = "lr"
key = "optimizer.lr"
values = [0.01, 0.02, 0.04]

[[claim]]
id = "settles"
statement = "lambda_max * eta / 2 at the end of training lies within [0.9, 1.1]."
value = { product = [{ last = "hessian/top_eigenvalue" }, { axis = "lr" }, { constant = 0.5 }] }
statistic = "mean"
within = "lr"
decision = { within = [0.9, 1.1] }
expected = "lambda_max settles at 2/eta (Cohen et al. Figure 1)"
provenance = "paper"
source = "PROTOCOLS 7.2"
resamples = 500
min_seeds = 3

[[figure]]
name = "sharpness_over_training"
kind = "over_training"
claim = "settles"
metric = "hessian/top_eigenvalue"
reference = [{ value = { ratio = [{ constant = 2.0 }, { axis = "lr" }] }, label = "2/eta" }]
caption = "Progressive sharpening, then the edge of stability."

[[figure]]
name = "residual_per_frequency"
kind = "heatmap"
metric = "sb/residual"
log_y = true

[[figure]]
name = "hessian_spectrum"
kind = "vector"
metric = "hessian/spectrum"
log_y = true

[[figure]]
name = "p_sgd_vs_p_b"
kind = "scatter"
x_value = { last = "bayes/p_b" }
y = { last = "bayes/p_sgd" }
log_x = true
log_y = true
"#;

/// Edge of stability: lambda_max rises to 2/lr; residuals per frequency fall, low ones first;
/// a Hessian spectrum; P_SGD against P_B per function.
fn eos_runs() -> Vec<FakeRun> {
    let mut out = Vec::new();
    for (a, lr) in [0.01f64, 0.02, 0.04].into_iter().enumerate() {
        for seed in 0..3u64 {
            let mut rows = Vec::new();
            for k in 0..=40u64 {
                let step = 50 * k;
                let t = step as f64 / 2000.0;
                let lam = (2.0 / lr) * (1.0 - (-6.0 * t).exp()) * (1.0 + 0.03 * noise(seed, 100 * a as u64 + k)) + 5.0;
                rows.push(row(step, step as f64 / 10.0, "hessian", "top_eigenvalue", None, lam.min(2.05 / lr)));
                if k % 4 == 0 {
                    for f in 0..20u32 {
                        let r = (-(t * 40.0) / (1.0 + f as f64)).exp() * (1.0 + 0.05 * noise(seed, u64::from(f) + k));
                        rows.push(row(step, step as f64 / 10.0, "sb", "residual", Some(f), r.max(1e-4)));
                    }
                }
            }
            for i in 0..30u32 {
                let v = 2.0 / lr * (i as f64 + 1.0).powf(-1.5) * (1.0 + 0.1 * noise(seed, u64::from(i)));
                rows.push(row(2000, 200.0, "hessian", "spectrum", Some(i), v));
            }
            for f in 0..60u32 {
                let pb = 10f64.powf(-1.0 - 5.0 * (noise(99, u64::from(f)) + 1.0) / 2.0);
                let psgd = pb * 10f64.powf(0.3 * noise(seed, 1000 * (a as u64 + 1) + u64::from(f)));
                rows.push(row(2000, 200.0, "bayes", "p_b", Some(f), pb));
                rows.push(row(2000, 200.0, "bayes", "p_sgd", Some(f), psgd));
            }
            let axes = [("lr".to_string(), json!(lr))].into();
            out.push(FakeRun { id: format!("eos{a}-{seed}"), seed, axes, end: End::Completed, rows });
        }
    }
    out
}

/// Every demo study written and reported under `root`; returns their directories.
fn write_all(root: &Path) -> Vec<PathBuf> {
    /// Name, spec, plan axes, runs, quick.
    type Demo = (&'static str, &'static str, &'static [&'static str], Vec<FakeRun>, bool);
    let studies: [Demo; 4] = [
        ("rank-depth", builtin("rank-depth"), &["depth", "act"], rank_depth_runs(), true),
        ("rank-depth-completion", builtin("rank-depth-completion"), &["depth", "arch"], completion_runs(), false),
        ("batch-sharpness", builtin("batch-sharpness"), &["batch_size"], batch_sharpness_runs(), false),
        ("edge-of-stability", EOS_TOML, &["lr"], eos_runs(), false),
    ];
    let mut dirs = Vec::new();
    for (name, toml, axes, runs, quick) in studies {
        let dir = root.join(name);
        common::write_study(&dir, toml, axes, &runs, quick);
        let html = std::fs::read_to_string(build_study_report(&dir).unwrap()).unwrap();
        assert_self_contained(&html, name);
        dirs.push(dir);
    }
    dirs
}

/// The colours (`#RRGGBB`, as plotters writes them) used in an SVG.
fn colours(svg: &str) -> Vec<String> {
    let mut out: Vec<String> =
        svg.match_indices('#').map(|(i, _)| svg[i..(i + 7).min(svg.len())].to_string()).collect();
    out.sort();
    out.dedup();
    out
}

#[test]
fn built_in_studies_over_realistic_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = write_all(tmp.path());
    let index = build_index(tmp.path(), &dirs, &[]).unwrap();
    let html = std::fs::read_to_string(&index).unwrap();
    assert_self_contained(&html, "index.html");
    assert_eq!(html.matches("no study yet").count(), 28 - 3, "sections 1.3, 7.1 and 7.2 have studies");
    if let Some(d) = demo_dir() {
        copy_dir(tmp.path(), &d);
    }

    // Batch-sharpness: arm colours agree between the figure against batch size and the one over
    // training (batch 32: Tableau blue; 2000: orange).
    let fig =
        |study: &str, name: &str| std::fs::read_to_string(tmp.path().join(study).join("figures").join(name)).unwrap();
    for name in ["sharpness_vs_batch_size.svg", "train_loss_over_training.svg", "top_eigenvalue_vs_batch_size.svg"] {
        let c = colours(&fig("batch-sharpness", name));
        assert!(c.contains(&"#4E79A7".to_string()) && c.contains(&"#F28E2B".to_string()), "{name}: {c:?}");
    }
    // x in epochs, and a note that seeds stop at different steps.
    let csv = Csv::read(&tmp.path().join("batch-sharpness/figures/train_loss_over_training.csv"));
    let r = csv.select(&[("row", "run"), ("run_id", "bs2000-0"), ("step", "100")]);
    assert_eq!(r[0][csv.col("x")], "50", "step 100 at batch 2000 of 4000 examples is epoch 50");
    let report = std::fs::read_to_string(tmp.path().join("batch-sharpness/report.html")).unwrap();
    assert!(report.contains("the mean and band cover the steps every seed of the arm reached"));

    // Rank-depth: series per activation, identity first in both figures; groups within act.
    for name in ["erank_vs_depth.csv", "erank_gram_vs_depth.csv"] {
        let c = Csv::read(&tmp.path().join("rank-depth/figures").join(name));
        let means = c.select(&[("row", "mean")]);
        assert_eq!(means.len(), 10);
        assert_eq!(means[0][c.col("arm")], "act = identity");
        assert_eq!(means[9][c.col("arm")], "act = relu");
    }
    let report = std::fs::read_to_string(tmp.path().join("rank-depth/report.html")).unwrap();
    assert!(report.contains("Within each value of act") && report.contains("Quick run"));

    // Completion: the zipped architecture string is not part of any label.
    let c = Csv::read(&tmp.path().join("rank-depth-completion/figures/heldout_mse_over_training.csv"));
    assert!(c.rows.iter().all(|r| !r[c.col("arm")].contains("arch")), "arch follows from depth");
    assert_eq!(
        c.select(&[("row", "mean"), ("arm", "depth = 4"), ("step", "30000")])[0][c.col("n")],
        "4",
        "one seed diverged"
    );

    // Edge of stability: one 2/eta reference per arm, at 2 / lr.
    let c = Csv::read(&tmp.path().join("edge-of-stability/figures/sharpness_over_training.csv"));
    let refs = c.select(&[("row", "reference"), ("label", "2/eta")]);
    assert_eq!(refs.len(), 3);
    for (r, lr) in refs.iter().zip([0.01, 0.02, 0.04]) {
        let v: f64 = r[c.col("value")].parse().unwrap();
        assert!((v - 2.0 / lr).abs() < 1e-9, "{v}");
    }
    assert_eq!(
        fig("edge-of-stability", "sharpness_over_training.svg").matches("2/eta").count(),
        4,
        "three lines and the legend"
    );
    let c = Csv::read(&tmp.path().join("edge-of-stability/figures/p_sgd_vs_p_b.csv"));
    assert_eq!(c.rows.len(), 9 * 60, "one point per function and run");
}
