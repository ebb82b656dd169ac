//! End to end: fake study directories written by hand in the documented format
//! (`docs/records.md`), reports and index built from them, and the outputs checked.
//!
//! Set `SGDLAB_REPORT_DEMO_DIR=/some/dir` to also leave the two demo studies and their reports
//! there (to look at them in a browser).

use serde_json::{Value, json};
use sgdlab_report::{ReportError, build_index, build_study_report};
use std::path::{Path, PathBuf};

/// Means are computed as sum / n in seed order, the hand values likewise: equal to rounding.
const MEAN_TOL: f64 = 1e-12;

/// Substrings that would fetch or run something.
const FORBIDDEN: [&str; 6] = ["http://", "https://", "src=\"//", "<script", "@import", "url("];

/// One planned run of a fake study.
struct FakeRun {
    id: String,
    seed: u64,
    knob: Value,
    diverged_at: Option<u64>,
}

/// The value of `test/accuracy` of a run at a step.
fn accuracy(knob_index: usize, seed: u64, step: u64) -> f64 {
    0.5 + 0.1 * knob_index as f64 + 0.01 * seed as f64 + step as f64 / 100.0
}

/// The final `hessian/top_eigenvalue` of a run.
fn top_eigenvalue(knob_index: usize, seed: u64) -> f64 {
    10.0 + 20.0 * knob_index as f64 + 0.5 * seed as f64
}

fn write_json(path: &Path, v: &Value) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_string_pretty(v).unwrap()).unwrap();
}

/// Writes a study: knob values `knobs` x seeds 0..3; the run (first knob, seed 2) diverged at step 12.
/// Steps 0, 10, 20 (the diverged run stops after 10 with a null batch loss).
fn write_study(
    dir: &Path,
    study: &str,
    knob: &str,
    knobs: &[Value],
    verdict: &str,
    extra_figure: Option<Value>,
) -> Vec<FakeRun> {
    let mut runs = Vec::new();
    for (k, kv) in knobs.iter().enumerate() {
        for seed in 0..3u64 {
            let diverged = k == 0 && seed == 2;
            runs.push(FakeRun {
                id: format!("{:016x}", 0x9e37_79b9_u64.wrapping_mul(1 + 10 * k as u64 + seed) ^ study.len() as u64),
                seed,
                knob: kv.clone(),
                diverged_at: diverged.then_some(12),
            });
        }
    }
    // Plan in an order that is not the sorted one, to check the sorting.
    let plan_runs: Vec<Value> = runs
        .iter()
        .rev()
        .enumerate()
        .map(|(i, r)| json!({"id": r.id, "index": i, "seed": r.seed, "knobs": {knob: r.knob}, "run_spec": "[model]\narch = \"mlp\"\n"}))
        .collect();
    write_json(
        &dir.join("plan.json"),
        &json!({"study": study, "title": format!("Title of {study}"), "section": "7.1", "spec_hash": "9c7ecc0011223344",
                "quick": true, "knobs": [knob], "runs": plan_runs}),
    );
    for (i, r) in runs.iter().enumerate() {
        let k = i / 3;
        let run_dir = dir.join("runs").join(&r.id);
        let last_step = if r.diverged_at.is_some() { 10 } else { 20 };
        let mut lines = Vec::new();
        for step in (0..=last_step).step_by(10) {
            lines.push(
                json!({"step": step, "epoch": step as f64 / 10.0, "probe": "batch", "name": "loss", "value": 1.0}),
            );
            lines.push(json!({"step": step, "epoch": step as f64 / 10.0, "probe": "test", "name": "accuracy", "value": accuracy(k, r.seed, step)}));
            lines.push(json!({"step": step, "epoch": step as f64 / 10.0, "probe": "hessian", "name": "top_eigenvalue",
                              "value": if step == 20 { top_eigenvalue(k, r.seed) } else { 1.0 + step as f64 }}));
        }
        if r.diverged_at.is_some() {
            lines.push(json!({"step": 12, "epoch": 1.2, "probe": "batch", "name": "loss", "value": null}));
        }
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::create_dir_all(&run_dir).unwrap();
        std::fs::write(run_dir.join("metrics.jsonl"), text).unwrap();
        let mut record = json!({"status": "completed", "seed": r.seed, "spec_hash": r.id, "steps_completed": 20,
            "total_steps": 20, "dtype": "f32", "sgdlab_version": "0.1.0", "git_revision": "abc123", "threads": 1,
            "wall_time_s": 1.5, "final_metrics": {"train_loss": 0.1, "train_accuracy": 0.9, "test_loss": 0.2, "test_accuracy": 0.8}});
        if let Some(at) = r.diverged_at {
            record["status"] = json!("diverged");
            record["diverged_at_step"] = json!(at);
            record["steps_completed"] = json!(at);
            record["final_metrics"] =
                json!({"train_loss": null, "train_accuracy": null, "test_loss": null, "test_accuracy": null});
        }
        write_json(&run_dir.join("record.json"), &record);
    }
    let excluded: Vec<Value> = runs
        .iter()
        .filter_map(|r| r.diverged_at.map(|at| json!({"id": r.id, "status": "diverged", "step": at})))
        .collect();
    let per_run: Vec<Value> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let status = if r.diverged_at.is_some() { "diverged" } else { "completed" };
            let top = if r.diverged_at.is_some() { Value::Null } else { json!(top_eigenvalue(i / 3, r.seed)) };
            json!({"id": r.id, "seed": r.seed, "knobs": {knob: r.knob}, "status": status,
                   "metrics": {"hessian/top_eigenvalue": top, "test/accuracy": accuracy(i / 3, r.seed, 20)}})
        })
        .collect();
    let mut figures = vec![
        json!({"name": format!("top_eigenvalue_vs_{knob}"), "kind": "final_vs_knob", "knob": knob,
               "metric": {"probe": "hessian", "name": "top_eigenvalue"}, "log_x": true, "log_y": false}),
        json!({"name": "test_accuracy_over_training", "kind": "over_training", "knob": knob,
               "metric": {"probe": "test", "name": "accuracy"}}),
    ];
    figures.extend(extra_figure);
    write_json(
        &dir.join("verdict.json"),
        &json!({
            "study": study, "title": format!("Title of {study}"), "section": "7.1",
            "claim": "Large-batch training converges to sharper minimisers (lambda_LB > lambda_SB) & so on.",
            "verdict": verdict,
            "statistic": {"name": "paired_ratio", "metric": {"probe": "hessian", "name": "top_eigenvalue"},
                          "description": "median over seeds of lambda_max(LB) / lambda_max(SB)"},
            "effect": {"value": 3.1, "ci_low": 2.2, "ci_high": 4.4, "level": 0.95,
                       "method": "percentile bootstrap over seeds, 2000 resamples, seed 0"},
            "decision_rule": "reproduced if the CI lies above 2; not reproduced if it lies below 2; else inconclusive",
            "runs": {"planned": runs.len(), "used": runs.len() - 1, "excluded": excluded},
            "per_run": per_run,
            "figures": figures,
            "notes": ["numbers marked [paper] in PROTOCOLS.md were recalled, not re-read", "<script>alert(1)</script>"],
            "quick": true, "spec_hash": "9c7ecc0011223344", "sgdlab_version": "0.1.0", "git_revision": "abc123"
        }),
    );
    runs
}

/// A parsed CSV (no quoted fields in these studies).
struct Csv {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn read_csv(path: &Path) -> Csv {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header = lines.next().expect("header row").split(',').map(String::from).collect::<Vec<_>>();
    let rows: Vec<Vec<String>> = lines.map(|l| l.split(',').map(String::from).collect()).collect();
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(
            r.len(),
            header.len(),
            "{}: row {} has {} fields, header {}",
            path.display(),
            i + 1,
            r.len(),
            header.len()
        );
    }
    Csv { header, rows }
}

impl Csv {
    fn col(&self, name: &str) -> usize {
        self.header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name} in {:?}", self.header))
    }

    /// The `value` of the row with these knob, seed and step ("" = any step).
    fn value(&self, knob: &str, seed: &str, step: &str) -> f64 {
        let (k, s, t, v) = (0, self.col("seed"), self.col("step"), self.col("value"));
        let rows: Vec<&Vec<String>> =
            self.rows.iter().filter(|r| r[k] == knob && r[s] == seed && (step.is_empty() || r[t] == step)).collect();
        assert_eq!(rows.len(), 1, "rows for knob {knob}, seed {seed}, step {step}: {rows:?}");
        rows[0][v].parse().unwrap()
    }
}

fn assert_close(what: &str, actual: f64, expected: f64) {
    let err = (actual - expected).abs();
    assert!(err <= MEAN_TOL * expected.abs().max(1.0), "{what}: expected {expected}, got {actual} (error {err:e})");
}

fn assert_self_contained(html: &str, what: &str) {
    for f in FORBIDDEN {
        assert!(!html.contains(f), "{what} contains `{f}` (an external resource or a script)");
    }
}

/// Every file under `dir`, sorted, with its bytes (relative paths).
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn batch_knobs() -> Vec<Value> {
    vec![json!(512), json!(32)]
}

#[test]
fn study_report_shows_verdict_runs_and_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("batch-sharpness");
    let runs = write_study(&dir, "batch-sharpness", "batch_size", &batch_knobs(), "reproduced", None);
    let report = build_study_report(&dir).unwrap();
    assert_eq!(report, dir.join("report.html"));
    let html = std::fs::read_to_string(&report).unwrap();

    assert!(html.contains("<span class=\"badge reproduced\">reproduced</span>"), "verdict badge");
    assert!(
        html.contains("Large-batch training converges to sharper minimisers (lambda_LB &gt; lambda_SB) &amp; so on."),
        "escaped claim"
    );
    assert!(html.contains("<b>3.1</b>") && html.contains("95% CI 2.2 to 4.4"), "effect with interval");
    assert!(html.contains("percentile bootstrap over seeds, 2000 resamples, seed 0"), "interval method");
    assert!(html.contains("reproduced if the CI lies above 2"), "decision rule");
    assert!(html.contains("median over seeds of lambda_max(LB) / lambda_max(SB)"), "statistic description");
    for r in &runs {
        assert!(html.contains(&r.id), "run id {} missing", r.id);
    }
    assert!(html.contains("<svg"), "inline SVG");
    assert_eq!(html.matches("<svg").count(), 2, "one inline SVG per figure");
    assert!(html.contains("href=\"figures/top_eigenvalue_vs_batch_size.svg\""));
    assert!(html.contains("href=\"figures/test_accuracy_over_training.csv\""));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "notes are escaped");
    assert!(html.contains("9c7ecc0011223344") && html.contains("abc123") && html.contains("quick"), "provenance");
    assert!(html.contains("diverged"), "excluded run status");
    assert_self_contained(&html, "report.html");

    // Figures: standalone SVG files with their namespace.
    for name in ["top_eigenvalue_vs_batch_size", "test_accuracy_over_training"] {
        let svg = std::fs::read_to_string(dir.join("figures").join(format!("{name}.svg"))).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("xmlns=\"http://www.w3.org/2000/svg\""), "{name}.svg");
    }

    // final_vs_knob: 32 -> 3 seeds + mean/min/max; 512 -> 2 used seeds + mean/min/max.
    let csv = read_csv(&dir.join("figures/top_eigenvalue_vs_batch_size.csv"));
    assert_eq!(csv.header, ["batch_size", "seed", "run_id", "step", "n", "value"]);
    assert_eq!(csv.rows.len(), (3 + 3) + (2 + 3));
    let firsts: Vec<(&str, &str)> = csv.rows.iter().map(|r| (r[0].as_str(), r[1].as_str())).collect();
    assert_eq!(
        firsts,
        [("32", "0"), ("32", "1"), ("32", "2"), ("32", "mean"), ("32", "min"), ("32", "max")]
            .into_iter()
            .chain([("512", "0"), ("512", "1"), ("512", "mean"), ("512", "min"), ("512", "max")])
            .collect::<Vec<_>>(),
        "sorted by knob value (numerically) then seed"
    );
    // Knob index 0 is batch size 512 in `batch_knobs`, index 1 is 32.
    let mean_32 = (top_eigenvalue(1, 0) + top_eigenvalue(1, 1) + top_eigenvalue(1, 2)) / 3.0;
    let mean_512 = (top_eigenvalue(0, 0) + top_eigenvalue(0, 1)) / 2.0;
    assert_close("mean at 32", csv.value("32", "mean", ""), mean_32);
    assert_close("mean at 512", csv.value("512", "mean", ""), mean_512);
    assert_close("min at 512", csv.value("512", "min", ""), top_eigenvalue(0, 0));
    assert_close("max at 32", csv.value("32", "max", ""), top_eigenvalue(1, 2));
    assert_eq!(csv.rows[0][csv.col("step")], "20", "the last value is at the last step");
    assert_eq!(csv.rows[3][csv.col("n")], "3");
    assert_eq!(csv.rows[8][csv.col("n")], "2", "the diverged run is left out");

    // over_training: per knob value, seeds x 3 steps, then mean/min/max x 3 steps.
    let csv = read_csv(&dir.join("figures/test_accuracy_over_training.csv"));
    assert_eq!(csv.header, ["batch_size", "seed", "run_id", "step", "n", "value"]);
    assert_eq!(csv.rows.len(), (3 * 3 + 3 * 3) + (2 * 3 + 3 * 3));
    for step in [0u64, 10, 20] {
        let mean_32 = (accuracy(1, 0, step) + accuracy(1, 1, step) + accuracy(1, 2, step)) / 3.0;
        let mean_512 = (accuracy(0, 0, step) + accuracy(0, 1, step)) / 2.0;
        assert_close("accuracy mean at 32", csv.value("32", "mean", &step.to_string()), mean_32);
        assert_close("accuracy mean at 512", csv.value("512", "mean", &step.to_string()), mean_512);
    }
}

#[test]
fn rebuilding_gives_identical_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a/study"), tmp.path().join("b/study"));
    write_study(&a, "batch-sharpness", "batch_size", &batch_knobs(), "reproduced", None);
    write_study(&b, "batch-sharpness", "batch_size", &batch_knobs(), "reproduced", None);
    build_study_report(&a).unwrap();
    let first = snapshot(&a);
    build_study_report(&a).unwrap();
    assert!(first == snapshot(&a), "a second build changed some file");
    build_study_report(&b).unwrap();
    assert!(first == snapshot(&b), "the same records in another directory gave other bytes");
}

#[test]
fn index_lists_studies_with_relative_links() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    let sharp = out.join("batch-sharpness");
    let optim = out.join("optimizer-generalisation");
    write_study(&sharp, "batch-sharpness", "batch_size", &batch_knobs(), "reproduced", None);
    // A text knob, a metric no run recorded (drawn as "no data"), a log axis on a linear knob.
    let no_data = json!({"name": "gradient_norm_vs_optimizer", "kind": "final_vs_knob", "knob": "optimizer",
                         "metric": {"probe": "gradient", "name": "norm"}, "log_x": false, "log_y": true});
    write_study(
        &optim,
        "optimizer-generalisation",
        "optimizer",
        &[json!("sgd"), json!("adam")],
        "not reproduced",
        Some(no_data),
    );
    build_study_report(&sharp).unwrap();
    let optim_report = std::fs::read_to_string(build_study_report(&optim).unwrap()).unwrap();
    assert!(optim_report.contains("badge not-reproduced"));
    assert!(optim_report.contains("no data"), "a figure of a metric nobody recorded says so");
    let no_data_csv = read_csv(&optim.join("figures/gradient_norm_vs_optimizer.csv"));
    assert_eq!(no_data_csv.header, ["optimizer", "seed", "run_id", "step", "n", "value"]);
    assert!(no_data_csv.rows.is_empty());
    let csv = read_csv(&optim.join("figures/top_eigenvalue_vs_optimizer.csv"));
    assert_eq!(csv.rows[0][0], "adam", "text knob values sorted as text");

    let index = build_index(out, &[sharp.clone(), optim.clone()]).unwrap();
    assert_eq!(index, out.join("index.html"));
    let html = std::fs::read_to_string(&index).unwrap();
    assert!(html.contains("href=\"batch-sharpness/report.html\""), "relative link to the first report");
    assert!(html.contains("href=\"optimizer-generalisation/report.html\""), "relative link to the second report");
    assert!(html.contains("Title of batch-sharpness") && html.contains("Title of optimizer-generalisation"));
    assert!(html.contains("badge reproduced\">reproduced") && html.contains("badge not-reproduced\">not reproduced"));
    assert!(html.contains("3.1 (95% CI 2.2 to 4.4)"), "effect and interval");
    assert!(html.contains("5 of 6 used") && html.contains("excluded: 1 diverged"), "runs used and excluded");
    assert_self_contained(&html, "index.html");
    assert_self_contained(&optim_report, "report.html");

    // From an index in another directory, links climb out of it.
    let index = build_index(&out.join("site"), &[sharp]).unwrap();
    let html = std::fs::read_to_string(index).unwrap();
    assert!(html.contains("href=\"../batch-sharpness/report.html\""));

    if let Some(demo) = std::env::var_os("SGDLAB_REPORT_DEMO_DIR") {
        let demo = PathBuf::from(demo);
        let dirs = [demo.join("batch-sharpness"), demo.join("optimizer-generalisation")];
        write_study(&dirs[0], "batch-sharpness", "batch_size", &batch_knobs(), "reproduced", None);
        let no_data = json!({"name": "gradient_norm_vs_optimizer", "kind": "final_vs_knob", "knob": "optimizer",
                             "metric": {"probe": "gradient", "name": "norm"}});
        write_study(
            &dirs[1],
            "optimizer-generalisation",
            "optimizer",
            &[json!("sgd"), json!("adam")],
            "inconclusive",
            Some(no_data),
        );
        for d in &dirs {
            build_study_report(d).unwrap();
        }
        build_index(&demo, &dirs).unwrap();
    }
}

#[test]
fn missing_plan_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("study");
    write_study(&dir, "batch-sharpness", "batch_size", &batch_knobs(), "reproduced", None);
    std::fs::remove_file(dir.join("plan.json")).unwrap();
    let err = build_study_report(&dir).unwrap_err();
    assert!(matches!(err, ReportError::Missing { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("plan.json") && msg.contains("missing") && !msg.contains('\n'), "{msg}");
}

#[test]
fn malformed_records_are_errors_naming_file_and_place() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("study");
    let runs = write_study(&dir, "batch-sharpness", "batch_size", &batch_knobs(), "reproduced", None);

    let verdict = std::fs::read_to_string(dir.join("verdict.json")).unwrap();
    std::fs::write(dir.join("verdict.json"), verdict.replace("\"claim\"", "\"claims\"")).unwrap();
    let msg = build_study_report(&dir).unwrap_err().to_string();
    assert!(msg.contains("verdict.json: malformed JSON: missing field `claim`"), "{msg}");
    std::fs::write(dir.join("verdict.json"), &verdict).unwrap();

    let metrics = dir.join("runs").join(&runs[0].id).join("metrics.jsonl");
    let text = std::fs::read_to_string(&metrics).unwrap();
    std::fs::write(&metrics, format!("{{\"step\": 0, \"probe\": \"test\"\n{text}")).unwrap();
    let msg = build_study_report(&dir).unwrap_err().to_string();
    assert!(msg.contains("metrics.jsonl: line 1: malformed JSON"), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");

    // A torn last line (crash mid-write, no final newline) is dropped, not an error.
    std::fs::write(&metrics, format!("{text}{{\"step\": 30, \"pro")).unwrap();
    build_study_report(&dir).unwrap();

    let mut v: Value = serde_json::from_str(&verdict).unwrap();
    v["figures"][0]["name"] = json!("../escape");
    std::fs::write(dir.join("verdict.json"), v.to_string()).unwrap();
    let msg = build_study_report(&dir).unwrap_err().to_string();
    assert!(msg.contains("verdict.json: figure name `../escape` is not a file name"), "{msg}");
}

#[test]
fn optional_verdict_parts_are_shown_when_present() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("study");
    let runs = write_study(&dir, "batch-sharpness", "batch_size", &batch_knobs(), "inconclusive", None);
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("verdict.json")).unwrap()).unwrap();
    // No effect could be computed; a completed run left out with a reason; effects per group.
    v["effect"] = Value::Null;
    v["runs"]["excluded"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": runs[0].id, "status": "completed", "reason": "no hessian/top_eigenvalue measured"}));
    v["runs"]["used"] = json!(4);
    v["groups"] = json!([{"group": "sgd", "value": null, "ci_low": null, "ci_high": null, "seeds": 0, "verdict": "inconclusive"}]);
    std::fs::write(dir.join("verdict.json"), v.to_string()).unwrap();
    let html = std::fs::read_to_string(build_study_report(&dir).unwrap()).unwrap();
    assert!(html.contains("no effect: verdict.json gives none"));
    assert!(html.contains("no hessian/top_eigenvalue measured"));
    assert!(html.contains("Effect per group") && html.contains("<td>sgd</td>"));
    assert!(!html.contains("Inconsistencies found by the report"), "counts agree with the exclusions");
    // The run left out (512, seed 0) is not plotted: 512 keeps seed 1 only, 32 keeps its 3 seeds.
    let csv = read_csv(&dir.join("figures/top_eigenvalue_vs_batch_size.csv"));
    assert_eq!(csv.rows.len(), (3 + 3) + (1 + 3));
}

#[test]
fn other_knobs_that_vary_make_separate_series() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rank-depth");
    let value =
        |depth: u64, act: &str, seed: u64| 50.0 / depth as f64 + if act == "relu" { 3.0 } else { 0.0 } + seed as f64;
    let mut plan_runs = Vec::new();
    let mut per_run = Vec::new();
    for (i, (depth, act, seed)) in [1u64, 4]
        .iter()
        .flat_map(|&d| ["relu", "identity"].map(move |a| (d, a)))
        .flat_map(|(d, a)| [0u64, 1].map(move |s| (d, a, s)))
        .enumerate()
    {
        let id = format!("{:016x}", 0xabc0 + i);
        plan_runs
            .push(json!({"id": id, "index": i, "seed": seed, "knobs": {"depth": depth, "act": act}, "run_spec": ""}));
        per_run.push(json!({"id": id, "seed": seed, "knobs": {"depth": depth, "act": act}, "status": "completed", "metrics": {}}));
        let run_dir = dir.join("runs").join(&id);
        write_json(
            &run_dir.join("record.json"),
            &json!({"status": "completed", "seed": seed, "spec_hash": id, "steps_completed": 0, "total_steps": 0,
                    "dtype": "f32", "sgdlab_version": "0.1.0", "git_revision": "abc123", "threads": 1, "wall_time_s": 0.1,
                    "final_metrics": {}}),
        );
        let row = json!({"step": 0, "epoch": 0.0, "probe": "representation-rank", "name": "effective_rank", "value": value(depth, act, seed)});
        std::fs::write(run_dir.join("metrics.jsonl"), format!("{row}\n")).unwrap();
    }
    write_json(
        &dir.join("plan.json"),
        &json!({"study": "rank-depth", "title": "Deeper networks have lower-rank embeddings", "section": "1.3",
                "spec_hash": "00ff", "quick": false, "knobs": ["depth", "act"], "runs": plan_runs}),
    );
    let metric = json!({"probe": "representation-rank", "name": "effective_rank"});
    write_json(
        &dir.join("verdict.json"),
        &json!({"study": "rank-depth", "title": "Deeper networks have lower-rank embeddings", "section": "1.3",
                "claim": "Deeper networks map data to lower effective-rank embeddings.", "verdict": "reproduced",
                "statistic": {"name": "ratio", "metric": metric, "description": "erank(16) / erank(1)"},
                "effect": {"value": 0.24, "ci_low": 0.23, "ci_high": 0.25, "level": 0.95, "method": "bootstrap"},
                "decision_rule": "reproduced if the interval lies below 0.6",
                "runs": {"planned": 8, "used": 8, "excluded": []}, "per_run": per_run,
                "figures": [{"name": "erank_vs_depth", "kind": "final_vs_knob", "knob": "depth", "metric": metric, "log_x": true},
                            {"name": "erank_over_training", "kind": "over_training", "knob": "depth", "metric": metric}],
                "notes": [], "quick": false, "spec_hash": "00ff", "sgdlab_version": "0.1.0", "git_revision": "abc123"}),
    );
    build_study_report(&dir).unwrap();
    let csv = read_csv(&dir.join("figures/erank_vs_depth.csv"));
    assert_eq!(csv.header, ["depth", "act", "seed", "run_id", "step", "n", "value"]);
    // 2 depths x 2 activations x (2 seeds + mean, min, max), sorted by depth, act, seed.
    assert_eq!(csv.rows.len(), 2 * 2 * (2 + 3));
    let keys: Vec<(&str, &str, &str)> =
        csv.rows.iter().take(5).map(|r| (r[0].as_str(), r[1].as_str(), r[2].as_str())).collect();
    assert_eq!(
        keys,
        [
            ("1", "identity", "0"),
            ("1", "identity", "1"),
            ("1", "identity", "mean"),
            ("1", "identity", "min"),
            ("1", "identity", "max")
        ]
    );
    for (depth, act) in [(1, "identity"), (1, "relu"), (4, "identity"), (4, "relu")] {
        let row = csv
            .rows
            .iter()
            .find(|r| r[0] == depth.to_string() && r[1] == act && r[2] == "mean")
            .unwrap_or_else(|| panic!("no mean row for depth {depth}, act {act}"));
        let expected = (value(depth, act, 0) + value(depth, act, 1)) / 2.0;
        assert_close(&format!("mean at depth {depth}, {act}"), row[6].parse().unwrap(), expected);
        assert_eq!(row[5], "2", "two seeds per series, never the two activations together");
    }
    let csv = read_csv(&dir.join("figures/erank_over_training.csv"));
    assert_eq!(csv.rows.len(), 2 * 2 * (2 + 3));
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("One series per value of act."));
}
