//! Sums of sines on a periodic 1-D grid (spectral bias).

use crate::{DataError, Dataset, Split, Targets};
use ndarray::Array2;
use rand::RngExt;
use serde::{Deserialize, Serialize};
use sgdlab_linalg::RngStream;
use sgdlab_linalg::memory::Estimate;
use std::f64::consts::PI;

/// Amplitude profile of [`SinesSpec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Amplitudes {
    /// `A_i = 1`.
    Equal,
    /// `A_i = i / m` (0.1, 0.2, ..., 1.0 for m = 10).
    Increasing,
}

/// The target `lambda(z) = sum_i A_i sin(2 pi k_i z + phi_i)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SumOfSines {
    /// Frequencies `k_i` (integers, so that each is an exact DFT bin of a periodic grid).
    pub frequencies: Vec<usize>,
    /// Amplitudes `A_i`.
    pub amplitudes: Vec<f64>,
    /// Phases `phi_i` in `[0, 2 pi)`.
    pub phases: Vec<f64>,
}

impl SumOfSines {
    /// `lambda(z)`.
    pub fn eval(&self, z: f64) -> f64 {
        self.frequencies
            .iter()
            .zip(&self.amplitudes)
            .zip(&self.phases)
            .map(|((&k, a), p)| a * (2.0 * PI * k as f64 * z + p).sin())
            .sum()
    }
}

/// Sums of sines (Rahaman et al., "On the Spectral Bias of Neural Networks", ICML 2019):
/// `lambda(z) = sum_{i=1..m} A_i sin(2 pi k_i z + phi_i)` with `k_i = freq_step * i`
/// (5, 10, ..., 50 by default), phases `phi_i ~ U(0, 2 pi)` from the stream `sines/phases`, and
/// equal (`A_i = 1`) or increasing (`A_i = i / m`) amplitudes, sampled on the periodic grid
/// `z_j = j / n`, `j = 0..n` (endpoint excluded, so that every `k_i` is an exact DFT bin).
///
/// The dataset has one split, `train`: features `[n, 1]` holding the network input `x_j`
/// ([`SinesSpec::input`]: `z_j` itself, or `2 z_j - 1` with `centred`), regression targets
/// `[n, 1]` holding `lambda(z_j)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SinesSpec {
    /// Grid points.
    pub n: usize,
    /// Number of frequencies `m`.
    pub num_freqs: usize,
    /// Spacing of the frequencies.
    pub freq_step: usize,
    /// Amplitude profile.
    pub amplitudes: Amplitudes,
    /// Seed of the phases.
    pub seed: u64,
    /// The network sees `x = 2 z - 1` in [-1, 1) instead of `z` in [0, 1) (key `input=centred`;
    /// the target is the same function of `z`).
    #[serde(default)]
    pub centred: bool,
}

impl Default for SinesSpec {
    fn default() -> Self {
        SinesSpec { n: 200, num_freqs: 10, freq_step: 5, amplitudes: Amplitudes::Equal, seed: 0, centred: false }
    }
}

impl SinesSpec {
    /// The target function (deterministic in the spec).
    pub fn target(&self) -> SumOfSines {
        let mut rng = RngStream::new(self.seed).child("sines").child("phases").rng();
        let m = self.num_freqs;
        SumOfSines {
            frequencies: (1..=m).map(|i| i * self.freq_step).collect(),
            amplitudes: (1..=m)
                .map(|i| match self.amplitudes {
                    Amplitudes::Equal => 1.0,
                    Amplitudes::Increasing => i as f64 / m as f64,
                })
                .collect(),
            phases: (0..m).map(|_| 2.0 * PI * rng.random::<f64>()).collect(),
        }
    }

    /// The network's input at grid point `z` in [0, 1).
    pub fn input(&self, z: f64) -> f64 {
        if self.centred { 2.0 * z - 1.0 } else { z }
    }

    /// The grid and the target on it (split `train`).
    pub fn generate(&self) -> Result<Dataset, DataError> {
        if self.num_freqs == 0 || self.freq_step == 0 {
            return Err(DataError::invalid("sines", "need at least one frequency and a positive spacing"));
        }
        let Some(kmax) = self.num_freqs.checked_mul(self.freq_step).filter(|k| *k <= usize::MAX / 2) else {
            return Err(DataError::invalid("sines", "the number of frequencies times their spacing overflows"));
        };
        Estimate::new(format!("sines on {} grid points with {} frequencies", self.n, self.num_freqs))
            .array(&[self.n], 8 + 4 + 4 + 4)
            .array(&[self.num_freqs], 8 * 3)
            .check()?;
        if 2 * kmax >= self.n {
            return Err(DataError::invalid(
                "sines",
                format!(
                    "the highest frequency {kmax} needs more than {} grid points (Nyquist), not {}",
                    2 * kmax,
                    self.n
                ),
            ));
        }
        let target = self.target();
        let z = Array2::from_shape_fn((self.n, 1), |(j, _)| j as f64 / self.n as f64);
        let y = z.mapv(|v| target.eval(v) as f32);
        let train = Split::new("train", z.mapv(|v| self.input(v) as f32), Targets::Regression(y))?;
        Dataset::new("sines", None, vec![train])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dft_recovers_the_amplitudes() {
        for amplitudes in [Amplitudes::Equal, Amplitudes::Increasing] {
            let spec = SinesSpec { amplitudes, ..SinesSpec::default() };
            let d = spec.generate().unwrap();
            let y = d.train().unwrap().targets().values().unwrap().column(0).mapv(f64::from);
            let n = y.len();
            let t = spec.target();
            // |DFT(k)| * 2 / n = A for a pure A sin(2 pi k z); every other bin is ~0 (f32 targets).
            for k in 1..n / 2 {
                let (re, im) = (0..n).fold((0.0, 0.0), |(re, im), j| {
                    let a = 2.0 * PI * (k * j) as f64 / n as f64;
                    (re + y[j] * a.cos(), im - y[j] * a.sin())
                });
                let mag = 2.0 * (re * re + im * im).sqrt() / n as f64;
                let want = t.frequencies.iter().position(|&f| f == k).map_or(0.0, |i| t.amplitudes[i]);
                assert!((mag - want).abs() < 1e-5, "bin {k}: |DFT| {mag}, want {want}");
            }
        }
        assert!(SinesSpec { n: 100, ..SinesSpec::default() }.generate().is_err());
    }

    #[test]
    fn centred_inputs_keep_the_target() {
        let unit = SinesSpec::default().generate().unwrap();
        let centred = SinesSpec { centred: true, ..SinesSpec::default() }.generate().unwrap();
        let (u, c) = (unit.train().unwrap(), centred.train().unwrap());
        assert_eq!(u.targets().values().unwrap(), c.targets().values().unwrap());
        for (a, b) in u.features().iter().zip(c.features().iter()) {
            assert!((2.0 * a - 1.0 - b).abs() < 1e-6, "{a} -> {b}");
        }
        let parsed = crate::DatasetSpec::parse("sines:input=centred,seed=3").unwrap();
        assert_eq!(parsed.to_string(), "sines:n=200,freqs=10,step=5,amplitudes=equal,input=centred,seed=3");
        assert!(crate::DatasetSpec::parse("sines:input=wide").is_err());
    }
}
