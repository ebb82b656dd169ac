//! Low-rank matrix completion.

use crate::transform::choose;
use crate::{DataError, Dataset, Split, Targets};
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use sgdlab_linalg::memory::Estimate;
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
    /// How the problem is laid out as a dataset.
    pub layout: CompletionLayout,
}

/// Dataset layouts of a matrix-completion problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompletionLayout {
    /// One example per entry: features one-hot row then one-hot column (`rows + cols`), target
    /// the entry; train = observed entries, test = hidden ones.
    #[default]
    Entries,
    /// One example per column `c`: features the one-hot `e_c` (`cols`), targets the column
    /// `M[:, c]` (`rows` values) with the entries of the other split marked unobserved (NaN; MSE
    /// ignores them). A network `W = W_L ... W_1` then predicts `M` as a whole: the deep linear
    /// matrix completion of Arora et al. (2019) and Huh et al. (PROTOCOLS 1.3b).
    Columns,
}

impl Default for MatrixCompletionSpec {
    /// The protocol's 32 x 32, rank 3, 30% observed.
    fn default() -> Self {
        MatrixCompletionSpec { rows: 32, cols: 32, rank: 3, observed: 0.3, seed: 0, layout: CompletionLayout::Entries }
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
        self.to_dataset_with(CompletionLayout::Entries)
    }

    /// The problem as a dataset in the given layout.
    pub fn to_dataset_with(&self, layout: CompletionLayout) -> Result<Dataset, DataError> {
        let (m, n) = self.truth.dim();
        if layout == CompletionLayout::Columns {
            let mut splits = Vec::new();
            for (name, want) in [("train", true), ("test", false)] {
                let x = Array2::<f32>::eye(n);
                let y = Array2::from_shape_fn((n, m), |(c, r)| {
                    if self.observed[[r, c]] == want { self.truth[[r, c]] } else { f32::NAN }
                });
                splits.push(Split::new(name, x, Targets::Regression(y))?);
            }
            return Dataset::new("matrix-completion", None, splits);
        }
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
        let (r, c) = (self.rows, self.cols);
        let features = match self.layout {
            CompletionLayout::Entries => Estimate::new("").array(&[r, c, r.saturating_add(c).saturating_add(1)], 4),
            CompletionLayout::Columns => Estimate::new("").array(&[c, c], 4 * 2).array(&[c, r], 4 * 2),
        };
        Estimate::new(format!("a {r} x {c} matrix-completion problem"))
            .array(&[r, c], 8 + 4 + 1 + 8)
            .array(&[r.saturating_add(c), self.rank], 8)
            .plus(&features)
            .check()?;
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

#[cfg(test)]
mod layout_tests {
    use super::*;

    #[test]
    fn column_layout_partitions_the_entries_between_train_and_test() {
        let mc = MatrixCompletionSpec::default().generate().unwrap();
        let d = mc.to_dataset_with(CompletionLayout::Columns).unwrap();
        let (tr, te) = (d.train().unwrap(), d.test().unwrap());
        assert_eq!((tr.len(), tr.dim()), (32, 32));
        let (ytr, yte) = (tr.targets().values().unwrap(), te.targets().values().unwrap());
        let observed = ytr.iter().filter(|v| !v.is_nan()).count();
        let hidden = yte.iter().filter(|v| !v.is_nan()).count();
        assert_eq!((observed, hidden), (307, 1024 - 307));
        for c in 0..32 {
            assert_eq!(tr.features()[[c, c]], 1.0);
            for r in 0..32 {
                // Exactly one split holds each entry, with the true value.
                let (a, b) = (ytr[[c, r]], yte[[c, r]]);
                assert!(a.is_nan() != b.is_nan());
                assert_eq!(if a.is_nan() { b } else { a }, mc.truth[[r, c]]);
            }
        }
    }
}
