//! MNIST-1D, generated procedurally.

use crate::{DataError, Dataset, Split, Targets};
use ndarray::Array2;
use rand::RngExt;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use sgdlab_linalg::memory::Estimate;
use sgdlab_linalg::{RngStream, standard_normal};

/// The ten hand-made digit templates of MNIST-1D (rows 0..9, 12 points each), before
/// standardisation.
pub const MNIST1D_RAW_TEMPLATES: [[f64; 12]; 10] = [
    [5.0, 6.0, 6.5, 6.75, 7.0, 7.0, 7.0, 7.0, 6.75, 6.5, 6.0, 5.0],
    [5.0, 3.0, 3.0, 3.4, 3.8, 4.2, 4.6, 5.0, 5.4, 5.8, 5.0, 5.0],
    [5.0, 6.0, 6.5, 6.5, 6.0, 5.25, 4.75, 4.0, 3.5, 3.5, 4.0, 5.0],
    [5.0, 6.0, 6.5, 6.5, 6.0, 5.0, 5.0, 6.0, 6.5, 6.5, 6.0, 5.0],
    [5.0, 4.4, 3.8, 3.2, 2.6, 2.6, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0],
    [5.0, 3.0, 3.0, 3.0, 3.0, 5.0, 6.0, 6.5, 6.5, 6.0, 4.5, 5.0],
    [5.0, 4.0, 3.5, 3.25, 3.0, 3.0, 3.0, 3.0, 3.25, 3.5, 4.0, 5.0],
    [5.0, 7.0, 7.0, 6.6, 6.2, 5.8, 5.4, 5.0, 4.6, 4.2, 5.0, 5.0],
    [5.0, 4.0, 3.5, 3.5, 4.0, 5.0, 5.0, 4.0, 3.5, 3.5, 4.0, 5.0],
    [5.0, 4.0, 3.5, 3.5, 4.0, 5.0, 5.0, 5.0, 5.0, 4.7, 4.3, 5.0],
];

/// The MNIST-1D templates as the generator uses them: each raw row minus its mean, over its
/// population sd, shifted to start at 0, divided by 6 (`[10, 12]`; equal to the published
/// `templates['x']`).
pub fn mnist1d_templates() -> Array2<f64> {
    Array2::from_shape_fn((10, 12), |(c, j)| {
        let row = &MNIST1D_RAW_TEMPLATES[c];
        let mean = row.iter().sum::<f64>() / 12.0;
        let sd = (row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / 12.0).sqrt();
        ((row[j] - mean) / sd - (row[0] - mean) / sd) / 6.0
    })
}

/// MNIST-1D (Greydanus & Kobak, "Scaling Down Deep Learning with MNIST-1D", ICML 2024; first as
/// Greydanus 2020, "Scaling down deep learning"): ten 1-D digit templates, each example a randomly
/// padded, scaled, translated, noised and sheared copy of its class's template.
///
/// Per example, with `u ~ U(0, 1)` fresh at each use, from template `x` (12 points):
/// 1. `x + 1e-8` (so only padding is exactly zero), followed by `p` zeros, `p` uniform in
///    `padding.0..=padding.1`;
/// 2. linear resampling to `L = 12 + padding.1` points (72);
/// 3. multiplication by `1 + scale_coeff (u - 0.5)`;
/// 4. circular rotation right by `k`, `k` uniform in `0..max_translation`;
/// 5. the exact zeros replaced by correlated noise: `corr_noise_scale` times iid N(0, 1) noise
///    smoothed by a Gaussian filter of sigma 2 (reflect boundary, truncated at 4 sigma);
/// 6. plus iid N(0, `iid_noise_scale`^2) noise;
/// 7. minus `c * linspace(-0.5, 0.5, L)` with `c = shear_scale (u - 0.5)`;
/// 8. linear resampling to `final_seq_length` points (40).
///
/// `num_samples / 10` examples per class are generated, shuffled, standardised by the global mean
/// and (population) sd of all values, and split: the first `floor(num_samples * train_fraction)`
/// are `train`, the rest `test`. `Default` is the published setting (seed 42, 5000 examples:
/// 4000 train / 1000 test). Randomness comes from the streams `mnist1d/examples` and
/// `mnist1d/shuffle` of `seed`, so the set matches the frozen published one statistically, not bit
/// for bit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mnist1dSpec {
    /// Seed of the random streams.
    pub seed: u64,
    /// Total number of examples (train + test), a multiple of 10.
    pub num_samples: usize,
    /// Fraction of the examples in `train`.
    pub train_fraction: f64,
    /// Inclusive range of the number of zeros appended before resampling.
    pub padding: (usize, usize),
    /// Amplitude scale jitter.
    pub scale_coeff: f64,
    /// Circular shifts are uniform in `0..max_translation`.
    pub max_translation: usize,
    /// Scale of the smoothed noise that replaces the padding.
    pub corr_noise_scale: f64,
    /// Scale of the iid noise added everywhere.
    pub iid_noise_scale: f64,
    /// Scale of the random linear trend subtracted.
    pub shear_scale: f64,
    /// Length of each example.
    pub final_seq_length: usize,
}

impl Default for Mnist1dSpec {
    fn default() -> Self {
        Mnist1dSpec {
            seed: 42,
            num_samples: 5000,
            train_fraction: 0.8,
            padding: (36, 60),
            scale_coeff: 0.4,
            max_translation: 48,
            corr_noise_scale: 0.25,
            iid_noise_scale: 0.02,
            shear_scale: 0.75,
            final_seq_length: 40,
        }
    }
}

/// Linear resampling of `x` (on `linspace(0, 1, len)`) to `n` points on `linspace(0, 1, n)`.
fn resample(x: &[f64], n: usize) -> Vec<f64> {
    let m = x.len();
    (0..n)
        .map(|j| {
            let pos = if n == 1 { 0.0 } else { j as f64 / (n - 1) as f64 * (m - 1) as f64 };
            let i0 = (pos.floor() as usize).min(m - 1);
            if i0 + 1 >= m {
                return x[m - 1];
            }
            let f = pos - i0 as f64;
            x[i0] * (1.0 - f) + x[i0 + 1] * f
        })
        .collect()
}

/// Gaussian filter as `scipy.ndimage.gaussian_filter1d(x, sigma)` with the default `mode =
/// 'reflect'` (`d c b a | a b c d | d c b a`) and `truncate = 4`.
pub(crate) fn gaussian_filter_reflect(x: &[f64], sigma: f64) -> Vec<f64> {
    let radius = (4.0 * sigma + 0.5) as i64;
    let w: Vec<f64> = (-radius..=radius).map(|k| (-0.5 * (k * k) as f64 / (sigma * sigma)).exp()).collect();
    let total: f64 = w.iter().sum();
    let n = x.len() as i64;
    let reflect = |mut i: i64| loop {
        if i < 0 {
            i = -i - 1;
        } else if i >= n {
            i = 2 * n - i - 1;
        } else {
            return i as usize;
        }
    };
    (0..n).map(|i| (-radius..=radius).zip(&w).map(|(k, wk)| wk * x[reflect(i + k)]).sum::<f64>() / total).collect()
}

impl Mnist1dSpec {
    fn validate(&self) -> Result<(), DataError> {
        let bad = |m: String| Err(DataError::invalid("mnist1d", m));
        if self.num_samples == 0 || !self.num_samples.is_multiple_of(10) {
            return bad(format!("num_samples = {} must be a positive multiple of 10 (the classes)", self.num_samples));
        }
        let n_train = (self.num_samples as f64 * self.train_fraction) as usize;
        if !(self.train_fraction > 0.0 && self.train_fraction < 1.0) || n_train == 0 || n_train == self.num_samples {
            return bad(format!("train_fraction = {} must leave both splits non-empty", self.train_fraction));
        }
        if self.padding.0 > self.padding.1 {
            return bad(format!("padding range {}..={} is empty", self.padding.0, self.padding.1));
        }
        if self.max_translation == 0 {
            return bad("max_translation must be at least 1".into());
        }
        if self.final_seq_length < 2 {
            return bad("final_seq_length must be at least 2".into());
        }
        for (k, v) in [
            ("scale_coeff", self.scale_coeff),
            ("corr_noise_scale", self.corr_noise_scale),
            ("iid_noise_scale", self.iid_noise_scale),
            ("shear_scale", self.shear_scale),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(format!("{k} = {v} must be finite and non-negative"));
            }
        }
        Ok(())
    }

    /// Peak memory of [`Mnist1dSpec::generate`]: the raw f64 values, the standardised f32 copy and
    /// its two splits, labels and shuffle order, and one example's working buffers.
    pub fn memory_estimate(&self) -> Estimate {
        let (n, len) = (self.num_samples, self.final_seq_length);
        let work = MNIST1D_RAW_TEMPLATES[0].len().saturating_add(self.padding.1);
        Estimate::new(format!("mnist1d with {n} examples of length {len}"))
            .array(&[n, len], 8 + 4 + 4)
            .array(&[n], 4 + 8 + 4 + 4)
            .array(&[work], 8 * 6)
    }

    /// One example of class `label` before the dataset-level shuffle and standardisation.
    pub fn example(&self, label: usize, rng: &mut impl rand::Rng) -> Vec<f64> {
        let templates = mnist1d_templates();
        self.example_from(templates.row(label).as_slice().unwrap_or(&[]), rng)
    }

    fn example_from(&self, template: &[f64], rng: &mut impl rand::Rng) -> Vec<f64> {
        let (lo, hi) = self.padding;
        let p = lo + (rng.random::<f64>() * (hi - lo + 1) as f64) as usize;
        let mut x: Vec<f64> = template.iter().map(|v| v + 1e-8).collect();
        x.extend(std::iter::repeat_n(0.0, p));
        let len = template.len() + hi;
        let mut x = resample(&x, len);
        let scale = 1.0 + self.scale_coeff * (rng.random::<f64>() - 0.5);
        x.iter_mut().for_each(|v| *v *= scale);
        let k = rng.random_range(0..self.max_translation) % len;
        x.rotate_right(k);
        let noise: Vec<f64> = (0..len).map(|_| self.corr_noise_scale * standard_normal::<f64, _>(rng)).collect();
        let smooth = gaussian_filter_reflect(&noise, 2.0);
        for (v, s) in x.iter_mut().zip(&smooth) {
            if *v == 0.0 {
                *v = *s;
            }
        }
        for v in x.iter_mut() {
            *v += self.iid_noise_scale * standard_normal::<f64, _>(rng);
        }
        let c = self.shear_scale * (rng.random::<f64>() - 0.5);
        for (i, v) in x.iter_mut().enumerate() {
            *v -= c * (-0.5 + i as f64 / (len - 1) as f64);
        }
        resample(&x, self.final_seq_length)
    }

    /// The dataset: splits `train` and `test`, 10 classes, `final_seq_length` features.
    pub fn generate(&self) -> Result<Dataset, DataError> {
        self.validate()?;
        self.memory_estimate().check()?;
        let templates = mnist1d_templates();
        let root = RngStream::new(self.seed).child("mnist1d");
        let mut rng = root.child("examples").rng();
        let per_class = self.num_samples / 10;
        let n = per_class * 10;
        let len = self.final_seq_length;
        let mut xs = Vec::with_capacity(n * len);
        let mut ys = Vec::with_capacity(n);
        for c in 0..10 {
            let t = templates.row(c).to_vec();
            for _ in 0..per_class {
                xs.extend(self.example_from(&t, &mut rng));
                ys.push(c as u32);
            }
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut root.child("shuffle").rng());
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let sd = (xs.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / xs.len() as f64).sqrt();
        let x = Array2::from_shape_fn((n, len), |(i, j)| ((xs[order[i] * len + j] - mean) / sd) as f32);
        let y: Vec<u32> = order.iter().map(|&i| ys[i]).collect();
        let n_train = (n as f64 * self.train_fraction) as usize;
        let train = Split::new(
            "train",
            x.slice(ndarray::s![..n_train, ..]).to_owned(),
            Targets::Classes { labels: y[..n_train].to_vec(), num_classes: 10 },
        )?;
        let test = Split::new(
            "test",
            x.slice(ndarray::s![n_train.., ..]).to_owned(),
            Targets::Classes { labels: y[n_train..].to_vec(), num_classes: 10 },
        )?;
        Dataset::new("mnist1d", None, vec![train, test])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resample_is_linear_interpolation() {
        assert_eq!(resample(&[0.0, 2.0], 3), vec![0.0, 1.0, 2.0]);
        let r = resample(&[0.0, 1.0, 4.0], 5);
        assert_eq!(r, vec![0.0, 0.5, 1.0, 2.5, 4.0]);
    }

    #[test]
    fn gaussian_filter_matches_scipy() {
        // scipy.ndimage.gaussian_filter1d's definition: a normalised kernel exp(-k^2 / (2 sigma^2)),
        // |k| <= int(4 sigma + 0.5). A constant is kept.
        let c = gaussian_filter_reflect(&[3.0; 20], 2.0);
        assert!(c.iter().all(|v| (v - 3.0).abs() < 1e-12));
        // An impulse in the middle gives back the normalised kernel (radius 8: 17 taps).
        let mut imp = vec![0.0; 41];
        imp[20] = 1.0;
        let k = gaussian_filter_reflect(&imp, 2.0);
        assert_eq!(k.iter().filter(|v| **v > 0.0).count(), 17);
        assert!((k.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((k[20] / k[22] - (0.5f64).exp()).abs() < 1e-12);
        // Reflect boundary: a step at the edge stays flat at the edge.
        let e = gaussian_filter_reflect(&[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], 2.0);
        assert!(e[0] > e[1] && e[1] > e[2]);
    }
}
