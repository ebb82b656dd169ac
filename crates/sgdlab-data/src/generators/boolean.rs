//! The boolean cube {-1, 1}^d with parity, monomial, AND and random targets.

use crate::transform::choose;
use crate::{DataError, Dataset, Split, Targets};
use ndarray::Array2;
use rand::RngExt;
use serde::{Deserialize, Serialize};
use sgdlab_linalg::RngStream;

/// The target function of [`BooleanCubeSpec`], on the coordinate set `S`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BooleanTarget {
    /// Parity as a class: label 1 iff an odd number of the coordinates in `S` are -1
    /// (i.e. `chi_S(x) = -1`); 2 classes.
    Parity,
    /// The monomial `chi_S(x) = prod_{i in S} x_i` in {-1, 1} as a regression target `[n, 1]`.
    Monomial,
    /// AND: label 1 iff every coordinate in `S` is +1; 2 classes.
    And,
    /// A uniformly random boolean function (label of each of the `2^d` points a fair coin, stream
    /// `boolean/function`); 2 classes. `S` is ignored.
    Random,
}

/// The boolean cube (Yang & Salman 2019, "A Fine-Grained Spectral Perspective on Neural
/// Networks"; Mingard et al. 2021, "Is SGD a Bayesian sampler? Well, almost"). Point `j` in
/// `0..2^d` has `x_i = -1` if bit `i` of `j` is set, else `+1` (so `||x||^2 = d`). The coordinate
/// set `S` is `set` if given, else the first `degree` coordinates, else all `d`.
///
/// Without `n_train`, the single split `train` holds all `2^d` points in the order of `j`. With
/// `n_train = k`, `train` holds `k` points drawn uniformly without replacement (stream
/// `boolean/split`) and `test` the other `2^d - k`, each in the order of `j`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BooleanCubeSpec {
    /// Dimension (1..=20).
    pub d: usize,
    /// Target function.
    pub target: BooleanTarget,
    /// `|S|` when `set` is not given (`None`: all `d` coordinates).
    pub degree: Option<usize>,
    /// Explicit coordinate set `S` (0-based).
    pub set: Option<Vec<usize>>,
    /// Points in `train` (the rest are `test`); `None` = all points in `train`.
    pub n_train: Option<usize>,
    /// Seed (random function and train/test split).
    pub seed: u64,
}

impl Default for BooleanCubeSpec {
    /// d = 7, parity of all 7 coordinates, the whole cube.
    fn default() -> Self {
        BooleanCubeSpec { d: 7, target: BooleanTarget::Parity, degree: None, set: None, n_train: None, seed: 0 }
    }
}

impl BooleanCubeSpec {
    /// The coordinate set `S`.
    pub fn coordinates(&self) -> Vec<usize> {
        self.set.clone().unwrap_or_else(|| (0..self.degree.unwrap_or(self.d)).collect())
    }

    /// All `2^d` points, `[2^d, d]`.
    pub fn points(&self) -> Array2<f32> {
        Array2::from_shape_fn((1 << self.d, self.d), |(j, i)| if (j >> i) & 1 == 1 { -1.0 } else { 1.0 })
    }

    /// The split(s) described above.
    pub fn generate(&self) -> Result<Dataset, DataError> {
        if self.d == 0 || self.d > 20 {
            return Err(DataError::invalid("boolean", format!("d = {} is not in 1..=20", self.d)));
        }
        let s = self.coordinates();
        if let Some(i) = s.iter().find(|&&i| i >= self.d) {
            return Err(DataError::invalid("boolean", format!("coordinate {i} is not below d = {}", self.d)));
        }
        let npts = 1usize << self.d;
        let root = RngStream::new(self.seed).child("boolean");
        let odd = |j: usize| s.iter().filter(|&&i| (j >> i) & 1 == 1).count() % 2 == 1;
        let random: Vec<u32> = if self.target == BooleanTarget::Random {
            let mut rng = root.child("function").rng();
            (0..npts).map(|_| u32::from(rng.random::<bool>())).collect()
        } else {
            Vec::new()
        };
        let targets_of = |idx: &[usize]| match self.target {
            BooleanTarget::Monomial => {
                Targets::Regression(Array2::from_shape_fn(
                    (idx.len(), 1),
                    |(r, _)| if odd(idx[r]) { -1.0 } else { 1.0 },
                ))
            }
            BooleanTarget::Parity => {
                Targets::Classes { labels: idx.iter().map(|&j| u32::from(odd(j))).collect(), num_classes: 2 }
            }
            BooleanTarget::And => Targets::Classes {
                labels: idx.iter().map(|&j| u32::from(s.iter().all(|&i| (j >> i) & 1 == 0))).collect(),
                num_classes: 2,
            },
            BooleanTarget::Random => {
                Targets::Classes { labels: idx.iter().map(|&j| random[j]).collect(), num_classes: 2 }
            }
        };
        let points = self.points();
        let make = |name: &str, idx: &[usize]| Split::new(name, points.select(ndarray::Axis(0), idx), targets_of(idx));
        let splits = match self.n_train {
            None => vec![make("train", &(0..npts).collect::<Vec<_>>())?],
            Some(k) => {
                if k == 0 || k >= npts {
                    return Err(DataError::invalid("boolean", format!("n_train = {k} must be in 1..{npts}")));
                }
                let mut tr = choose(&mut root.child("split").rng(), npts, k);
                tr.sort_unstable();
                let te: Vec<usize> = (0..npts).filter(|j| tr.binary_search(j).is_err()).collect();
                vec![make("train", &tr)?, make("test", &te)?]
            }
        };
        Dataset::new("boolean", None, splits)
    }
}
