//! Stochastic Lanczos quadrature: spectral density, spectral moments and `tr f(A)`.

use crate::OperatorError;
use crate::krylov::lanczos_decomposition;
use crate::operator::{LinearOperator, norm};
use crate::probes::{MeanEstimate, ProbeDistribution};
use ndarray::{ArrayView1, Axis};
use serde::{Deserialize, Serialize};
use sgdlab_linalg::{RngStream, Scalar, symmetric_eigen};

/// The Gauss quadrature rule that `m` Lanczos steps from one probe `z` define for the spectral
/// measure `mu_z = sum_i (q_i^T z)^2 / ||z||^2 delta_{lambda_i}` of `A = sum_i lambda_i q_i q_i^T`
/// (Golub & Meurant 2010, ch. 6): nodes `theta_j` (eigenvalues of the Lanczos matrix `T_m`) and
/// weights `w_j = (e_1^T s_j)^2` (squared first components of its unit eigenvectors), so that
///
/// `z^T f(A) z / ||z||^2 ~ sum_j w_j f(theta_j)`,
///
/// exactly for every polynomial `f` of degree `<= 2m - 1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuadratureRule {
    /// `theta_j`, ascending (at most `steps` of them; fewer after a breakdown).
    pub nodes: Vec<f64>,
    /// `w_j >= 0`, summing to 1.
    pub weights: Vec<f64>,
    /// `||z||^2` of the probe (exactly `n` for Rademacher probes).
    pub probe_norm_sq: f64,
    /// Products used (the number of Lanczos steps taken).
    pub matvecs: usize,
    /// The Krylov space became invariant before `steps` steps: the rule is then exact for every
    /// function (its nodes are eigenvalues of `A`).
    pub breakdown: bool,
}

impl QuadratureRule {
    /// `sum_j w_j f(theta_j)`, the quadrature estimate of `z^T f(A) z / ||z||^2`.
    pub fn integrate(&self, f: impl Fn(f64) -> f64) -> f64 {
        self.nodes.iter().zip(&self.weights).map(|(&t, &w)| w * f(t)).sum()
    }
}

/// The Gauss quadrature rule of `steps` Lanczos steps (full re-orthogonalisation) started from
/// `probe` (Golub & Welsch 1969; Golub & Meurant 2010). Uses `steps` products, fewer on breakdown.
pub fn lanczos_quadrature<T: Scalar>(
    op: &dyn LinearOperator<T>,
    probe: ArrayView1<'_, T>,
    steps: usize,
) -> Result<QuadratureRule, OperatorError> {
    if steps == 0 {
        return Err(OperatorError::InvalidParams("lanczos_quadrature: steps must be at least 1".into()));
    }
    let probe_norm = norm(probe);
    let dec = lanczos_decomposition(op, probe.insert_axis(Axis(0)), steps)?;
    let e = symmetric_eigen(dec.projected.view())?;
    let weights = e.vectors.row(0).iter().map(|s| s * s).collect();
    Ok(QuadratureRule {
        nodes: e.values.to_vec(),
        weights,
        probe_norm_sq: probe_norm * probe_norm,
        matvecs: dec.matvecs,
        breakdown: dec.breakdown,
    })
}

/// Knobs of [`spectral_density`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpectralDensityParams {
    /// Number of probes `n_v` (at least 1; at least 2 for standard errors). Default 10.
    pub probes: usize,
    /// Lanczos steps per probe `m` (quadrature exact to degree `2m - 1`). Default 30.
    pub steps: usize,
    /// Probe entries (default Rademacher: `||z||^2 = n` exactly).
    pub distribution: ProbeDistribution,
}

impl Default for SpectralDensityParams {
    fn default() -> Self {
        SpectralDensityParams { probes: 10, steps: 30, distribution: ProbeDistribution::Rademacher }
    }
}

/// Output of [`spectral_density`]: one quadrature rule per probe, from which the smoothed
/// density, moments and `tr f(A)` are evaluated.
///
/// All quantities use the unbiased weighting `c_l = ||z_l||^2 / n` per probe (`c_l = 1` for
/// Rademacher probes): probe `l` contributes `c_l sum_j w_lj f(theta_lj)`, whose expectation is
/// `(1/n) tr f(A)` for polynomials of degree `<= 2m - 1` (and approximately otherwise).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpectralDensityEstimate {
    /// The operator's dimension `n`.
    pub dim: usize,
    /// One rule per probe, in probe order.
    pub rules: Vec<QuadratureRule>,
    /// Products used in all (`probes * steps` without breakdowns).
    pub matvecs: usize,
    /// The probe distribution.
    pub distribution: ProbeDistribution,
}

impl SpectralDensityEstimate {
    fn per_probe(&self, f: impl Fn(f64) -> f64) -> Vec<f64> {
        self.rules.iter().map(|r| r.probe_norm_sq / self.dim as f64 * r.integrate(&f)).collect()
    }

    /// `(1/n) tr f(A)`, the mean of `f` under the spectral density, with its standard error
    /// across probes.
    pub fn mean_of(&self, f: impl Fn(f64) -> f64) -> MeanEstimate {
        MeanEstimate::from_samples(&self.per_probe(f))
    }

    /// `tr f(A) = n * mean_of(f)` (Ubaru, Chen & Saad 2017), with standard error.
    pub fn trace_of(&self, f: impl Fn(f64) -> f64) -> MeanEstimate {
        self.mean_of(f).scaled(self.dim as f64)
    }

    /// The normalised moment `(1/n) tr(A^p) = (1/n) sum_i lambda_i^p`; exact in expectation for
    /// `p <= 2 steps - 1`.
    pub fn moment(&self, p: u32) -> MeanEstimate {
        self.mean_of(|t| t.powi(p as i32))
    }

    /// The fraction of eigenvalues in `[lo, hi]`, `(1/n) #{i : lo <= lambda_i <= hi}`, estimated
    /// by the quadrature weights of the nodes in the interval. Crude (a step function is far
    /// from a low-degree polynomial): use it for orders of magnitude, such as the fraction of
    /// near-zero eigenvalues of PROTOCOLS 10.2 when the exact spectrum is out of reach.
    pub fn fraction_in(&self, lo: f64, hi: f64) -> MeanEstimate {
        self.mean_of(|t| if (lo..=hi).contains(&t) { 1.0 } else { 0.0 })
    }

    /// The Gaussian-smoothed spectral density on `grid` (Ghorbani, Krishnan & Xiao 2019):
    ///
    /// `phi_sigma(t) = (1/n_v) sum_l c_l sum_j w_lj g_sigma(t - theta_lj)`,
    /// `g_sigma(x) = exp(-x^2 / (2 sigma^2)) / (sigma sqrt(2 pi))`,
    ///
    /// an estimate of `(1/n) sum_i g_sigma(t - lambda_i)`, which integrates to 1. `sigma` is the
    /// smoothing width (standard deviation of the kernel) in eigenvalue units; it must be
    /// positive. Choose it above the spacing of the nodes, or the density shows one spike per node.
    pub fn density(&self, grid: &[f64], sigma: f64) -> Result<Vec<f64>, OperatorError> {
        if !(sigma > 0.0 && sigma.is_finite()) {
            return Err(OperatorError::InvalidParams(format!(
                "spectral density: sigma = {sigma} must be positive and finite"
            )));
        }
        if self.rules.is_empty() {
            return Err(OperatorError::InvalidParams("spectral density: the estimate has no probes".into()));
        }
        let norm = 1.0 / (sigma * (2.0 * std::f64::consts::PI).sqrt());
        let nv = self.rules.len() as f64;
        Ok(grid
            .iter()
            .map(|&t| {
                self.rules
                    .iter()
                    .map(|r| {
                        let c = r.probe_norm_sq / self.dim as f64;
                        c * r
                            .nodes
                            .iter()
                            .zip(&r.weights)
                            .map(|(&th, &w)| {
                                let x = (t - th) / sigma;
                                w * (-0.5 * x * x).exp()
                            })
                            .sum::<f64>()
                    })
                    .sum::<f64>()
                    * norm
                    / nv
            })
            .collect())
    }

    /// The smallest and largest node over all probes (inside `[lambda_min, lambda_max]`; the
    /// extreme nodes converge to the extreme eigenvalues first).
    pub fn support(&self) -> (f64, f64) {
        self.rules
            .iter()
            .flat_map(|r| r.nodes.iter().copied())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), t| (lo.min(t), hi.max(t)))
    }
}

/// Stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017; Lin, Saad & Yang 2016, the spectral
/// density view; Ghorbani, Krishnan & Xiao 2019 and PyHessian for neural-network Hessians):
/// for each of `probes` probes `z_l`, `steps` Lanczos steps with full re-orthogonalisation give a
/// Gauss quadrature rule for the spectral measure seen from `z_l`; averaged over probes, these
/// rules estimate the spectral density `(1/n) sum_i delta(t - lambda_i)` (see
/// [`SpectralDensityEstimate`] for what can be read from it).
///
/// Probes are the rows of `params.distribution.sample(probes, n, &mut rng.child("probes").rng())`.
pub fn spectral_density<T: Scalar>(
    op: &dyn LinearOperator<T>,
    params: &SpectralDensityParams,
    rng: &RngStream,
) -> Result<SpectralDensityEstimate, OperatorError> {
    if params.probes == 0 || params.steps == 0 {
        return Err(OperatorError::InvalidParams(format!(
            "spectral_density: probes = {} and steps = {} must both be at least 1",
            params.probes, params.steps
        )));
    }
    if !op.is_symmetric() {
        return Err(OperatorError::NotSymmetric { estimator: "spectral_density" });
    }
    let n = op.dim();
    let z = params.distribution.sample::<T, _>(params.probes, n, &mut rng.child("probes").rng());
    let mut rules = Vec::with_capacity(params.probes);
    let mut matvecs = 0;
    for row in z.rows() {
        let rule = lanczos_quadrature(op, row, params.steps)?;
        matvecs += rule.matvecs;
        rules.push(rule);
    }
    Ok(SpectralDensityEstimate { dim: n, rules, matvecs, distribution: params.distribution })
}
