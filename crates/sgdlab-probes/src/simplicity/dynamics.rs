//! Training-dynamics measures: performance correlation with a linear classifier (PROTOCOLS
//! 6.1), parameter-norm growth and saturation (PROTOCOLS 6.3).

use super::{
    EmbeddingLayer, EmbeddingLayers, agreement, check_params, cosine, embeddings, logits_of, predicted_classes,
    stats_err,
};
use crate::{EvalSet, ProbeError};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};
use sgdlab_linalg::stats::{LinearFit, conditional_mutual_information_bits, linear_fit, mutual_information_bits};
use sgdlab_linalg::{Scalar, matmul_into};
use sgdlab_nn::Model;

/// The information-theoretic decomposition of a classifier's performance against a baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerformanceCorrelation {
    pub samples: usize,
    /// Accuracy of `F` (the network) and `L` (the baseline) against `Y`.
    pub accuracy_f: f64,
    pub accuracy_l: f64,
    /// Fraction of examples where `F` and `L` agree.
    pub agreement: f64,
    /// `I(F; Y)` in bits.
    pub mi_f_y: f64,
    /// `I(L; Y)` in bits.
    pub mi_l_y: f64,
    /// `I(F; Y | L)` in bits: what `F` knows about `Y` beyond `L`.
    pub cmi_f_y_given_l: f64,
    /// `I(L; Y | F)` in bits: what `L` knows about `Y` that `F` lacks (small = retention).
    pub cmi_l_y_given_f: f64,
    /// `mu_Y(F; L) = I(F; Y) - I(F; Y | L)` in bits (equal to `I(L; Y) - I(L; Y | F)`).
    pub performance_correlation: f64,
}

/// Performance correlation (Nakkiran, Kaplun, Kalimeris, Yang, Edelman, Zhang & Barak 2019, "SGD
/// on neural networks learns functions of increasing complexity", NeurIPS, arXiv:1905.11604;
/// PROTOCOLS 6.1): `mu_Y(F; L) = I(F; Y) - I(F; Y | L)`, with plug-in estimates (bits) from the
/// empirical joint distribution of the predictions `f` of the network, `l` of the baseline and
/// the labels `y` over held-out examples (the 2x2x2 table for a binary task; any discrete
/// alphabets work).
pub fn performance_correlation(f: &[u32], l: &[u32], y: &[u32]) -> Result<PerformanceCorrelation, ProbeError> {
    if f.len() != y.len() || l.len() != y.len() {
        return Err(ProbeError::Invalid(format!("{} / {} / {} predictions and labels", f.len(), l.len(), y.len())));
    }
    if y.is_empty() {
        return Err(ProbeError::Invalid("performance correlation needs examples".into()));
    }
    let mi_f_y = mutual_information_bits(f, y).map_err(stats_err)?;
    let cmi_f_y_given_l = conditional_mutual_information_bits(f, y, l).map_err(stats_err)?;
    Ok(PerformanceCorrelation {
        samples: y.len(),
        accuracy_f: agreement(f, y),
        accuracy_l: agreement(l, y),
        agreement: agreement(f, l),
        mi_f_y,
        mi_l_y: mutual_information_bits(l, y).map_err(stats_err)?,
        cmi_f_y_given_l,
        cmi_l_y_given_f: conditional_mutual_information_bits(l, y, f).map_err(stats_err)?,
        performance_correlation: mi_f_y - cmi_f_y_given_l,
    })
}

/// Options of [`fit_logistic_regression`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogisticRegressionParams {
    /// Ridge `lambda` on the weights (not the bias) in `mean loss + lambda/2 ||w||^2`; keeps the
    /// optimum finite on separable data.
    pub l2: f64,
    /// Newton iterations at most.
    pub max_iter: usize,
    /// Stop when every component of the gradient of the regularised mean loss is below this.
    pub tol: f64,
}

impl Default for LogisticRegressionParams {
    fn default() -> Self {
        LogisticRegressionParams { l2: 1e-4, max_iter: 100, tol: 1e-10 }
    }
}

/// A fitted binary logistic regression `P(y = 1 | x) = sigmoid(w . x + b)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogisticRegression {
    pub weights: Vec<f64>,
    pub bias: f64,
    /// Regularised mean loss at the solution.
    pub loss: f64,
    /// Max-norm of the gradient at the solution.
    pub gradient_norm: f64,
    pub iterations: usize,
    pub converged: bool,
    pub train_accuracy: f64,
}

impl LogisticRegression {
    /// `w . x + b` for each row.
    pub fn decision<T: Scalar>(&self, x: ArrayView2<'_, T>) -> Vec<f64> {
        x.rows()
            .into_iter()
            .map(|r| r.iter().zip(&self.weights).map(|(&a, w)| a.to_f64() * w).sum::<f64>() + self.bias)
            .collect()
    }

    /// Predicted labels (1 iff `w . x + b > 0`).
    pub fn predict<T: Scalar>(&self, x: ArrayView2<'_, T>) -> Vec<u32> {
        self.decision(x).into_iter().map(|z| u32::from(z > 0.0)).collect()
    }
}

fn softplus(z: f64) -> f64 {
    if z > 0.0 { z + (-z).exp().ln_1p() } else { z.exp().ln_1p() }
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Cholesky solve of `a x = b` (`a` symmetric positive definite); `None` if a pivot fails.
fn cholesky_solve(a: &Array2<f64>, b: &[f64]) -> Option<Vec<f64>> {
    let n = a.nrows();
    let mut l = Array2::<f64>::zeros((n, n));
    for j in 0..n {
        let d = a[(j, j)] - (0..j).map(|k| l[(j, k)] * l[(j, k)]).sum::<f64>();
        if d.is_nan() || d <= 0.0 {
            return None;
        }
        let djj = d.sqrt();
        l[(j, j)] = djj;
        for i in j + 1..n {
            let s = a[(i, j)] - (0..j).map(|k| l[(i, k)] * l[(j, k)]).sum::<f64>();
            l[(i, j)] = s / djj;
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        y[i] = (b[i] - (0..i).map(|k| l[(i, k)] * y[k]).sum::<f64>()) / l[(i, i)];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        x[i] = (y[i] - (i + 1..n).map(|k| l[(k, i)] * x[k]).sum::<f64>()) / l[(i, i)];
    }
    Some(x)
}

/// [`fit_logistic_regression`], remembered for the life of the process: a study measures the
/// performance correlation of one run dozens of times against the same baseline, which is the
/// same fit each time. The key is a hash of every input bit (features, labels, options, precision),
/// so a hit returns exactly what a fresh fit would; at most 32 fits are kept.
pub fn fit_logistic_regression_cached<T: Scalar>(
    x: ArrayView2<'_, T>,
    labels: &[u32],
    opts: &LogisticRegressionParams,
) -> Result<std::sync::Arc<LogisticRegression>, ProbeError> {
    use std::collections::HashMap;
    use std::hash::{Hash, Hasher};
    use std::sync::{Arc, Mutex, OnceLock};
    /// (hash of the inputs, rows, columns) -> the fit.
    type Fits = HashMap<(u64, usize, usize), Arc<LogisticRegression>>;
    static FITS: OnceLock<Mutex<Fits>> = OnceLock::new();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::any::type_name::<T>().hash(&mut h);
    x.iter().for_each(|v| Scalar::to_f64(*v).to_bits().hash(&mut h));
    labels.hash(&mut h);
    (opts.l2.to_bits(), opts.max_iter, opts.tol.to_bits()).hash(&mut h);
    let key = (h.finish(), x.nrows(), x.ncols());
    let fits = FITS.get_or_init(Default::default);
    if let Some(f) = fits.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(f.clone());
    }
    let fit = Arc::new(fit_logistic_regression(x, labels, opts)?);
    let mut map = fits.lock().unwrap_or_else(|e| e.into_inner());
    if map.len() >= 32 {
        map.clear();
    }
    map.insert(key, fit.clone());
    Ok(fit)
}

/// Binary logistic regression by damped Newton's method (Armijo backtracking, stopping on the
/// gradient's max-norm), the linear
/// baseline `L` of Nakkiran et al. (2019) "trained to convergence". Labels must be 0/1.
pub fn fit_logistic_regression<T: Scalar>(
    x: ArrayView2<'_, T>,
    labels: &[u32],
    opts: &LogisticRegressionParams,
) -> Result<LogisticRegression, ProbeError> {
    let (n, d) = x.dim();
    if n != labels.len() || n == 0 {
        return Err(ProbeError::Invalid(format!("{n} examples but {} labels", labels.len())));
    }
    if let Some(&y) = labels.iter().find(|&&y| y > 1) {
        return Err(ProbeError::Invalid(format!("logistic regression needs labels 0/1, found {y}")));
    }
    // Design with a trailing column of ones for the bias.
    let mut xt = Array2::<f64>::ones((n, d + 1));
    xt.slice_mut(ndarray::s![.., ..d]).assign(&x.mapv(|v| v.to_f64()));
    let y: Vec<f64> = labels.iter().map(|&v| v as f64).collect();
    let lam = opts.l2;
    let objective = |th: &[f64]| -> (f64, Array1<f64>) {
        let z = xt.dot(&Array1::from(th.to_vec()));
        let loss = z.iter().zip(&y).map(|(&zi, &yi)| softplus(zi) - yi * zi).sum::<f64>() / n as f64
            + 0.5 * lam * th[..d].iter().map(|w| w * w).sum::<f64>();
        (loss, z)
    };
    let mut theta = vec![0.0; d + 1];
    let (mut loss, mut z) = objective(&theta);
    let mut iterations = 0;
    let mut converged = false;
    let mut grad = vec![0.0; d + 1];
    loop {
        let s: Vec<f64> = z.iter().map(|&v| sigmoid(v)).collect();
        let r = Array1::from(s.iter().zip(&y).map(|(a, b)| a - b).collect::<Vec<_>>());
        let g = xt.t().dot(&r) / n as f64;
        for j in 0..=d {
            grad[j] = g[j] + if j < d { lam * theta[j] } else { 0.0 };
        }
        let gmax = grad.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        if gmax < opts.tol {
            converged = true;
            break;
        }
        if iterations >= opts.max_iter {
            break;
        }
        // H = (1/n) X~^T D X~ + lam I_w.
        let mut xs = xt.clone();
        for (mut row, &si) in xs.rows_mut().into_iter().zip(&s) {
            row *= (si * (1.0 - si) / n as f64).sqrt();
        }
        let mut h = Array2::<f64>::zeros((d + 1, d + 1));
        matmul_into(h.view_mut(), false, xs.t(), xs.view(), 1.0);
        for j in 0..d {
            h[(j, j)] += lam;
        }
        let neg: Vec<f64> = grad.iter().map(|v| -v).collect();
        let mut step = cholesky_solve(&h, &neg);
        let mut jitter = 1e-12 * (0..=d).map(|j| h[(j, j)]).sum::<f64>().max(1e-300);
        while step.is_none() && jitter < 1e6 {
            let mut hj = h.clone();
            hj.diag_mut().mapv_inplace(|v| v + jitter);
            step = cholesky_solve(&hj, &neg);
            jitter *= 100.0;
        }
        let Some(step) = step else { break };
        let decrement: f64 = -grad.iter().zip(&step).map(|(a, b)| a * b).sum::<f64>();
        let mut t = 1.0;
        let mut accepted = false;
        for _ in 0..60 {
            let cand: Vec<f64> = theta.iter().zip(&step).map(|(a, b)| a + t * b).collect();
            let (l2, z2) = objective(&cand);
            if l2 <= loss - 1e-4 * t * decrement {
                theta = cand;
                loss = l2;
                z = z2;
                accepted = true;
                break;
            }
            t *= 0.5;
        }
        iterations += 1;
        if !accepted {
            // No decrease possible at this precision: the optimum up to rounding if the gradient
            // is already tiny.
            converged = gmax < opts.tol.sqrt();
            break;
        }
    }
    let pred: Vec<u32> = z.iter().map(|&v| u32::from(v > 0.0)).collect();
    Ok(LogisticRegression {
        bias: theta[d],
        weights: theta[..d].to_vec(),
        loss,
        gradient_norm: grad.iter().fold(0.0f64, |m, v| m.max(v.abs())),
        iterations,
        converged,
        train_accuracy: agreement(&pred, labels),
    })
}

/// [`performance_correlation`] of a network (predictions: a single logit > 0, or the arg-max)
/// against a fitted logistic-regression baseline on a labelled held-out set.
pub fn performance_correlation_of_model<T: Scalar>(
    model: &Model,
    params: &[T],
    set: &EvalSet<T>,
    baseline: &LogisticRegression,
    batch_size: usize,
) -> Result<PerformanceCorrelation, ProbeError> {
    let y = super::labels_of(set, "performance correlation")?;
    if baseline.weights.len() != set.x.ncols() {
        return Err(ProbeError::Invalid(format!(
            "the baseline has {} weights for {} features",
            baseline.weights.len(),
            set.x.ncols()
        )));
    }
    let z = logits_of(model, params, set.x.view(), batch_size)?;
    let f = predicted_classes(z.view());
    let l = baseline.predict(set.x.view());
    performance_correlation(&f, &l, y)
}

/// A named Euclidean norm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorNorm {
    pub name: String,
    pub norm: f64,
}

/// Parameter norms of one checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParameterNormEstimate {
    /// `||theta||_2` of the whole vector.
    pub total: f64,
    /// Per named tensor (`0.weight`, `0.bias`, ...), layout order.
    pub tensors: Vec<TensorNorm>,
    /// Per layer: the tensors sharing a name prefix (`0`, `1.1`, ...), layout order.
    pub layers: Vec<TensorNorm>,
}

/// Parameter norms (Merrill, Ramanujan, Goldberg, Schwartz & Smith 2021, "Effects of parameter
/// norm growth during transformer training", EMNLP, arXiv:2010.09697; PROTOCOLS 6.3): the
/// Euclidean norm of the whole flat vector, of each named tensor and of each layer (the root sum
/// of squares of its tensors), accumulated in f64.
pub fn parameter_norms<T: Scalar>(model: &Model, params: &[T]) -> Result<ParameterNormEstimate, ProbeError> {
    check_params(model, params)?;
    let sq = |s: &[T]| s.iter().map(|&v| v.to_f64() * v.to_f64()).sum::<f64>();
    let mut tensors = Vec::new();
    let mut layers: Vec<(String, f64)> = Vec::new();
    for e in model.layout().entries() {
        let s = sq(&params[e.offset..e.offset + e.len]);
        tensors.push(TensorNorm { name: e.name.clone(), norm: s.sqrt() });
        let prefix = e.name.rsplit_once('.').map_or(e.name.as_str(), |(p, _)| p).to_string();
        match layers.last_mut() {
            Some((p, acc)) if *p == prefix => *acc += s,
            _ => layers.push((prefix, s)),
        }
    }
    Ok(ParameterNormEstimate {
        total: sq(params).sqrt(),
        tensors,
        layers: layers.into_iter().map(|(name, s)| TensorNorm { name, norm: s.sqrt() }).collect(),
    })
}

/// A least-squares fit `y ~ intercept + slope * g(t)` (serialisable form of
/// [`sgdlab_linalg::stats::LinearFit`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Fit {
    pub slope: f64,
    pub intercept: f64,
    pub r_squared: f64,
    pub n: usize,
}

impl From<LinearFit> for Fit {
    fn from(f: LinearFit) -> Self {
        Fit { slope: f.slope, intercept: f.intercept, r_squared: f.r_squared, n: f.n }
    }
}

/// `rho ~ offset + scale * t^exponent`, the exponent chosen to maximise R^2.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PowerFit {
    pub exponent: f64,
    pub scale: f64,
    pub offset: f64,
    pub r_squared: f64,
}

/// Norm-growth fits over a series of checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NormGrowthEstimate {
    /// Points used (those with `t > 0`).
    pub points: usize,
    /// `rho ~ a sqrt(t) + b`.
    pub sqrt: Fit,
    /// `rho ~ a ln(t) + b`.
    pub log: Fit,
    /// `rho ~ a t + b`.
    pub linear: Fit,
    /// The profiled power law.
    pub power: PowerFit,
    /// `sqrt`, `log` or `linear`: the fit with the largest R^2.
    pub best: String,
}

/// Range of the power-law exponent search.
pub const POWER_EXPONENT_RANGE: (f64, f64) = (0.01, 3.0);

/// Norm-growth fits (Merrill et al. 2021, arXiv:2010.09697; PROTOCOLS 6.3): least-squares fits of
/// the norm `rho(t)` against `sqrt(t)`, `ln(t)` and `t` (each with an intercept) and their R^2,
/// plus the power law `rho ~ b + a t^p` with `p` in [`POWER_EXPONENT_RANGE`] maximising R^2 (grid
/// of step 0.005, then golden-section refinement), which estimates the growth exponent even when
/// `rho(0) > 0`. Points with `t <= 0` are dropped from every fit so that the R^2 values compare
/// like with like.
pub fn norm_growth_fits(steps: &[f64], norms: &[f64]) -> Result<NormGrowthEstimate, ProbeError> {
    if steps.len() != norms.len() {
        return Err(ProbeError::Invalid(format!("{} steps but {} norms", steps.len(), norms.len())));
    }
    let (t, rho): (Vec<f64>, Vec<f64>) =
        steps.iter().zip(norms).filter(|(s, _)| **s > 0.0).map(|(s, r)| (*s, *r)).unzip();
    if t.len() < 3 {
        return Err(ProbeError::Invalid(format!("norm-growth fits need at least 3 steps > 0, got {}", t.len())));
    }
    let fit_with = |g: &dyn Fn(f64) -> f64| -> Result<LinearFit, ProbeError> {
        let x: Vec<f64> = t.iter().map(|&v| g(v)).collect();
        linear_fit(&x, &rho).map_err(stats_err)
    };
    let sqrt = fit_with(&f64::sqrt)?;
    let log = fit_with(&f64::ln)?;
    let linear = fit_with(&|v| v)?;
    let r2 = |p: f64| fit_with(&|v| v.powf(p)).map_or(f64::NEG_INFINITY, |f| f.r_squared);
    let (lo, hi) = POWER_EXPONENT_RANGE;
    let step = 0.005;
    let mut best_p = lo;
    let mut best_r = f64::NEG_INFINITY;
    let mut p = lo;
    while p <= hi + 1e-12 {
        let r = r2(p);
        if r > best_r {
            best_r = r;
            best_p = p;
        }
        p += step;
    }
    // Golden-section refinement in the bracket around the best grid point.
    let (mut a, mut b) = ((best_p - step).max(lo), (best_p + step).min(hi));
    let gr = (5f64.sqrt() - 1.0) / 2.0;
    let (mut c, mut d) = (b - gr * (b - a), a + gr * (b - a));
    let (mut fc, mut fd) = (r2(c), r2(d));
    for _ in 0..60 {
        if fc > fd {
            b = d;
            d = c;
            fd = fc;
            c = b - gr * (b - a);
            fc = r2(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + gr * (b - a);
            fd = r2(d);
        }
    }
    let p_opt = if fc.max(fd) >= best_r { (a + b) / 2.0 } else { best_p };
    let pf = fit_with(&|v| v.powf(p_opt))?;
    let named = [("sqrt", sqrt.r_squared), ("log", log.r_squared), ("linear", linear.r_squared)];
    let best = named.iter().max_by(|x, y| x.1.total_cmp(&y.1)).map(|x| x.0).unwrap_or("sqrt").to_string();
    Ok(NormGrowthEstimate {
        points: t.len(),
        sqrt: sqrt.into(),
        log: log.into(),
        linear: linear.into(),
        power: PowerFit { exponent: p_opt, scale: pf.slope, offset: pf.intercept, r_squared: pf.r_squared },
        best,
    })
}

/// The saturation scale of Merrill et al. (2021): parameters multiplied by 1000.
pub const DEFAULT_SATURATION_SCALE: f64 = 1000.0;

/// Options of [`saturation`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SaturationParams {
    /// The factor `rho` applied to every parameter.
    pub scale: f64,
    pub layers: EmbeddingLayers,
}

impl Default for SaturationParams {
    fn default() -> Self {
        SaturationParams { scale: DEFAULT_SATURATION_SCALE, layers: EmbeddingLayers::Blocks }
    }
}

/// Saturation of one representation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerSaturation {
    #[serde(flatten)]
    pub layer: EmbeddingLayer,
    /// Mean over examples of `cos(h(x; theta), h(x; rho theta))`.
    pub mean_cosine: f64,
    pub min_cosine: f64,
    /// Examples left out because one of the two vectors is zero (cosine undefined).
    pub undefined: usize,
}

/// Saturation of every representation layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaturationEstimate {
    pub scale: f64,
    /// The layers after the input; the last one is the logits.
    pub layers: Vec<LayerSaturation>,
    /// Mean cosine of the logits (the last layer's `mean_cosine`).
    pub output_cosine: f64,
}

/// Saturation (Merrill et al. 2021, arXiv:2010.09697, Sec. "saturation"; PROTOCOLS 6.3): the
/// network with every parameter (weights, biases, layer-norm gains and shifts) multiplied by
/// `rho` (default 1000) approximates the "saturated" network of the infinite-norm limit; the
/// saturation of a representation is the mean over examples of the cosine similarity between
/// its value at `theta` and at `rho theta` (1 = already saturated). Reported for every
/// representation layer after the input ([`EmbeddingLayers`]) and for the logits. Bias-free
/// ReLU networks are positively homogeneous, so their cosines are exactly 1.
pub fn saturation<T: Scalar>(
    model: &Model,
    params: &[T],
    set: &EvalSet<T>,
    opts: &SaturationParams,
) -> Result<SaturationEstimate, ProbeError> {
    check_params(model, params)?;
    if set.is_empty() {
        return Err(ProbeError::Invalid("saturation needs at least one example".into()));
    }
    let scaled: Vec<T> = params.iter().map(|&v| v * T::from_f64(opts.scale)).collect();
    let soft = embeddings(model, params, set.x.view(), opts.layers)?;
    let hard = embeddings(model, &scaled, set.x.view(), opts.layers)?;
    let mut layers = Vec::new();
    for ((layer, a), (_, b)) in soft.into_iter().zip(hard).skip(1) {
        let mut cs = Vec::with_capacity(a.nrows());
        let mut undefined = 0;
        for (ra, rb) in a.axis_iter(Axis(0)).zip(b.axis_iter(Axis(0))) {
            let va: Vec<f64> = ra.iter().map(|&v| v.to_f64()).collect();
            let vb: Vec<f64> = rb.iter().map(|&v| v.to_f64()).collect();
            match cosine(&va, &vb) {
                Some(c) if c.is_finite() => cs.push(c),
                _ => undefined += 1,
            }
        }
        let mean = if cs.is_empty() { f64::NAN } else { cs.iter().sum::<f64>() / cs.len() as f64 };
        layers.push(LayerSaturation {
            layer,
            mean_cosine: mean,
            min_cosine: cs.iter().copied().fold(f64::INFINITY, f64::min),
            undefined,
        });
    }
    let output_cosine = layers.last().map_or(f64::NAN, |l| l.mean_cosine);
    Ok(SaturationEstimate { scale: opts.scale, layers, output_cosine })
}
