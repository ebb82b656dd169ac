//! Hutchinson and Hutch++ trace estimators.

use crate::common::{Known, flat, linspace, outliers, power_law};
use ndarray::{Array2, ArrayView2};
use sgdlab_linalg::RngStream;
use sgdlab_operators::{
    CountingOperator, DenseOperator, HutchPlusPlusParams, HutchinsonParams, LinearOperator, ProbeDistribution,
    ScaledOperator, ShiftedOperator, SumOperator, hutch_plus_plus_trace, hutchinson_trace,
};

/// Sums of n products in f64.
const EXACT_RTOL: f64 = 1e-12;

#[test]
fn rademacher_probes_are_exact_on_a_diagonal_matrix() {
    let d: Vec<f64> = linspace(-3.0, 7.0, 50);
    let op = DenseOperator::new(Array2::from_diag(&ndarray::Array1::from(d.clone()))).unwrap();
    let est = hutchinson_trace(&op, &HutchinsonParams::default(), &RngStream::new(6).child("diag")).unwrap();
    let tr: f64 = d.iter().sum();
    assert!((est.trace - tr).abs() <= EXACT_RTOL * 150.0, "{} vs {tr}", est.trace);
    assert!(est.standard_error <= EXACT_RTOL * 150.0);
}

/// z-scores `(estimate - truth) / standard error` of `reps` independent runs.
fn z_scores(reps: usize, run: impl Fn(&RngStream) -> (f64, f64), truth: f64, name: &str) -> Vec<f64> {
    (0..reps)
        .map(|r| {
            let (est, se) = run(&RngStream::new(7).child(name).child(&r.to_string()));
            (est - truth) / se
        })
        .collect()
}

/// Checks on 40 replicate z-scores, each from an estimate with 40 iid probe values.
///
/// Failure probabilities for seeds drawn at random, treating each z as Student t with 39 degrees
/// of freedom (normal probe means; the real tails of quadratic forms are somewhat heavier):
/// - every |z| <= 5: P(some |z| > 5) = 40 * 1.3e-5 = 5e-4;
/// - |mean z| <= 4 / sqrt(40) = 0.63 (about 3.9 sd of the mean): P = 1e-4;
/// - at least 32 of 40 with |z| <= 2 (P(|t_39| > 2) = 0.0525, 2.1 expected outside):
///   P(9 or more outside) = 1.9e-4.
fn assert_calibrated(z: &[f64], name: &str) {
    let worst = z.iter().enumerate().max_by(|a, b| a.1.abs().total_cmp(&b.1.abs())).unwrap();
    assert!(worst.1.abs() <= 5.0, "{name}: replicate {} has z = {}", worst.0, worst.1);
    let mean = z.iter().sum::<f64>() / z.len() as f64;
    assert!(mean.abs() <= 4.0 / (z.len() as f64).sqrt(), "{name}: mean z = {mean} (z = {z:?})");
    let inside = z.iter().filter(|x| x.abs() <= 2.0).count();
    assert!(inside >= 32, "{name}: only {inside} of {} replicates within 2 SE (z = {z:?})", z.len());
}

#[test]
fn hutchinson_is_unbiased_within_its_standard_error() {
    let k = Known::new(power_law(120, 0.5), &RngStream::new(7).child("hutch/matrix"));
    let op = k.op();
    for dist in [ProbeDistribution::Rademacher, ProbeDistribution::Gaussian] {
        let p = HutchinsonParams { probes: 40, distribution: dist, block_size: 16, ..Default::default() };
        let z = z_scores(
            40,
            |r| {
                let e = hutchinson_trace(&op, &p, r).unwrap();
                (e.trace, e.standard_error)
            },
            k.trace(),
            &format!("{dist:?}"),
        );
        assert_calibrated(&z, &format!("hutchinson {dist:?}"));
    }
}

#[test]
fn hutch_plus_plus_is_unbiased_within_its_standard_error() {
    let k = Known::new(power_law(120, 0.5), &RngStream::new(8).child("hpp/matrix"));
    let op = k.op();
    // 120 products: 40 sketch, 40 projection, 40 residual probes (m = 40 as above).
    let p = HutchPlusPlusParams { matvecs: 120, ..Default::default() };
    let z = z_scores(
        40,
        |r| {
            let e = hutch_plus_plus_trace(&op, &p, r).unwrap();
            (e.trace, e.standard_error)
        },
        k.trace(),
        "hpp",
    );
    assert_calibrated(&z, "hutch++");
}

#[test]
fn reported_products_match_the_count_and_blocks_do_not_change_results() {
    let k = Known::new(flat(64), &RngStream::new(9).child("count/matrix"));
    let op = CountingOperator::new(k.op());
    let r = RngStream::new(9).child("count");
    let a = hutchinson_trace(&op, &HutchinsonParams { probes: 25, block_size: 7, ..Default::default() }, &r).unwrap();
    assert_eq!((a.matvecs, op.matvecs(), op.calls()), (25, 25, 4));
    let b =
        hutchinson_trace(&k.op(), &HutchinsonParams { probes: 25, block_size: 1, ..Default::default() }, &r).unwrap();
    for (x, y) in a.samples.iter().zip(&b.samples) {
        assert!((x - y).abs() <= EXACT_RTOL * x.abs().max(1.0), "block size changed a sample: {x} vs {y}");
    }
    op.reset();
    let h = hutch_plus_plus_trace(&op, &HutchPlusPlusParams { matvecs: 31, ..Default::default() }, &r).unwrap();
    // s = 10 sketch, 10 projection (full rank), g = 11 probes.
    assert_eq!((h.matvecs, op.matvecs(), h.sketch_rank, h.samples.len()), (31, 31, 10, 11));
}

#[test]
fn hutch_plus_plus_is_exact_when_the_sketch_covers_the_rank() {
    // Rank 6 < s = 10: Q spans the range of A, the residual part is zero.
    let mut l = vec![0.0; 80];
    l[..6].copy_from_slice(&[9.0, -4.0, 3.0, 2.5, 1.0, 0.5]);
    let k = Known::new(l, &RngStream::new(10).child("lowrank/matrix"));
    let op = CountingOperator::new(k.op());
    let h = hutch_plus_plus_trace(
        &op,
        &HutchPlusPlusParams { matvecs: 30, ..Default::default() },
        &RngStream::new(10).child("lr"),
    )
    .unwrap();
    assert_eq!(h.sketch_rank, 6, "rank detection");
    assert_eq!(h.matvecs, 10 + 6 + 10);
    assert_eq!(op.matvecs(), h.matvecs);
    assert!((h.trace - k.trace()).abs() <= 1e-10 && h.standard_error <= 1e-10, "{h:?}");
}

#[test]
fn hutch_plus_plus_beats_hutchinson_on_low_rank_plus_small() {
    // Five outliers (100 .. 60) over a bulk in [0, 1]: Hutchinson's error is dominated by the
    // outliers, which Hutch++'s sketch removes. Equal budget of 60 products, 20 replicates each.
    let k = Known::new(outliers(300), &RngStream::new(11).child("hpp-vs/matrix"));
    let op = k.op();
    let tr = k.trace();
    let rmse = |f: &dyn Fn(&RngStream) -> f64| {
        ((0..20).map(|r| (f(&RngStream::new(11).child("rep").child(&r.to_string())) - tr).powi(2)).sum::<f64>() / 20.0)
            .sqrt()
    };
    let e_h =
        rmse(&|r| hutchinson_trace(&op, &HutchinsonParams { probes: 60, ..Default::default() }, r).unwrap().trace);
    let e_pp = rmse(&|r| {
        hutch_plus_plus_trace(&op, &HutchPlusPlusParams { matvecs: 60, ..Default::default() }, r).unwrap().trace
    });
    // Expected ratio ~ sqrt(||A||_F^2 / m) / sqrt(3 ||bulk||_F^2 / m) ~ 200 / 9 ~ 20; require 5.
    assert!(e_pp * 5.0 <= e_h, "Hutch++ RMSE {e_pp} vs Hutchinson {e_h}");
}

#[test]
fn f32_trace_estimators_agree_with_f64_to_f32_accuracy() {
    // Same probes (Rademacher, exactly representable) on the f32 and f64 copies: per-probe values
    // differ by the f32 rounding of A and of the products, at most about
    // F32_SAMPLE_FACTOR * eps_f32 * sqrt(n) * ||A||_F (with a generous factor).
    const F32_SAMPLE_FACTOR: f64 = 160.0;
    let k = Known::new(power_law(100, 0.5), &RngStream::new(17).child("f32/matrix"));
    let r = RngStream::new(17).child("f32");
    let p = HutchinsonParams { probes: 10, ..Default::default() };
    let a = hutchinson_trace(&k.op(), &p, &r).unwrap();
    let b = hutchinson_trace(&k.op_f32(), &p, &r).unwrap();
    let fro = k.eigenvalues.iter().map(|l| l * l).sum::<f64>().sqrt();
    let atol = F32_SAMPLE_FACTOR * f32::EPSILON as f64 * 100f64.sqrt() * fro;
    crate::common::assert_close_all("f32 Hutchinson samples", &a.samples, &b.samples, atol, 0.0);
    let hp = HutchPlusPlusParams { matvecs: 30, ..Default::default() };
    let a = hutch_plus_plus_trace(&k.op(), &hp, &r).unwrap();
    let b = hutch_plus_plus_trace(&k.op_f32(), &hp, &r).unwrap();
    // Hutch++ adds the s = 10 sketch terms to the probe mean: ten times the per-sample allowance.
    assert!((a.trace - b.trace).abs() <= atol * 10.0, "{} vs {}", a.trace, b.trace);
}

/// A dense operator that also computes its quadratic forms directly (as a network's Hessian does
/// by forward passes), optionally corrupting them to exercise the estimators' checks.
struct WithForms {
    inner: DenseOperator<f64>,
    corrupt: Option<&'static str>,
}

impl LinearOperator<f64> for WithForms {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn apply_block(&self, block: ArrayView2<'_, f64>) -> Array2<f64> {
        self.inner.apply_block(block)
    }
    fn quadratic_forms(&self, block: ArrayView2<'_, f64>) -> Option<Vec<f64>> {
        let a = self.inner.matrix();
        let mut q: Vec<f64> = block.rows().into_iter().map(|z| z.dot(&a.dot(&z))).collect();
        match self.corrupt {
            Some("short") => {
                q.pop();
            }
            Some("nan") => q[0] = f64::NAN,
            _ => {}
        }
        Some(q)
    }
}

#[test]
fn quadratic_forms_replace_products_without_changing_the_estimates() {
    let k = Known::new(outliers(90), &RngStream::new(12).child("forms/matrix"));
    let r = RngStream::new(12).child("forms");
    let op = CountingOperator::new(WithForms { inner: k.op(), corrupt: None });
    let hp = HutchinsonParams { probes: 25, block_size: 7, ..Default::default() };
    let a = hutchinson_trace(&op, &hp, &r).unwrap();
    assert_eq!((a.matvecs, a.quadratic_forms, op.matvecs(), op.quadratic_forms_used()), (0, 25, 0, 25));
    let b = hutchinson_trace(&op, &HutchinsonParams { quadratic_forms: false, ..hp.clone() }, &r).unwrap();
    assert_eq!((b.matvecs, b.quadratic_forms), (25, 0));
    crate::common::assert_close_all("forms vs products", &a.samples, &b.samples, 0.0, EXACT_RTOL);
    // An operator without forms falls back to products even when forms are asked for.
    let c = hutchinson_trace(&k.op(), &hp, &r).unwrap();
    assert_eq!((c.matvecs, c.quadratic_forms), (25, 0));
    // Hutch++: only the sketch needs products; the projection and probe terms are forms.
    op.reset();
    let pp = HutchPlusPlusParams { matvecs: 31, ..Default::default() };
    let h = hutch_plus_plus_trace(&op, &pp, &r).unwrap();
    assert_eq!((h.matvecs, h.quadratic_forms, op.matvecs()), (10, 21, 10));
    let h2 = hutch_plus_plus_trace(&k.op(), &pp, &r).unwrap();
    assert_eq!((h2.matvecs, h2.quadratic_forms), (31, 0));
    assert!((h.trace - h2.trace).abs() <= EXACT_RTOL * h2.trace.abs().max(1.0), "{} vs {}", h.trace, h2.trace);
    // Wrappers carry the forms: 2A + 3I and A + A.
    let (s, sh) = (ScaledOperator::new(&op, 2.0), ShiftedOperator::new(&op, 3.0));
    let z = ProbeDistribution::Gaussian.sample::<f64, _>(3, k.op().dim(), &mut r.child("z").rng());
    let direct = op.quadratic_forms(z.view()).unwrap();
    let norms: Vec<f64> = z.rows().into_iter().map(|x| x.dot(&x)).collect();
    let two: Vec<f64> = direct.iter().map(|q| 2.0 * q).collect();
    crate::common::assert_close_all("scaled forms", &s.quadratic_forms(z.view()).unwrap(), &two, 0.0, EXACT_RTOL);
    let shifted: Vec<f64> = direct.iter().zip(&norms).map(|(q, n)| q + 3.0 * n).collect();
    crate::common::assert_close_all("shifted forms", &sh.quadratic_forms(z.view()).unwrap(), &shifted, 0.0, EXACT_RTOL);
    let sum = SumOperator::new(&op, &op).unwrap();
    crate::common::assert_close_all("sum forms", &sum.quadratic_forms(z.view()).unwrap(), &two, 0.0, EXACT_RTOL);
    assert!(SumOperator::new(&op, k.op()).unwrap().quadratic_forms(z.view()).is_none(), "one side without forms");
}

#[test]
fn bad_quadratic_forms_are_errors_naming_the_estimator() {
    let k = Known::new(flat(20), &RngStream::new(13).child("badforms/matrix"));
    let r = RngStream::new(13).child("badforms");
    for (corrupt, expect) in
        [("short", "returned 9 values for a block of 10 rows"), ("nan", "non-finite value for row 0")]
    {
        let op = WithForms { inner: k.op(), corrupt: Some(corrupt) };
        let e = hutchinson_trace(&op, &HutchinsonParams::default(), &r).unwrap_err().to_string();
        assert!(e.starts_with("hutchinson_trace: quadratic_forms") && e.contains(expect), "{e}");
        let e = hutch_plus_plus_trace(&op, &HutchPlusPlusParams::default(), &r).unwrap_err().to_string();
        assert!(e.starts_with("hutch_plus_plus_trace: quadratic_forms") && e.contains(expect), "{e}");
    }
}
