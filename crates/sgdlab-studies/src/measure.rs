//! The measurement hook a study's runs carry: probes from sgdlab-probes, on a schedule.
//!
//! | probe | options (defaults) | values written (`probe/name`) |
//! |---|---|---|
//! | `loss` | | `loss`, `accuracy`, `grad_norm` |
//! | `hessian` | `k` (1), `tol` (1e-3), `operator` ("hessian" or "ggn") | `top_eigenvalue`, `top_eigenvalue_2`, ..., `matvecs` |
//! | `trace` | `probes` (30) | `trace`, `trace_stderr` |
//! | `sharpness` | `epsilon` (1e-3), `steps` (20) | `sharpness` |
//! | `representation-rank` | `centring` ("none"), `layer` ("last": the last block before the logits; "logits"; or a layer name) | `effective_rank`, `effective_rank_gram`, `stable_rank` |
//!
//! Each measurement evaluates `samples` examples of `split` (a subset drawn from the run's seed
//! by the stream `measure/<label>`), in batches of `batch_size`, in f64.

use crate::spec::{At, MeasureSpec};
use sgdlab_data::Dataset;
use sgdlab_linalg::RngStream;
use sgdlab_nn::{Loss, Model, Params};
use sgdlab_operators::{HutchinsonParams, LanczosParams, ProbeDistribution, hutchinson_trace, lanczos_eigenpairs};
use sgdlab_probes::EvalSet;
use sgdlab_probes::curvature::{CurvatureContext, GgnOperator, HessianOperator, epsilon_sharpness, loss_summary};
use sgdlab_probes::simplicity::rank::{Centring, RepresentationRankParams, representation_rank};
use sgdlab_train::{Measurement, MeasurementHook};

const PROBES: &str = "loss, hessian, trace, sharpness, representation-rank";

fn opt_f64(m: &MeasureSpec, k: &str, d: f64) -> Result<f64, String> {
    match m.options.get(k) {
        None => Ok(d),
        Some(toml::Value::Float(f)) => Ok(*f),
        Some(toml::Value::Integer(i)) => Ok(*i as f64),
        Some(v) => Err(format!("option {k} must be a number, got {v}")),
    }
}

fn opt_str<'a>(m: &'a MeasureSpec, k: &str, d: &'a str) -> Result<&'a str, String> {
    match m.options.get(k) {
        None => Ok(d),
        Some(toml::Value::String(s)) => Ok(s),
        Some(v) => Err(format!("option {k} must be a string, got {v}")),
    }
}

/// Checks a measurement's probe name and options without running it.
pub fn check_probe(m: &MeasureSpec) -> Result<(), String> {
    let allowed: &[&str] = match m.probe.as_str() {
        "loss" => &[],
        "hessian" => &["k", "tol", "operator"],
        "trace" => &["probes"],
        "sharpness" => &["epsilon", "steps"],
        "representation-rank" => &["centring", "layer"],
        other => return Err(format!("unknown probe '{other}' (known: {PROBES})")),
    };
    if let Some(k) = m.options.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!(
            "unknown option '{k}' (allowed: {})",
            if allowed.is_empty() { "none".to_string() } else { allowed.join(", ") }
        ));
    }
    if m.at == At::Every && m.every == 0 {
        return Err("at = \"every\" needs every = N > 0".into());
    }
    for k in ["k", "tol", "probes", "epsilon", "steps"] {
        opt_f64(m, k, 1.0)?;
    }
    for k in ["operator", "centring", "layer"] {
        opt_str(m, k, "")?;
    }
    Ok(())
}

/// The hook of one run: its schedule, loss and seed.
pub struct StudyHook {
    measures: Vec<MeasureSpec>,
    loss: Loss,
    seed: u64,
}

impl StudyHook {
    pub fn new(measures: Vec<MeasureSpec>, loss: Loss, seed: u64) -> Self {
        StudyHook { measures, loss, seed }
    }

    fn due_one(m: &MeasureSpec, step: u64, total: u64) -> bool {
        match m.at {
            At::Init => step == 0,
            At::Final => step == total,
            At::Every => step == 0 || step == total || step.is_multiple_of(m.every),
        }
    }

    fn measure_one(
        &self,
        m: &MeasureSpec,
        model: &Model,
        params: &Params<f64>,
        data: &Dataset,
    ) -> Result<Vec<Measurement>, String> {
        let label = if m.label.is_empty() { m.probe.clone() } else { m.label.clone() };
        let split = data
            .split(&m.split)
            .or_else(|e| if m.split == "train" { data.split("all") } else { Err(e) })
            .map_err(|e| e.to_string())?;
        let stream = RngStream::new(self.seed).child("measure").child(&label);
        let set = EvalSet::<f64>::from_split(split, m.samples, &stream);
        let p = params.as_slice();
        let ctx = CurvatureContext::new(model, p, &set, m.batch_size, self.loss).map_err(|e| e.to_string())?;
        let mk = |name: &str, value: f64| Measurement { probe: label.clone(), name: name.to_string(), value };
        let mut out = Vec::new();
        match m.probe.as_str() {
            "loss" => {
                let s = loss_summary(&ctx);
                out.extend([mk("loss", s.loss), mk("accuracy", s.accuracy), mk("grad_norm", s.grad_norm)]);
            }
            "hessian" => {
                let k = opt_f64(m, "k", 1.0)? as usize;
                let tol = opt_f64(m, "tol", 1e-3)?;
                let lp = LanczosParams { k: k.max(1), tol, ..Default::default() };
                let est = match opt_str(m, "operator", "hessian")? {
                    "hessian" => lanczos_eigenpairs(&HessianOperator { ctx: &ctx }, &lp, &stream.child("lanczos")),
                    "ggn" => lanczos_eigenpairs(&GgnOperator { ctx: &ctx }, &lp, &stream.child("lanczos")),
                    o => return Err(format!("operator '{o}' (known: hessian, ggn)")),
                }
                .map_err(|e| e.to_string())?;
                for (i, v) in est.eigenvalues.iter().enumerate() {
                    out.push(mk(
                        &if i == 0 { "top_eigenvalue".to_string() } else { format!("top_eigenvalue_{}", i + 1) },
                        *v,
                    ));
                }
                out.push(mk("matvecs", est.matvecs as f64));
            }
            "trace" => {
                let probes = opt_f64(m, "probes", 30.0)? as usize;
                let hp = HutchinsonParams {
                    probes: probes.max(2),
                    distribution: ProbeDistribution::Rademacher,
                    ..Default::default()
                };
                let t = hutchinson_trace(&HessianOperator { ctx: &ctx }, &hp, &stream.child("trace"))
                    .map_err(|e| e.to_string())?;
                out.extend([mk("trace", t.trace), mk("trace_stderr", t.standard_error)]);
            }
            "sharpness" => {
                let eps = opt_f64(m, "epsilon", 1e-3)?;
                let steps = opt_f64(m, "steps", 20.0)? as usize;
                let s = epsilon_sharpness(&ctx, eps, steps).map_err(|e| e.to_string())?;
                out.push(mk("sharpness", s.sharpness));
            }
            "representation-rank" => {
                let centring: Centring = opt_str(m, "centring", "none")?.parse()?;
                let r =
                    representation_rank(model, p, &set, &RepresentationRankParams { centring, ..Default::default() })
                        .map_err(|e| e.to_string())?;
                let layer = opt_str(m, "layer", "last")?;
                let chosen = if layer == "last" {
                    r.layers.len().checked_sub(2).and_then(|i| r.layers.get(i))
                } else if layer == "logits" {
                    r.layers.last()
                } else {
                    r.layers.iter().find(|l| l.layer.name == layer)
                }
                .ok_or_else(|| format!("no embedding layer '{layer}'"))?;
                out.extend([
                    mk("effective_rank", chosen.effective_rank),
                    mk("effective_rank_gram", chosen.effective_rank_gram),
                    mk("stable_rank", chosen.stable_rank),
                ]);
            }
            other => return Err(format!("unknown probe '{other}'")),
        }
        Ok(out)
    }
}

impl MeasurementHook for StudyHook {
    fn due(&self, step: u64, total: u64) -> bool {
        self.measures.iter().any(|m| Self::due_one(m, step, total))
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
            if Self::due_one(m, step, total) {
                out.extend(self.measure_one(m, model, params, data)?);
            }
        }
        Ok(out)
    }
}
