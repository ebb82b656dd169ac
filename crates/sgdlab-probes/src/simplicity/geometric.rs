//! Geometric complexity (PROTOCOLS 4).

use super::check_params;
use crate::{EvalSet, ProbeError};
use serde::{Deserialize, Serialize};
use sgdlab_linalg::Scalar;
use sgdlab_linalg::stats::std_dev;
use sgdlab_nn::Model;

/// Geometric complexity with its sampling error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeometricComplexityEstimate {
    /// `GC = (1/|D|) sum_{x in D} ||d f(x) / dx||_F^2` over the evaluation set.
    pub value: f64,
    /// Standard error of the mean over examples (`sd / sqrt(n)`, sample sd): the spread of the
    /// estimate as an estimate of the population mean when `D` is a sample.
    pub standard_error: f64,
    /// Smallest and largest per-example `||J||_F^2`.
    pub min: f64,
    pub max: f64,
    pub samples: usize,
    /// Backward passes used (one per logit per batch).
    pub backward_passes: usize,
}

/// Geometric complexity (Dherin, Munn, Rosca & Barrett 2022, "Why neural networks find simple
/// solutions: the many regularizers of geometric complexity", NeurIPS, arXiv:2209.13083;
/// PROTOCOLS 4): the discrete Dirichlet energy of the logit network,
/// `GC(f, D) = (1/|D|) sum_{x in D} ||grad_x f(x)||_F^2` with `grad_x f` the `K x d` input
/// Jacobian of the *logits* (not of the probabilities), computed exactly with `K` backward passes
/// per batch. For `f(x) = A x + b`, `GC = ||A||_F^2` on any data.
pub fn geometric_complexity<T: Scalar>(
    model: &Model,
    params: &[T],
    set: &EvalSet<T>,
    batch_size: usize,
) -> Result<GeometricComplexityEstimate, ProbeError> {
    check_params(model, params)?;
    if set.is_empty() {
        return Err(ProbeError::Invalid("geometric complexity needs at least one example".into()));
    }
    let mut per_example = Vec::with_capacity(set.len());
    let mut passes = 0;
    for r in set.batches(batch_size) {
        let v = model.input_jacobian_sq_frobenius(params, set.x.slice(ndarray::s![r, ..]))?;
        per_example.extend(v.into_iter().map(|a| a.to_f64()));
        passes += model.out_dim();
    }
    let n = per_example.len();
    Ok(GeometricComplexityEstimate {
        value: per_example.iter().sum::<f64>() / n as f64,
        standard_error: if n > 1 { std_dev(&per_example, 1) / (n as f64).sqrt() } else { f64::NAN },
        min: per_example.iter().copied().fold(f64::INFINITY, f64::min),
        max: per_example.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        samples: n,
        backward_passes: passes,
    })
}
