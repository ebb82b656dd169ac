//! Power iteration, as PyHessian computes the top Hessian eigenvalue (kept for comparison).

use crate::OperatorError;
use crate::operator::{LinearOperator, checked_apply, norm};
use crate::probes::ProbeDistribution;
use ndarray::{Array1, Axis};
use serde::{Deserialize, Serialize};
use sgdlab_linalg::{RngStream, Scalar};

/// When [`power_iteration`] stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerStop {
    /// PyHessian's rule (Yao et al. 2020, `hessian.eigenvalues`): stop when
    /// `|theta_j - theta_{j-1}| / (|theta_{j-1}| + 1e-6) < tol`. Cheap but not a bound: a slowly
    /// converging iteration can change little per step while still far from `lambda_1`.
    /// (On the stopping step PyHessian returns `theta_{j-1}`; we return `theta_j`, the better of
    /// the two, with the same number of products.)
    #[default]
    RelativeChange,
    /// Stop when `||A v - theta v|| <= tol * |theta|` (a bound on the distance from `theta` to
    /// the spectrum, as in [`crate::LanczosParams::tol`]).
    Residual,
}

/// Knobs of [`power_iteration`]; the defaults are PyHessian's (`maxIter = 100`, `tol = 1e-3`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PowerIterationParams {
    /// At most this many products.
    pub max_iters: usize,
    /// Tolerance of the stopping rule.
    pub tol: f64,
    /// Which stopping rule.
    pub stop: PowerStop,
}

impl Default for PowerIterationParams {
    fn default() -> Self {
        PowerIterationParams { max_iters: 100, tol: 1e-3, stop: PowerStop::RelativeChange }
    }
}

/// Output of [`power_iteration`].
#[derive(Debug, Clone, Serialize)]
pub struct PowerIterationEstimate<T: Scalar> {
    /// The last Rayleigh quotient `theta = v^T A v` (unit `v`).
    pub eigenvalue: f64,
    /// The unit vector `v` that `eigenvalue` and `residual` belong to.
    #[serde(skip)]
    pub eigenvector: Array1<T>,
    /// `||A v - theta v||` (no extra product: `A v` is the iteration's own product).
    pub residual: f64,
    /// The last relative change `|theta_j - theta_{j-1}| / (|theta_{j-1}| + 1e-6)` (infinite
    /// after one step).
    pub relative_change: f64,
    /// The stopping rule was met before `max_iters`.
    pub converged: bool,
    /// Products used (one per iteration).
    pub matvecs: usize,
    /// The Rayleigh quotient after each product.
    pub history: Vec<f64>,
}

/// The dominant eigenpair (largest `|lambda|`) by power iteration (von Mises 1929), as in
/// PyHessian (Yao et al. 2020): `v_0` Gaussian from `rng.child("start")`, normalised; each step
/// computes `w = A v_j`, `theta_j = v_j^T w`, then `v_{j+1} = w / ||w||`.
///
/// The eigenvalue error falls like `(lambda_2 / lambda_1)^(2j)`; prefer
/// [`crate::lanczos_eigenpairs`], which needs far fewer products for the same accuracy.
pub fn power_iteration<T: Scalar>(
    op: &dyn LinearOperator<T>,
    params: &PowerIterationParams,
    rng: &RngStream,
) -> Result<PowerIterationEstimate<T>, OperatorError> {
    let n = op.dim();
    if params.max_iters == 0 {
        return Err(OperatorError::InvalidParams("power_iteration: max_iters must be at least 1".into()));
    }
    if !(params.tol >= 0.0 && params.tol.is_finite()) {
        return Err(OperatorError::InvalidParams(format!(
            "power_iteration: tol = {} must be finite and non-negative",
            params.tol
        )));
    }
    if n == 0 {
        return Err(OperatorError::InvalidParams("power_iteration: the operator has dimension 0".into()));
    }
    let mut v =
        ProbeDistribution::Gaussian.sample::<T, _>(1, n, &mut rng.child("start").rng()).index_axis_move(Axis(0), 0);
    let nv = norm(v.view());
    v *= T::from_f64(1.0 / nv);
    let mut history = Vec::new();
    let mut matvecs = 0;
    let mut prev: Option<f64> = None;
    let mut relative_change = f64::INFINITY;
    let mut residual = f64::NAN;
    let mut converged = false;
    let mut theta = f64::NAN;
    for it in 0..params.max_iters {
        let w =
            checked_apply(op, v.view().insert_axis(Axis(0)), "power_iteration", matvecs)?.index_axis_move(Axis(0), 0);
        matvecs += 1;
        theta = v.iter().zip(w.iter()).map(|(&a, &b)| a.to_f64() * b.to_f64()).sum();
        residual = v
            .iter()
            .zip(w.iter())
            .map(|(&a, &b)| {
                let d = b.to_f64() - theta * a.to_f64();
                d * d
            })
            .sum::<f64>()
            .sqrt();
        history.push(theta);
        if let Some(p) = prev {
            relative_change = (theta - p).abs() / (p.abs() + 1e-6);
        }
        converged = match params.stop {
            PowerStop::RelativeChange => relative_change < params.tol,
            PowerStop::Residual => residual <= params.tol * theta.abs(),
        };
        let nw = norm(w.view());
        if converged || nw == 0.0 {
            // nw == 0: A v = 0 exactly, v is an eigenvector (eigenvalue 0, residual 0).
            converged = converged || residual == 0.0;
            break;
        }
        if it + 1 == params.max_iters {
            break; // keep the v that theta and the residual belong to
        }
        prev = Some(theta);
        v = w;
        v *= T::from_f64(1.0 / nw);
    }
    Ok(PowerIterationEstimate {
        eigenvalue: theta,
        eigenvector: v,
        residual,
        relative_change,
        converged,
        matvecs,
        history,
    })
}
