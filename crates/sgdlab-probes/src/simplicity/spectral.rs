//! Spectral bias on a periodic grid (PROTOCOLS 2.1; the measure is shared by 2.3 and 2.4).

use super::{check_params, stats_err};
use crate::ProbeError;
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use sgdlab_data::SumOfSines;
use sgdlab_linalg::Scalar;
use sgdlab_linalg::stats::spearman;
use sgdlab_nn::Model;
use std::f64::consts::PI;

/// The residual level below which a frequency counts as learned (PROTOCOLS 2.1:
/// `Delta_i(t) < 0.1`).
pub const DEFAULT_LEARNED_THRESHOLD: f64 = 0.1;

/// DFT bin `k` of `v`: `sum_j v_j exp(-2 pi i k j / N)` as `(re, im)`, with the angle reduced
/// exactly (`k j mod N`) before the trigonometric call.
fn dft_bin(v: &[f64], k: usize) -> (f64, f64) {
    let n = v.len();
    let (mut re, mut im) = (0.0, 0.0);
    for (j, &x) in v.iter().enumerate() {
        let a = 2.0 * PI * ((k * j) % n) as f64 / n as f64;
        re += x * a.cos();
        im -= x * a.sin();
    }
    (re, im)
}

/// Amplitude spectrum of samples `v_j = f(j / N)` on a periodic grid (endpoint excluded), for
/// bins `k = 0..=N/2`, normalised so that a pure `A sin(2 pi k z + phi)` with `0 < k < N/2` gives
/// exactly `A` at bin `k` (`2 |F_k| / N`), a constant `c` gives `|c|` at bin 0 and, for even `N`,
/// `A cos(pi N z)` gives `|A|` at bin `N/2` (`|F_k| / N` at both ends). Direct O(N^2) DFT.
pub fn dft_amplitudes(v: &[f64]) -> Vec<f64> {
    let n = v.len();
    (0..=n / 2)
        .map(|k| {
            let (re, im) = dft_bin(v, k);
            let m = (re * re + im * im).sqrt() / n as f64;
            if k == 0 || 2 * k == n { m } else { 2.0 * m }
        })
        .collect()
}

/// The network function against a sum-of-sines target, per frequency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpectralBiasEstimate {
    /// Grid points `N` (`z_j = j / N`).
    pub grid_points: usize,
    /// Target frequencies `k_i`.
    pub frequencies: Vec<usize>,
    /// Target amplitudes `A_i`.
    pub amplitudes: Vec<f64>,
    /// `Delta_i = |r~(k_i)| / A_i` with `r = f - lambda` on the grid (0 = frequency fitted).
    pub residual: Vec<f64>,
    /// `|f~(k_i)| / A_i` (Rahaman et al.'s heat-map quantity; 1 = full amplitude learned, blind
    /// to phase errors, which `residual` sees).
    pub learned: Vec<f64>,
    /// `||f - lambda|| / ||lambda||` over the grid.
    pub relative_error: f64,
    /// [`dft_amplitudes`] of the network function, bins `0..=N/2`.
    pub network_spectrum: Vec<f64>,
}

/// Spectral content of a 1-input, 1-output network against the target `lambda(z) = sum_i A_i
/// sin(2 pi k_i z + phi_i)` (Rahaman et al. 2019, "On the spectral bias of neural networks", ICML,
/// arXiv:1806.08734; PROTOCOLS 2.1). The network is evaluated on the periodic grid
/// `z_j = j / N`, `j = 0..N` (the grid of [`sgdlab_data::SinesSpec`]), so that every integer
/// frequency is an exact DFT bin, at the inputs `input(z_j)` (the features
/// [`sgdlab_data::SinesSpec::input`] gives the network: `z_j`, or `2 z_j - 1` when centred); with [`dft_amplitudes`]' normalisation (a pure
/// `A sin(2 pi k z)` has amplitude `A`) the per-frequency normalised residual is
/// `Delta_i = |DFT(f - lambda)(k_i)| / A_i`.
pub fn spectral_bias<T: Scalar>(
    model: &Model,
    params: &[T],
    target: &SumOfSines,
    grid_points: usize,
    input: &dyn Fn(f64) -> f64,
) -> Result<SpectralBiasEstimate, ProbeError> {
    check_params(model, params)?;
    if model.in_dim() != 1 || model.out_dim() != 1 {
        return Err(ProbeError::Invalid(format!(
            "spectral bias needs a network with 1 input and 1 output, not {} -> {}",
            model.in_dim(),
            model.out_dim()
        )));
    }
    let n = grid_points;
    if let Some(&k) = target.frequencies.iter().find(|&&k| 2 * k >= n) {
        return Err(ProbeError::Invalid(format!("frequency {k} is not below the Nyquist bin of a {n}-point grid")));
    }
    if let Some(a) = target.amplitudes.iter().find(|a| **a == 0.0 || !a.is_finite()) {
        return Err(ProbeError::Invalid(format!("target amplitude {a} cannot normalise a residual")));
    }
    let z = Array2::from_shape_fn((n, 1), |(j, _)| T::from_f64(input(j as f64 / n as f64)));
    let f: Vec<f64> = model.forward(params, z.view())?.iter().map(|&v| v.to_f64()).collect();
    let lambda: Vec<f64> = (0..n).map(|j| target.eval(j as f64 / n as f64)).collect();
    let r: Vec<f64> = f.iter().zip(&lambda).map(|(a, b)| a - b).collect();
    let spectrum = dft_amplitudes(&f);
    let res_spec = |k: usize| {
        let (re, im) = dft_bin(&r, k);
        2.0 * (re * re + im * im).sqrt() / n as f64
    };
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    Ok(SpectralBiasEstimate {
        grid_points: n,
        frequencies: target.frequencies.clone(),
        amplitudes: target.amplitudes.clone(),
        residual: target.frequencies.iter().zip(&target.amplitudes).map(|(&k, a)| res_spec(k) / a).collect(),
        learned: target.frequencies.iter().zip(&target.amplitudes).map(|(&k, a)| spectrum[k] / a).collect(),
        relative_error: norm(&r) / norm(&lambda),
        network_spectrum: spectrum,
    })
}

/// When each frequency was learned, and how that order correlates with frequency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeToLearnEstimate {
    pub frequencies: Vec<usize>,
    /// The threshold on `Delta_i`.
    pub threshold: f64,
    /// First logged step with `Delta_i < threshold` (`None` = not learned in the log).
    pub steps: Vec<Option<u64>>,
    /// Frequencies learned within the log.
    pub learned: usize,
    /// Spearman correlation of `k_i` and `t_i`, unlearned frequencies counted as `t = +inf`
    /// (ranked last, tied among themselves with average ranks). NaN when every `t_i` is equal.
    pub spearman: f64,
}

/// Time to learn each frequency (PROTOCOLS 2.1, Rahaman et al. 2019): `t_i` = the first logged
/// step with `Delta_i(t) < threshold` (default [`DEFAULT_LEARNED_THRESHOLD`]), and the
/// Spearman correlation between `k_i` and `t_i` (unlearned = `+inf`, ranked last).
/// `residuals[s][i]` is `Delta_i` at `steps[s]`; steps must be increasing.
pub fn time_to_learn(
    frequencies: &[usize],
    steps: &[u64],
    residuals: &[Vec<f64>],
    threshold: f64,
) -> Result<TimeToLearnEstimate, ProbeError> {
    if steps.len() != residuals.len() {
        return Err(ProbeError::Invalid(format!("{} steps but {} residual vectors", steps.len(), residuals.len())));
    }
    if steps.windows(2).any(|w| w[1] <= w[0]) {
        return Err(ProbeError::Invalid("steps must be strictly increasing".into()));
    }
    if let Some(r) = residuals.iter().find(|r| r.len() != frequencies.len()) {
        return Err(ProbeError::Invalid(format!(
            "a residual vector has {} entries for {} frequencies",
            r.len(),
            frequencies.len()
        )));
    }
    let t: Vec<Option<u64>> = (0..frequencies.len())
        .map(|i| steps.iter().zip(residuals).find(|(_, r)| r[i] < threshold).map(|(&s, _)| s))
        .collect();
    let tf: Vec<f64> = t.iter().map(|s| s.map_or(f64::INFINITY, |v| v as f64)).collect();
    let kf: Vec<f64> = frequencies.iter().map(|&k| k as f64).collect();
    Ok(TimeToLearnEstimate {
        frequencies: frequencies.to_vec(),
        threshold,
        learned: t.iter().filter(|s| s.is_some()).count(),
        spearman: spearman(&kf, &tf).map_err(stats_err)?,
        steps: t,
    })
}
