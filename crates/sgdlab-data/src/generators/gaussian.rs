//! Gaussian mixtures, and Gaussian clones of a dataset.

use super::cholesky;
use crate::{DataError, Dataset, Split, Targets};
use ndarray::{Array1, Array2, Axis};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use sgdlab_linalg::memory::Estimate;
use sgdlab_linalg::{RngStream, standard_normal};

/// A mixture of isotropic Gaussian classes: class `c` has mean `mu_c = separation * g_c /
/// ||g_c||` with `g_c ~ N(0, I_d)` (stream `gaussian-mixture/means`), and examples
/// `x = mu_c + sd * z`, `z ~ N(0, I_d)`. Classes are balanced (class `c` gets
/// `floor(n / C)` examples, plus one if `c < n mod C`) and the order is shuffled. Splits `train`
/// and `test`. The "Gaussian clusters" of the rank-bias protocol (Timor, Vardi & Shamir 2022).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GaussianMixtureSpec {
    /// Number of classes.
    pub classes: usize,
    /// Dimension.
    pub d: usize,
    /// Training examples.
    pub n_train: usize,
    /// Test examples.
    pub n_test: usize,
    /// Distance of every class mean from the origin.
    pub separation: f64,
    /// Within-class standard deviation.
    pub sd: f64,
    /// Seed.
    pub seed: u64,
}

impl Default for GaussianMixtureSpec {
    fn default() -> Self {
        GaussianMixtureSpec { classes: 2, d: 20, n_train: 200, n_test: 1000, separation: 2.0, sd: 1.0, seed: 0 }
    }
}

fn balanced_labels(n: usize, classes: usize, rng: &mut impl rand::Rng) -> Vec<u32> {
    let mut y: Vec<u32> = (0..n).map(|i| (i % classes) as u32).collect();
    y.shuffle(rng);
    y
}

impl GaussianMixtureSpec {
    /// The class means `[C, d]`.
    pub fn means(&self) -> Array2<f64> {
        let mut rng = RngStream::new(self.seed).child("gaussian-mixture").child("means").rng();
        let mut mu = Array2::from_shape_fn((self.classes, self.d), |_| standard_normal::<f64, _>(&mut rng));
        for mut row in mu.rows_mut() {
            let norm = row.dot(&row).sqrt();
            row.mapv_inplace(|v| self.separation * v / norm);
        }
        mu
    }

    /// Splits `train` and `test`.
    pub fn generate(&self) -> Result<Dataset, DataError> {
        if self.classes < 2 || self.d == 0 || self.n_train == 0 || self.n_test == 0 {
            return Err(DataError::invalid(
                "gaussian-mixture",
                "need at least 2 classes, 1 dimension and non-empty splits",
            ));
        }
        if !(self.sd >= 0.0 && self.separation >= 0.0 && self.sd.is_finite() && self.separation.is_finite()) {
            return Err(DataError::invalid("gaussian-mixture", "sd and separation must be finite and non-negative"));
        }
        let n = self.n_train.saturating_add(self.n_test);
        Estimate::new(format!("gaussian-mixture with {n} examples of dimension {}", self.d))
            .array(&[n, self.d], 4)
            .array(&[n], 4)
            .array(&[self.classes, self.d], 8)
            .check()?;
        let mu = self.means();
        let root = RngStream::new(self.seed).child("gaussian-mixture");
        let mut splits = Vec::new();
        for (name, n) in [("train", self.n_train), ("test", self.n_test)] {
            let mut rng = root.child(name).rng();
            let y = balanced_labels(n, self.classes, &mut rng);
            let x = Array2::from_shape_fn((n, self.d), |(i, j)| {
                (mu[[y[i] as usize, j]] + self.sd * standard_normal::<f64, _>(&mut rng)) as f32
            });
            splits.push(Split::new(name, x, Targets::Classes { labels: y, num_classes: self.classes })?);
        }
        Dataset::new("gaussian-mixture", None, splits)
    }
}

/// Which statistics a Gaussian clone keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CloneKind {
    /// Class mean and an isotropic variance equal to the class's mean per-feature variance
    /// (`gpiso`).
    Isotropic,
    /// Class mean and full class covariance plus `ridge * I` (`gp`).
    Full,
}

/// Gaussian clones (Refinetti, Ingrosso & Goldt, "Neural networks trained with SGD learn
/// distributions of increasing complexity", ICML 2023): the `train` split of a dataset replaced by
/// samples that match its class-wise statistics up to second order. For each class `c` with
/// `n_c` training examples, mean `mu_c` and unbiased covariance `S_c`:
/// - `Isotropic`: `x = mu_c + sqrt(v_c) z`, `v_c = tr(S_c) / d`;
/// - `Full`: `x = mu_c + L_c z`, `L_c L_c^T = S_c + ridge I` (Cholesky, in f64);
///
/// with `z ~ N(0, I_d)`; the clone keeps the class counts and label order of the real `train`
/// split, and every other split (the real test set) unchanged. Stream: `gaussian-clone/train`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GaussianCloneSpec {
    /// Isotropic or full covariance.
    pub kind: CloneKind,
    /// Ridge added to the covariance diagonal (`Full` only).
    pub ridge: f64,
    /// Seed.
    pub seed: u64,
}

impl Default for GaussianCloneSpec {
    fn default() -> Self {
        GaussianCloneSpec { kind: CloneKind::Full, ridge: 1e-3, seed: 0 }
    }
}

/// The Gaussian clone of `base` (see [`GaussianCloneSpec`]).
pub fn gaussian_clone(base: &Dataset, spec: &GaussianCloneSpec) -> Result<Dataset, DataError> {
    let train = base.train()?;
    let Some(labels) = train.labels() else {
        return Err(DataError::invalid(base.name(), "a Gaussian clone needs class labels"));
    };
    let c = base.num_classes().unwrap_or(0);
    if !(spec.ridge >= 0.0 && spec.ridge.is_finite()) {
        return Err(DataError::invalid(base.name(), format!("ridge {} must be finite and non-negative", spec.ridge)));
    }
    let d = train.dim();
    let x = train.features().mapv(f64::from);
    let mut rng = RngStream::new(spec.seed).child("gaussian-clone").child("train").rng();
    let mut out = Array2::<f32>::zeros((train.len(), d));
    for class in 0..c as u32 {
        let members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        if members.is_empty() {
            continue;
        }
        if members.len() < 2 {
            return Err(DataError::invalid(
                base.name(),
                format!("class {class} has one training example; a covariance needs two"),
            ));
        }
        let xc = x.select(Axis(0), &members);
        let mu: Array1<f64> = xc.mean_axis(Axis(0)).unwrap_or_else(|| Array1::zeros(d));
        let centred = &xc - &mu;
        let nc = members.len() as f64;
        match spec.kind {
            CloneKind::Isotropic => {
                let v = centred.mapv(|a| a * a).sum() / ((nc - 1.0) * d as f64);
                let s = v.sqrt();
                for &i in &members {
                    for j in 0..d {
                        out[[i, j]] = (mu[j] + s * standard_normal::<f64, _>(&mut rng)) as f32;
                    }
                }
            }
            CloneKind::Full => {
                let mut cov = centred.t().dot(&centred) / (nc - 1.0);
                for j in 0..d {
                    cov[[j, j]] += spec.ridge;
                }
                let l = cholesky(&cov).ok_or_else(|| {
                    DataError::invalid(
                        base.name(),
                        format!("the covariance of class {class} is not positive definite; use a positive ridge"),
                    )
                })?;
                for &i in &members {
                    let z = Array1::from_shape_fn(d, |_| standard_normal::<f64, _>(&mut rng));
                    let v = l.dot(&z) + &mu;
                    for j in 0..d {
                        out[[i, j]] = v[j] as f32;
                    }
                }
            }
        }
    }
    let clone = Split::new("train", out, train.targets().clone())?;
    base.with_split("train", clone)
}
