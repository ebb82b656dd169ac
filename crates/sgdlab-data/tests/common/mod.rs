//! Helpers shared by the integration tests.
#![allow(dead_code)]

use ndarray::{Array1, Array2};
use std::path::PathBuf;

/// `shared/data` beside the repository (read in place, never copied), or `$SGDLAB_SHARED_DATA`.
pub fn shared_data() -> PathBuf {
    let dir = std::env::var_os("SGDLAB_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data")));
    assert!(dir.is_dir(), "shared data folder {} not found (set SGDLAB_SHARED_DATA)", dir.display());
    dir
}

/// Softmax regression trained by full-batch gradient descent (mean cross-entropy, no
/// regularisation): returns `(W [d, c], b [c])`.
pub fn softmax_regression(
    x: &Array2<f32>,
    y: &[u32],
    classes: usize,
    steps: usize,
    lr: f64,
) -> (Array2<f64>, Array1<f64>) {
    let x = x.mapv(f64::from);
    let (n, d) = x.dim();
    let mut w = Array2::<f64>::zeros((d, classes));
    let mut b = Array1::<f64>::zeros(classes);
    for _ in 0..steps {
        let mut p = x.dot(&w) + &b;
        for mut row in p.rows_mut() {
            let m = row.fold(f64::NEG_INFINITY, |a, &v| a.max(v));
            row.mapv_inplace(|v| (v - m).exp());
            let s = row.sum();
            row.mapv_inplace(|v| v / s);
        }
        for (i, &l) in y.iter().enumerate() {
            p[[i, l as usize]] -= 1.0;
        }
        p /= n as f64;
        w -= &(x.t().dot(&p) * lr);
        b -= &(p.sum_axis(ndarray::Axis(0)) * lr);
    }
    (w, b)
}

/// Accuracy of a linear classifier.
pub fn accuracy(w: &Array2<f64>, b: &Array1<f64>, x: &Array2<f32>, y: &[u32]) -> f64 {
    let s = x.mapv(f64::from).dot(w) + b;
    let correct = s
        .rows()
        .into_iter()
        .zip(y)
        .filter(|(r, l)| {
            let best = (0..r.len()).fold(0, |bi, j| if r[j] > r[bi] { j } else { bi });
            best == **l as usize
        })
        .count();
    correct as f64 / y.len() as f64
}
