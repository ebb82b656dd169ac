//! Curvature measures: loss summary, exact spectrum, epsilon-sharpness, loss-landscape slices and
//! interpolations, gradient-noise geometry and tail indices.

use super::operators::{CurvatureContext, GradientNoiseOperator, HessianOperator};
use crate::common::ProbeError;
use ndarray::Array2;
use rand::RngExt;
use serde::Serialize;
use sgdlab_linalg::{RngStream, Scalar, standard_normal, symmetric_eigen};
use sgdlab_nn::{Layer, Model};
use sgdlab_operators::{
    LinearOperator, MeanEstimate, ProbeDistribution, SpectralDensityEstimate, effective_dimensionality, materialize,
    near_zero_fraction,
};

/// Mean loss, accuracy and gradient norm over the evaluation set.
#[derive(Debug, Clone, Serialize)]
pub struct LossSummary {
    pub loss: f64,
    pub accuracy: f64,
    pub grad_norm: f64,
    pub examples: usize,
}

/// Loss, accuracy and gradient norm of the mean loss over the set.
pub fn loss_summary<T: Scalar>(ctx: &CurvatureContext<'_, T>) -> LossSummary {
    let (loss, accuracy, g) = ctx.loss_accuracy_gradient();
    let grad_norm = g.iter().map(|&v| v.to_f64() * v.to_f64()).sum::<f64>().sqrt();
    LossSummary { loss, accuracy, grad_norm, examples: ctx.len() }
}

/// The whole spectrum of a materialised operator (small models only).
#[derive(Debug, Clone, Serialize)]
pub struct ExactSpectrum {
    /// All eigenvalues, descending.
    pub eigenvalues: Vec<f64>,
    pub trace: f64,
    /// `#{|lambda| < tau lambda_max} / P` (Maddox, Benton & Wilson 2020; PROTOCOLS 10.2).
    pub near_zero_fraction: f64,
    pub near_zero_tau: f64,
    /// `N_eff(z) = sum_i lambda_i / (lambda_i + z)` over eigenvalues clamped at 0.
    pub effective_dimensionality: f64,
    pub effective_dimensionality_z: f64,
    pub frobenius_norm: f64,
    /// Largest asymmetry `max |A - A^T|` of the materialised matrix (rounding only).
    pub asymmetry: f64,
    pub matvecs: usize,
}

/// Materialises `op` column by column (refused above `max_dim`, and when the dense copies would
/// not fit in memory) and eigendecomposes it.
pub fn exact_spectrum<T: Scalar>(
    op: &dyn LinearOperator<T>,
    max_dim: usize,
    tau: f64,
    z: f64,
) -> Result<ExactSpectrum, ProbeError> {
    let n = op.dim();
    if n <= max_dim {
        // The operator in T, its f64 copy, the symmetrised copy, its transpose view's
        // temporary and the eigenvectors.
        sgdlab_linalg::memory::Estimate::new(format!("the exact spectrum of a {n} x {n} operator"))
            .array(&[n, n], std::mem::size_of::<T>() + 8 * 4)
            .check()?;
    }
    let a = materialize(op, max_dim)?;
    let n = a.nrows();
    let a64: Array2<f64> = a.mapv(|v| v.to_f64());
    let asymmetry = a64.iter().zip(a64.t().iter()).fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
    let sym = (&a64 + &a64.t()) * 0.5;
    let e = symmetric_eigen(sym.view()).map_err(|e| ProbeError::Invalid(e.to_string()))?;
    let mut eigenvalues: Vec<f64> = e.values.to_vec();
    eigenvalues.reverse();
    let trace = (0..n).map(|i| sym[(i, i)]).sum();
    let frobenius_norm = sym.iter().map(|v| v * v).sum::<f64>().sqrt();
    let near = near_zero_fraction(&eigenvalues, tau)?;
    let neff = effective_dimensionality(&eigenvalues, z)?;
    Ok(ExactSpectrum {
        eigenvalues,
        trace,
        near_zero_fraction: near,
        near_zero_tau: tau,
        effective_dimensionality: neff.value,
        effective_dimensionality_z: z,
        frobenius_norm,
        asymmetry,
        matvecs: n,
    })
}

/// Keskar et al.'s epsilon-sharpness (ICLR 2017, PROTOCOLS 7.1), full space (A = I):
/// `phi = 100 (max_{z in C} L(x + z) - L(x)) / (1 + L(x))`, `C = {|z_i| <= eps (|x_i| + 1)}`.
/// The max is approximated by projected sign-gradient ascent (step 0.25 of each coordinate's
/// box half-width, clipped to the box), keeping the best iterate: a lower bound on the true max.
#[derive(Debug, Clone, Serialize)]
pub struct SharpnessEstimate {
    pub epsilon: f64,
    pub sharpness: f64,
    pub loss: f64,
    pub max_loss: f64,
    pub ascent_steps: usize,
    pub gradient_evaluations: usize,
    /// Loss after each ascent step (shows whether the ascent has levelled off).
    pub history: Vec<f64>,
}

/// Epsilon-sharpness by projected sign-gradient ascent (see [`SharpnessEstimate`]).
pub fn epsilon_sharpness<T: Scalar>(
    ctx: &CurvatureContext<'_, T>,
    epsilon: f64,
    steps: usize,
) -> Result<SharpnessEstimate, ProbeError> {
    if !(epsilon > 0.0 && epsilon.is_finite()) {
        return Err(ProbeError::Invalid(format!("epsilon must be positive, got {epsilon}")));
    }
    let x = ctx.params;
    let half: Vec<f64> = x.iter().map(|&v| epsilon * (v.to_f64().abs() + 1.0)).collect();
    let base = ctx.loss_at(x);
    let mut z = vec![0.0f64; x.len()];
    let mut best = base;
    let mut history = Vec::with_capacity(steps);
    let mut point: Vec<T> = x.to_vec();
    for _ in 0..steps {
        let (_, g) = ctx.loss_gradient_at(&point);
        for i in 0..z.len() {
            let s = g[i].to_f64().signum();
            z[i] = (z[i] + 0.25 * half[i] * s).clamp(-half[i], half[i]);
            point[i] = T::from_f64(x[i].to_f64() + z[i]);
        }
        let l = ctx.loss_at(&point);
        history.push(l);
        if l > best {
            best = l;
        }
    }
    Ok(SharpnessEstimate {
        epsilon,
        sharpness: 100.0 * (best - base) / (1.0 + base),
        loss: base,
        max_loss: best,
        ascent_steps: steps,
        gradient_evaluations: steps,
        history,
    })
}

/// A filter-normalised random direction (Li, Xu, Taylor, Studer & Goldstein 2018): Gaussian per
/// entry, then each row of each linear weight (one unit's incoming weights, a "filter") rescaled
/// to the norm of the same row of the parameters; biases and layer-norm parameters get zero.
pub fn filter_normalized_direction<T: Scalar>(model: &Model, params: &[T], stream: &RngStream) -> Vec<T> {
    let mut d = vec![T::zero(); params.len()];
    let mut rng = stream.rng();
    model.for_each_layer(&mut |_, layer, off| {
        if let Layer::Linear(l) = layer {
            for o in 0..l.out_dim {
                let r = off + o * l.in_dim..off + (o + 1) * l.in_dim;
                let draw: Vec<f64> = (0..l.in_dim).map(|_| standard_normal::<f64, _>(&mut rng)).collect();
                let dn = draw.iter().map(|v| v * v).sum::<f64>().sqrt();
                let pn = params[r.clone()].iter().map(|&v| v.to_f64() * v.to_f64()).sum::<f64>().sqrt();
                for (dst, v) in d[r].iter_mut().zip(&draw) {
                    *dst = T::from_f64(v * pn / dn.max(f64::MIN_POSITIVE));
                }
            }
        }
    });
    d
}

/// One point of a loss-landscape slice or interpolation.
#[derive(Debug, Clone, Serialize)]
pub struct SlicePoint {
    pub alpha: f64,
    pub beta: f64,
    pub loss: f64,
    pub accuracy: f64,
}

/// Options of [`landscape`]: `points` values per direction, evenly over `[-range, range]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LandscapeParams {
    /// 1 (a line along `d1`) or 2 (a plane spanned by `d1`, `d2`).
    pub dims: usize,
    /// Points per direction (1 = the centre only).
    pub points: usize,
    /// Half-width of the interval in units of the directions.
    pub range: f64,
}

impl Default for LandscapeParams {
    fn default() -> Self {
        LandscapeParams { dims: 1, points: 21, range: 1.0 }
    }
}

/// `n` evenly spaced values from `lo` to `hi` (the midpoint when `n == 1`), refused when an end
/// is not finite or the values would not fit in memory.
pub fn grid_points(lo: f64, hi: f64, n: usize) -> Result<Vec<f64>, ProbeError> {
    if !(lo.is_finite() && hi.is_finite()) {
        return Err(ProbeError::Invalid(format!("grid ends must be finite numbers, got {lo} and {hi}")));
    }
    if n == 0 {
        return Err(ProbeError::Invalid("a grid needs at least 1 point".into()));
    }
    sgdlab_linalg::memory::Estimate::new(format!("a grid of {n} points")).array(&[n], 8).check()?;
    if n == 1 {
        return Ok(vec![0.5 * (lo + hi)]);
    }
    Ok((0..n).map(|i| lo + (hi - lo) * i as f64 / (n - 1) as f64).collect())
}

/// The loss landscape around `ctx.params` along filter-normalised directions `d1` (and `d2`
/// when `dims = 2`): [`landscape_slice`] on the grid `params` describes, after checking the
/// options (finite positive range, 1 or 2 dimensions) and that the grid fits in memory.
pub fn landscape<T: Scalar>(
    ctx: &CurvatureContext<'_, T>,
    d1: &[T],
    d2: &[T],
    params: &LandscapeParams,
) -> Result<Vec<SlicePoint>, ProbeError> {
    if !(params.dims == 1 || params.dims == 2) {
        return Err(ProbeError::Invalid(format!("dims must be 1 or 2, got {}", params.dims)));
    }
    if !(params.range.is_finite() && params.range > 0.0) {
        return Err(ProbeError::Invalid(format!("range must be a positive number, got {}", params.range)));
    }
    let p = ctx.params.len();
    if d1.len() != p || d2.len() != p {
        return Err(ProbeError::Invalid(format!(
            "directions have {} and {} entries, the parameters {p}",
            d1.len(),
            d2.len()
        )));
    }
    let rows = if params.dims == 2 { params.points } else { 1 };
    sgdlab_linalg::memory::Estimate::new(format!(
        "a {}-D landscape of {} points per direction",
        params.dims, params.points
    ))
    .array(&[params.points, rows], std::mem::size_of::<SlicePoint>())
    .array(&[params.points], 8 * 2)
    .array(&[p], std::mem::size_of::<T>())
    .check()?;
    let alphas = grid_points(-params.range, params.range, params.points)?;
    let betas = if params.dims == 2 { alphas.clone() } else { vec![0.0] };
    Ok(landscape_slice(ctx, d1, d2, &alphas, &betas))
}

/// `L(theta + alpha d1 + beta d2)` on a grid (2-D slice; pass `betas = [0]` and any `d2` for 1-D).
/// [`landscape`] checks its options and builds the grid.
pub fn landscape_slice<T: Scalar>(
    ctx: &CurvatureContext<'_, T>,
    d1: &[T],
    d2: &[T],
    alphas: &[f64],
    betas: &[f64],
) -> Vec<SlicePoint> {
    let mut out = Vec::with_capacity(alphas.len() * betas.len());
    for &b in betas {
        for &a in alphas {
            let p: Vec<T> = ctx
                .params
                .iter()
                .zip(d1)
                .zip(d2)
                .map(|((&t, &u), &v)| t + T::from_f64(a) * u + T::from_f64(b) * v)
                .collect();
            let (loss, accuracy) = ctx.loss_accuracy_at(&p);
            out.push(SlicePoint { alpha: a, beta: b, loss, accuracy });
        }
    }
    out
}

/// `L((1 - alpha) theta_a + alpha theta_b)` (Goodfellow et al. 2015; Keskar et al. 2017's
/// parametric plots use alpha in [-1, 2]); `ctx.params` is not used.
pub fn interpolation<T: Scalar>(ctx: &CurvatureContext<'_, T>, a: &[T], b: &[T], alphas: &[f64]) -> Vec<SlicePoint> {
    alphas
        .iter()
        .map(|&al| {
            let p: Vec<T> = a.iter().zip(b).map(|(&x, &y)| x + T::from_f64(al) * (y - x)).collect();
            let (loss, accuracy) = ctx.loss_accuracy_at(&p);
            SlicePoint { alpha: al, beta: 0.0, loss, accuracy }
        })
        .collect()
}

/// Gradient-noise geometry at the current parameters (Zhu et al. 2019; PROTOCOLS 8.1).
#[derive(Debug, Clone, Serialize)]
pub struct NoiseEstimate {
    pub examples: usize,
    /// `Tr Sigma` of the per-example gradient covariance (batch size 1).
    pub trace_sigma: f64,
    pub frobenius_sigma: f64,
    /// Hutchinson estimate of `Tr H` with its standard error.
    pub trace_hessian: f64,
    pub trace_hessian_stderr: f64,
    /// `||H||_F` from the same probes and products (`E ||H v||^2 = ||H||_F^2`).
    pub frobenius_hessian: f64,
    /// `Tr(H Sigma) = (1/N) sum_i (g_i - g)^T H (g_i - g)` over `hvp_examples` examples, with its
    /// standard error when a subset is used.
    pub trace_h_sigma: f64,
    pub trace_h_sigma_stderr: f64,
    pub hvp_examples: usize,
    /// `R = Tr(H Sigma) / (Tr H Tr Sigma / D)`: 1 for isotropic noise of the same total variance.
    pub alignment_ratio: f64,
    /// `Tr(H Sigma) / (||H||_F ||Sigma||_F)`.
    pub alignment_cosine: f64,
    /// The same quantities for minibatches of `batch_size` drawn with replacement: `Sigma / B`.
    pub batch_size: usize,
    pub trace_sigma_batch: f64,
    pub trace_h_sigma_batch: f64,
    pub dim: usize,
    /// Hessian-vector products used (the probes for `Tr H` and `||H||_F`, shared).
    pub matvecs: usize,
    /// Quadratic forms `v^T H v` computed by forward passes (the `hvp_examples` centred
    /// gradients).
    pub quadratic_forms: usize,
}

/// Options of [`gradient_noise`].
#[derive(Debug, Clone)]
pub struct NoiseParams {
    /// Hutchinson probes for `Tr H` and `||H||_F`.
    pub probes: usize,
    /// Examples whose `(g_i - g)^T H (g_i - g)` are evaluated (0 = all).
    pub hvp_examples: usize,
    /// Minibatch size the batch-level quantities refer to.
    pub batch_size: usize,
}

impl Default for NoiseParams {
    fn default() -> Self {
        NoiseParams { probes: 30, hvp_examples: 0, batch_size: 1 }
    }
}

/// Gradient-noise trace, alignment with the Hessian and related quantities (see
/// [`NoiseEstimate`]).
pub fn gradient_noise<T: Scalar>(
    ctx: &CurvatureContext<'_, T>,
    params: &NoiseParams,
    stream: &RngStream,
) -> Result<NoiseEstimate, ProbeError> {
    if params.batch_size == 0 {
        return Err(ProbeError::Invalid("batch_size must be positive".into()));
    }
    let noise = GradientNoiseOperator::new(ctx)?;
    let h = HessianOperator { ctx };
    let d = ctx.dim();
    // One set of Rademacher probes v gives both Tr H = E[v^T H v] (Hutchinson) and
    // ||H||_F^2 = E||H v||^2 from the same products.
    let k = params.probes.max(2);
    let probes = ProbeDistribution::Rademacher.sample::<T, _>(k, d, &mut stream.child("probes").rng());
    let hv = h.apply_block(probes.view());
    let vhv: Vec<f64> = probes
        .rows()
        .into_iter()
        .zip(hv.rows())
        .map(|(a, b)| a.iter().zip(b.iter()).map(|(&x, &y)| x.to_f64() * y.to_f64()).sum())
        .collect();
    let th = MeanEstimate::from_samples(&vhv);
    let fro_h = (hv.rows().into_iter().map(|r| r.iter().map(|&v| v.to_f64() * v.to_f64()).sum::<f64>()).sum::<f64>()
        / k as f64)
        .sqrt();
    // Tr(H Sigma) over (a subset of) the centred per-example gradients.
    let n = noise.centred().nrows();
    let m = if params.hvp_examples == 0 || params.hvp_examples >= n { n } else { params.hvp_examples };
    let idx: Vec<usize> = if m == n {
        (0..n).collect()
    } else {
        let mut r = stream.child("hvp-examples").rng();
        let mut all: Vec<usize> = (0..n).collect();
        for i in 0..m {
            let j = r.random_range(i..n);
            all.swap(i, j);
        }
        all[..m].to_vec()
    };
    let mut quad = Vec::with_capacity(m);
    for chunk in idx.chunks(32) {
        let u = noise.centred().select(ndarray::Axis(0), chunk);
        // (g_i - g)^T H (g_i - g) by forward passes only (the Hessian's quadratic forms).
        quad.extend(h.quadratic_forms(u.view()).expect("the Hessian operator computes quadratic forms"));
    }
    let mean = quad.iter().sum::<f64>() / m as f64;
    let stderr = if m < n && m > 1 {
        let var = quad.iter().map(|q| (q - mean) * (q - mean)).sum::<f64>() / (m - 1) as f64;
        (var / m as f64).sqrt() * ((n - m) as f64 / (n - 1) as f64).sqrt()
    } else {
        0.0
    };
    let trace_sigma = noise.trace();
    let frobenius_sigma = noise.frobenius_norm();
    let b = params.batch_size as f64;
    Ok(NoiseEstimate {
        examples: n,
        trace_sigma,
        frobenius_sigma,
        trace_hessian: th.value,
        trace_hessian_stderr: th.standard_error,
        frobenius_hessian: fro_h,
        trace_h_sigma: mean,
        trace_h_sigma_stderr: stderr,
        hvp_examples: m,
        alignment_ratio: mean / (th.value * trace_sigma / d as f64),
        alignment_cosine: mean / (fro_h * frobenius_sigma),
        batch_size: params.batch_size,
        trace_sigma_batch: trace_sigma / b,
        trace_h_sigma_batch: mean / b,
        dim: d,
        matvecs: k,
        quadratic_forms: m,
    })
}

/// Tail-index estimates of minibatch gradient noise (PROTOCOLS 8.2).
#[derive(Debug, Clone, Serialize)]
pub struct TailIndexEstimate {
    /// Mohammadi et al. (2015) estimator for symmetric alpha-stable vectors, as used by Simsekli
    /// et al. (2019): `1/alpha = (mean_j log||Y_j|| - mean_i log||X_i||) / log m` with `Y_j` sums
    /// of blocks of `m` noise vectors `X_i`. 2 = Gaussian; below 2 = heavy-tailed.
    pub mohammadi_alpha: f64,
    /// Hill's estimator on the norms `||X_i||` with the `k` largest.
    pub hill_alpha: f64,
    /// Both estimators on the raw noise `g_B - g` of the same minibatches (equal to the two
    /// above without a preconditioner).
    pub raw_mohammadi_alpha: f64,
    pub raw_hill_alpha: f64,
    pub hill_k: usize,
    pub block_size: usize,
    pub blocks: usize,
    pub batch_size: usize,
    pub gradient_evaluations: usize,
}

/// Hill's tail-index estimator: `[ (1/k) sum_{i<=k} log(X_(i) / X_(k+1)) ]^{-1}` over the
/// descending order statistics of a positive sample (Hill 1975).
pub fn hill_estimator(xs: &[f64], k: usize) -> Result<f64, ProbeError> {
    if k == 0 || k >= xs.len() {
        return Err(ProbeError::Invalid(format!("Hill estimator: k = {k} must be in 1..{}", xs.len())));
    }
    let mut v: Vec<f64> = xs.to_vec();
    if v.iter().any(|x| !(x.is_finite() && *x > 0.0)) {
        return Err(ProbeError::Invalid("Hill estimator needs positive finite values".into()));
    }
    v.sort_by(|a, b| b.total_cmp(a));
    let xk = v[k];
    let s: f64 = v[..k].iter().map(|x| (x / xk).ln()).sum::<f64>() / k as f64;
    Ok(1.0 / s)
}

/// The Euclidean norm of a vector, accumulated in f64 in coordinate order (the norm of every
/// tail-index estimate).
fn vector_norm<T: Scalar>(v: impl IntoIterator<Item = T>) -> f64 {
    v.into_iter().map(|v| v.to_f64() * v.to_f64()).sum::<f64>().sqrt()
}

/// Mohammadi et al.'s estimator fed one vector at a time: consecutive vectors form blocks of `m`,
/// a trailing incomplete block is left out. Holds one block sum, never the vectors, so a
/// probe can stream thousands of noise vectors of a large model through it.
pub struct MohammadiBlocks<T> {
    m: usize,
    block: Vec<T>,
    pending_log_norms: Vec<f64>,
    sum_log_x: f64,
    sum_log_y: f64,
    blocks: usize,
}

impl<T: Scalar> MohammadiBlocks<T> {
    /// An estimator for vectors of length `dim` in blocks of `m >= 2`.
    pub fn new(m: usize, dim: usize) -> Result<Self, ProbeError> {
        if m < 2 {
            return Err(ProbeError::Invalid(format!("Mohammadi estimator: need block size >= 2, got m = {m}")));
        }
        Ok(MohammadiBlocks {
            m,
            block: vec![T::zero(); dim],
            pending_log_norms: Vec::with_capacity(m),
            sum_log_x: 0.0,
            sum_log_y: 0.0,
            blocks: 0,
        })
    }

    /// Adds the next vector; returns its norm.
    pub fn push(&mut self, x: &[T]) -> Result<f64, ProbeError> {
        if x.len() != self.block.len() {
            return Err(ProbeError::Invalid(format!(
                "Mohammadi estimator: vector of length {} among vectors of length {}",
                x.len(),
                self.block.len()
            )));
        }
        let norm = vector_norm(x.iter().copied());
        self.pending_log_norms.push(norm.ln());
        for (y, &v) in self.block.iter_mut().zip(x) {
            *y += v;
        }
        if self.pending_log_norms.len() == self.m {
            for l in self.pending_log_norms.drain(..) {
                self.sum_log_x += l;
            }
            self.sum_log_y += vector_norm(self.block.iter().copied()).ln();
            self.block.iter_mut().for_each(|y| *y = T::zero());
            self.blocks += 1;
        }
        Ok(norm)
    }

    /// `alpha = log m / (mean_j log||Y_j|| - mean_i log||X_i||)` over the complete blocks.
    pub fn alpha(&self) -> Result<f64, ProbeError> {
        if self.blocks == 0 {
            return Err(ProbeError::Invalid(format!(
                "Mohammadi estimator: need at least one block, got m = {}, {} vectors",
                self.m,
                self.pending_log_norms.len()
            )));
        }
        let mean_log_x = self.sum_log_x / (self.blocks * self.m) as f64;
        let mean_log_y = self.sum_log_y / self.blocks as f64;
        Ok((self.m as f64).ln() / (mean_log_y - mean_log_x))
    }
}

/// Mohammadi et al.'s estimator on vectors `X` (rows), grouped in consecutive blocks of `m`.
pub fn mohammadi_estimator<T: Scalar>(x: &Array2<T>, m: usize) -> Result<f64, ProbeError> {
    if m < 2 || x.nrows() / m.max(1) == 0 {
        return Err(ProbeError::Invalid(format!(
            "Mohammadi estimator: need block size >= 2 and at least one block, got m = {m}, {} vectors",
            x.nrows()
        )));
    }
    let mut acc = MohammadiBlocks::new(m, x.ncols())?;
    let mut row = vec![T::zero(); x.ncols()];
    for r in x.rows() {
        row.iter_mut().zip(r.iter()).for_each(|(d, &v)| *d = v);
        acc.push(&row)?;
    }
    acc.alpha()
}

/// Divides every noise vector (row of `x`) element-wise by `denominator` (one positive value
/// per coordinate): `x_ij <- x_ij / d_j`, the noise as a diagonal preconditioner such as Adam's
/// `sqrt(v_hat) + eps` passes it on to the step.
pub fn precondition_rows<T: Scalar>(x: &mut Array2<T>, denominator: &[f64]) -> Result<(), ProbeError> {
    let inv = preconditioner_inverse::<T>(denominator, x.ncols())?;
    for mut row in x.rows_mut() {
        for (v, &s) in row.iter_mut().zip(&inv) {
            *v *= s;
        }
    }
    Ok(())
}

/// `1 / d_j` for a diagonal preconditioner of vectors of length `len`, after checking that it
/// has one positive finite value per coordinate.
fn preconditioner_inverse<T: Scalar>(denominator: &[f64], len: usize) -> Result<Vec<T>, ProbeError> {
    if denominator.len() != len {
        return Err(ProbeError::Invalid(format!(
            "preconditioner has {} values for vectors of length {len}",
            denominator.len()
        )));
    }
    if let Some(j) = denominator.iter().position(|d| !(d.is_finite() && *d > 0.0)) {
        return Err(ProbeError::Invalid(format!(
            "preconditioner value {j} is {}, not a positive number",
            denominator[j]
        )));
    }
    Ok(denominator.iter().map(|d| T::from_f64(1.0 / d)).collect())
}

/// Minibatch gradient noise `g_B - g` for `blocks * block_size` minibatches of `batch_size`
/// examples (drawn without replacement within a batch, from the stream `tail-batches`), and
/// its tail indices. With `precondition` (one positive value `d_j` per parameter), every noise
/// vector is first divided element-wise by it ([`precondition_rows`]); the minibatches drawn are
/// the same with and without it.
pub fn gradient_noise_tail_index<T: Scalar>(
    ctx: &CurvatureContext<'_, T>,
    batch_size: usize,
    blocks: usize,
    block_size: usize,
    hill_fraction: f64,
    precondition: Option<&[f64]>,
    stream: &RngStream,
) -> Result<TailIndexEstimate, ProbeError> {
    ctx.loss.check_per_example("minibatch gradients (random subsets of the examples)")?;
    let n = ctx.len();
    if batch_size == 0 || batch_size > n {
        return Err(ProbeError::Invalid(format!("batch size {batch_size} must be in 1..={n}")));
    }
    let total = blocks * block_size;
    if total < 2 {
        return Err(ProbeError::Invalid("need at least two minibatches".into()));
    }
    let inv = precondition.map(|d| preconditioner_inverse::<T>(d, ctx.dim())).transpose()?;
    let (_, g) = ctx.loss_gradient_at(ctx.params);
    let mut rng = stream.child("tail-batches").rng();
    // The noise vectors are streamed through the estimators one at a time (a matrix of all of
    // them would take blocks * block_size * P numbers: 2 GB in f64 for 2048 vectors of a 117k-
    // parameter MLP); the estimators add in the order a stored matrix would.
    let mut raw = MohammadiBlocks::<T>::new(block_size, ctx.dim())?;
    let mut pre = match &inv {
        Some(_) => Some(MohammadiBlocks::<T>::new(block_size, ctx.dim())?),
        None => None,
    };
    let (mut raw_norms, mut pre_norms) = (Vec::with_capacity(total), Vec::with_capacity(total));
    let mut xt = vec![T::zero(); ctx.dim()];
    let obj = ctx.sum();
    let mut gb = vec![T::zero(); ctx.dim()];
    let c = ctx.loss.scale::<T>(batch_size, ctx.model.out_dim(), sgdlab_nn::Reduction::Mean);
    let mut all: Vec<usize> = (0..n).collect();
    for _ in 0..total {
        for i in 0..batch_size {
            let j = rng.random_range(i..n);
            all.swap(i, j);
        }
        let idx = &all[..batch_size];
        let xb = ctx.set.x.select(ndarray::Axis(0), idx);
        let labels: Option<Vec<u32>> = ctx.set.labels.as_ref().map(|l| idx.iter().map(|&i| l[i]).collect());
        let values = ctx.set.values.as_ref().map(|v| v.select(ndarray::Axis(0), idx));
        let targets = match (&values, &labels) {
            (Some(v), _) => sgdlab_nn::Targets::Values(v.view()),
            (None, Some(l)) => sgdlab_nn::Targets::Classes(l),
            (None, None) => sgdlab_nn::Targets::Classes(&[]),
        };
        ctx.model.gradient_into(ctx.params, &sgdlab_nn::Batch { x: xb.view(), targets }, &obj, &mut gb)?;
        for ((dst, &b), &gk) in xt.iter_mut().zip(&gb).zip(&g) {
            *dst = b * c - gk;
        }
        raw_norms.push(raw.push(&xt)?);
        if let (Some(inv), Some(pre)) = (&inv, pre.as_mut()) {
            for (v, &s) in xt.iter_mut().zip(inv) {
                *v *= s;
            }
            pre_norms.push(pre.push(&xt)?);
        }
    }
    let k = ((hill_fraction * total as f64).round() as usize).clamp(1, total - 1);
    let (raw_mohammadi_alpha, raw_hill_alpha) = (raw.alpha()?, hill_estimator(&raw_norms, k)?);
    let (mohammadi_alpha, hill_alpha) = match &pre {
        Some(pre) => (pre.alpha()?, hill_estimator(&pre_norms, k)?),
        None => (raw_mohammadi_alpha, raw_hill_alpha),
    };
    Ok(TailIndexEstimate {
        mohammadi_alpha,
        hill_alpha,
        raw_mohammadi_alpha,
        raw_hill_alpha,
        hill_k: k,
        block_size,
        blocks,
        batch_size,
        gradient_evaluations: total + 1,
    })
}

/// `n` equally spaced points from `lo` to `hi` inclusive (one point: the midpoint), the grid of
/// landscape slices and interpolations.
pub fn linspace(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if n <= 1 {
        return vec![0.5 * (lo + hi)];
    }
    (0..n).map(|i| lo + (hi - lo) * i as f64 / (n - 1) as f64).collect()
}

/// A Gaussian-smoothed spectral density on a grid.
#[derive(Debug, Clone, Serialize)]
pub struct DensityGrid {
    /// Grid points `t` (eigenvalue units).
    pub lambda: Vec<f64>,
    /// Smoothed density at each grid point (integrates to about 1).
    pub density: Vec<f64>,
    /// Smoothing width sigma (eigenvalue units).
    pub smoothing_sigma: f64,
    /// Smallest and largest quadrature node.
    pub support: [f64; 2],
}

/// The density of `est` on `points` grid points spanning its support widened by 5% on each
/// side, smoothed with a Gaussian of width `relative_width` times the support's width.
pub fn smoothed_density(
    est: &SpectralDensityEstimate,
    points: usize,
    relative_width: f64,
) -> Result<DensityGrid, ProbeError> {
    if points < 2 {
        return Err(ProbeError::Invalid(format!("a density grid needs at least 2 points, got {points}")));
    }
    let (lo, hi) = est.support();
    let width = (hi - lo).max(f64::MIN_POSITIVE);
    let sigma = relative_width * width;
    let lambda = linspace(lo - 0.05 * width, hi + 0.05 * width, points);
    let density = est.density(&lambda, sigma)?;
    Ok(DensityGrid { lambda, density, smoothing_sigma: sigma, support: [lo, hi] })
}
