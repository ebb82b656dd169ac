//! Low-rank matrix completion.

use crate::transform::choose;
use crate::{DataError, Dataset, Split, Targets};
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use sgdlab_linalg::{RngStream, standard_normal};

/// Low-rank matrix completion (Huh et al., "The Low-Rank Simplicity Bias in Deep Networks", TMLR
/// 2023; the deep-linear setting of Arora, Cohen, Hu & Luo 2019): ground truth `M* = U V^T / sqrt(r)`
/// with `U [rows, r]`, `V [cols, r]` iid N(0, 1) (stream `matrix-completion/factors`, so entries
/// have unit variance), and exactly `round(observed * rows * cols)` entries observed, chosen
/// uniformly without replacement (stream `matrix-completion/mask`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatrixCompletionSpec {
    /// Rows of `M*`.
    pub rows: usize,
    /// Columns of `M*`.
    pub cols: usize,
    /// Rank `r`.
    pub rank: usize,
    /// Fraction of entries observed.
    pub observed: f64,
    /// Seed.
    pub seed: u64,
}

impl Default for MatrixCompletionSpec {
    /// The protocol's 32 x 32, rank 3, 30% observed.
    fn default() -> Self {
        MatrixCompletionSpec { rows: 32, cols: 32, rank: 3, observed: 0.3, seed: 0 }
    }
}

/// A matrix-completion problem.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixCompletion {
    /// The ground truth `M*`, `[rows, cols]`.
    pub truth: Array2<f32>,
    /// `true` where an entry is observed.
    pub observed: Array2<bool>,
}

impl MatrixCompletion {
    /// Observed entries `(row, col)` in row-major order.
    pub fn observed_entries(&self) -> Vec<(usize, usize)> {
        self.observed.indexed_iter().filter(|(_, o)| **o).map(|(ij, _)| ij).collect()
    }

    /// As a dataset: one example per entry, features the one-hot row followed by the one-hot
    /// column (`rows + cols` features), regression target the entry `[n, 1]`; split `train` = the
    /// observed entries, `test` = the others, each in row-major order.
    pub fn to_dataset(&self) -> Result<Dataset, DataError> {
        let (m, n) = self.truth.dim();
        let mut splits = Vec::new();
        for (name, want) in [("train", true), ("test", false)] {
            let entries: Vec<(usize, usize)> =
                self.observed.indexed_iter().filter(|(_, o)| **o == want).map(|(ij, _)| ij).collect();
            let mut x = Array2::<f32>::zeros((entries.len(), m + n));
            let mut y = Array2::<f32>::zeros((entries.len(), 1));
            for (k, &(i, j)) in entries.iter().enumerate() {
                x[[k, i]] = 1.0;
                x[[k, m + j]] = 1.0;
                y[[k, 0]] = self.truth[[i, j]];
            }
            splits.push(Split::new(name, x, Targets::Regression(y))?);
        }
        Dataset::new("matrix-completion", None, splits)
    }
}

impl MatrixCompletionSpec {
    /// The problem.
    pub fn generate(&self) -> Result<MatrixCompletion, DataError> {
        let total = self.rows * self.cols;
        let k = (self.observed * total as f64).round() as usize;
        if self.rank == 0 || self.rank > self.rows.min(self.cols) {
            return Err(DataError::invalid(
                "matrix-completion",
                format!("rank {} is not in 1..={}", self.rank, self.rows.min(self.cols)),
            ));
        }
        if !(self.observed > 0.0 && self.observed < 1.0) || k == 0 || k == total {
            return Err(DataError::invalid(
                "matrix-completion",
                format!("observed fraction {} must leave both observed and hidden entries", self.observed),
            ));
        }
        let root = RngStream::new(self.seed).child("matrix-completion");
        let mut rng = root.child("factors").rng();
        let u = Array2::from_shape_fn((self.rows, self.rank), |_| standard_normal::<f64, _>(&mut rng));
        let v = Array2::from_shape_fn((self.cols, self.rank), |_| standard_normal::<f64, _>(&mut rng));
        let truth = (u.dot(&v.t()) / (self.rank as f64).sqrt()).mapv(|a| a as f32);
        let mut observed = Array2::from_elem((self.rows, self.cols), false);
        for e in choose(&mut root.child("mask").rng(), total, k) {
            observed[[e / self.cols, e % self.cols]] = true;
        }
        Ok(MatrixCompletion { truth, observed })
    }
}
