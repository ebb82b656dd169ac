//! Decompositions (faer): symmetric eigendecomposition, singular values, orthonormalisation.

use crate::Scalar;
use faer::{Mat, Side};
use ndarray::{Array1, Array2, ArrayView2};
use std::fmt;

/// A decomposition that did not converge, or an input that is not what it must be.
#[derive(Debug, Clone, PartialEq)]
pub struct DecompError(pub String);

impl fmt::Display for DecompError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for DecompError {}

fn to_mat<T: Scalar>(a: ArrayView2<'_, T>) -> Mat<T> {
    Mat::from_fn(a.nrows(), a.ncols(), |i, j| a[(i, j)])
}

/// Eigenvalues in ascending order with the matching unit eigenvectors as columns.
#[derive(Debug, Clone)]
pub struct SymmetricEigen<T> {
    pub values: Array1<T>,
    pub vectors: Array2<T>,
}

/// Eigendecomposition of a symmetric matrix (the lower triangle is read).
pub fn symmetric_eigen<T: Scalar>(a: ArrayView2<'_, T>) -> Result<SymmetricEigen<T>, DecompError> {
    if a.nrows() != a.ncols() {
        return Err(DecompError(format!("symmetric_eigen: matrix is {}x{}, not square", a.nrows(), a.ncols())));
    }
    let m = to_mat(a);
    let e = m
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| DecompError(format!("symmetric eigensolver did not converge: {e:?}")))?;
    let n = a.nrows();
    let s = e.S();
    let u = e.U();
    let values = Array1::from_shape_fn(n, |i| s[i]);
    let vectors = Array2::from_shape_fn((n, n), |(i, j)| u[(i, j)]);
    Ok(SymmetricEigen { values, vectors })
}

/// Singular values in descending order.
pub fn singular_values<T: Scalar>(a: ArrayView2<'_, T>) -> Result<Vec<T>, DecompError> {
    if a.is_empty() {
        return Ok(Vec::new());
    }
    to_mat(a).singular_values().map_err(|e| DecompError(format!("SVD did not converge: {e:?}")))
}

/// The thin Q factor of `a`'s transpose, returned transposed: for `a` of shape `[r, c]` with
/// `r <= c`, rows that are orthonormal and span `a`'s rows; with `r > c`, orthonormal columns.
/// Signs are fixed so that R has a non-negative diagonal (Mezzadri 2007), which makes the
/// result Haar-distributed when `a` is Gaussian (orthogonal initialisation, Saxe et al. 2014).
pub fn orthonormal_rows<T: Scalar>(a: ArrayView2<'_, T>) -> Array2<T> {
    let (r, c) = a.dim();
    let tall = if r >= c { a.to_owned() } else { a.t().to_owned() };
    let m = to_mat(tall.view());
    let qr = m.qr();
    let q = qr.compute_thin_Q();
    let rr = qr.thin_R();
    let k = tall.ncols();
    let mut out = Array2::from_shape_fn((tall.nrows(), k), |(i, j)| q[(i, j)]);
    for j in 0..k {
        if rr[(j, j)] < T::zero() {
            out.column_mut(j).mapv_inplace(|x| -x);
        }
    }
    if r >= c { out } else { out.t().to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eigen_of_known_matrix() {
        let a = ndarray::array![[2.0, 1.0], [1.0, 2.0]];
        let e = symmetric_eigen(a.view()).unwrap();
        assert!((e.values[0] - 1.0f64).abs() < 1e-14 && (e.values[1] - 3.0).abs() < 1e-14);
        let v = e.vectors.column(1);
        assert!((v[0].abs() - 0.5f64.sqrt()).abs() < 1e-14);
    }

    #[test]
    fn singular_values_of_diagonal() {
        let a = ndarray::array![[3.0, 0.0, 0.0], [0.0, -5.0, 0.0]];
        let s = singular_values(a.view()).unwrap();
        assert!((s[0] - 5.0f64).abs() < 1e-14 && (s[1] - 3.0).abs() < 1e-14);
    }

    #[test]
    fn orthonormal_rows_are_orthonormal() {
        let a = Array2::from_shape_fn((3, 5), |(i, j)| ((i * 5 + j) as f64).sin());
        let q = orthonormal_rows(a.view());
        assert_eq!(q.dim(), (3, 5));
        let g = q.dot(&q.t());
        for i in 0..3 {
            for j in 0..3 {
                let e = if i == j { 1.0 } else { 0.0 };
                assert!((g[(i, j)] - e).abs() < 1e-13);
            }
        }
        let b = Array2::from_shape_fn((6, 2), |(i, j)| ((i * 2 + j) as f64).cos());
        let q = orthonormal_rows(b.view());
        let g = q.t().dot(&q);
        assert!((g[(0, 0)] - 1.0).abs() < 1e-13 && g[(0, 1)].abs() < 1e-13);
    }
}
