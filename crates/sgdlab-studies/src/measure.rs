//! The measurement hook a study's runs carry: the plan's measurements, dispatched through the
//! probe registry (`sgdlab_probes::registry`), on their schedules.
//!
//! Each measurement evaluates `samples` examples of `split` (a subset drawn from the run's seed
//! by the stream `measure/<label>`), in batches of `batch_size`, in f64. A scalar metric is one
//! row of metrics.jsonl; a vector metric one row per element, with its `index`.

use crate::records::PlannedMeasure;
use crate::spec::{At, MeasureSpec};
use sgdlab_data::Dataset;
use sgdlab_linalg::RngStream;
use sgdlab_nn::{Loss, Model, Params};
use sgdlab_probes::registry::{
    self, AdamState, CheckedOptions, EvalOptions, MetricValue, Precision, Probe, ProbeInput,
};
use sgdlab_train::{AdamSecondMoment, Measurement, MeasurementHook};
use std::collections::BTreeMap;

/// The steps of a log-spaced schedule of `points` points up to `total` (with 0 and `total`).
pub fn log_steps(total: u64, points: usize) -> Vec<u64> {
    let mut s = vec![0, total];
    if total > 0 && points > 1 {
        let lt = (total as f64).ln();
        s.extend((0..points).map(|i| (lt * i as f64 / (points - 1) as f64).exp().round() as u64));
    } else if total > 0 && points == 1 {
        s.push(total);
    }
    s.sort_unstable();
    s.dedup();
    s
}

/// Whether a measurement is due after update `step` of `total`.
pub fn due(m: &MeasureSpec, step: u64, total: u64) -> bool {
    let (every, points) = (m.every, m.points);
    if step < m.from_step {
        return false;
    }
    match m.at {
        At::Init => step == 0,
        At::Final => step == total,
        At::Every => {
            step == 0
                || step == total
                || (every > 0 && step.is_multiple_of(every))
                || m.early.is_some_and(|e| e.every > 0 && step <= e.until && step.is_multiple_of(e.every))
        }
        At::Log => step == 0 || step == total || log_steps(total, points).binary_search(&step).is_ok(),
    }
}

/// The axis names that `{name}` templates in a measurement's options use, among `axes`.
pub fn option_templates<'a>(options: &toml::Table, axes: &[&'a str]) -> Vec<&'a str> {
    fn walk<'a>(v: &toml::Value, axes: &[&'a str], out: &mut Vec<&'a str>) {
        match v {
            toml::Value::String(s) => {
                for a in axes {
                    if s.contains(&format!("{{{a}}}")) && !out.contains(a) {
                        out.push(a);
                    }
                }
            }
            toml::Value::Array(x) => x.iter().for_each(|y| walk(y, axes, out)),
            toml::Value::Table(t) => t.values().for_each(|y| walk(y, axes, out)),
            toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) | toml::Value::Datetime(_) => {}
        }
    }
    let mut out = Vec::new();
    options.values().for_each(|v| walk(v, axes, &mut out));
    out
}

/// A measurement's options for a run with these axis values: a string that is exactly `{name}`
/// becomes the axis value with its type (`sigma_w2 = "{sw2}"` with `sw2 = 4.0` gives the number
/// 4.0); `{name}` inside a longer string is replaced by the value's text.
pub fn options_for_run(options: &toml::Table, axes: &BTreeMap<String, serde_json::Value>) -> serde_json::Value {
    fn text(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
    fn walk(v: serde_json::Value, axes: &BTreeMap<String, serde_json::Value>) -> serde_json::Value {
        match v {
            serde_json::Value::String(s) => {
                if let Some(name) = s.strip_prefix('{').and_then(|r| r.strip_suffix('}'))
                    && let Some(val) = axes.get(name)
                {
                    return val.clone();
                }
                let mut s = s;
                for (k, val) in axes {
                    s = s.replace(&format!("{{{k}}}"), &text(val));
                }
                serde_json::Value::String(s)
            }
            serde_json::Value::Array(a) => serde_json::Value::Array(a.into_iter().map(|x| walk(x, axes)).collect()),
            serde_json::Value::Object(o) => {
                serde_json::Value::Object(o.into_iter().map(|(k, x)| (k, walk(x, axes))).collect())
            }
            other => other,
        }
    }
    walk(serde_json::to_value(options).expect("TOML tables are JSON objects"), axes)
}

/// The hook of one run.
pub struct StudyHook<'a> {
    measures: Vec<(&'a PlannedMeasure, &'static dyn Probe, CheckedOptions)>,
    loss: Loss,
    seed: u64,
    data_spec: String,
    /// Adam's second moment at the current measurement (from the trainer), for probes that
    /// precondition like Adam.
    adam: Option<AdamState>,
}

impl<'a> StudyHook<'a> {
    /// The hook for a run with this loss, seed, data spec and axis values (which fill `{axis}`
    /// templates in measurement options). The plan's measurements were checked when it was
    /// made; an error here means plan.json was edited by hand.
    pub fn new(
        measures: &'a [PlannedMeasure],
        loss: Loss,
        seed: u64,
        data_spec: &str,
        axes: &BTreeMap<String, serde_json::Value>,
    ) -> Result<Self, String> {
        let mut out = Vec::with_capacity(measures.len());
        for m in measures.iter().filter(|m| crate::statistic::in_arm(&m.spec.filter, axes)) {
            let probe =
                registry::find(&m.spec.probe).ok_or_else(|| format!("plan.json: unknown probe '{}'", m.spec.probe))?;
            let names: Vec<&str> = axes.keys().map(String::as_str).collect();
            let json = if option_templates(&m.spec.options, &names).is_empty() {
                m.resolved_options.clone()
            } else {
                options_for_run(&m.spec.options, axes)
            };
            let opts =
                probe.options_from_json(json).map_err(|e| format!("plan.json: probe '{}': {e}", m.spec.probe))?;
            out.push((m, probe, opts));
        }
        Ok(StudyHook { measures: out, loss, seed, data_spec: data_spec.to_string(), adam: None })
    }

    fn measure_one(
        &self,
        (m, probe, opts): &(&PlannedMeasure, &'static dyn Probe, CheckedOptions),
        model: &Model,
        params: &Params<f64>,
        data: &Dataset,
    ) -> Result<Vec<Measurement>, String> {
        let s = &m.spec;
        let label = s.label().to_string();
        let eval = EvalOptions {
            // `train` falls back to `all` for single-split sets.
            split: if s.split == "train" { None } else { Some(s.split.clone()) },
            samples: s.samples,
            batch_size: s.batch_size,
            loss: self.loss,
            seed: self.seed,
        };
        let input = ProbeInput {
            model: Some(model),
            params: Some(params),
            data: Some(data),
            data_spec: Some(&self.data_spec),
            eval: &eval,
            stream: RngStream::new(self.seed).child("measure").child(&label),
            adam: self.adam.as_ref(),
        };
        let out = probe.measure(&input, opts, Precision::F64).map_err(|e| format!("probe {label}: {e}"))?;
        let mut rows = Vec::new();
        for (name, v) in out.values {
            match v {
                MetricValue::Scalar(x) => {
                    rows.push(Measurement { probe: label.clone(), name: name.to_string(), index: None, value: x })
                }
                MetricValue::Vector(xs) => rows.extend(xs.into_iter().enumerate().map(|(i, x)| Measurement {
                    probe: label.clone(),
                    name: name.to_string(),
                    index: Some(i as u32),
                    value: x,
                })),
            }
        }
        Ok(rows)
    }
}

impl MeasurementHook for StudyHook<'_> {
    fn due(&self, step: u64, total: u64) -> bool {
        self.measures.iter().any(|(m, _, _)| due(&m.spec, step, total))
    }

    fn optimizer_state(&mut self, adam: Option<AdamSecondMoment>) {
        self.adam = adam.map(|a| AdamState { exp_avg_sq: a.exp_avg_sq, steps: a.steps, beta2: a.beta2, eps: a.eps });
    }

    fn measure(
        &mut self,
        step: u64,
        total: u64,
        model: &Model,
        params: &Params<f64>,
        data: &Dataset,
    ) -> Result<Vec<Measurement>, String> {
        let mut out = Vec::new();
        for m in &self.measures {
            if due(&m.0.spec, step, total) {
                out.extend(self.measure_one(m, model, params, data)?);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        assert_eq!(log_steps(1000, 4), vec![0, 1, 10, 100, 1000]);
        assert_eq!(log_steps(0, 4), vec![0]);
        let m = |at: At, every: u64, points: usize| -> MeasureSpec {
            toml::from_str::<MeasureSpec>(&format!(
                "probe = \"loss\"\nat = \"{}\"\nevery = {every}\npoints = {points}",
                serde_json::to_value(at).unwrap().as_str().unwrap()
            ))
            .unwrap()
        };
        let due = |m: &MeasureSpec, step, total| due(m, step, total);
        let every = m(At::Every, 10, 0);
        assert!(due(&every, 20, 95) && due(&every, 95, 95) && !due(&every, 21, 95));
        assert!(due(&m(At::Log, 0, 4), 100, 1000) && !due(&m(At::Log, 0, 4), 101, 1000));
        assert!(due(&m(At::Init, 0, 0), 0, 9) && !due(&m(At::Init, 0, 0), 9, 9));
        assert!(due(&m(At::Final, 0, 0), 9, 9) && !due(&m(At::Final, 0, 0), 0, 9));
        // Every 125 steps, and every 25 up to step 1000 (inclusive).
        let early = MeasureSpec { every: 125, early: Some(crate::spec::EarlySpec { every: 25, until: 1000 }), ..every };
        let steps: Vec<u64> = (0..=2000).filter(|&s| due(&early, s, 2000)).collect();
        assert_eq!(steps.len(), 41 + 8, "{steps:?}");
        assert!(
            due(&early, 975, 2000) && due(&early, 1000, 2000) && !due(&early, 1025, 2000) && due(&early, 1125, 2000)
        );
        // from_step = 1 skips the initialisation and keeps the rest of the schedule.
        let later = MeasureSpec { from_step: 1, ..m(At::Every, 500, 0) };
        let steps: Vec<u64> = (0..=2500).filter(|&s| due(&later, s, 2500)).collect();
        assert_eq!(steps, vec![500, 1000, 1500, 2000, 2500]);
        let from_final = MeasureSpec { from_step: 3000, ..m(At::Final, 0, 0) };
        assert!(!due(&from_final, 2500, 2500));
    }
}
