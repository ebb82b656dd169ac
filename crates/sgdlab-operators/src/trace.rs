//! Stochastic trace estimation: Hutchinson and Hutch++.

use crate::OperatorError;
use crate::operator::{LinearOperator, apply_in_blocks, norm, orthogonalise_against, quadratic_forms_in_blocks};
use crate::probes::{MeanEstimate, ProbeDistribution, ProbeSampler};
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use sgdlab_linalg::{RngStream, Scalar, matmul_into};

/// Knobs of [`hutchinson_trace`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HutchinsonParams {
    /// Number of probes `m` (at least 2, for the standard error). Default 30 (PROTOCOLS 7.1).
    pub probes: usize,
    /// Probe entries (default Rademacher, the minimum-variance iid choice).
    pub distribution: ProbeDistribution,
    /// Probes per `apply_block` call (memory knob only; results do not depend on it).
    pub block_size: usize,
    /// Use the operator's own quadratic forms `z^T A z` when it has them
    /// ([`LinearOperator::quadratic_forms`]; a network's Hessian computes them by forward passes
    /// only, cheaper than a product). Default true; the estimate is the same up to rounding.
    pub quadratic_forms: bool,
}

impl Default for HutchinsonParams {
    fn default() -> Self {
        HutchinsonParams {
            probes: 30,
            distribution: ProbeDistribution::Rademacher,
            block_size: 10,
            quadratic_forms: true,
        }
    }
}

/// Output of [`hutchinson_trace`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceEstimate {
    /// `(1/m) sum_i z_i^T A z_i`.
    pub trace: f64,
    /// Sample standard deviation of the `z_i^T A z_i` over `sqrt(m)`.
    pub standard_error: f64,
    /// The per-probe values `z_i^T A z_i`, in probe order.
    pub samples: Vec<f64>,
    /// Products used (`m`, or 0 when the operator computed the quadratic forms itself).
    pub matvecs: usize,
    /// Quadratic forms the operator computed directly (`m`, or 0 when it has none).
    pub quadratic_forms: usize,
    /// The probe distribution.
    pub distribution: ProbeDistribution,
}

fn check_block(block_size: usize, estimator: &str) -> Result<(), OperatorError> {
    if block_size == 0 {
        return Err(OperatorError::InvalidParams(format!("{estimator}: block_size must be at least 1")));
    }
    Ok(())
}

/// Hutchinson's trace estimator (Hutchinson 1990; Avron & Toledo 2011):
/// `tr(A) ~ (1/m) sum_{i=1}^m z_i^T A z_i` with iid probes `z_i` (`E[z z^T] = I`), unbiased,
/// with standard error `s / sqrt(m)` (`s` the sample standard deviation of the `z_i^T A z_i`).
///
/// Probes are the rows of `params.distribution.sample(m, n, &mut rng.child("probes").rng())`,
/// applied `block_size` at a time. The operator need not be symmetric (`z^T A z` only sees the
/// symmetric part, whose trace is the same).
pub fn hutchinson_trace<T: Scalar>(
    op: &dyn LinearOperator<T>,
    params: &HutchinsonParams,
    rng: &RngStream,
) -> Result<TraceEstimate, OperatorError> {
    if params.probes < 2 {
        return Err(OperatorError::InvalidParams(format!(
            "hutchinson_trace: probes = {} must be at least 2 (the standard error needs two samples)",
            params.probes
        )));
    }
    check_block(params.block_size, "hutchinson_trace")?;
    let n = op.dim();
    // Probes are drawn a block at a time (memory O(block_size * n)), the same values as one big
    // sample.
    let mut probe_rng = rng.child("probes").rng();
    let mut sampler = ProbeSampler::new(params.distribution, &mut probe_rng);
    let (mut matvecs, mut forms) = (0, 0);
    let mut samples = Vec::with_capacity(params.probes);
    while samples.len() < params.probes {
        let c = params.block_size.min(params.probes - samples.len());
        let z = sampler.next_block::<T>(c, n);
        samples.extend(quadratic_forms_in_blocks(
            op,
            z.view(),
            c,
            params.quadratic_forms,
            "hutchinson_trace",
            &mut matvecs,
            &mut forms,
        )?);
    }
    let m = MeanEstimate::from_samples(&samples);
    Ok(TraceEstimate {
        trace: m.value,
        standard_error: m.standard_error,
        samples,
        matvecs,
        quadratic_forms: forms,
        distribution: params.distribution,
    })
}

/// Knobs of [`hutch_plus_plus_trace`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HutchPlusPlusParams {
    /// Total products `m` (at least 4): a sketch of `s = floor(m / 3)` products, at most `s` to
    /// project on its range, and the remaining `m - 2 s` (at least 2) as Hutchinson probes.
    pub matvecs: usize,
    /// Entries of the sketch and probe vectors.
    pub distribution: ProbeDistribution,
    /// Vectors per `apply_block` call (memory knob only).
    pub block_size: usize,
    /// Use the operator's own quadratic forms for `tr(Q^T A Q)` and the residual probes when it
    /// has them (only the sketch `A S` then needs products). Default true.
    pub quadratic_forms: bool,
}

impl Default for HutchPlusPlusParams {
    fn default() -> Self {
        HutchPlusPlusParams {
            matvecs: 30,
            distribution: ProbeDistribution::Rademacher,
            block_size: 10,
            quadratic_forms: true,
        }
    }
}

/// Output of [`hutch_plus_plus_trace`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HutchPlusPlusEstimate {
    /// `tr(Q^T A Q) + (1/g) sum_i g_i^T (I - Q Q^T) A (I - Q Q^T) g_i`.
    pub trace: f64,
    /// Standard error: sample standard deviation of the residual-probe values over `sqrt(g)`.
    /// Unbiased for the estimator's variance (see [`hutch_plus_plus_trace`]).
    pub standard_error: f64,
    /// `tr(Q^T A Q)`, the part captured exactly by the sketch.
    pub low_rank_trace: f64,
    /// The Hutchinson estimate of `tr((I - P) A (I - P))`, `P = Q Q^T`.
    pub residual_trace: f64,
    /// Rank of the sketch `Q` (at most `s`; less when `A S` is rank deficient).
    pub sketch_rank: usize,
    /// The per-probe values `g_i^T (I - P) A (I - P) g_i`.
    pub samples: Vec<f64>,
    /// Products used (`s + sketch_rank + g <= m`; only `s` when the operator computed the
    /// quadratic forms itself).
    pub matvecs: usize,
    /// Quadratic forms the operator computed directly (`sketch_rank + g`, or 0).
    pub quadratic_forms: usize,
}

/// Hutch++ (Meyer, Musco, Musco & Woodruff 2021, Algorithm 1): with `S` an `n x s` random sketch
/// (`rng.child("sketch")`) and `Q` an orthonormal basis of the range of `A S`,
/// `tr(A) ~ tr(Q^T A Q) + (1/g) sum_i g_i^T (I - Q Q^T) A (I - Q Q^T) g_i`
/// with `g` fresh probes (`rng.child("probes")`). It needs `O(1/eps)` products for relative error
/// `eps` on positive semi-definite `A`, against Hutchinson's `O(1/eps^2)`; it wins most when the
/// spectrum has a few large eigenvalues (low rank plus small).
///
/// Standard error (derived here, not in the paper): for every `Q`,
/// `tr(Q^T A Q) + tr((I - P) A (I - P)) = tr(A)` (the cross terms vanish by cyclicity), so the
/// estimate is unbiased conditionally on the sketch and its variance is `E[Var(est | S)]`. Given
/// `S`, the `g` probe values are iid, and their sample variance over `g` is unbiased for
/// `Var(est | S)`, hence for the unconditional variance. The reported standard error is its
/// square root (as for Hutchinson, a normal approximation is needed to turn it into an interval).
pub fn hutch_plus_plus_trace<T: Scalar>(
    op: &dyn LinearOperator<T>,
    params: &HutchPlusPlusParams,
    rng: &RngStream,
) -> Result<HutchPlusPlusEstimate, OperatorError> {
    const NAME: &str = "hutch_plus_plus_trace";
    if params.matvecs < 4 {
        return Err(OperatorError::InvalidParams(format!(
            "{NAME}: matvecs = {} must be at least 4 (sketch, projection, and two probes for the standard error)",
            params.matvecs
        )));
    }
    check_block(params.block_size, NAME)?;
    let n = op.dim();
    let s = params.matvecs / 3;
    let g = params.matvecs - 2 * s;
    let mut matvecs = 0;
    // Sketch: Y = A S, Q = orthonormal rows spanning Y's rows.
    let sk = params.distribution.sample::<T, _>(s, n, &mut rng.child("sketch").rng());
    let y = apply_in_blocks(op, sk.view(), params.block_size, NAME, &mut matvecs)?;
    let ymax = y.rows().into_iter().map(norm).fold(0.0f64, f64::max);
    let mut q = Array2::<T>::zeros((0, n));
    for row in y.rows() {
        let mut x = row.to_owned();
        let mut coef = vec![0.0; q.nrows()];
        let after = orthogonalise_against(q.view(), &mut x, &mut coef);
        if after > 1e3 * T::EPS.to_f64() * ymax && q.nrows() < n {
            x *= T::from_f64(1.0 / after);
            q.push_row(x.view()).expect("row length equals the operator dimension");
        }
    }
    let r = q.nrows();
    let mut forms = 0;
    let (bs, use_forms) = (params.block_size, params.quadratic_forms);
    let low_rank_trace = if r > 0 {
        quadratic_forms_in_blocks(op, q.view(), bs, use_forms, NAME, &mut matvecs, &mut forms)?.iter().sum()
    } else {
        0.0
    };
    // Residual probes: G' = G (I - Q^T Q) in row form.
    let mut gm = params.distribution.sample::<T, _>(g, n, &mut rng.child("probes").rng());
    if r > 0 {
        for _ in 0..2 {
            let mut h = Array2::<T>::zeros((g, r));
            matmul_into(h.view_mut(), false, gm.view(), q.t(), T::one());
            matmul_into(gm.view_mut(), true, h.view(), q.view(), -T::one());
        }
    }
    // (I - P) A g' has the same inner product with g' as A g' (g' is already orthogonal to Q).
    let samples = quadratic_forms_in_blocks(op, gm.view(), bs, use_forms, NAME, &mut matvecs, &mut forms)?;
    let m = MeanEstimate::from_samples(&samples);
    Ok(HutchPlusPlusEstimate {
        trace: low_rank_trace + m.value,
        standard_error: m.standard_error,
        low_rank_trace,
        residual_trace: m.value,
        sketch_rank: r,
        samples,
        matvecs,
        quadratic_forms: forms,
    })
}
