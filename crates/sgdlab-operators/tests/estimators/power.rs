//! Power iteration (PyHessian's rule and the residual rule).

use crate::common::{Known, outliers, true_residual};
use sgdlab_linalg::RngStream;
use sgdlab_operators::{CountingOperator, PowerIterationParams, PowerStop, power_iteration};

/// Reported residual vs the directly computed one.
const RESIDUAL_ATOL_FACTOR: f64 = 64.0;

#[test]
fn power_iteration_finds_the_top_eigenvalue_and_reports_honestly() {
    // Outliers 100, 90, ...: ratio 0.9.
    let k = Known::new(outliers(300), &RngStream::new(5).child("power/matrix"));
    let op = CountingOperator::new(k.op());
    let est = power_iteration(&op, &PowerIterationParams::default(), &RngStream::new(5).child("power")).unwrap();
    assert!(est.converged && est.relative_change < 1e-3);
    assert_eq!((est.matvecs, op.matvecs(), est.history.len()), (op.matvecs(), est.matvecs, est.matvecs));
    // PyHessian's rule is not a bound: the value is close but only the residual certifies it.
    assert!(k.distance_to_spectrum(est.eigenvalue) <= est.residual);
    assert!((est.eigenvalue - 100.0).abs() <= 1.0, "eigenvalue {}", est.eigenvalue);
    let atol = RESIDUAL_ATOL_FACTOR * f64::EPSILON * 100.0 * 300f64.sqrt();
    let r = true_residual(&k.matrix, est.eigenvector.clone(), est.eigenvalue);
    assert!((r - est.residual).abs() <= atol, "reported {} direct {r}", est.residual);
    assert!((est.eigenvector.dot(&est.eigenvector) - 1.0).abs() < 1e-12);

    // Residual rule: certified to 1e-3 relative.
    let p = PowerIterationParams { stop: PowerStop::Residual, tol: 1e-3, max_iters: 1000 };
    let est = power_iteration(&op, &p, &RngStream::new(5).child("power")).unwrap();
    assert!(est.converged && est.residual <= 1e-3 * est.eigenvalue.abs());
    assert!((est.eigenvalue - 100.0).abs() <= est.residual);

    // max_iters reached: not converged, and theta / residual belong to the returned vector.
    let p = PowerIterationParams { max_iters: 3, tol: 1e-12, ..Default::default() };
    let est = power_iteration(&op, &p, &RngStream::new(5).child("power")).unwrap();
    assert!(!est.converged && est.matvecs == 3);
    let r = true_residual(&k.matrix, est.eigenvector.clone(), est.eigenvalue);
    assert!((r - est.residual).abs() <= atol);
}

#[test]
fn f32_power_iteration_converges() {
    let k = Known::new(outliers(150), &RngStream::new(19).child("power32/matrix"));
    let p = PowerIterationParams { stop: PowerStop::Residual, tol: 1e-3, max_iters: 1000 };
    let est = power_iteration(&k.op_f32(), &p, &RngStream::new(19).child("p")).unwrap();
    assert!(est.converged && (est.eigenvalue - 100.0).abs() <= est.residual + 64.0 * f32::EPSILON as f64 * 100.0);
}
