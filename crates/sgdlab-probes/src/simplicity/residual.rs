//! Residual networks as ensembles of shallow paths: lesions and gradient per path length
//! (PROTOCOLS 3.3).

use super::{agreement, binomial, check_params, labels_of, predicted_classes, stats_err};
use crate::{EvalSet, ProbeError};
use ndarray::{Array2, ArrayView2};
use rand::RngExt;
use serde::{Deserialize, Serialize};
use sgdlab_linalg::stats::{linear_fit, mean, median, std_dev};
use sgdlab_linalg::{RngStream, Scalar};
use sgdlab_nn::{Layer, Loss, Model, Reduction, Targets};
use std::ops::Range;

/// A part of the network that can be deleted at test time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LesionUnit {
    /// PyTorch index of its first top-level layer.
    pub name: String,
    /// The top-level layers it spans.
    pub layers: Range<usize>,
    /// `residual` (a block `x + F(x)`, deleted to `x`) or `plain` (a width-preserving
    /// `Linear [LayerNorm] Activation` group, deleted to the identity).
    pub kind: String,
}

/// The deletable units of `model`: its residual blocks if it has any (Veit et al.'s lesion of a
/// residual network), otherwise every group of a square linear layer with the layer norms and
/// activations that follow it (the control: deleting a layer of a plain network; groups that
/// change the width cannot be deleted).
pub fn lesion_units(model: &Model) -> Vec<LesionUnit> {
    let layers = model.layers();
    let residual: Vec<LesionUnit> = layers
        .iter()
        .enumerate()
        .filter(|(_, l)| matches!(l, Layer::Residual(_)))
        .map(|(i, _)| LesionUnit { name: i.to_string(), layers: i..i + 1, kind: "residual".into() })
        .collect();
    if !residual.is_empty() {
        return residual;
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < layers.len() {
        if let Layer::Linear(lin) = &layers[i] {
            let mut j = i + 1;
            while j < layers.len() && matches!(layers[j], Layer::LayerNorm(_) | Layer::Activation(_)) {
                j += 1;
            }
            if lin.in_dim == lin.out_dim && j > i + 1 {
                out.push(LesionUnit { name: i.to_string(), layers: i..j, kind: "plain".into() });
            }
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

/// The logits with the units `deleted` (indices into [`lesion_units`]) replaced by the identity.
pub fn forward_with_lesions<T: Scalar>(
    model: &Model,
    params: &[T],
    x: ArrayView2<'_, T>,
    units: &[LesionUnit],
    deleted: &[usize],
) -> Result<Array2<T>, ProbeError> {
    check_params(model, params)?;
    if x.ncols() != model.in_dim() {
        return Err(ProbeError::Invalid(format!(
            "inputs have {} features, the model takes {}",
            x.ncols(),
            model.in_dim()
        )));
    }
    let mut skip = vec![false; model.layers().len()];
    for &u in deleted {
        let unit = units.get(u).ok_or_else(|| ProbeError::Invalid(format!("no lesion unit {u}")))?;
        for i in unit.layers.clone() {
            skip[i] = true;
        }
    }
    let mut h = x.to_owned();
    for (i, l) in model.layers().iter().enumerate() {
        if !skip[i] {
            h = l.forward(model.layer_params(i, params), h.view());
        }
    }
    Ok(h)
}

/// Options of [`residual_lesions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LesionParams {
    /// Largest number `k` of units deleted at random (PROTOCOLS 3.3: 8).
    pub max_deleted: usize,
    /// Random draws per `k` (PROTOCOLS 3.3: 20).
    pub draws: usize,
}

impl Default for LesionParams {
    fn default() -> Self {
        LesionParams { max_deleted: 8, draws: 20 }
    }
}

/// Accuracy with one unit deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SingleLesion {
    pub unit: String,
    pub accuracy: f64,
    /// `baseline - accuracy`.
    pub drop: f64,
}

/// Accuracy with `k` random units deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultiLesion {
    pub deleted: usize,
    pub mean_accuracy: f64,
    /// Sample standard deviation over draws.
    pub sd_accuracy: f64,
    pub min_accuracy: f64,
    pub max_accuracy: f64,
    pub draws: usize,
}

/// Lesion study of one network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LesionEstimate {
    pub baseline_accuracy: f64,
    pub units: Vec<LesionUnit>,
    pub single: Vec<SingleLesion>,
    /// Median over units of the single-lesion accuracy drop.
    pub median_single_drop: f64,
    pub random: Vec<MultiLesion>,
    pub samples: usize,
}

/// Draws `k` distinct indices below `n` (partial Fisher-Yates).
fn choose(rng: &mut impl rand::Rng, n: usize, k: usize) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    for i in 0..k {
        let j = rng.random_range(i..n);
        all.swap(i, j);
    }
    all.truncate(k);
    all
}

fn accuracy_with<T: Scalar>(
    model: &Model,
    params: &[T],
    set: &EvalSet<T>,
    labels: &[u32],
    units: &[LesionUnit],
    deleted: &[usize],
) -> Result<f64, ProbeError> {
    let z = forward_with_lesions(model, params, set.x.view(), units, deleted)?;
    Ok(agreement(&predicted_classes(z.view()), labels))
}

/// Lesion study (Veit, Wilber & Belongie 2016, "Residual networks behave like ensembles of
/// relatively shallow networks", NIPS, arXiv:1605.06431; PROTOCOLS 3.3): test accuracy with each
/// single unit deleted at test time (a residual block `x + F(x)` replaced by `x`; for a plain
/// network a width-preserving layer group replaced by the identity, see [`lesion_units`]), and
/// with `k = 1..=max_deleted` units deleted at random (`draws` draws each, stream
/// `stream/lesions/k`).
pub fn residual_lesions<T: Scalar>(
    model: &Model,
    params: &[T],
    set: &EvalSet<T>,
    opts: &LesionParams,
    stream: &RngStream,
) -> Result<LesionEstimate, ProbeError> {
    let labels = labels_of(set, "the lesion study")?;
    let units = lesion_units(model);
    if units.is_empty() {
        return Err(ProbeError::Invalid(format!("model {} has no deletable block", model.describe())));
    }
    let baseline = accuracy_with(model, params, set, labels, &units, &[])?;
    let mut single = Vec::with_capacity(units.len());
    for (u, unit) in units.iter().enumerate() {
        let a = accuracy_with(model, params, set, labels, &units, &[u])?;
        single.push(SingleLesion { unit: unit.name.clone(), accuracy: a, drop: baseline - a });
    }
    let mut random = Vec::new();
    for k in 1..=opts.max_deleted.min(units.len()) {
        let mut rng = stream.child("lesions").child(&k.to_string()).rng();
        let mut accs = Vec::with_capacity(opts.draws);
        for _ in 0..opts.draws {
            let del = choose(&mut rng, units.len(), k);
            accs.push(accuracy_with(model, params, set, labels, &units, &del)?);
        }
        random.push(MultiLesion {
            deleted: k,
            mean_accuracy: mean(&accs),
            sd_accuracy: std_dev(&accs, 1),
            min_accuracy: accs.iter().copied().fold(f64::INFINITY, f64::min),
            max_accuracy: accs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            draws: accs.len(),
        });
    }
    let drops: Vec<f64> = single.iter().map(|s| s.drop).collect();
    Ok(LesionEstimate {
        baseline_accuracy: baseline,
        median_single_drop: median(&drops),
        units,
        single,
        random,
        samples: set.len(),
    })
}

/// Options of [`path_length_gradients`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PathLengthParams {
    /// Random block subsets per path length (PROTOCOLS 3.3: 20).
    pub draws: usize,
    /// The loss whose gradient flows back.
    pub loss: Loss,
}

impl Default for PathLengthParams {
    fn default() -> Self {
        PathLengthParams { draws: 20, loss: Loss::CrossEntropy }
    }
}

/// Gradient magnitude carried by paths of one length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathLengthPoint {
    /// Number `k` of residual branches the path goes through.
    pub length: usize,
    /// Mean over draws and examples of the per-example gradient norm at the input of the first
    /// block, through one path of length `k`.
    pub mean_gradient_norm: f64,
    /// Sample standard deviation over draws of the per-draw mean.
    pub sd_over_draws: f64,
    /// `C(n, k)`: the number of paths of this length.
    pub paths: f64,
    /// `C(n, k) * mean_gradient_norm`: the total contribution of all paths of length `k`.
    pub total_contribution: f64,
}

/// Gradient per path length of a residual network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathLengthEstimate {
    /// Number `n` of residual blocks.
    pub blocks: usize,
    pub samples: usize,
    pub points: Vec<PathLengthPoint>,
    /// Least-squares line of `ln(mean_gradient_norm)` against `k` (over `k` with a positive
    /// norm); slope < 0 = exponential decay with path length.
    pub log_slope: f64,
    pub log_intercept: f64,
    pub log_r_squared: f64,
    /// The `k` with the largest total contribution.
    pub peak_length: usize,
}

/// Gradient magnitude per path length (Veit, Wilber & Belongie 2016, Sec. 5 and Fig. 6;
/// PROTOCOLS 3.3). One forward pass; then for each length `k = 0..=n` and each of `draws`
/// random sets of `k` blocks (stream `stream/paths/k`), the loss gradient (summed loss, so each
/// example's row is its own gradient) is propagated back through the residual *branch only* of
/// the chosen blocks and through the *skip only* of the others, which isolates the single path
/// through exactly those `k` branches; layers outside the blocks propagate normally. The
/// per-example norm of the result at the input of the first residual block, averaged over
/// examples and draws, is the gradient magnitude of a path of length `k`.
pub fn path_length_gradients<T: Scalar>(
    model: &Model,
    params: &[T],
    set: &EvalSet<T>,
    opts: &PathLengthParams,
    stream: &RngStream,
) -> Result<PathLengthEstimate, ProbeError> {
    check_params(model, params)?;
    if set.is_empty() {
        return Err(ProbeError::Invalid("path lengths need at least one example".into()));
    }
    let layers = model.layers();
    let blocks: Vec<usize> =
        layers.iter().enumerate().filter(|(_, l)| matches!(l, Layer::Residual(_))).map(|(i, _)| i).collect();
    let n = blocks.len();
    if n == 0 {
        return Err(ProbeError::Invalid(format!("model {} has no residual blocks", model.describe())));
    }
    if opts.draws == 0 {
        return Err(ProbeError::Invalid("path lengths need at least one draw".into()));
    }
    let targets: Targets<'_, T> = set.targets(0..set.len());
    let z_check = set.x.ncols() == model.in_dim();
    if !z_check {
        return Err(ProbeError::Invalid(format!(
            "inputs have {} features, the model takes {}",
            set.x.ncols(),
            model.in_dim()
        )));
    }
    let mut traces = Vec::with_capacity(layers.len());
    let mut h = set.x.clone();
    for (i, l) in layers.iter().enumerate() {
        let (y, t) = l.forward_traced(model.layer_params(i, params), h);
        traces.push(t);
        h = y;
    }
    opts.loss.check(set.len(), model.out_dim(), &targets)?;
    let (_, gz) = opts.loss.value_and_grad(h.view(), &targets, Reduction::Sum);
    let first = blocks[0];
    // Cotangent at the output of the last block: back through the head normally.
    let mut g_top = gz;
    for i in (blocks[n - 1] + 1..layers.len()).rev() {
        g_top = layers[i]
            .vjp(model.layer_params(i, params), &traces[i], g_top.view(), None, true)
            .expect("need_gx was set");
    }
    let mut points = Vec::with_capacity(n + 1);
    for k in 0..=n {
        let mut rng = stream.child("paths").child(&k.to_string()).rng();
        let mut per_draw = Vec::with_capacity(opts.draws);
        for _ in 0..opts.draws {
            let chosen = choose(&mut rng, n, k);
            let mut through = vec![false; layers.len()];
            for &c in &chosen {
                through[blocks[c]] = true;
            }
            let mut g = g_top.clone();
            for i in (first..=blocks[n - 1]).rev() {
                let is_block = matches!(layers[i], Layer::Residual(_));
                if is_block && !through[i] {
                    continue; // skip connection only: identity
                }
                let gx = layers[i]
                    .vjp(model.layer_params(i, params), &traces[i], g.view(), None, true)
                    .expect("need_gx was set");
                // A residual block's vjp is branch + skip; keep the branch only.
                g = if is_block { gx - &g } else { gx };
            }
            let norms: Vec<f64> =
                g.rows().into_iter().map(|r| r.iter().map(|&v| v.to_f64() * v.to_f64()).sum::<f64>().sqrt()).collect();
            per_draw.push(mean(&norms));
        }
        let m = mean(&per_draw);
        let paths = binomial(n, k);
        points.push(PathLengthPoint {
            length: k,
            mean_gradient_norm: m,
            sd_over_draws: std_dev(&per_draw, 1),
            paths,
            total_contribution: paths * m,
        });
    }
    let (ks, logs): (Vec<f64>, Vec<f64>) = points
        .iter()
        .filter(|p| p.mean_gradient_norm > 0.0)
        .map(|p| (p.length as f64, p.mean_gradient_norm.ln()))
        .unzip();
    let fit = if ks.len() >= 2 { Some(linear_fit(&ks, &logs).map_err(stats_err)?) } else { None };
    let peak =
        points.iter().max_by(|a, b| a.total_contribution.total_cmp(&b.total_contribution)).map_or(0, |p| p.length);
    Ok(PathLengthEstimate {
        blocks: n,
        samples: set.len(),
        log_slope: fit.map_or(f64::NAN, |f| f.slope),
        log_intercept: fit.map_or(f64::NAN, |f| f.intercept),
        log_r_squared: fit.map_or(f64::NAN, |f| f.r_squared),
        peak_length: peak,
        points,
    })
}
