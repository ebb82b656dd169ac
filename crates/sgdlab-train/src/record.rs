//! Run records on disk (DESIGN.md section 6): `spec.toml`, `metrics.jsonl`, `checkpoints/`,
//! `final.safetensors`, `record.json`.

use crate::error::TrainError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Still running (written at start, so a crash leaves this status behind).
    Running,
    Completed,
    /// A non-finite loss or parameter appeared at `diverged_at_step`.
    Diverged,
    /// Stopped by Ctrl-C (or a stop request) after writing a checkpoint; resumable.
    Interrupted,
    /// An error ended the run (`message` says which).
    Failed,
}

/// `record.json`: what a run was and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub status: RunStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diverged_at_step: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub seed: u64,
    pub spec_hash: String,
    pub steps_completed: u64,
    pub total_steps: u64,
    pub dtype: String,
    pub sgdlab_version: String,
    pub git_revision: String,
    pub threads: usize,
    /// Seconds spent training, summed over resumed segments.
    pub wall_time_s: f64,
    /// Segments the run was trained in: 1, plus 1 for every time it was taken up again after an
    /// interruption, a crash or a kill (records written before this field read as 1).
    #[serde(default = "first_segment")]
    pub segments: u32,
    /// Last evaluation: `train/loss`, `train/accuracy`, `test/loss`, `test/accuracy` (the
    /// `probe/name` of their metrics.jsonl rows). Empty for a diverged run (its last finite
    /// evaluation is in `metrics.jsonl`).
    pub final_metrics: BTreeMap<String, f64>,
    /// Rows in `metrics.jsonl` when the record was written (checked by [`crate::inspect_run`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_rows: Option<u64>,
    /// What went wrong without stopping the run (a torn checkpoint skipped, a run redone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

fn first_segment() -> u32 {
    1
}

/// One line of `metrics.jsonl` (long format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRecord {
    pub step: u64,
    pub epoch: f64,
    pub probe: String,
    pub name: String,
    /// The element of a vector metric (a spectrum, per-layer or per-frequency values): one row
    /// per element. Absent for scalar metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// `null` in JSON when not finite.
    pub value: Option<f64>,
}

/// A stable content hash (FNV-1a, 64 bits, hex) of a text such as a resolved spec.
pub fn content_hash(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in text.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Writes `text` to `path` atomically and durably (temporary file, fsync, rename, directory
/// fsync).
pub fn write_text_atomic(path: &Path, text: &str) -> Result<(), TrainError> {
    sgdlab_nn::write_atomic(path, text.as_bytes()).map_err(|e| match e {
        sgdlab_nn::NnError::Io { error, .. } => TrainError::io(path, error),
        other => TrainError::io(path, other),
    })
}

/// Writes `record.json`.
pub(crate) fn write_record(dir: &Path, record: &RunRecord) -> Result<(), TrainError> {
    write_text_atomic(&dir.join("record.json"), &serde_json::to_string_pretty(record).expect("records serialise"))
}

/// Writes `record.json` after an error, when the disk may be full: atomically if possible, else
/// by truncating the old record in place (which frees its blocks) and writing the new one.
/// Best effort: a failure here cannot be reported better than the error that caused it.
pub(crate) fn write_record_after_error(dir: &Path, record: &RunRecord) {
    if write_record(dir, record).is_ok() {
        return;
    }
    let text = serde_json::to_string_pretty(record).expect("records serialise");
    let _ = std::fs::File::create(dir.join("record.json")).and_then(|mut f| {
        f.write_all(text.as_bytes())?;
        f.sync_all()
    });
}

/// Reads a record, if the directory has one.
pub fn read_record(dir: &Path) -> Result<Option<RunRecord>, TrainError> {
    let path = dir.join("record.json");
    match std::fs::read_to_string(&path) {
        Ok(t) => {
            serde_json::from_str(&t).map(Some).map_err(|e| TrainError::io(&path, format!("malformed record: {e}")))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TrainError::io(&path, e)),
    }
}

/// Appends metric lines to `metrics.jsonl`.
pub struct MetricsWriter {
    path: PathBuf,
    out: BufWriter<std::fs::File>,
    rows: u64,
}

impl MetricsWriter {
    /// Opens `dir/metrics.jsonl`, keeping only lines with `step <= keep_through` (the lines a
    /// resumed run will not write again); `None` starts afresh.
    pub fn open(dir: &Path, keep_through: Option<u64>) -> Result<Self, TrainError> {
        let path = dir.join("metrics.jsonl");
        let mut kept = Vec::new();
        if let Some(last) = keep_through
            && path.exists()
        {
            let f = std::fs::File::open(&path).map_err(|e| TrainError::io(&path, e))?;
            for line in std::io::BufReader::new(f).lines() {
                let line = line.map_err(|e| TrainError::io(&path, e))?;
                // A torn last line (crash mid-write) is dropped.
                if let Ok(m) = serde_json::from_str::<MetricRecord>(&line)
                    && m.step <= last
                {
                    kept.push(line);
                }
            }
        }
        let rows = kept.len() as u64;
        let mut text = kept.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        write_text_atomic(&path, &text)?;
        let f = std::fs::OpenOptions::new().append(true).open(&path).map_err(|e| TrainError::io(&path, e))?;
        Ok(MetricsWriter { path, out: BufWriter::new(f), rows })
    }

    /// Rows in the file once flushed (kept plus written).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Appends one measurement of a scalar metric.
    pub fn write(&mut self, step: u64, epoch: f64, probe: &str, name: &str, value: f64) -> Result<(), TrainError> {
        self.write_element(step, epoch, probe, name, None, value)
    }

    /// Appends one measurement: a scalar (`index` = `None`) or one element of a vector metric.
    pub fn write_element(
        &mut self,
        step: u64,
        epoch: f64,
        probe: &str,
        name: &str,
        index: Option<u32>,
        value: f64,
    ) -> Result<(), TrainError> {
        let rec = MetricRecord {
            step,
            epoch,
            probe: probe.to_string(),
            name: name.to_string(),
            index,
            value: value.is_finite().then_some(value),
        };
        let line = serde_json::to_string(&rec).expect("metric records serialise");
        writeln!(self.out, "{line}").map_err(|e| TrainError::io(&self.path, e))?;
        self.rows += 1;
        Ok(())
    }

    /// Flushes to disk (at checkpoints and at the end).
    pub fn flush(&mut self) -> Result<(), TrainError> {
        self.out.flush().map_err(|e| TrainError::io(&self.path, e))?;
        self.out.get_ref().sync_data().map_err(|e| TrainError::io(&self.path, e))
    }
}

/// Reads all metric lines of a run directory.
pub fn read_metrics(dir: &Path) -> Result<Vec<MetricRecord>, TrainError> {
    let path = dir.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    text.lines()
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| TrainError::io(&path, format!("line {}: {e}", i + 1))))
        .collect()
}
