//! Helpers shared by the derivative tests of this crate (conformance suite, Sobolev loss).
#![allow(dead_code)]

use sgdlab_linalg::{StreamRng, standard_normal};

pub fn randv(rng: &mut StreamRng, n: usize) -> Vec<f64> {
    (0..n).map(|_| standard_normal::<f64, _>(rng)).collect()
}

/// Asserts |a - e| <= tol * max(1, |e|_inf) element-wise (scale-relative), printing the worst.
pub fn assert_close(what: &str, actual: &[f64], expected: &[f64], tol: f64) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    let scale = expected.iter().fold(1.0f64, |m, x| m.max(x.abs()));
    let mut worst = (0.0f64, 0usize);
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        let err = (a - e).abs() / scale;
        // NaN errors win, so a NaN is reported rather than hidden.
        if err.is_nan() || err > worst.0 {
            worst = (err, i);
        }
    }
    let i = worst.1;
    assert!(
        !worst.0.is_nan() && worst.0 <= tol,
        "{what}: worst error {:.3e} (tolerance {tol:.1e}, scale {scale:.3e}) at index {i}: expected {}, got {}",
        worst.0,
        expected.get(i).copied().unwrap_or(f64::NAN),
        actual.get(i).copied().unwrap_or(f64::NAN)
    );
}

pub fn axpy(a: &[f64], t: f64, b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x + t * y).collect()
}

pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
