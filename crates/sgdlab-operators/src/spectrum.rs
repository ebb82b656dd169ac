//! Pure functions of an eigenvalue list (PROTOCOLS 10.2).

use crate::OperatorError;
use serde::Serialize;

/// Output of [`effective_dimensionality`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EffectiveDimensionalityEstimate {
    /// `N_eff(z) = sum_i max(lambda_i, 0) / (max(lambda_i, 0) + z)`.
    pub value: f64,
    /// The regularisation constant `z`.
    pub z: f64,
    /// How many eigenvalues were given.
    pub count: usize,
    /// How many were negative (and counted as 0).
    pub negative: usize,
    /// `lambda_min / (lambda_min + z)` for the smallest non-negative eigenvalue given: when the
    /// list is a top-`k` from Lanczos, each omitted eigenvalue contributes at most this much, so
    /// `N_eff` is underestimated by at most `(P - k)` times it (PROTOCOLS 10.2 asks for
    /// `lambda_k < z`, i.e. a tail term below 1/2). `0` when no eigenvalue is non-negative.
    pub tail_term: f64,
}

/// Effective dimensionality (MacKay 1992; Maddox, Benton & Wilson 2020, "Rethinking parameter
/// counting"): `N_eff(H, z) = sum_i lambda_i / (lambda_i + z)` for `z > 0`, the number of
/// directions whose curvature dominates `z` (each term is in `[0, 1)`).
///
/// The formula is meant for positive semi-definite `H`; negative eigenvalues (away from a
/// minimum) are clamped to 0 (they contribute nothing) and counted in `negative`, so that a
/// `lambda` near `-z` cannot blow the sum up. The normalisation of `H` (mean or sum over the
/// data) changes `N_eff` for a fixed `z`: state it with the result.
pub fn effective_dimensionality(eigenvalues: &[f64], z: f64) -> Result<EffectiveDimensionalityEstimate, OperatorError> {
    if !(z > 0.0 && z.is_finite()) {
        return Err(OperatorError::InvalidParams(format!(
            "effective_dimensionality: z = {z} must be positive and finite"
        )));
    }
    if let Some(x) = eigenvalues.iter().find(|x| !x.is_finite()) {
        return Err(OperatorError::InvalidParams(format!("effective_dimensionality: non-finite eigenvalue {x}")));
    }
    let term = |l: f64| {
        let l = l.max(0.0);
        l / (l + z)
    };
    let value = eigenvalues.iter().map(|&l| term(l)).sum();
    let negative = eigenvalues.iter().filter(|&&l| l < 0.0).count();
    let tail_term = eigenvalues
        .iter()
        .copied()
        .filter(|&l| l >= 0.0)
        .fold(None, |m: Option<f64>, l| Some(m.map_or(l, |m| m.min(l))))
        .map_or(0.0, term);
    Ok(EffectiveDimensionalityEstimate { value, z, count: eigenvalues.len(), negative, tail_term })
}

/// The fraction of near-zero eigenvalues (PROTOCOLS 10.2, after Sagun et al. 2017 and Maddox,
/// Benton & Wilson 2020): `#{i : |lambda_i| < tau * lambda_max} / P`, with `lambda_max` the
/// largest eigenvalue of the list and `P` its length. The list must be the *whole* spectrum
/// (e.g. from `materialize` and a dense eigensolver); for large operators estimate it with
/// [`crate::SpectralDensityEstimate::fraction_in`] instead. PROTOCOLS uses `tau = 1e-3`.
pub fn near_zero_fraction(eigenvalues: &[f64], tau: f64) -> Result<f64, OperatorError> {
    if eigenvalues.is_empty() {
        return Err(OperatorError::InvalidParams("near_zero_fraction: empty eigenvalue list".into()));
    }
    if !(tau >= 0.0 && tau.is_finite()) {
        return Err(OperatorError::InvalidParams(format!(
            "near_zero_fraction: tau = {tau} must be finite and non-negative"
        )));
    }
    if let Some(x) = eigenvalues.iter().find(|x| !x.is_finite()) {
        return Err(OperatorError::InvalidParams(format!("near_zero_fraction: non-finite eigenvalue {x}")));
    }
    let lmax = eigenvalues.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if lmax <= 0.0 {
        return Err(OperatorError::InvalidParams(format!(
            "near_zero_fraction: the largest eigenvalue {lmax} is not positive, so tau * lambda_max is no scale"
        )));
    }
    let thr = tau * lmax;
    Ok(eigenvalues.iter().filter(|&&l| l.abs() < thr).count() as f64 / eigenvalues.len() as f64)
}
