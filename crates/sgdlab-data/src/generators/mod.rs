//! Seeded generators. Each is a `…Spec` (declarative, with `Default` = the published or protocol
//! setting) whose `generate` draws everything from named child streams of the spec's seed.

mod boolean;
mod dominoes;
mod gaussian;
mod lms;
mod matrix_completion;
mod mnist1d;
mod sines;
mod teacher;

pub use boolean::{BooleanCubeSpec, BooleanTarget};
pub use dominoes::DominoesSpec;
pub use gaussian::{CloneKind, GaussianCloneSpec, GaussianMixtureSpec, gaussian_clone};
pub use lms::{LmsData, LmsSpec, SimpleCoordinate, lms_slab_index};
pub use matrix_completion::{CompletionLayout, MatrixCompletion, MatrixCompletionSpec};
pub use mnist1d::{MNIST1D_RAW_TEMPLATES, Mnist1dSpec, mnist1d_templates};
pub use sines::{Amplitudes, SinesSpec, SumOfSines};
pub use teacher::{Activation, TeacherMlp, TeacherSpec, TeacherTargets};

use ndarray::Array2;
use sgdlab_linalg::standard_normal;

/// A Haar-distributed random orthogonal `d x d` matrix: Gram-Schmidt (applied twice for
/// stability) on the columns of a matrix of iid N(0, 1) entries, which is the Q of its QR
/// factorisation with a positive diagonal R.
pub(crate) fn haar_orthogonal(d: usize, rng: &mut impl rand::Rng) -> Array2<f64> {
    let mut q = Array2::from_shape_fn((d, d), |_| standard_normal::<f64, _>(rng));
    for j in 0..d {
        for _ in 0..2 {
            for k in 0..j {
                let dot: f64 = (0..d).map(|i| q[[i, j]] * q[[i, k]]).sum();
                for i in 0..d {
                    q[[i, j]] -= dot * q[[i, k]];
                }
            }
        }
        let norm = (0..d).map(|i| q[[i, j]] * q[[i, j]]).sum::<f64>().sqrt();
        for i in 0..d {
            q[[i, j]] /= norm;
        }
    }
    q
}

/// The lower-triangular Cholesky factor `L` of a symmetric positive-definite `a` (`a = L L^T`),
/// or `None` if a pivot is not positive.
pub(crate) fn cholesky(a: &Array2<f64>) -> Option<Array2<f64>> {
    let n = a.nrows();
    let mut l = Array2::<f64>::zeros((n, n));
    for j in 0..n {
        let mut diag = a[[j, j]];
        for k in 0..j {
            diag -= l[[j, k]] * l[[j, k]];
        }
        if diag.is_nan() || diag <= 0.0 {
            return None;
        }
        let djj = diag.sqrt();
        l[[j, j]] = djj;
        for i in j + 1..n {
            let mut s = a[[i, j]];
            for k in 0..j {
                s -= l[[i, k]] * l[[j, k]];
            }
            l[[i, j]] = s / djj;
        }
    }
    Some(l)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sgdlab_linalg::RngStream;

    #[test]
    fn haar_is_orthogonal_and_cholesky_reconstructs() {
        let q = haar_orthogonal(7, &mut RngStream::new(1).child("q").rng());
        let qtq = q.t().dot(&q);
        for i in 0..7 {
            for j in 0..7 {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((qtq[[i, j]] - want).abs() < 1e-12, "Q^T Q [{i},{j}] = {}", qtq[[i, j]]);
            }
        }
        let a = q.dot(&Array2::from_diag(&ndarray::arr1(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]))).dot(&q.t());
        let l = cholesky(&a).unwrap();
        let err = (&l.dot(&l.t()) - &a).mapv(f64::abs).fold(0.0f64, |m, v| m.max(*v));
        assert!(err < 1e-12, "max |L L^T - A| = {err}");
        assert!(cholesky(&(-&a)).is_none());
    }
}
