//! Shared by the report tests: synthetic study directories written from typed records (a
//! plan, run records, metrics.jsonl rows with known values; the verdict computed by
//! sgdlab-studies), and readers for the outputs.

#![allow(dead_code)]

use serde_json::Value;
use sgdlab_studies::records::{PlanRecord, PlannedMeasure, PlannedRun, write_json};
use sgdlab_studies::{StudySpec, compute_verdict};
use sgdlab_train::{MetricRecord, RunContext, RunRecord, RunStatus};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Substrings that would fetch or run something.
pub const FORBIDDEN: [&str; 6] = ["http", "src=", "<link", "<script", "@import", "url("];

/// Means over seeds are sums of a few values divided by n: exact up to a few roundings.
pub const TOL: f64 = 1e-12;

/// How a fake run ends.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum End {
    Completed,
    Diverged(u64),
    /// Never started: no run directory.
    Missing,
}

/// A planned run with its records.
pub struct FakeRun {
    pub id: String,
    pub seed: u64,
    pub axes: BTreeMap<String, Value>,
    pub end: End,
    /// Its metrics.jsonl (completed runs).
    pub rows: Vec<MetricRecord>,
}

/// One metrics.jsonl row.
pub fn row(step: u64, epoch: f64, probe: &str, name: &str, index: Option<u32>, value: f64) -> MetricRecord {
    MetricRecord {
        step,
        epoch,
        probe: probe.into(),
        name: name.into(),
        index,
        value: value.is_finite().then_some(value),
    }
}

fn run_record(r: &FakeRun) -> RunRecord {
    let last = r.rows.iter().map(|m| m.step).max().unwrap_or(0);
    let (status, diverged_at_step, steps) = match r.end {
        End::Diverged(s) => (RunStatus::Diverged, Some(s), s),
        End::Completed | End::Missing => (RunStatus::Completed, None, last),
    };
    RunRecord {
        status,
        diverged_at_step,
        message: None,
        seed: r.seed,
        spec_hash: format!("spec-{}", r.id),
        steps_completed: steps,
        total_steps: last.max(steps),
        dtype: "f64".into(),
        sgdlab_version: "0.1.0".into(),
        git_revision: "test".into(),
        threads: 1,
        wall_time_s: 0.0,
        segments: 1,
        final_metrics: BTreeMap::new(),
        metric_rows: Some(if r.end == End::Completed { r.rows.len() as u64 } else { 0 }),
        warnings: Vec::new(),
    }
}

fn write_text(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Writes a study directory: study.toml, plan.json (axes in the order given), the runs, and
/// verdict.json as sgdlab-studies computes it from them.
pub fn write_study(dir: &Path, toml: &str, axes: &[&str], runs: &[FakeRun], quick: bool) -> StudySpec {
    let spec = StudySpec::from_toml(toml, "test.toml").unwrap();
    write_text(&dir.join("study.toml"), toml);
    let planned: Vec<PlannedRun> = runs
        .iter()
        .enumerate()
        .map(|(index, r)| PlannedRun {
            id: r.id.clone(),
            index,
            seed: r.seed,
            axes: r.axes.clone(),
            sweeps: spec.sweep.iter().map(|s| s.name.clone()).collect(),
            run_spec: "model = \"mlp:4-4-2:relu\"\n".into(),
            from: None,
        })
        .collect();
    let measure = spec
        .measure
        .iter()
        .map(|m| {
            let probe = sgdlab_probes::registry::find(&m.probe);
            let names = probe.map(|p| p.metrics().iter().map(|i| format!("{}/{}", m.label(), i.name)).collect());
            PlannedMeasure {
                spec: m.clone(),
                resolved_options: serde_json::json!({}),
                metrics: names.unwrap_or_default(),
            }
        })
        .collect();
    let plan = PlanRecord {
        study: spec.name.clone(),
        title: spec.title.clone(),
        section: spec.section.clone(),
        spec_hash: "9c7ecc0011223344".into(),
        quick,
        overrides: if quick { spec.quick.set.clone() } else { Vec::new() },
        axes: axes.iter().map(|a| a.to_string()).collect(),
        sweeps: spec.sweep.iter().map(|s| s.name.clone()).collect(),
        measure,
        runs: planned,
    };
    write_json(&dir.join("plan.json"), &plan).unwrap();
    for r in runs.iter().filter(|r| r.end != End::Missing) {
        let rd = dir.join("runs").join(&r.id);
        write_text(&rd.join("record.json"), &serde_json::to_string_pretty(&run_record(r)).unwrap());
        let lines: Vec<String> = match r.end {
            End::Completed => r.rows.iter().map(|m| serde_json::to_string(m).unwrap()).collect(),
            End::Diverged(_) | End::Missing => Vec::new(),
        };
        write_text(&rd.join("metrics.jsonl"), &(lines.join("\n") + "\n"));
    }
    let ctx = RunContext { sgdlab_version: "0.1.0".into(), git_revision: "abc123".into() };
    compute_verdict(dir, &spec, &plan, &ctx).unwrap();
    spec
}

/// A parsed CSV: header and rows of cells.
pub struct Csv {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Csv {
    pub fn read(path: &Path) -> Csv {
        let text = std::fs::read_to_string(path).unwrap();
        let mut lines = text.lines().map(split_csv);
        Csv { header: lines.next().unwrap(), rows: lines.collect() }
    }

    pub fn col(&self, name: &str) -> usize {
        self.header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name} in {:?}", self.header))
    }

    /// Rows whose columns equal the given values.
    pub fn select(&self, filter: &[(&str, &str)]) -> Vec<&Vec<String>> {
        self.rows.iter().filter(|r| filter.iter().all(|(c, v)| r[self.col(c)] == *v)).collect()
    }

    /// The number in `column` of the one row matching `filter`.
    pub fn number(&self, filter: &[(&str, &str)], column: &str) -> f64 {
        let rows = self.select(filter);
        assert_eq!(rows.len(), 1, "rows matching {filter:?}: {}", rows.len());
        rows[0][self.col(column)].parse().unwrap_or_else(|_| panic!("{column} of {filter:?} is not a number"))
    }
}

/// One CSV line into fields (RFC 4180 quotes).
pub fn split_csv(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted, mut chars) = (Vec::new(), String::new(), false, line.chars().peekable());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

pub fn assert_close(what: &str, actual: f64, expected: f64) {
    assert!((actual - expected).abs() <= TOL * expected.abs().max(1.0), "{what}: {actual} != {expected}");
}

pub fn assert_self_contained(html: &str, what: &str) {
    for bad in FORBIDDEN {
        assert!(!html.contains(bad), "{what} refers to something external: `{bad}`");
    }
}

/// Every file under `dir` with its bytes, sorted by path.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

pub fn demo_dir() -> Option<PathBuf> {
    std::env::var_os("SGDLAB_REPORT_DEMO_DIR").map(PathBuf::from)
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    for (p, bytes) in snapshot(from) {
        let dest = to.join(p.strip_prefix(from).unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::write(dest, bytes).unwrap();
    }
}
