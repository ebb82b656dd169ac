//! End to end: small synthetic studies written to disk by hand (typed records: a plan, run
//! records, metrics.jsonl rows with known values; the verdict computed by sgdlab-studies from
//! them), reports and the index built from them, and the outputs checked.
//!
//! Set `SGDLAB_REPORT_DEMO_DIR=/some/dir` to also leave the demo studies, their reports and an
//! index there (to look at them in a browser).

mod common;

use common::{Csv, End, FakeRun, assert_close, assert_self_contained, copy_dir, demo_dir, row, snapshot};
use serde_json::{Value, json};
use sgdlab_report::{ReportError, build_index, build_study_report};
use sgdlab_train::MetricRecord;
use std::path::Path;

const STEPS: [u64; 3] = [0, 10, 20];
const TRAIN_SIZE: f64 = 4000.0;
const ACTS: [&str; 2] = ["relu", "identity"];
const BATCHES: [u64; 2] = [32, 2000];

/// The study spec: a grid of batch size and activation, claims of every shape the report must
/// show, and one figure of every kind. `TITLE`, `SECTION` and `REASON` are filled in.
const SPEC: &str = r#"
name = "toy-sharpness"
title = "TITLE"
section = "SECTION"
survey_claim = "Large batches find sharper minima & so <b>generalise</b> worse."
seeds = [0, 1, 2, 3]
notes = ["A synthetic study: every number is written by the test.", "<script>alert(1)</script> stays text"]
base = { model = "mlp:4-4-2:relu" }

[[sweep]]
name = "grid"
[[sweep.axis]]
name = "batch_size"
key = "optimizer.batch_size"
values = [32, 2000]
[[sweep.axis]]
name = "act"
values = ["relu", "identity"]

[[measure]]
probe = "loss"

[[claim]]
id = "lambda-ratio"
statement = "Large-batch minima have a larger top Hessian eigenvalue, with either activation."
value = { last = "hessian/top_eigenvalue" }
statistic = { ratio = { numerator = { batch_size = 2000 }, denominator = { batch_size = 32 } } }
within = "act"
decision = { greater = 2.0 }
expected = "lambda_max(LB) / lambda_max(SB) > 2"
provenance = "unverified"
source = "PROTOCOLS 7.1, recalled"
resamples = 500

[[claim]]
id = "never-measured"
statement = "Epsilon-sharpness is positive."
value = { last = "sharpness/sharpness" }
statistic = "mean"
decision = { greater = 0.0 }
expected = "sharpness > 0"
provenance = "computed"
resamples = 500

[[figure]]
name = "lambda_vs_batch"
kind = "final_vs_axis"
claim = "lambda-ratio"
x_axis = "batch_size"
y = { last = "hessian/top_eigenvalue" }
log_x = true
log_y = true
reference = [{ value = { ratio = [{ constant = 2.0 }, { axis = "batch_size" }] }, label = "2/eta" }]

[[figure]]
name = "loss_over_training"
kind = "over_training"
title = "Training loss <script>alert(2)</script> & epochs"
metric = "train/loss"
x = "epoch"
log_y = true
reference = [{ value = { constant = 0.1 }, label = "target" }]

[[figure]]
name = "residual_heatmap"
kind = "heatmap"
metric = "sb/residual"

[[figure]]
name = "spectrum"
kind = "vector"
metric = "sb/spectrum"
x_metric = "sb/frequency"
log_x = true
log_y = true

[[figure]]
name = "spectrum_scatter"
kind = "scatter"
x_value = { last = "sb/frequency" }
y = { last = "sb/spectrum" }
log_x = true
log_y = true

[[figure]]
name = "probe_loss_vs_act"
kind = "final_vs_axis"
x_axis = "act"
y = { last = "loss/loss" }
x_label = "activation function"
y_label = "probe loss at the end"

[[figure]]
name = "never"
kind = "over_training"
claim = "never-measured"
metric = "sharpness/sharpness"

[quick]
set = ["seeds=[0, 1, 2, 3]"]
reason = "REASON"
"#;

fn spec_toml(title: &str, section: &str, quick: bool) -> String {
    let reason = if quick { "All four seeds: the synthetic effect is large." } else { "" };
    SPEC.replace("TITLE", title).replace("SECTION", section).replace("REASON", reason)
}

fn act_index(act: &str) -> usize {
    ACTS.iter().position(|a| *a == act).unwrap()
}

/// Final top eigenvalue of a run.
fn lambda(batch: u64, act: &str, seed: u64) -> f64 {
    (if batch == 2000 { 40.0 } else { 10.0 }) + 2.0 * seed as f64 + if act == "relu" { 1.0 } else { 0.0 }
}

/// Training loss at a step.
fn train_loss(batch: u64, act: &str, seed: u64, step: u64) -> f64 {
    (1.0 + act_index(act) as f64 + batch as f64 / 1000.0) * 0.5f64.powf(step as f64 / 10.0) + 0.01 * seed as f64
}

/// Element `i` of the residual at a step.
fn residual(seed: u64, step: u64, i: usize) -> f64 {
    (-(step as f64) / (10.0 * (i as f64 + 1.0))).exp() * (1.0 + 0.1 * seed as f64)
}

const FREQUENCIES: [f64; 4] = [1.0, 2.0, 4.0, 8.0];

fn spectrum(batch: u64, act: &str, seed: u64, j: usize) -> f64 {
    lambda(batch, act, seed) / (j as f64 + 1.0)
}

fn run_id(batch: u64, act: &str, seed: u64) -> String {
    format!("r{batch}-{act}-{seed}")
}

fn metric_rows(batch: u64, act: &str, seed: u64) -> Vec<MetricRecord> {
    let epoch = |step: u64| step as f64 * batch as f64 / TRAIN_SIZE;
    let mut rows = Vec::new();
    for step in STEPS {
        rows.push(row(step, epoch(step), "train", "loss", None, train_loss(batch, act, seed, step)));
        for i in 0..3 {
            rows.push(row(step, epoch(step), "sb", "residual", Some(i), residual(seed, step, i as usize)));
        }
    }
    let last = *STEPS.last().unwrap();
    rows.push(row(last, epoch(last), "hessian", "top_eigenvalue", None, lambda(batch, act, seed)));
    rows.push(row(last, epoch(last), "loss", "loss", None, train_loss(batch, act, seed, last)));
    for (j, f) in FREQUENCIES.iter().enumerate() {
        rows.push(row(last, epoch(last), "sb", "frequency", Some(j as u32), *f));
        rows.push(row(last, epoch(last), "sb", "spectrum", Some(j as u32), spectrum(batch, act, seed, j)));
    }
    rows
}

/// Batch size x activation x 4 seeds; (2000, identity, seed 3) diverged at step 12 and (32,
/// relu, seed 3) never ran.
fn runs() -> Vec<FakeRun> {
    let mut out = Vec::new();
    for batch in BATCHES {
        for act in ACTS {
            for seed in 0..4 {
                let end = match (batch, act, seed) {
                    (2000, "identity", 3) => End::Diverged(12),
                    (32, "relu", 3) => End::Missing,
                    _ => End::Completed,
                };
                out.push(FakeRun {
                    id: run_id(batch, act, seed),
                    seed,
                    axes: [("act".to_string(), json!(act)), ("batch_size".to_string(), json!(batch))].into(),
                    end,
                    rows: metric_rows(batch, act, seed),
                });
            }
        }
    }
    out
}

fn write_study(dir: &Path, title: &str, section: &str, quick: bool) {
    common::write_study(dir, &spec_toml(title, section, quick), &["batch_size", "act"], &runs(), quick);
}

const HEADER: &str = "arm,batch_size,act,row,seed,run_id,step,epoch,index,x,value,low,high,n,label";

#[test]
fn report_shows_claims_runs_and_every_figure_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("toy");
    write_study(&dir, "Toy sharpness", "7.1", true);
    let report = build_study_report(&dir).unwrap();
    let html = std::fs::read_to_string(&report).unwrap();
    if let Some(d) = demo_dir() {
        copy_dir(&dir, &d.join("toy"));
    }
    assert_self_contained(&html, "report.html");
    for name in [
        "lambda_vs_batch",
        "loss_over_training",
        "residual_heatmap",
        "spectrum",
        "spectrum_scatter",
        "probe_loss_vs_act",
        "never",
    ] {
        for ext in ["svg", "csv"] {
            assert!(dir.join("figures").join(format!("{name}.{ext}")).exists(), "figures/{name}.{ext} missing");
        }
        assert!(html.contains(&format!("id=\"figure-{name}\"")), "figure {name} not in the report");
        let csv = std::fs::read_to_string(dir.join("figures").join(format!("{name}.csv"))).unwrap();
        assert_eq!(csv.lines().next(), Some(HEADER), "{name}.csv header");
    }
    // A figure's own axis labels replace the generated ones.
    let svg = std::fs::read_to_string(dir.join("figures/probe_loss_vs_act.svg")).unwrap();
    assert!(svg.contains("probe loss at the end") && svg.contains("activation function"), "final_vs_axis labels");
    // Verdict, summary, quick banner with its overrides and reason, incomplete banner.
    assert!(html.contains("1 of 2 claims reproduced"), "summary");
    assert!(html.contains("Quick run") && html.contains("<code>seeds=[0, 1, 2, 3]</code>"));
    assert!(html.contains("All four seeds: the synthetic effect is large."));
    assert!(html.contains("Incomplete study"), "a missing run leaves the study incomplete");
    // One section per claim, with the threshold, the expected outcome and its provenance.
    assert!(html.contains("id=\"claim-lambda-ratio\"") && html.contains("id=\"claim-never-measured\""));
    assert!(html.contains("threshold <b>&gt; 2</b>"));
    assert!(html.contains("[unverified]") && html.contains("[computed]") && html.contains("PROTOCOLS 7.1, recalled"));
    assert!(html.contains("No effect could be formed"), "the claim with a null effect says so");
    // Groups within act, and the runs left out with their reasons.
    assert!(html.contains("Within each value of act"));
    assert!(html.contains("diverged at step 12"));
    assert!(html.contains("not run yet"));
    // Words, not metric names, on the axes (the loss probe is registered: "loss"; the trainer's
    // train/loss is "training loss"); log axes say so.
    let loss_svg = std::fs::read_to_string(dir.join("figures/loss_over_training.svg")).unwrap();
    assert!(loss_svg.contains("training loss (log scale)") && loss_svg.contains("\nepoch\n"), "over_training axes");
    assert_eq!(
        loss_svg.matches("\ntarget\n").count(),
        2,
        "a reference equal in every arm is one line (and the legend)"
    );
    let never = std::fs::read_to_string(dir.join("figures/never.svg")).unwrap();
    assert!(never.contains("no data"), "a figure of a metric no run recorded is a no-data frame");
    // The claim's figure sits in its section, before the next claim.
    let (claim, fig, next) = (
        html.find("id=\"claim-lambda-ratio\""),
        html.find("id=\"figure-lambda_vs_batch\""),
        html.find("id=\"claim-never-measured\""),
    );
    assert!(claim < fig && fig < next, "figure of a claim inside its section");
}

#[test]
fn csv_values_are_the_numbers_drawn() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("toy");
    write_study(&dir, "Toy sharpness", "7.1", false);
    build_study_report(&dir).unwrap();
    let fig = |n: &str| Csv::read(&dir.join("figures").join(format!("{n}.csv")));

    // final_vs_axis: every completed run, then the mean of each (act, batch size) group.
    let c = fig("lambda_vs_batch");
    assert_eq!(c.select(&[("row", "run")]).len(), 14, "16 planned, one diverged, one missing");
    assert_close(
        "run value",
        c.number(&[("row", "run"), ("run_id", "r2000-relu-1")], "value"),
        lambda(2000, "relu", 1),
    );
    let relu_2000 = [("row", "mean"), ("act", "relu"), ("batch_size", "2000")];
    assert_close("mean", c.number(&relu_2000, "value"), (41.0 + 43.0 + 45.0 + 47.0) / 4.0);
    assert_eq!(c.number(&relu_2000, "n"), 4.0);
    let (lo, hi) = (c.number(&relu_2000, "low"), c.number(&relu_2000, "high"));
    assert!(
        (41.0..44.0).contains(&lo) && hi > 44.0 && hi <= 47.0,
        "the interval of the mean lies inside the seeds' range: {lo} {hi}"
    );
    // Seed 3 of (32, relu) never ran: the mean is over three seeds.
    let relu_32 = [("row", "mean"), ("act", "relu"), ("batch_size", "32")];
    assert_close("mean of three", c.number(&relu_32, "value"), 13.0);
    assert_eq!(c.number(&relu_32, "n"), 3.0);
    assert_eq!(c.select(&[("row", "mean")])[0][c.col("arm")], "act = identity", "series in value order");
    let refs = c.select(&[("row", "reference"), ("label", "2/eta"), ("act", "identity")]);
    assert_eq!(refs.len(), 2);
    assert_close("reference 2/eta", refs[1][c.col("value")].parse().unwrap(), 2.0 / 2000.0);

    // over_training: x is the epoch; the mean at a step over the seeds of the arm.
    let c = fig("loss_over_training");
    let arm = [("row", "mean"), ("arm", "batch size = 2000, act = relu"), ("step", "10")];
    let expected: f64 = (0..4).map(|s| train_loss(2000, "relu", s, 10)).sum::<f64>() / 4.0;
    assert_close("mean loss", c.number(&arm, "value"), expected);
    assert_close("x is the epoch", c.number(&arm, "x"), 10.0 * 2000.0 / TRAIN_SIZE);
    assert_close("min", c.number(&arm, "low"), train_loss(2000, "relu", 0, 10));
    assert_close("max", c.number(&arm, "high"), train_loss(2000, "relu", 3, 10));
    assert_eq!(c.select(&[("row", "reference"), ("label", "target")]).len(), 4, "one reference per arm");

    // heatmap: per step and element, the mean over seeds.
    let c = fig("residual_heatmap");
    let cell = [("row", "mean"), ("arm", "batch size = 32, act = identity"), ("step", "20"), ("index", "1")];
    let expected: f64 = (0..4).map(|s| residual(s, 20, 1)).sum::<f64>() / 4.0;
    assert_close("heatmap cell", c.number(&cell, "value"), expected);
    assert_eq!(c.select(&[("row", "run"), ("run_id", "r32-identity-0")]).len(), 9, "3 steps x 3 elements");

    // vector: x is the frequency, the value the mean per element.
    let c = fig("spectrum");
    let el = [("row", "mean"), ("arm", "batch size = 2000, act = identity"), ("index", "3")];
    assert_close("x = frequency", c.number(&el, "x"), 8.0);
    let expected: f64 = (0..3).map(|s| spectrum(2000, "identity", s, 3)).sum::<f64>() / 3.0;
    assert_close("vector mean", c.number(&el, "value"), expected);

    // scatter: one row per element of every completed run.
    let c = fig("spectrum_scatter");
    assert_eq!(c.select(&[("row", "run")]).len(), 14 * 4);
    assert_close("point", c.number(&[("run_id", "r32-relu-2"), ("index", "2")], "value"), spectrum(32, "relu", 2, 2));

    // A categorical axis (act) as x, and the no-data figure: header only.
    let c = fig("probe_loss_vs_act");
    assert_eq!(c.select(&[("row", "mean")]).len(), 4, "one series per batch size, two activations each");
    assert!(fig("never").rows.is_empty());
}

#[test]
fn rebuilding_gives_identical_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("toy");
    write_study(&dir, "Toy sharpness", "7.1", false);
    build_study_report(&dir).unwrap();
    build_index(tmp.path(), std::slice::from_ref(&dir), &[]).unwrap();
    let first = snapshot(tmp.path());
    build_study_report(&dir).unwrap();
    build_index(tmp.path(), std::slice::from_ref(&dir), &[]).unwrap();
    assert_eq!(first, snapshot(tmp.path()));
    // A second directory from the same records gives the same report and figures.
    let other = tmp.path().join("again");
    write_study(&other, "Toy sharpness", "7.1", false);
    build_study_report(&other).unwrap();
    for f in ["report.html", "figures/lambda_vs_batch.svg", "figures/residual_heatmap.csv"] {
        assert_eq!(std::fs::read(dir.join(f)).unwrap(), std::fs::read(other.join(f)).unwrap(), "{f}");
    }
}

#[test]
fn record_text_is_escaped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("toy");
    write_study(&dir, "Sharp <minima> & \\\"quotes\\\"", "7.1", false);
    let html = std::fs::read_to_string(build_study_report(&dir).unwrap()).unwrap();
    assert!(html.contains("Sharp &lt;minima&gt; &amp; &quot;quotes&quot;"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; stays text"));
    assert!(html.contains("so &lt;b&gt;generalise&lt;/b&gt; worse"));
    // A figure title is escaped in the page and in the SVG file.
    assert!(html.contains("Training loss &lt;script&gt;alert(2)&lt;/script&gt; &amp; epochs"));
    let svg = std::fs::read_to_string(dir.join("figures/loss_over_training.svg")).unwrap();
    assert!(!svg.contains("<script") && svg.contains("&lt;script&gt;"), "SVG text is escaped");
    assert_self_contained(&html, "report.html");
    let index = std::fs::read_to_string(build_index(tmp.path(), &[dir], &[]).unwrap()).unwrap();
    assert!(index.contains("Sharp &lt;minima&gt;") && !index.contains("<minima>"));
}

#[test]
fn index_lists_every_survey_section() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("studies/a");
    let b = tmp.path().join("studies/b");
    let c = tmp.path().join("c");
    write_study(&a, "Study in 7.1", "7.1", false);
    write_study(&b, "Study in 1.3", "1.3", true);
    write_study(&c, "A study of its own", "99.9", false);
    for d in [&a, &b, &c] {
        build_study_report(d).unwrap();
    }
    let out = tmp.path().join("out");
    let skipped = sgdlab_report::NotRun {
        name: "mnist-study".into(),
        section: "3.2".into(),
        reason: "needs the MNIST test set".into(),
    };
    let index = build_index(&out, &[a, b, c], std::slice::from_ref(&skipped)).unwrap();
    let html = std::fs::read_to_string(index).unwrap();
    assert_self_contained(&html, "index.html");
    let sections = sgdlab_studies::survey::CLAIMS;
    assert_eq!(sections.len(), 28);
    // Every section in order, each in its own row head.
    let mut at = 0;
    for s in sections {
        let cell = format!("<td rowspan=\"1\"><b>{}</b></td>", s.section);
        let found = html[at..].find(&cell).unwrap_or_else(|| panic!("section {} missing or out of order", s.section));
        at += found + cell.len();
    }
    assert_eq!(html.matches("no study yet").count(), 25, "two sections have a study, one a study not run");
    assert!(
        html.contains("<code>mnist-study</code>")
            && html.contains("not run")
            && html.contains("needs the MNIST test set")
    );
    assert!(html.contains("href=\"../studies/a/report.html\"") && html.contains("href=\"../c/report.html\""));
    assert!(html.contains("Studies of no survey section") && html.contains("A study of its own"));
    // Each claim with its verdict and effect.
    assert!(html.contains("<code>lambda-ratio</code>") && html.contains("interval"));
    assert!(html.contains("no effect:"), "the claim without an effect says why");
    if let Some(d) = demo_dir() {
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(out.join("index.html"), d.join("toy-index.html")).unwrap();
    }
}

#[test]
fn missing_records_are_errors_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let e = build_study_report(tmp.path()).unwrap_err();
    assert!(matches!(e, ReportError::Missing { .. }), "{e}");
    assert!(e.to_string().contains("plan.json"), "{e}");
    let dir = tmp.path().join("toy");
    write_study(&dir, "Toy", "7.1", false);
    std::fs::write(dir.join("verdict.json"), "{\"study\": 3").unwrap();
    let e = build_study_report(&dir).unwrap_err().to_string();
    assert!(e.contains("verdict.json") && !e.contains('\n'), "{e}");
}

#[test]
fn a_study_with_no_completed_run_draws_no_data_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("toy");
    write_study(&dir, "Toy", "7.1", false);
    std::fs::remove_dir_all(dir.join("runs")).unwrap();
    let html = std::fs::read_to_string(build_study_report(&dir).unwrap()).unwrap();
    assert!(html.contains("records disagree"), "the verdict saw runs the directory no longer has");
    for f in ["lambda_vs_batch", "residual_heatmap", "spectrum_scatter"] {
        let svg = std::fs::read_to_string(dir.join("figures").join(format!("{f}.svg"))).unwrap();
        assert!(svg.contains("no data"), "{f}");
    }
    let v: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("verdict.json")).unwrap()).unwrap();
    assert_eq!(v["study"], "toy-sharpness");
}
