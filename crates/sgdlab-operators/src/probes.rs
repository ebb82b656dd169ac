//! Random probe vectors and the mean-with-standard-error summary that stochastic estimators share.

use ndarray::Array2;
use serde::{Deserialize, Serialize};
use sgdlab_linalg::{Scalar, standard_normal};

/// The distribution of the entries of a probe vector `z` (iid entries with `E[z z^T] = I`, which
/// is what makes `E[z^T A z] = tr(A)`; Hutchinson 1990).
///
/// Variance of one sample `z^T A z` for symmetric `A` (Avron & Toledo 2011):
/// Rademacher `2 (||A||_F^2 - sum_i a_ii^2)` (the minimum over iid distributions; zero for a
/// diagonal `A`), Gaussian `2 ||A||_F^2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeDistribution {
    /// Entries `+1` or `-1` with probability 1/2 each (`||z||^2 = n` exactly).
    #[default]
    Rademacher,
    /// Standard normal entries.
    Gaussian,
}

impl ProbeDistribution {
    /// A `[k, n]` block of iid entries, one probe per row, drawn in row-major order.
    ///
    /// Rademacher entries take the bits of successive `next_u64` words, least significant bit
    /// first, one word per 64 entries (bit 1 gives `+1`); Gaussian entries come from
    /// [`sgdlab_linalg::standard_normal`] (drawn in f64, rounded to `T`). The block is a pure
    /// function of the generator's state, so a test can redraw exactly the probes an estimator
    /// used from the same named stream.
    pub fn sample<T: Scalar, R: rand::Rng + ?Sized>(self, k: usize, n: usize, rng: &mut R) -> Array2<T> {
        ProbeSampler::new(self, rng).next_block(k, n)
    }
}

/// Draws the probes of [`ProbeDistribution::sample`] a block at a time: consecutive blocks are
/// exactly the consecutive rows of one big sample from the same generator (Rademacher bits carry
/// over between blocks), so an estimator keeps only `block_size` probes in memory without
/// changing a single value.
pub struct ProbeSampler<'r, R: ?Sized> {
    distribution: ProbeDistribution,
    rng: &'r mut R,
    word: u64,
    left: u32,
}

impl<'r, R: rand::Rng + ?Sized> ProbeSampler<'r, R> {
    /// A sampler drawing from `rng`.
    pub fn new(distribution: ProbeDistribution, rng: &'r mut R) -> Self {
        ProbeSampler { distribution, rng, word: 0, left: 0 }
    }

    /// The next `[k, n]` block, in row-major order.
    pub fn next_block<T: Scalar>(&mut self, k: usize, n: usize) -> Array2<T> {
        let mut out = Array2::zeros((k, n));
        match self.distribution {
            ProbeDistribution::Rademacher => {
                for x in out.iter_mut() {
                    if self.left == 0 {
                        self.word = self.rng.next_u64();
                        self.left = 64;
                    }
                    *x = if self.word & 1 == 1 { T::one() } else { -T::one() };
                    self.word >>= 1;
                    self.left -= 1;
                }
            }
            ProbeDistribution::Gaussian => {
                for x in out.iter_mut() {
                    *x = standard_normal::<T, R>(self.rng);
                }
            }
        }
        out
    }
}

/// A sample mean with its standard error: `value = (1/m) sum_i x_i`,
/// `standard_error = s / sqrt(m)` with `s^2 = (1/(m-1)) sum_i (x_i - value)^2`
/// (`NaN` when `m < 2`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanEstimate {
    /// The sample mean.
    pub value: f64,
    /// Sample standard deviation over `sqrt(samples)`.
    pub standard_error: f64,
    /// The number of iid samples `m`.
    pub samples: usize,
}

impl MeanEstimate {
    /// Mean and standard error of iid samples.
    pub fn from_samples(xs: &[f64]) -> Self {
        let m = xs.len();
        let value = if m == 0 { f64::NAN } else { xs.iter().sum::<f64>() / m as f64 };
        let standard_error = if m < 2 {
            f64::NAN
        } else {
            let var = xs.iter().map(|x| (x - value) * (x - value)).sum::<f64>() / (m - 1) as f64;
            (var / m as f64).sqrt()
        };
        MeanEstimate { value, standard_error, samples: m }
    }

    /// The same estimate multiplied by a constant (value and standard error scale together).
    pub fn scaled(self, c: f64) -> Self {
        MeanEstimate { value: self.value * c, standard_error: self.standard_error * c.abs(), samples: self.samples }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sgdlab_linalg::RngStream;

    #[test]
    fn mean_estimate_closed_form() {
        let m = MeanEstimate::from_samples(&[1.0, 2.0, 3.0, 6.0]);
        // mean 3, sample variance (4 + 1 + 0 + 9) / 3 = 14/3, se = sqrt(14/12).
        assert_eq!(m.value, 3.0);
        assert!((m.standard_error - (14.0f64 / 12.0).sqrt()).abs() < 1e-15);
        assert!(MeanEstimate::from_samples(&[1.0]).standard_error.is_nan());
        assert_eq!(m.scaled(-2.0).standard_error, 2.0 * m.standard_error);
    }

    #[test]
    fn rademacher_entries_are_balanced_signs() {
        // 100 x 100 entries: the mean has sd 0.01; |mean| < 0.05 fails with probability 6e-7.
        let z = ProbeDistribution::Rademacher.sample::<f64, _>(100, 100, &mut RngStream::new(1).child("r").rng());
        assert!(z.iter().all(|&x| x == 1.0 || x == -1.0));
        assert!(z.mean().unwrap().abs() < 0.05);
        // Deterministic in the stream.
        let again = ProbeDistribution::Rademacher.sample::<f64, _>(100, 100, &mut RngStream::new(1).child("r").rng());
        assert_eq!(z, again);
    }

    #[test]
    fn blocks_from_a_sampler_are_the_rows_of_one_sample() {
        // 67 columns: Rademacher words straddle the block boundaries.
        for d in [ProbeDistribution::Rademacher, ProbeDistribution::Gaussian] {
            let whole = d.sample::<f64, _>(10, 67, &mut RngStream::new(2).child("b").rng());
            let mut rng = RngStream::new(2).child("b").rng();
            let mut sampler = ProbeSampler::new(d, &mut rng);
            let parts: Vec<Array2<f64>> = [3, 1, 4, 2].iter().map(|&k| sampler.next_block(k, 67)).collect();
            let joined = ndarray::concatenate(ndarray::Axis(0), &parts.iter().map(|a| a.view()).collect::<Vec<_>>());
            assert_eq!(joined.unwrap(), whole, "{d:?}");
        }
    }
}
