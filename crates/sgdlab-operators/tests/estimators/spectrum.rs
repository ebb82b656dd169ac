//! Effective dimensionality and the near-zero fraction (PROTOCOLS 10.2).

use sgdlab_operators::{effective_dimensionality, near_zero_fraction};

#[test]
fn effective_dimensionality_closed_forms() {
    // lambda = z gives 1/2 per eigenvalue; 0 gives 0; 3z gives 3/4.
    let e = effective_dimensionality(&[2.0, 2.0, 0.0, 6.0], 2.0).unwrap();
    assert!((e.value - (0.5 + 0.5 + 0.0 + 0.75)).abs() < 1e-15);
    assert_eq!((e.count, e.negative), (4, 0));
    assert_eq!(e.tail_term, 0.0);
    // Negative eigenvalues count as 0 and are reported; -z would otherwise divide by zero.
    let e = effective_dimensionality(&[-1.0, 3.0, 1.0], 1.0).unwrap();
    assert!((e.value - 1.25).abs() < 1e-15 && e.negative == 1 && (e.tail_term - 0.5).abs() < 1e-15);
    // Decreasing in z, bounded by the count.
    let l: Vec<f64> = (1..=50).map(|i| 1.0 / i as f64).collect();
    let vals: Vec<f64> =
        [1e-3, 1e-2, 0.1, 1.0, 10.0].iter().map(|&z| effective_dimensionality(&l, z).unwrap().value).collect();
    assert!(vals.windows(2).all(|w| w[0] > w[1]) && vals[0] < 50.0);
    assert!(effective_dimensionality(&l, 0.0).is_err() && effective_dimensionality(&[f64::NAN], 1.0).is_err());
}

#[test]
fn near_zero_fraction_counts_relative_to_lambda_max() {
    // lambda_max = 10, tau = 1e-3: threshold 0.01 (strict), |negative| values count too.
    let l = [10.0, 1.0, 0.005, -0.005, 0.01, 0.0, -3.0, 1e-9];
    let f = near_zero_fraction(&l, 1e-3).unwrap();
    assert!((f - 4.0 / 8.0).abs() < 1e-15, "{f}");
    assert!(near_zero_fraction(&[], 1e-3).is_err() && near_zero_fraction(&[-1.0, -2.0], 1e-3).is_err());
}
