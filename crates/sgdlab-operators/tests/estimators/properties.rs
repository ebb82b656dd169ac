//! Property tests (proptest, small shapes, modest case counts).

use crate::common::Known;
use ndarray::Array2;
use proptest::prelude::*;
use sgdlab_linalg::{RngStream, standard_normal, symmetric_eigen};
use sgdlab_operators::{EigenTarget, LanczosParams, lanczos_decomposition, lanczos_eigenpairs};

/// Interlacing and range checks allow this much (relative to ||A||) for rounding.
const INTERLACE_RTOL: f64 = 1e-10;

fn spectrum_and_seed() -> impl Strategy<Value = (Vec<f64>, u64)> {
    (prop::collection::vec(-10.0f64..10.0, 3..24), any::<u64>())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Cauchy interlacing for the Rayleigh-Ritz compression T = V A V^T: the j-th largest Ritz
    /// value is at most the j-th largest eigenvalue and the j-th smallest at least the j-th
    /// smallest; all Ritz values lie in [lambda_min, lambda_max].
    #[test]
    fn ritz_values_interlace_the_spectrum((lambdas, seed) in spectrum_and_seed(), frac in 0.1f64..1.0) {
        let n = lambdas.len();
        let k = Known::new(lambdas, &RngStream::new(seed).child("matrix"));
        let steps = ((n as f64 * frac).ceil() as usize).clamp(1, n);
        let mut rng = RngStream::new(seed).child("start").rng();
        let start = Array2::from_shape_simple_fn((1, n), || standard_normal::<f64, _>(&mut rng));
        let dec = lanczos_decomposition(&k.op(), start.view(), steps).unwrap();
        let m = dec.basis.nrows();
        prop_assert!(m >= 1 && m <= steps);
        let theta = symmetric_eigen(dec.projected.view()).unwrap().values.to_vec();
        let (asc, desc) = (k.sorted_asc(), k.sorted_desc());
        let tol = INTERLACE_RTOL * k.norm2().max(1.0);
        for j in 0..m {
            prop_assert!(theta[m - 1 - j] <= desc[j] + tol, "top {}: {} > {}", j, theta[m - 1 - j], desc[j]);
            prop_assert!(theta[j] >= asc[j] - tol, "bottom {}: {} < {}", j, theta[j], asc[j]);
        }
    }

    /// Every returned Ritz value is within its residual of the spectrum (a rigorous bound for
    /// symmetric A), whatever the target and however few iterations.
    #[test]
    fn residuals_bound_the_distance_to_the_spectrum(
        (lambdas, seed) in spectrum_and_seed(),
        iters in 1usize..12,
        target in prop_oneof![Just(EigenTarget::LargestAlgebraic), Just(EigenTarget::SmallestAlgebraic), Just(EigenTarget::LargestMagnitude)],
    ) {
        let n = lambdas.len();
        let k = Known::new(lambdas, &RngStream::new(seed).child("matrix"));
        let params = LanczosParams { k: 2.min(n).min(iters), target, max_iters: iters, tol: 1e-12, ..Default::default() };
        let est = lanczos_eigenpairs(&k.op(), &params, &RngStream::new(seed).child("l")).unwrap();
        let tol = INTERLACE_RTOL * k.norm2().max(1.0);
        for (i, &t) in est.eigenvalues.iter().enumerate() {
            prop_assert!(k.distance_to_spectrum(t) <= est.residuals[i] + tol, "pair {}: theta {} residual {}", i, t, est.residuals[i]);
        }
    }
}
