//! Kernel spectra on the boolean cube (PROTOCOLS 2.2) and the random-network function sampler.
//!
//! Reference values come from two places:
//! * the numbers recorded in PROTOCOLS 2.2 [computed], checked to the precision they are
//!   written with (half a unit of their last digit);
//! * an independent pure-Python implementation (no numpy) of the same recursion and Krawtchouk
//!   sum, run once with Python 3 floats and printed with 6 significant digits; it is reproduced
//!   here so that the values can be regenerated without this crate:
//!
//! ```python
//! import math
//! def relu_E(q11, q22, s):
//!     c = max(-1, min(1, s / math.sqrt(q11 * q22))); t = math.acos(c)
//!     return (math.sqrt(q11 * q22) / (2 * math.pi) * (math.sin(t) + (math.pi - t) * math.cos(t)),
//!             (math.pi - t) / (2 * math.pi))
//! def erf_E(q11, q22, s):
//!     return ((2 / math.pi) * math.asin(2 * s / math.sqrt((1 + 2 * q11) * (1 + 2 * q22))),
//!             (4 / math.pi) / math.sqrt((1 + 2 * q11) * (1 + 2 * q22) - 4 * s * s))
//! def kernel(c, act, sw, sb, L, ntk=False):
//!     S = sw * c + sb; Q = sw + sb; T = S
//!     E = relu_E if act == 'relu' else erf_E
//!     for l in range(L):
//!         e, ed = E(Q, Q, S); eq, _ = E(Q, Q, Q)
//!         Sn = sw * e + sb; T = Sn + sw * ed * T; S, Q = Sn, sw * eq + sb
//!     return T if ntk else S
//! def spectrum(d, act, sw, sb, L, ntk=False):
//!     phi = [kernel((d - 2 * j) / d, act, sw, sb, L, ntk) for j in range(d + 1)]
//!     mus = [sum(phi[j] * sum((-1) ** a * math.comb(k, a) * math.comb(d - k, j - a)
//!                             for a in range(k + 1) if 0 <= j - a <= d - k)
//!                for j in range(d + 1)) / 2 ** d for k in range(d + 1)]
//!     s = sum(math.comb(d, k) * mus[k] for k in range(d + 1))
//!     return [m / s for m in mus]
//! print(['%.6g' % m for m in spectrum(7, 'relu', 2, 1, 2)])   # etc., one line per case below
//! ```

use ndarray::Array2;
use sgdlab_data::BooleanCubeSpec;
use sgdlab_linalg::{RngStream, symmetric_eigen};
use sgdlab_nn::Model;
use sgdlab_probes::simplicity::{
    FunctionCondition, FunctionSamplerParams, KernelActivation, KernelKind, KernelSpec, PriorSpec,
    boolean_cube_spectrum, krawtchouk, sample_prior_functions,
};

/// Relative agreement with the 6-significant-digit Python values (half a unit of the sixth
/// digit is at most 5e-6 relative; 1e-5 leaves room for the last-digit rounding of the print).
const PYTHON_RTOL: f64 = 1e-5;

fn relu(sw: f64, sb: f64, depth: usize) -> KernelSpec {
    KernelSpec { activation: KernelActivation::Relu, sigma_w2: sw, sigma_b2: sb, depth }
}

fn erf(sw: f64, sb: f64, depth: usize) -> KernelSpec {
    KernelSpec { activation: KernelActivation::Erf, sigma_w2: sw, sigma_b2: sb, depth }
}

/// `value` agrees with `recorded`, a number written with `digits` significant digits.
fn agrees_to_recorded_digits(value: f64, recorded: f64, digits: i32) -> bool {
    let unit = 10f64.powi(recorded.abs().log10().floor() as i32 - digits + 1);
    (value - recorded).abs() <= 0.5 * unit * (1.0 + 1e-9)
}

fn check_python(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= PYTHON_RTOL * w.abs(), "{what}: mu_{k} = {g:e}, Python reference {w:e}");
    }
}

#[test]
fn kernel_spectra_reproduce_protocols_2_2() {
    // ReLU, sigma_w^2 = 2, sigma_b^2 = 1, CK, d = 7, L = 2:
    // 0.765, 2.6e-2, 2.1e-3, 2.4e-4, 8.4e-5, 4.2e-5, 2.9e-5, 2.2e-5 (mu_1/mu_7 ~ 1.2e3).
    let s = boolean_cube_spectrum(&relu(2.0, 1.0, 2), KernelKind::Ck, 7).unwrap();
    let recorded =
        [(0.765, 3), (2.6e-2, 2), (2.1e-3, 2), (2.4e-4, 2), (8.4e-5, 2), (4.2e-5, 2), (2.9e-5, 2), (2.2e-5, 2)];
    for (k, &(r, digits)) in recorded.iter().enumerate() {
        assert!(
            agrees_to_recorded_digits(s.normalised[k], r, digits),
            "ReLU L=2 mu_{k} = {:e}, recorded {r:e}",
            s.normalised[k]
        );
    }
    assert!(agrees_to_recorded_digits(s.normalised[1] / s.normalised[7], 1.2e3, 2));
    check_python(
        "ReLU(2,1) CK d=7 L=2",
        &s.normalised,
        &[0.76452, 0.0255269, 0.002108, 0.00024253, 8.35645e-05, 4.21876e-05, 2.88922e-05, 2.21427e-05],
    );
    // Normalised eigenvalues with multiplicity sum to 1; fractional variance sums to 1.
    let total: f64 = s.normalised.iter().zip(&s.multiplicities).map(|(m, c)| m * c).sum();
    assert!((total - 1.0).abs() < 1e-13 && (s.fractional_variance.iter().sum::<f64>() - 1.0).abs() < 1e-13);
    // The degree-0 eigenspace carries > 80% of the variance (Yang & Salman's notebook claim).
    assert!(s.fractional_variance[0] > 0.8 * 0.95, "{}", s.fractional_variance[0]);

    // ReLU L = 32: mu_0 = 0.994.
    let s = boolean_cube_spectrum(&relu(2.0, 1.0, 32), KernelKind::Ck, 7).unwrap();
    assert!(agrees_to_recorded_digits(s.normalised[0], 0.994, 3), "{}", s.normalised[0]);
    assert!((s.normalised[0] - 0.993702).abs() <= PYTHON_RTOL * 0.993702);

    // erf, sigma_w^2 = 4, sigma_b^2 = 0, CK, L = 1: odd mu = 0.124, 3.3e-3, 8.4e-4, 4.3e-4.
    let s = boolean_cube_spectrum(&erf(4.0, 0.0, 1), KernelKind::Ck, 7).unwrap();
    let odd: Vec<f64> = [1, 3, 5, 7].iter().map(|&k| s.normalised[k]).collect();
    for (v, (r, digits)) in odd.iter().zip([(0.124, 3), (3.3e-3, 2), (8.4e-4, 2), (4.3e-4, 2)]) {
        assert!(agrees_to_recorded_digits(*v, r, digits), "erf L=1 odd {v:e}, recorded {r:e}");
    }
    check_python("erf(4,0) CK d=7 L=1 odd", &odd, &[0.12399, 0.00325879, 0.000837142, 0.000434479]);

    // erf L = 32: odd mu = 0.0163, 0.0156, 0.0155, 0.0155 (flat, 1/64 = 0.0156), even mu = 0.
    let s = boolean_cube_spectrum(&erf(4.0, 0.0, 32), KernelKind::Ck, 7).unwrap();
    let odd: Vec<f64> = [1, 3, 5, 7].iter().map(|&k| s.normalised[k]).collect();
    for (v, r) in odd.iter().zip([0.0163, 0.0156, 0.0155, 0.0155]) {
        assert!(agrees_to_recorded_digits(*v, r, 3), "erf L=32 odd {v}, recorded {r}");
    }
    check_python("erf(4,0) CK d=7 L=32 odd", &odd, &[0.0162915, 0.0155642, 0.0155104, 0.0154925]);
    // Expected outcome (a): the odd eigenvalues within 6% of each other.
    let (lo, hi) = odd.iter().fold((f64::INFINITY, 0.0f64), |(l, h), &v| (l.min(v), h.max(v)));
    assert!(hi / lo < 1.06, "spread {}", hi / lo);
    // Even eigenvalues vanish (erf with sigma_b = 0 is odd): below their rounding bound.
    for k in [0, 2, 4, 6] {
        assert!(s.eigenvalues[k].abs() <= s.rounding_error_bound[k], "even mu_{k} = {:e}", s.eigenvalues[k]);
    }

    // NTK flattens faster: L = 8 already 0.0197 .. 0.0146.
    let s = boolean_cube_spectrum(&erf(4.0, 0.0, 8), KernelKind::Ntk, 7).unwrap();
    let odd: Vec<f64> = [1, 3, 5, 7].iter().map(|&k| s.normalised[k]).collect();
    assert!(agrees_to_recorded_digits(odd[0], 0.0197, 3) && agrees_to_recorded_digits(odd[3], 0.0146, 3), "{odd:?}");
    check_python("erf(4,0) NTK d=7 L=8 odd", &odd, &[0.0196543, 0.015339, 0.014808, 0.0145861]);
}

#[test]
fn more_kernel_spectra_match_the_python_reference() {
    let s = boolean_cube_spectrum(&relu(2.0, 1.0, 2), KernelKind::Ntk, 7).unwrap();
    check_python(
        "ReLU(2,1) NTK d=7 L=2",
        &s.normalised,
        &[0.517582, 0.0403327, 0.0052739, 0.00130814, 0.00077145, 0.000593232, 0.000517203, 0.000472978],
    );
    let s = boolean_cube_spectrum(&relu(2.0, 0.0, 4), KernelKind::Ck, 16).unwrap();
    check_python(
        "ReLU(2,0) CK d=16 L=4",
        &s.normalised,
        &[
            0.686488,
            0.00927546,
            0.000723974,
            6.12668e-05,
            1.04425e-05,
            2.14975e-06,
            8.05014e-07,
            3.24339e-07,
            2.05059e-07,
            1.23376e-07,
            1.0267e-07,
            7.47179e-08,
            7.04466e-08,
            5.59081e-08,
            5.59089e-08,
            4.63224e-08,
            4.77756e-08,
        ],
    );
    let s = boolean_cube_spectrum(&erf(2.0, 0.5, 4), KernelKind::Ntk, 16).unwrap();
    check_python(
        "erf(2,0.5) NTK d=16 L=4",
        &s.normalised,
        &[
            0.355668,
            0.0133271,
            0.000846059,
            0.000163598,
            3.81008e-05,
            1.30774e-05,
            5.35894e-06,
            2.66966e-06,
            1.50304e-06,
            9.42336e-07,
            6.371e-07,
            4.58172e-07,
            3.45031e-07,
            2.69727e-07,
            2.17107e-07,
            1.79004e-07,
            1.50491e-07,
        ],
    );
}

#[test]
fn relu_spectra_decrease_with_degree_at_every_depth() {
    // PROTOCOLS 2.2 expected outcome (a): ReLU (2, 1) mu_k strictly decreasing in k, all depths.
    for d in [7, 16] {
        for kind in [KernelKind::Ck, KernelKind::Ntk] {
            for depth in 1..=32 {
                let s = boolean_cube_spectrum(&relu(2.0, 1.0, depth), kind, d).unwrap();
                for k in 0..d {
                    assert!(
                        s.eigenvalues[k + 1] < s.eigenvalues[k],
                        "d={d} {kind:?} L={depth}: mu_{} = {:e} >= mu_{k} = {:e}",
                        k + 1,
                        s.eigenvalues[k + 1],
                        s.eigenvalues[k]
                    );
                }
            }
        }
    }
}

#[test]
fn krawtchouk_eigenvalues_match_a_dense_eigensolver() {
    // `krawtchouk(d, k, j)` is the classical Krawtchouk polynomial of degree j at k, so
    // orthogonality reads sum_k C(d, k) K(k, i) K(k, j) = 2^d C(d, i) delta_ij.
    let d = 9;
    let c = |n: usize, k: usize| (0..k).fold(1.0, |a, i| a * (n - i) as f64 / (i + 1) as f64);
    for i in 0..=d {
        for j in 0..=d {
            let s: f64 = (0..=d).map(|k| c(d, k) * krawtchouk(d, k, i) * krawtchouk(d, k, j)).sum();
            let want = if i == j { 2f64.powi(d as i32) * c(d, i) } else { 0.0 };
            assert!((s - want).abs() < 1e-9 * want.max(1.0), "<K_{i}, K_{j}> = {s}, want {want}");
        }
    }
    // The 2^d x 2^d kernel matrix has eigenvalues 2^d mu_k with multiplicity C(d, k).
    let d = 5;
    let spec = relu(2.0, 1.0, 2);
    let pts = BooleanCubeSpec { d, ..BooleanCubeSpec::default() }.points().mapv(f64::from);
    let n = pts.nrows();
    let k = Array2::from_shape_fn((n, n), |(i, j)| spec.kernel(pts.row(i).dot(&pts.row(j)) / d as f64).0);
    let mut dense = symmetric_eigen(k.view()).unwrap().values.to_vec();
    dense.sort_by(f64::total_cmp);
    let s = boolean_cube_spectrum(&spec, KernelKind::Ck, d).unwrap();
    let mut ours: Vec<f64> = Vec::new();
    for (kk, &mu) in s.eigenvalues.iter().enumerate() {
        for _ in 0..c(d, kk) as usize {
            ours.push(mu * n as f64);
        }
    }
    ours.sort_by(f64::total_cmp);
    let scale = dense.last().unwrap().abs();
    for (a, b) in ours.iter().zip(&dense) {
        assert!((a - b).abs() < 1e-12 * scale, "Krawtchouk {a:e} vs dense {b:e}");
    }
}

#[test]
fn relu_priors_concentrate_on_simple_functions_erf_priors_do_not() {
    // PROTOCOLS 2.2 (b): 7-40-40-1 networks on the 128 points of the 7-cube; ReLU (2, 2) versus
    // erf (4, 0). Expected: most frequent function probability ReLU >= 10 x erf, and ReLU's top
    // function constant. 2000 draws each (seed 1): erf(4)'s functions are nearly all distinct, so
    // its top probability is a few / 2000, while ReLU's constant functions take a large share.
    let x = BooleanCubeSpec::default().points().mapv(f64::from);
    let opts = FunctionSamplerParams { samples: 2000, top: 3 };
    let stream = RngStream::new(1);
    let m = Model::new(&"mlp:7-40-40-1:relu".parse().unwrap());
    let r = sample_prior_functions(&m, &PriorSpec { sigma_w2: 2.0, sigma_b2: 2.0 }, x.view(), None, &opts, &stream)
        .unwrap();
    let m = Model::new(&"mlp:7-40-40-1:erf".parse().unwrap());
    let e = sample_prior_functions(&m, &PriorSpec { sigma_w2: 4.0, sigma_b2: 0.0 }, x.view(), None, &opts, &stream)
        .unwrap();
    assert!(
        r.most_frequent_probability >= 10.0 * e.most_frequent_probability,
        "ReLU top {} vs erf top {}",
        r.most_frequent_probability,
        e.most_frequent_probability
    );
    let top = &r.top[0].function;
    assert!(top.chars().all(|c| c == top.chars().next().unwrap()), "ReLU's top function {top} is not constant");
    assert_eq!((r.accepted, r.samples, r.points), (2000, 2000, 128));
    assert!(r.entropy_bits < e.entropy_bits);
}

#[test]
fn conditioned_sampling_is_rejection_on_the_same_draws() {
    // The draws do not depend on acceptance, so conditioning on S must keep exactly the
    // unconditioned draws whose function restricted to S matches, with their test restriction.
    let x = BooleanCubeSpec { d: 5, ..BooleanCubeSpec::default() }.points().mapv(f64::from);
    let m = Model::new(&"mlp:5-20-1:relu".parse().unwrap());
    let prior = PriorSpec { sigma_w2: 2.0, sigma_b2: 0.5 };
    let stream = RngStream::new(4);
    let all = FunctionSamplerParams { samples: 500, top: 0 };
    let free = sample_prior_functions(&m, &prior, x.view(), None, &all, &stream).unwrap();
    let train = [0usize, 3, 9, 17];
    let labels = [1u32, 1, 1, 1];
    let cond = FunctionCondition { train: &train, labels: &labels };
    let post = sample_prior_functions(&m, &prior, x.view(), Some(&cond), &all, &stream).unwrap();
    let mut want: std::collections::BTreeMap<String, u64> = Default::default();
    for f in &free.top {
        let ch: Vec<char> = f.function.chars().collect();
        if train.iter().zip(&labels).all(|(&i, &y)| ch[i] == char::from_digit(y, 10).unwrap()) {
            let rest: String = (0..ch.len()).filter(|i| !train.contains(i)).map(|i| ch[i]).collect();
            *want.entry(rest).or_default() += f.count;
        }
    }
    let got: std::collections::BTreeMap<String, u64> = post.top.iter().map(|f| (f.function.clone(), f.count)).collect();
    assert_eq!(got, want);
    assert_eq!(post.accepted, want.values().sum::<u64>());
    assert!(post.accepted > 0 && post.accepted < 500, "accepted {}", post.accepted);
    assert_eq!(post.points, 32 - train.len());
    assert!((post.acceptance_rate - post.accepted as f64 / 500.0).abs() < 1e-15);
}
