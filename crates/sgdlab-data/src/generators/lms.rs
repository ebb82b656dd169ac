//! LMS-k, MS-k and noisy LMS-7: the linear/slab data of the simplicity-bias pitfalls.

use crate::transform::{choose, randomise_columns};
use crate::{DataError, Dataset, Split, Targets};
use ndarray::Array2;
use rand::RngExt;
use serde::{Deserialize, Serialize};
use sgdlab_linalg::RngStream;
use sgdlab_linalg::memory::Estimate;

/// The simple coordinate (coordinate 0 before rotation) of [`LmsSpec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SimpleCoordinate {
    /// Linearly separable: `x_0 = (2y - 1)(margin + (1 - margin) u)`.
    Linear,
    /// A `k`-slab coordinate (3, 5 or 7), as in MS-(5,7).
    Slabs(usize),
}

/// LMS-k / MS-k data (Shah, Tamuly, Raghunathan, Jain & Netrapalli, "The Pitfalls of Simplicity
/// Bias in Neural Networks", NeurIPS 2020; construction as in their code, data width w = 1).
///
/// Labels `y in {0, 1}` are fair coin flips. Given `y`, the coordinates are independent:
/// - coordinate 0 is the simple one: linear, `x_0 = (2y - 1)(m + (1 - m) u)`, `u ~ U(0, 1)`,
///   so `|x_0| >= m` (margin `m`, gap `2m`); or a slab coordinate (MS-(5,7));
/// - coordinates `1..=complex` are `k`-slab coordinates: `[-1, 1]` is cut into `k` slabs of width
///   `s = (2 - 2(k - 1) m) / k` separated by gaps `2m`; slab `j` (0 = centre) covers
///   `±[(j - 1/2) s + 2 j m, (j + 1/2) s + 2 j m]`, odd slabs are positive, even ones negative; a
///   value is drawn in a slab uniformly, with a random sign. Slab probabilities (from the code):
///   3-slab: positive in slab 1, negative in the centre; 5-slab: positive in slab 1, negative in
///   the centre w.p. 3/4 else slab 2; 7-slab: positive in slab 1 w.p. 7/8 else slab 3, negative in
///   the centre or slab 2 w.p. 1/2 each. Each slab coordinate alone predicts `y` perfectly;
/// - the remaining coordinates are noise `U(0, 1)`;
/// - with `linear_noise = p > 0` ("noisy LMS-7"), exactly `round(p n)` examples of each split have
///   `x_0` redrawn from `U(-m, m)`, inside the margin (so the linear coordinate is only about
///   `1 - p/2` predictive);
/// - with `rotate`, every input is multiplied by one Haar-random orthogonal `R`: `x -> x R`.
///
/// Splits: `train` (`n_train`), `test` (`n_test`), and the randomised test sets, built in the
/// un-rotated basis and then rotated: `test-s-randomised` (coordinate 0 permuted across the test
/// examples) and `test-sc-randomised` (coordinates `1..d` permuted together by one permutation).
/// Streams: `lms/train`, `lms/test`, `lms/rotation`, `lms/s-randomised`, `lms/sc-randomised`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LmsSpec {
    /// The simple coordinate.
    pub simple: SimpleCoordinate,
    /// Slabs of the complex coordinates (3, 5 or 7).
    pub slabs: usize,
    /// Input dimension.
    pub d: usize,
    /// Number of complex (slab) coordinates; the other `d - 1 - complex` are noise.
    pub complex: usize,
    /// Training examples.
    pub n_train: usize,
    /// Test examples.
    pub n_test: usize,
    /// Margin `m` (as a fraction of the width 1).
    pub margin: f64,
    /// Fraction of examples whose linear coordinate is redrawn inside the margin.
    pub linear_noise: f64,
    /// Apply a random rotation.
    pub rotate: bool,
    /// Seed.
    pub seed: u64,
}

impl Default for LmsSpec {
    /// LMS-5 of the CPU protocol: d = 50, 20k / 5k, margin 0.1, rotated.
    fn default() -> Self {
        LmsSpec {
            simple: SimpleCoordinate::Linear,
            slabs: 5,
            d: 50,
            complex: 49,
            n_train: 20_000,
            n_test: 5_000,
            margin: 0.1,
            linear_noise: 0.0,
            rotate: true,
            seed: 0,
        }
    }
}

/// LMS data with what the randomisation tests need.
#[derive(Debug, Clone)]
pub struct LmsData {
    /// The dataset (rotated if the spec says so).
    pub dataset: Dataset,
    /// The rotation `R` (inputs are `x_unrotated R`), if any.
    pub rotation: Option<Array2<f32>>,
    /// The simple coordinates `S` in the un-rotated basis (`[0]`).
    pub simple_coordinates: Vec<usize>,
    /// The complex coordinates (`1..=complex`).
    pub complex_coordinates: Vec<usize>,
}

/// Slab width for `k` slabs of margin `m` on `[-1, 1]`.
pub(crate) fn slab_width(k: usize, m: f64) -> f64 {
    (2.0 - 2.0 * (k as f64 - 1.0) * m) / k as f64
}

/// The slab (0 = centre, counting outwards) of a `k`-slab coordinate with margin `m` that `x` falls
/// into; `None` in a gap. Odd slabs are positive, even ones negative.
pub fn lms_slab_index(x: f64, k: usize, m: f64) -> Option<usize> {
    let s = slab_width(k, m);
    let a = x.abs();
    (0..=(k - 1) / 2).find(|&j| {
        let lo = if j == 0 { 0.0 } else { (j as f64 - 0.5) * s + 2.0 * j as f64 * m };
        let hi = (j as f64 + 0.5) * s + 2.0 * j as f64 * m;
        a >= lo && a <= hi
    })
}

fn slab_value(k: usize, m: f64, positive: bool, rng: &mut impl rand::Rng) -> f64 {
    let u: f64 = rng.random();
    let slab = match (k, positive) {
        (_, true) if k == 7 && u >= 7.0 / 8.0 => 3,
        (_, true) => 1,
        (5, false) if u >= 0.75 => 2,
        (7, false) if u >= 0.5 => 2,
        _ => 0,
    };
    let s = slab_width(k, m);
    let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
    let v: f64 = rng.random();
    if slab == 0 { sign * 0.5 * s * v } else { sign * ((slab as f64 - 0.5) * s + 2.0 * slab as f64 * m + s * v) }
}

impl LmsSpec {
    /// MS-k (`simple` = `simple_slabs`-slab, e.g. MS-(5,7)), otherwise like the default.
    pub fn ms(simple_slabs: usize, slabs: usize) -> LmsSpec {
        LmsSpec { simple: SimpleCoordinate::Slabs(simple_slabs), slabs, ..LmsSpec::default() }
    }

    fn validate(&self) -> Result<(), DataError> {
        let bad = |m: String| Err(DataError::invalid("lms", m));
        let ks: &[usize] = match self.simple {
            SimpleCoordinate::Slabs(k) => &[k, self.slabs],
            SimpleCoordinate::Linear => &[self.slabs],
        };
        for &k in ks {
            if ![3, 5, 7].contains(&k) {
                return bad(format!("{k} slabs: only 3, 5 and 7 are defined"));
            }
            if slab_width(k, self.margin) <= 0.0 {
                return bad(format!("margin {} leaves no room for {k} slabs", self.margin));
            }
        }
        if !(self.margin > 0.0 && self.margin < 1.0) {
            return bad(format!("margin {} is not in (0, 1)", self.margin));
        }
        if self.d < 1 || self.complex > self.d - 1 {
            return bad(format!(
                "{} complex coordinates do not fit in d = {} beside the simple one",
                self.complex, self.d
            ));
        }
        if self.n_train == 0 || self.n_test < 2 {
            return bad("need a non-empty train split and at least 2 test examples".into());
        }
        if !(0.0..=1.0).contains(&self.linear_noise) {
            return bad(format!("linear noise fraction {} is not in [0, 1]", self.linear_noise));
        }
        if self.linear_noise > 0.0 && self.simple != SimpleCoordinate::Linear {
            return bad("linear noise needs a linear simple coordinate".into());
        }
        Ok(())
    }

    /// `n` un-rotated examples from `stream`.
    fn sample(&self, n: usize, stream: &RngStream) -> (Array2<f64>, Vec<u32>) {
        let mut rng = stream.rng();
        let m = self.margin;
        let mut x = Array2::<f64>::zeros((n, self.d));
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let label: bool = rng.random();
            y.push(u32::from(label));
            x[[i, 0]] = match self.simple {
                SimpleCoordinate::Linear => (if label { 1.0 } else { -1.0 }) * (m + (1.0 - m) * rng.random::<f64>()),
                SimpleCoordinate::Slabs(k) => slab_value(k, m, label, &mut rng),
            };
            for j in 1..self.d {
                x[[i, j]] =
                    if j <= self.complex { slab_value(self.slabs, m, label, &mut rng) } else { rng.random::<f64>() };
            }
        }
        if self.linear_noise > 0.0 {
            let k = (self.linear_noise * n as f64).round() as usize;
            for i in choose(&mut rng, n, k) {
                x[[i, 0]] = m * (2.0 * rng.random::<f64>() - 1.0);
            }
        }
        (x, y)
    }

    /// The dataset and its rotation.
    pub fn generate(&self) -> Result<LmsData, DataError> {
        self.validate()?;
        let rows = self.n_test.checked_mul(3).and_then(|t| t.checked_add(self.n_train)).unwrap_or(usize::MAX);
        Estimate::new(format!("lms data with {} + {} examples of dimension {}", self.n_train, self.n_test, self.d))
            .array(&[rows, self.d], 8 + 4 + 4)
            .array(&[rows], 4)
            .array(&[self.d, self.d], 8 * 3)
            .check()?;
        let root = RngStream::new(self.seed).child("lms");
        let rotation = self.rotate.then(|| super::haar_orthogonal(self.d, &mut root.child("rotation").rng()));
        let finish = |x: Array2<f64>| -> Array2<f32> {
            match &rotation {
                Some(r) => x.dot(r).mapv(|v| v as f32),
                None => x.mapv(|v| v as f32),
            }
        };
        let classes = |y: Vec<u32>| Targets::Classes { labels: y, num_classes: 2 };
        let (xtr, ytr) = self.sample(self.n_train, &root.child("train"));
        let (xte, yte) = self.sample(self.n_test, &root.child("test"));
        // Randomise in the un-rotated basis, then rotate.
        let raw_test = Split::new("test", xte.mapv(|v| v as f32), classes(yte.clone()))?;
        let complex: Vec<usize> = (1..self.d).collect();
        let s_rand = randomise_columns(&raw_test, &[0], "test-s-randomised", &root.child("s-randomised"))?;
        let sc_rand = randomise_columns(&raw_test, &complex, "test-sc-randomised", &root.child("sc-randomised"))?;
        let rotate_split = |s: Split| -> Result<Split, DataError> {
            let (name, x, t) = s.into_parts();
            Split::new(name, finish(x.mapv(f64::from)), t)
        };
        let splits = vec![
            Split::new("train", finish(xtr), classes(ytr))?,
            Split::new("test", finish(xte), classes(yte))?,
            rotate_split(s_rand)?,
            rotate_split(sc_rand)?,
        ];
        Ok(LmsData {
            dataset: Dataset::new("lms", None, splits)?,
            rotation: rotation.map(|r| r.mapv(|v| v as f32)),
            simple_coordinates: vec![0],
            complex_coordinates: (1..=self.complex).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slab_geometry_matches_the_protocol() {
        // 5 slabs, m = 0.1: width 0.24, positives in ±[0.32, 0.56], outer negatives ±[0.76, 1].
        assert!((slab_width(5, 0.1) - 0.24).abs() < 1e-12);
        assert_eq!(lms_slab_index(0.33, 5, 0.1), Some(1));
        assert_eq!(lms_slab_index(-0.9, 5, 0.1), Some(2));
        assert_eq!(lms_slab_index(0.2, 5, 0.1), None);
        // 7 slabs: the outermost ends at 1.
        let s = slab_width(7, 0.1);
        assert!(((3.5 * s + 6.0 * 0.1) - 1.0).abs() < 1e-12);
    }
}
