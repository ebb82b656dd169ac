//! The operator trait, its implementations and `materialize`.

use crate::common::{Known, NanOperator, WrongShape, flat, indefinite};
use ndarray::{Array1, Array2};
use sgdlab_linalg::{RngStream, standard_normal};
use sgdlab_operators::{
    CountingOperator, DenseOperator, HutchinsonParams, LanczosParams, LinearOperator, OperatorError,
    PrincipalBlockOperator, ScaledOperator, ShiftedOperator, SumOperator, hutchinson_trace, lanczos_eigenpairs,
    materialize,
};

/// Composite operators are a few products and additions away from the dense reference.
const COMPOSITE_RTOL: f64 = 64.0 * f64::EPSILON;

fn gaussian(r: usize, c: usize, name: &str) -> Array2<f64> {
    let mut rng = RngStream::new(11).child(name).rng();
    Array2::from_shape_simple_fn((r, c), || standard_normal::<f64, _>(&mut rng))
}

#[test]
fn materialize_reproduces_a_dense_matrix_exactly() {
    // 70 > MATERIALIZE_BLOCK = 64, so two blocks; a non-symmetric matrix checks the orientation.
    let a = gaussian(70, 70, "materialize");
    let op = DenseOperator::new(a.clone()).unwrap();
    assert!(!op.is_symmetric());
    let m = materialize(&op, 70).unwrap();
    // Each entry of A e_j is a sum with one non-zero term: exact.
    assert_eq!(m, a);
    let m32 = materialize(&DenseOperator::new(a.mapv(|x| x as f32)).unwrap(), 100).unwrap();
    assert_eq!(m32, a.mapv(|x| x as f32));
}

#[test]
fn materialize_refuses_above_the_limit() {
    let op = DenseOperator::new(Array2::<f64>::eye(70)).unwrap();
    let err = materialize(&op, 69).unwrap_err();
    assert!(matches!(err, OperatorError::TooLarge { dim: 70, max_dim: 69, bytes: 39200 }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("dimension 70") && msg.contains("max_dim = 69") && msg.contains("39200 bytes"), "{msg}");
}

#[test]
fn composite_operators_equal_their_dense_formula() {
    let a = Known::new(flat(40), &RngStream::new(1).child("a"));
    let b = gaussian(40, 40, "b");
    let (oa, ob) = (a.op(), DenseOperator::new(b.clone()).unwrap());
    // 2 A + (B + 0.5 I), through references and boxes.
    let scaled = ScaledOperator::new(&oa, 2.0);
    let shifted: Box<dyn LinearOperator<f64>> = Box::new(ShiftedOperator::new(&ob, 0.5));
    let sum = SumOperator::new(scaled, shifted).unwrap();
    assert!(!sum.is_symmetric(), "B is not symmetric, so neither is the sum");
    let got = materialize(&sum, 100).unwrap();
    let want = &a.matrix * 2.0 + &b + &(Array2::<f64>::eye(40) * 0.5);
    let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let worst = (&got - &want).iter().fold(0.0f64, |m, x| m.max(x.abs()));
    assert!(worst <= COMPOSITE_RTOL * scale, "worst error {worst:e} > {:e}", COMPOSITE_RTOL * scale);
    assert!(SumOperator::new(&oa, &ShiftedOperator::new(&oa, 1.0)).unwrap().is_symmetric());
    // Mismatched dimensions are refused.
    let small = DenseOperator::new(Array2::<f64>::eye(3)).unwrap();
    assert!(matches!(
        SumOperator::new(&oa, &small),
        Err(OperatorError::DimensionMismatch { expected: 40, actual: 3, .. })
    ));
}

/// A dense matrix that also computes its quadratic forms itself (as a network's Hessian does),
/// counting them, to check that wrappers pass them through.
struct WithForms {
    a: DenseOperator<f64>,
    forms: std::cell::Cell<usize>,
}

impl LinearOperator<f64> for WithForms {
    fn dim(&self) -> usize {
        self.a.dim()
    }
    fn apply_block(&self, block: ndarray::ArrayView2<'_, f64>) -> Array2<f64> {
        self.a.apply_block(block)
    }
    fn quadratic_forms(&self, block: ndarray::ArrayView2<'_, f64>) -> Option<Vec<f64>> {
        self.forms.set(self.forms.get() + block.nrows());
        Some(block.rows().into_iter().map(|z| z.dot(&self.a.matrix().dot(&z))).collect())
    }
}

#[test]
fn a_principal_block_is_the_submatrix_and_its_trace_the_block_trace() {
    // A symmetric indefinite 30 x 30 matrix; the block 7..19 (12 coordinates).
    let k = Known::new(indefinite(30), &RngStream::new(5).child("a"));
    let (lo, hi) = (7, 19);
    let block = PrincipalBlockOperator::new(k.op(), lo..hi).unwrap();
    assert_eq!((block.dim(), block.range()), (12, lo..hi));
    assert!(block.is_symmetric());
    // Each entry of the block's columns is one entry of A e_j: exact.
    let m = materialize(&block, 100).unwrap();
    assert_eq!(m, k.matrix.slice(ndarray::s![lo..hi, lo..hi]).to_owned());
    // Hutchinson on the block (probes zero outside it) estimates tr A[S, S], not tr A; with the
    // inner operator's quadratic forms the samples are the same up to rounding.
    let want: f64 = (lo..hi).map(|i| k.matrix[(i, i)]).sum();
    let r = RngStream::new(6).child("block-trace");
    let p = HutchinsonParams { probes: 400, ..Default::default() };
    let by_products = hutchinson_trace(&block, &p, &r).unwrap();
    assert_eq!(by_products.quadratic_forms, 0);
    // 4 standard errors: a two-sided normal failure probability of 6e-5 for a random seed.
    assert!(
        (by_products.trace - want).abs() <= 4.0 * by_products.standard_error,
        "block trace {} +- {} vs {want}",
        by_products.trace,
        by_products.standard_error
    );
    let with_forms = WithForms { a: k.op(), forms: std::cell::Cell::new(0) };
    let block_forms = PrincipalBlockOperator::new(&with_forms, lo..hi).unwrap();
    let by_forms = hutchinson_trace(&block_forms, &p, &r).unwrap();
    assert_eq!((by_forms.quadratic_forms, by_forms.matvecs, with_forms.forms.get()), (400, 0, 400));
    for (a, b) in by_forms.samples.iter().zip(&by_products.samples) {
        assert!((a - b).abs() <= COMPOSITE_RTOL * 30.0 * a.abs().max(1.0), "{a} vs {b}");
    }
    // Empty or out-of-range blocks are refused with the range and the dimension.
    for bad in [5..5, 25..31] {
        let e = PrincipalBlockOperator::new(k.op(), bad.clone()).unwrap_err().to_string();
        assert!(e.contains(&format!("{}..{}", bad.start, bad.end)) && e.contains("0..30"), "{e}");
    }
}

#[test]
fn apply_agrees_with_apply_block_and_objects_work() {
    let k = Known::new(flat(30), &RngStream::new(2).child("a"));
    let op = k.op();
    let v = Array1::from_shape_fn(30, |i| (i as f64 * 0.37).sin());
    let ops: Vec<Box<dyn LinearOperator<f64>>> =
        vec![Box::new(op.clone()), Box::new(ScaledOperator::new(op.clone(), -1.0))];
    let y0 = ops[0].apply(v.view());
    let y1 = ops[1].apply(v.view());
    let want = k.matrix.dot(&v);
    for i in 0..30 {
        assert!((y0[i] - want[i]).abs() <= COMPOSITE_RTOL * 2.0 * want.iter().fold(0.0f64, |m, x| m.max(x.abs())));
        assert_eq!(y1[i], -y0[i]);
    }
}

#[test]
fn counting_operator_counts_rows_and_calls() {
    let op = CountingOperator::new(DenseOperator::new(Array2::<f64>::eye(5)).unwrap());
    let _ = op.apply_block(Array2::zeros((3, 5)).view());
    let _ = op.apply(Array1::zeros(5).view());
    assert_eq!((op.matvecs(), op.calls()), (4, 2));
    op.reset();
    assert_eq!((op.matvecs(), op.calls()), (0, 0));
}

#[test]
fn dense_operator_rejects_non_square_and_flags_symmetry() {
    assert!(matches!(DenseOperator::new(Array2::<f64>::zeros((3, 4))), Err(OperatorError::DimensionMismatch { .. })));
    let k = Known::new(flat(50), &RngStream::new(3).child("a"));
    assert!(k.op().is_symmetric() && k.op_f32().is_symmetric());
}

#[test]
fn estimators_refuse_bad_operators_and_parameters() {
    let r = RngStream::new(4);
    let nonsym = DenseOperator::new(gaussian(6, 6, "nonsym")).unwrap();
    let e = lanczos_eigenpairs(&nonsym, &LanczosParams::default(), &r).unwrap_err();
    assert!(matches!(e, OperatorError::NotSymmetric { estimator: "lanczos_eigenpairs" }), "{e}");
    let e = lanczos_eigenpairs(&WrongShape(6), &LanczosParams::default(), &r).unwrap_err();
    assert!(matches!(e, OperatorError::BadOutputShape { expected: (1, 6), actual: (1, 7), .. }), "{e}");
    let e = hutchinson_trace(&NanOperator(6), &HutchinsonParams::default(), &r).unwrap_err();
    assert!(matches!(e, OperatorError::NonFinite { estimator: "hutchinson_trace", row: 0, col: 0, matvecs: 0 }), "{e}");
    let eye = DenseOperator::new(Array2::<f64>::eye(6)).unwrap();
    let e = lanczos_eigenpairs(&eye, &LanczosParams { k: 7, ..Default::default() }, &r).unwrap_err();
    assert!(e.to_string().contains("k = 7 must be in 1..=6"), "{e}");
    let e = hutchinson_trace(&eye, &HutchinsonParams { probes: 1, ..Default::default() }, &r).unwrap_err();
    assert!(e.to_string().contains("at least 2"), "{e}");
}

#[test]
fn params_parse_with_defaults_and_reject_unknown_keys() {
    // Params are specs: missing keys take defaults, unknown keys are errors.
    let p: LanczosParams = serde_json::from_str(r#"{"k": 5, "target": "smallest_algebraic"}"#).unwrap();
    assert_eq!(
        p,
        LanczosParams { k: 5, target: sgdlab_operators::EigenTarget::SmallestAlgebraic, ..Default::default() }
    );
    assert!(serde_json::from_str::<LanczosParams>(r#"{"kk": 5}"#).is_err());
}
