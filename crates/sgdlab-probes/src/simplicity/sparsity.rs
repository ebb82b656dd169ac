//! Feature sparsity of activation layers (PROTOCOLS 9.2).

use super::check_params;
use crate::{EvalSet, ProbeError};
use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};
use sgdlab_linalg::{Scalar, matmul_into};
use sgdlab_nn::{Layer, Model};

/// The |Pearson| threshold above which a neuron duplicates another (Andriushchenko et al.'s
/// deep-net code; their small-net code uses 0.99).
pub const DEFAULT_CORRELATION_THRESHOLD: f64 = 0.95;

/// Options of [`feature_sparsity`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FeatureSparsityParams {
    pub correlation_threshold: f64,
    /// Examples per forward pass (0 = all at once).
    pub batch_size: usize,
}

impl Default for FeatureSparsityParams {
    fn default() -> Self {
        FeatureSparsityParams { correlation_threshold: DEFAULT_CORRELATION_THRESHOLD, batch_size: 1000 }
    }
}

/// Sparsity of one activation layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerSparsity {
    /// Name of the activation layer (`1`, or `2.2` inside residual block 2).
    pub name: String,
    pub units: usize,
    /// Fraction of positive entries of the `n x m` activation matrix (no de-duplication).
    pub active_fraction: f64,
    /// Units never active on the set.
    pub dead_units: usize,
    /// Live units removed as near-duplicates.
    pub duplicate_units: usize,
    /// Units kept (`units - dead - duplicate`).
    pub kept_units: usize,
    /// Positive entries of the kept units over `n * units` (the reference code's
    /// `sparsity_rmdup`, whose denominator counts every unit).
    pub active_fraction_deduplicated: f64,
    /// Positive entries of the kept units over `n * kept_units`.
    pub active_fraction_among_kept: f64,
}

/// Feature sparsity of every activation layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSparsityEstimate {
    pub samples: usize,
    pub correlation_threshold: f64,
    pub layers: Vec<LayerSparsity>,
}

/// Collects the output of every activation layer (top level and inside residual blocks).
fn collect_activations<T: Scalar>(
    layers: &[Layer],
    params: &[T],
    prefix: &str,
    x: ArrayView2<'_, T>,
    out: &mut Vec<(String, Array2<T>)>,
) -> Array2<T> {
    let mut h = x.to_owned();
    let mut off = 0;
    for (j, l) in layers.iter().enumerate() {
        let n = l.num_params();
        let p = &params[off..off + n];
        let name = if prefix.is_empty() { j.to_string() } else { format!("{prefix}.{j}") };
        h = match l {
            Layer::Residual(inner) => {
                let branch = collect_activations(inner, p, &name, h.view(), out);
                branch + &h
            }
            _ => l.forward(p, h.view()),
        };
        if let Layer::Activation(_) = l {
            out.push((name, h.clone()));
        }
        off += n;
    }
    h
}

/// Greedy de-duplication as in the reference code: among live units in order, a unit is removed
/// when its |Pearson correlation| with any unit still present (kept earlier, or not yet visited)
/// exceeds the threshold. Constant units have undefined correlation and are never removed.
fn deduplicate(phi: &Array2<f64>, live: &[usize], threshold: f64) -> Vec<usize> {
    let n = phi.nrows();
    let m = live.len();
    let mut z = Array2::<f64>::zeros((n, m));
    let mut constant = vec![false; m];
    for (k, &u) in live.iter().enumerate() {
        let col = phi.column(u);
        let mu = col.sum() / n as f64;
        let ss: f64 = col.iter().map(|v| (v - mu) * (v - mu)).sum();
        if ss == 0.0 {
            constant[k] = true;
            continue;
        }
        let s = ss.sqrt();
        for i in 0..n {
            z[(i, k)] = (col[i] - mu) / s;
        }
    }
    let mut corr = Array2::<f64>::zeros((m, m));
    matmul_into(corr.view_mut(), false, z.t(), z.view(), 1.0);
    let mut present = vec![true; m];
    for i in 0..m {
        if constant[i] {
            continue;
        }
        let dup = (0..m).any(|j| j != i && present[j] && !constant[j] && corr[(i, j)].abs() > threshold);
        if dup {
            present[i] = false;
        }
    }
    live.iter().zip(&present).filter(|(_, p)| **p).map(|(&u, _)| u).collect()
}

/// Feature sparsity (Andriushchenko, Varre, Pillaud-Vivien & Flammarion 2023, "SGD with large
/// step sizes learns sparse features", ICML, arXiv:2210.05337; as in tml-epfl/sgd-sparse-features
/// `compute_feature_sparsity`; PROTOCOLS 9.2). For every activation layer, with `phi` the
/// `n x m` matrix of its outputs on the set: the fraction of positive entries (active ReLU units);
/// then always-zero units are dropped, near-duplicates removed greedily (|Pearson| above the
/// threshold with a unit still present, see the code), and the positive entries of the kept
/// units are counted again over `n * m` (lower = sparser) and over `n * kept`. Meant for ReLU;
/// for other activations "active" still means a positive output. The reference code subsamples
/// layers wider than 1000 units; this one does not.
pub fn feature_sparsity<T: Scalar>(
    model: &Model,
    params: &[T],
    set: &EvalSet<T>,
    opts: &FeatureSparsityParams,
) -> Result<FeatureSparsityEstimate, ProbeError> {
    check_params(model, params)?;
    if set.is_empty() {
        return Err(ProbeError::Invalid("feature sparsity needs at least one example".into()));
    }
    if set.x.ncols() != model.in_dim() {
        return Err(ProbeError::Invalid(format!(
            "inputs have {} features, the model takes {}",
            set.x.ncols(),
            model.in_dim()
        )));
    }
    // Gather every activation layer's outputs over the batches.
    let mut acc: Vec<(String, Vec<Array2<f64>>)> = Vec::new();
    for r in set.batches(opts.batch_size) {
        let mut out = Vec::new();
        collect_activations(model.layers(), params, "", set.x.slice(ndarray::s![r, ..]), &mut out);
        if acc.is_empty() {
            acc = out.iter().map(|(n, _)| (n.clone(), Vec::new())).collect();
        }
        for ((_, parts), (_, a)) in acc.iter_mut().zip(out) {
            parts.push(a.mapv(|v| v.to_f64()));
        }
    }
    let n = set.len();
    let mut layers = Vec::with_capacity(acc.len());
    for (name, parts) in acc {
        let views: Vec<_> = parts.iter().map(|a| a.view()).collect();
        let phi = ndarray::concatenate(ndarray::Axis(0), &views).expect("batches share their width");
        let m = phi.ncols();
        let active = |cols: &[usize]| -> usize {
            cols.iter().map(|&u| phi.column(u).iter().filter(|&&v| v > 0.0).count()).sum()
        };
        let all: Vec<usize> = (0..m).collect();
        let live: Vec<usize> = all.iter().copied().filter(|&u| phi.column(u).iter().any(|&v| v > 0.0)).collect();
        let kept = deduplicate(&phi, &live, opts.correlation_threshold);
        let total = (n * m).max(1) as f64;
        let kept_active = active(&kept);
        layers.push(LayerSparsity {
            name,
            units: m,
            active_fraction: active(&all) as f64 / total,
            dead_units: m - live.len(),
            duplicate_units: live.len() - kept.len(),
            kept_units: kept.len(),
            active_fraction_deduplicated: kept_active as f64 / total,
            active_fraction_among_kept: if kept.is_empty() {
                f64::NAN
            } else {
                kept_active as f64 / (n * kept.len()) as f64
            },
        });
    }
    Ok(FeatureSparsityEstimate { samples: n, correlation_threshold: opts.correlation_threshold, layers })
}
