//! Dense test matrices `Q^T diag(lambda) Q` with chosen spectra, and comparison helpers.
#![allow(dead_code)]

use ndarray::{Array1, Array2};
use sgdlab_linalg::{RngStream, Scalar, matmul_into, orthonormal_rows, standard_normal};
use sgdlab_operators::{DenseOperator, LinearOperator};

/// A Haar-random orthogonal matrix (rows orthonormal) from a named stream.
pub fn random_orthogonal(n: usize, stream: &RngStream) -> Array2<f64> {
    let mut rng = stream.rng();
    let g = Array2::from_shape_simple_fn((n, n), || standard_normal::<f64, _>(&mut rng));
    orthonormal_rows(g.view())
}

/// A symmetric matrix with a known spectrum: `A = Q^T diag(lambda) Q`, eigenvector `i` is row `i`
/// of `Q`.
pub struct Known {
    pub matrix: Array2<f64>,
    pub eigenvalues: Vec<f64>,
    /// Row `i` is the unit eigenvector of `eigenvalues[i]`.
    pub eigenvectors: Array2<f64>,
}

impl Known {
    pub fn new(eigenvalues: Vec<f64>, stream: &RngStream) -> Self {
        let n = eigenvalues.len();
        let q = random_orthogonal(n, stream);
        let mut qt_l = q.t().to_owned();
        for (mut col, &l) in qt_l.columns_mut().into_iter().zip(&eigenvalues) {
            col *= l;
        }
        let mut a = Array2::zeros((n, n));
        matmul_into(a.view_mut(), false, qt_l.view(), q.view(), 1.0);
        let matrix = (&a + &a.t()) * 0.5;
        Known { matrix, eigenvalues, eigenvectors: q }
    }

    pub fn op(&self) -> DenseOperator<f64> {
        DenseOperator::new(self.matrix.clone()).unwrap()
    }

    pub fn op_f32(&self) -> DenseOperator<f32> {
        DenseOperator::new(self.matrix.mapv(|x| x as f32)).unwrap()
    }

    pub fn n(&self) -> usize {
        self.eigenvalues.len()
    }

    pub fn sorted_desc(&self) -> Vec<f64> {
        let mut v = self.eigenvalues.clone();
        v.sort_by(|a, b| b.total_cmp(a));
        v
    }

    pub fn sorted_asc(&self) -> Vec<f64> {
        let mut v = self.eigenvalues.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        v
    }

    pub fn trace(&self) -> f64 {
        self.eigenvalues.iter().sum()
    }

    pub fn norm2(&self) -> f64 {
        self.eigenvalues.iter().fold(0.0f64, |m, l| m.max(l.abs()))
    }

    /// Distance from `x` to the nearest eigenvalue.
    pub fn distance_to_spectrum(&self, x: f64) -> f64 {
        self.eigenvalues.iter().map(|l| (l - x).abs()).fold(f64::INFINITY, f64::min)
    }
}

pub fn linspace(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![lo];
    }
    (0..n).map(|i| lo + (hi - lo) * i as f64 / (n - 1) as f64).collect()
}

/// Evenly spread in [1, 2].
pub fn flat(n: usize) -> Vec<f64> {
    linspace(1.0, 2.0, n)
}

/// `lambda_i = (i + 1)^(-alpha)`.
pub fn power_law(n: usize, alpha: f64) -> Vec<f64> {
    (0..n).map(|i| ((i + 1) as f64).powf(-alpha)).collect()
}

/// Five outliers 100, 90, 80, 70, 60 over a bulk spread in [0, 1] (a Hessian-like spectrum).
pub fn outliers(n: usize) -> Vec<f64> {
    let mut v = vec![100.0, 90.0, 80.0, 70.0, 60.0];
    v.extend(linspace(0.0, 1.0, n - 5));
    v
}

/// Indefinite: -50, -40, -30 below a bulk in [-1, 5], and 20 above it.
pub fn indefinite(n: usize) -> Vec<f64> {
    let mut v = vec![-50.0, -40.0, -30.0, 20.0];
    v.extend(linspace(-1.0, 5.0, n - 4));
    v
}

/// A triple eigenvalue 10 on top of 5 and a bulk in [0, 1].
pub fn repeated(n: usize) -> Vec<f64> {
    let mut v = vec![10.0, 10.0, 10.0, 5.0];
    v.extend(linspace(0.0, 1.0, n - 4));
    v
}

/// Assert `|actual_i - expected_i| <= atol + rtol |expected_i|` for all `i`; on failure, print the
/// five worst entries (index, expected, actual, error / allowed).
#[track_caller]
pub fn assert_close_all(what: &str, expected: &[f64], actual: &[f64], atol: f64, rtol: f64) {
    assert_eq!(expected.len(), actual.len(), "{what}: lengths differ");
    let mut rows: Vec<(usize, f64, f64, f64)> = expected
        .iter()
        .zip(actual)
        .enumerate()
        .map(|(i, (&e, &a))| (i, e, a, (a - e).abs() / (atol + rtol * e.abs())))
        .collect();
    rows.sort_by(|x, y| y.3.total_cmp(&x.3));
    if rows.first().is_some_and(|r| r.3.is_nan() || r.3 > 1.0) {
        let worst: Vec<String> = rows
            .iter()
            .take(5)
            .map(|(i, e, a, r)| format!("  [{i}] expected {e:.17e} actual {a:.17e} (error / allowed = {r:.3e})"))
            .collect();
        panic!("{what}: entries outside atol = {atol:e}, rtol = {rtol:e}; worst:\n{}", worst.join("\n"));
    }
}

/// Largest `|M_ij - I_ij|` of `M = V V^T` for the rows of `v`, with its index.
pub fn orthonormality_defect<T: Scalar>(v: &Array2<T>) -> (f64, (usize, usize)) {
    let v64 = v.mapv(|x| x.to_f64());
    let g = v64.dot(&v64.t());
    let mut worst = (0.0, (0, 0));
    for ((i, j), &x) in g.indexed_iter() {
        let d = (x - if i == j { 1.0 } else { 0.0 }).abs();
        if d > worst.0 {
            worst = (d, (i, j));
        }
    }
    worst
}

/// `||A y - theta y||` computed directly.
pub fn true_residual(a: &Array2<f64>, y: Array1<f64>, theta: f64) -> f64 {
    let r = a.dot(&y) - &(&y * theta);
    r.dot(&r).sqrt()
}

/// An operator that returns a block of the wrong shape (for error tests).
pub struct WrongShape(pub usize);
impl LinearOperator<f64> for WrongShape {
    fn dim(&self) -> usize {
        self.0
    }
    fn apply_block(&self, block: ndarray::ArrayView2<'_, f64>) -> Array2<f64> {
        Array2::zeros((block.nrows(), self.0 + 1))
    }
}

/// An operator that returns NaN (for error tests).
pub struct NanOperator(pub usize);
impl LinearOperator<f64> for NanOperator {
    fn dim(&self) -> usize {
        self.0
    }
    fn apply_block(&self, block: ndarray::ArrayView2<'_, f64>) -> Array2<f64> {
        Array2::from_elem(block.dim(), f64::NAN)
    }
}
