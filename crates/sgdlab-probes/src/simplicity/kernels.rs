//! Kernel spectra on the boolean cube (PROTOCOLS 2.2) and the random-network function sampler
//! (PROTOCOLS 2.2b and 10.1).

use super::{binomial, check_params, predicted_classes};
use crate::ProbeError;
use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};
use sgdlab_linalg::{RngStream, Scalar, standard_normal};
use sgdlab_nn::{Layer, Model};
use std::collections::HashMap;
use std::f64::consts::PI;

/// The activations with closed-form kernel expectations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum KernelActivation {
    /// ReLU: arc-cosine kernel of degree 1 (Cho & Saul 2009).
    Relu,
    /// The error function (Williams 1997).
    Erf,
}

impl std::str::FromStr for KernelActivation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "relu" => Ok(KernelActivation::Relu),
            "erf" => Ok(KernelActivation::Erf),
            _ => Err(format!("unknown kernel activation '{s}' (known: relu, erf)")),
        }
    }
}

/// Which infinite-width kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum KernelKind {
    /// The conjugate kernel (CK, NNGP kernel): the covariance of the output at initialisation;
    /// training only the last layer.
    #[value(alias = "nngp")]
    #[serde(alias = "nngp")]
    Ck,
    /// The neural tangent kernel (NTK; Jacot, Gabriel & Hongler 2018): training all layers.
    Ntk,
}

impl std::str::FromStr for KernelKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ck" | "nngp" => Ok(KernelKind::Ck),
            "ntk" => Ok(KernelKind::Ntk),
            _ => Err(format!("unknown kernel '{s}' (known: ck, ntk)")),
        }
    }
}

/// An infinite-width MLP: activation, weight and bias variances, and the number `depth` of
/// hidden layers (applications of the activation).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KernelSpec {
    pub activation: KernelActivation,
    /// `sigma_w^2`: weights `W_ij ~ N(0, sigma_w^2 / fan_in)`.
    pub sigma_w2: f64,
    /// `sigma_b^2`: biases `b_i ~ N(0, sigma_b^2)`.
    pub sigma_b2: f64,
    /// Number of hidden layers `L` (0 = a linear model).
    pub depth: usize,
}

/// `(E[phi(u) phi(v)], E[phi'(u) phi'(v)])` for `(u, v) ~ N(0, [[q, s], [s, q]])`.
fn expectations(act: KernelActivation, q: f64, s: f64) -> (f64, f64) {
    match act {
        KernelActivation::Relu => {
            if q <= 0.0 {
                return (0.0, 0.25);
            }
            let t = (s / q).clamp(-1.0, 1.0).acos();
            (q / (2.0 * PI) * (t.sin() + (PI - t) * t.cos()), (PI - t) / (2.0 * PI))
        }
        KernelActivation::Erf => {
            let a = 1.0 + 2.0 * q;
            ((2.0 / PI) * (2.0 * s / a).clamp(-1.0, 1.0).asin(), (4.0 / PI) / (a * a - 4.0 * s * s).sqrt())
        }
    }
}

impl KernelSpec {
    /// `(CK, NTK)` between two inputs with `||x||^2 = ||y||^2 = d` and `<x, y> / d = c`.
    ///
    /// Recursion (Neal 1996, Lee et al. 2018, Jacot et al. 2018; as written in PROTOCOLS 2.2 and
    /// Yang & Salman 2019): `Sigma^1 = sigma_w^2 c + sigma_b^2`, `Theta^1 = Sigma^1`, then for each
    /// of the `depth` hidden layers, with `(u, v) ~ N(0, Sigma^l)` (diagonal
    /// `sigma_w^2 + sigma_b^2` then propagated the same way),
    /// `Sigma^{l+1} = sigma_w^2 E[phi(u) phi(v)] + sigma_b^2` and
    /// `Theta^{l+1} = Sigma^{l+1} + sigma_w^2 E[phi'(u) phi'(v)] Theta^l`.
    /// Depth convention: `depth = L` hidden layers gives `Sigma^{L+1}` (the output layer's), so
    /// `L = 0` is the linear kernel; this is the convention under which PROTOCOLS 2.2's numbers
    /// were computed.
    pub fn kernel(&self, c: f64) -> (f64, f64) {
        let (sw, sb) = (self.sigma_w2, self.sigma_b2);
        let mut s = sw * c + sb;
        let mut q = sw + sb;
        let mut theta = s;
        for _ in 0..self.depth {
            let (e, ed) = expectations(self.activation, q, s);
            let (eq, _) = expectations(self.activation, q, q);
            let s_next = sw * e + sb;
            theta = s_next + sw * ed * theta;
            s = s_next;
            q = sw * eq + sb;
        }
        (s, theta)
    }
}

/// Krawtchouk polynomial `K_k(j) = sum_a (-1)^a C(k, a) C(d - k, j - a)`: the sum of the
/// monomial `chi_S` (`|S| = k`) over the points of `{-1, 1}^d` with `j` coordinates equal to -1
/// (PROTOCOLS 2.2's indexing; in the classical indexing this is the degree-`j` polynomial at `k`).
/// Computed exactly in 128-bit integers (`d <= 128`), then rounded to f64.
pub fn krawtchouk(d: usize, k: usize, j: usize) -> f64 {
    assert!(d <= MAX_CUBE_DIM && k <= d && j <= d, "krawtchouk({d}, {k}, {j}) out of range");
    let c = pascal_row_table(d);
    krawtchouk_exact(&c, d, k, j) as f64
}

/// Largest cube dimension for which Krawtchouk values are exact in i128.
pub const MAX_CUBE_DIM: usize = 128;

fn pascal_row_table(d: usize) -> Vec<Vec<i128>> {
    let mut t: Vec<Vec<i128>> = Vec::with_capacity(d + 1);
    for n in 0..=d {
        let mut row = vec![1i128; n + 1];
        for k in 1..n {
            row[k] = t[n - 1][k - 1] + t[n - 1][k];
        }
        t.push(row);
    }
    t
}

fn krawtchouk_exact(c: &[Vec<i128>], d: usize, k: usize, j: usize) -> i128 {
    let mut s = 0i128;
    for a in 0..=k.min(j) {
        if j - a > d - k {
            continue;
        }
        let term = c[k][a] * c[d - k][j - a];
        if a % 2 == 0 {
            s += term;
        } else {
            s -= term;
        }
    }
    s
}

/// The eigenvalues `mu_0..mu_d` of a kernel `K(x, y) = Phi(<x, y> / d)` on `{-1, 1}^d`, with
/// rounding-error bounds.
///
/// `mu_k = 2^{-d} sum_{j=0..d} Phi((d - 2j) / d) K_k(j)` (Yang & Salman 2019, arXiv:1907.10599;
/// O'Donnell, "Analysis of Boolean Functions"): the monomials `chi_S` are the eigenfunctions,
/// with an eigenvalue that depends only on `k = |S|` (multiplicity `C(d, k)`). The bound on each
/// `mu_k` is `(d + 2) eps 2^{-d} sum_j |Phi_j| |K_k(j)|`: a `mu_k` below its bound is numerically
/// zero (it happens at large `d` and degree; Yang & Salman's repo then uses repeated finite
/// differences, not implemented here).
pub fn boolean_cube_eigenvalues(phi: impl Fn(f64) -> f64, d: usize) -> Result<(Vec<f64>, Vec<f64>), ProbeError> {
    if d == 0 || d > MAX_CUBE_DIM {
        return Err(ProbeError::Invalid(format!("cube dimension {d} is not in 1..={MAX_CUBE_DIM}")));
    }
    let c = pascal_row_table(d);
    let vals: Vec<f64> = (0..=d).map(|j| phi((d as f64 - 2.0 * j as f64) / d as f64)).collect();
    if let Some(j) = vals.iter().position(|v| !v.is_finite()) {
        return Err(ProbeError::Invalid(format!(
            "the kernel is not finite at <x,y>/d = {}",
            (d - 2 * j) as f64 / d as f64
        )));
    }
    let scale = 0.5f64.powi(d as i32);
    let mut mu = Vec::with_capacity(d + 1);
    let mut bound = Vec::with_capacity(d + 1);
    for k in 0..=d {
        let (mut s, mut a) = (0.0, 0.0);
        for (j, &v) in vals.iter().enumerate() {
            let kk = krawtchouk_exact(&c, d, k, j) as f64;
            s += v * kk;
            a += (v * kk).abs();
        }
        mu.push(s * scale);
        bound.push((d + 2) as f64 * f64::EPSILON * a * scale);
    }
    Ok((mu, bound))
}

/// The spectrum of a CK or NTK on the boolean cube.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BooleanSpectrum {
    pub d: usize,
    pub spec: KernelSpec,
    pub kind: KernelKind,
    /// `mu_k`, `k = 0..=d`, as they come from the kernel (`sum_k C(d, k) mu_k = Phi(1)`).
    pub eigenvalues: Vec<f64>,
    /// `mu_k / sum_k C(d, k) mu_k`: eigenvalues with multiplicity sum to 1 (the normalisation of
    /// PROTOCOLS 2.2's numbers).
    pub normalised: Vec<f64>,
    /// `C(d, k) mu_k / sum`: the fraction of the prior's variance in degree `k`.
    pub fractional_variance: Vec<f64>,
    /// `C(d, k)`.
    pub multiplicities: Vec<f64>,
    /// Rounding-error bound of each raw `mu_k` (see [`boolean_cube_eigenvalues`]).
    pub rounding_error_bound: Vec<f64>,
}

/// CK or NTK eigenvalues on `{-1, 1}^d` (Yang & Salman 2019, "A fine-grained spectral perspective
/// on neural networks", arXiv:1907.10599; PROTOCOLS 2.2): the kernel of [`KernelSpec::kernel`]
/// diagonalised by [`boolean_cube_eigenvalues`], with the normalised eigenvalues and the
/// fractional variance per degree.
pub fn boolean_cube_spectrum(spec: &KernelSpec, kind: KernelKind, d: usize) -> Result<BooleanSpectrum, ProbeError> {
    if !(spec.sigma_w2 >= 0.0 && spec.sigma_b2 >= 0.0 && spec.sigma_w2.is_finite() && spec.sigma_b2.is_finite()) {
        return Err(ProbeError::Invalid(format!(
            "variances must be finite and non-negative, got sigma_w^2 = {}, sigma_b^2 = {}",
            spec.sigma_w2, spec.sigma_b2
        )));
    }
    let (mu, bound) = boolean_cube_eigenvalues(
        |c| {
            let (ck, ntk) = spec.kernel(c);
            match kind {
                KernelKind::Ck => ck,
                KernelKind::Ntk => ntk,
            }
        },
        d,
    )?;
    let mult: Vec<f64> = (0..=d).map(|k| binomial(d, k)).collect();
    let total: f64 = mu.iter().zip(&mult).map(|(m, c)| m * c).sum();
    Ok(BooleanSpectrum {
        d,
        spec: *spec,
        kind,
        normalised: mu.iter().map(|m| m / total).collect(),
        fractional_variance: mu.iter().zip(&mult).map(|(m, c)| m * c / total).collect(),
        eigenvalues: mu,
        multiplicities: mult,
        rounding_error_bound: bound,
    })
}

/// The parameter prior of the function sampler: every linear weight `W_ij ~ N(0, sigma_w^2 /
/// fan_in)`, every bias `b_i ~ N(0, sigma_b^2)`; layer-norm gains 1 and shifts 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PriorSpec {
    pub sigma_w2: f64,
    pub sigma_b2: f64,
}

/// Options of [`sample_prior_functions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionSamplerParams {
    /// Networks drawn from the prior.
    pub samples: usize,
    /// Functions listed in the estimate, most frequent first (0 = all).
    pub top: usize,
}

impl Default for FunctionSamplerParams {
    fn default() -> Self {
        FunctionSamplerParams { samples: 10_000, top: 20 }
    }
}

/// Conditioning of the sampler on a training set (rejection sampling of P_B(f | S)).
#[derive(Debug, Clone, Copy)]
pub struct FunctionCondition<'a> {
    /// Rows of the sampler's inputs that form the training set `S`.
    pub train: &'a [usize],
    /// Their labels: a sample is accepted iff it predicts exactly these.
    pub labels: &'a [u32],
}

/// One function and how often it was drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionFrequency {
    /// The predicted class at each point, in order, one character each (`0`/`1` for a single
    /// logit thresholded at 0, the arg-max digit for 2-10 logits).
    pub function: String,
    pub count: u64,
    /// `count / accepted`.
    pub probability: f64,
}

/// The empirical distribution of functions of random networks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionSampleEstimate {
    /// Networks drawn.
    pub samples: u64,
    /// Networks that fit the conditioning training set (all of them without conditioning).
    pub accepted: u64,
    /// `accepted / samples` (an estimate of P(S fitted) under the prior).
    pub acceptance_rate: f64,
    /// Points each function is read on (the test points under conditioning).
    pub points: usize,
    /// Distinct functions among the accepted samples.
    pub distinct: usize,
    /// Probability of the most frequent function.
    pub most_frequent_probability: f64,
    /// Fraction of accepted samples whose function is constant over the points.
    pub constant_probability: f64,
    /// Plug-in entropy (bits) of the empirical function distribution.
    pub entropy_bits: f64,
    /// The most frequent functions (ties by function string).
    pub top: Vec<FunctionFrequency>,
}

fn class_char(c: u32) -> char {
    char::from_digit(c, 10).expect("classes 0..=9")
}

/// The function a network computes on `x`: its predicted class at each row, as in
/// [`FunctionFrequency::function`] (use it to histogram the outcomes of SGD runs, P_SGD of
/// Mingard et al. 2021).
pub fn function_of<T: Scalar>(model: &Model, params: &[T], x: ArrayView2<'_, T>) -> Result<String, ProbeError> {
    if model.out_dim() > 10 {
        return Err(ProbeError::Invalid(format!("functions are read from 1-10 outputs, not {}", model.out_dim())));
    }
    let z = model.forward(params, x)?;
    Ok(predicted_classes(z.view()).into_iter().map(class_char).collect())
}

/// Fills `p` with a draw from `prior` (layout order, one stream).
fn draw_prior<T: Scalar>(model: &Model, prior: &PriorSpec, p: &mut [T], rng: &mut impl rand::Rng) {
    let (sw, sb) = (prior.sigma_w2.sqrt(), prior.sigma_b2.sqrt());
    let mut blocks: Vec<(usize, Layer)> = Vec::new();
    model.for_each_layer(&mut |_, l, off| {
        if matches!(l, Layer::Linear(_) | Layer::LayerNorm(_)) {
            blocks.push((off, l.clone()));
        }
    });
    for (off, l) in blocks {
        match l {
            Layer::Linear(lin) => {
                let wsd = sw / (lin.in_dim as f64).sqrt();
                let nw = lin.in_dim * lin.out_dim;
                for v in &mut p[off..off + nw] {
                    *v = T::from_f64(wsd * standard_normal::<f64, _>(rng));
                }
                if lin.bias {
                    for v in &mut p[off + nw..off + nw + lin.out_dim] {
                        *v = T::from_f64(sb * standard_normal::<f64, _>(rng));
                    }
                }
            }
            Layer::LayerNorm(ln) if ln.affine => {
                p[off..off + ln.dim].iter_mut().for_each(|v| *v = T::one());
                p[off + ln.dim..off + 2 * ln.dim].iter_mut().for_each(|v| *v = T::zero());
            }
            _ => {}
        }
    }
}

/// Samples functions of random networks (PROTOCOLS 2.2b after Valle-Perez, Camargo & Louis 2019
/// and Yang & Salman 2019's notebook; PROTOCOLS 10.1 after Mingard et al. 2021, "Is SGD a
/// Bayesian sampler? Well, almost", JMLR 22, arXiv:2006.15191).
///
/// Draws `samples` parameter vectors of `model`'s architecture from `prior` (stream
/// `stream/prior-functions`), reads each network's function on the rows of `x` (predicted class
/// per row: a single logit thresholded at 0, or the arg-max), and histograms the functions.
/// With `condition`, a draw is accepted only if it predicts the training labels exactly on the
/// rows `condition.train`, and its function is read on the remaining rows: the histogram then
/// estimates the posterior `P_B(f | S)` by rejection sampling, and `acceptance_rate` estimates
/// `P(S)`.
pub fn sample_prior_functions<T: Scalar>(
    model: &Model,
    prior: &PriorSpec,
    x: ArrayView2<'_, T>,
    condition: Option<&FunctionCondition<'_>>,
    opts: &FunctionSamplerParams,
    stream: &RngStream,
) -> Result<FunctionSampleEstimate, ProbeError> {
    if x.ncols() != model.in_dim() {
        return Err(ProbeError::Invalid(format!(
            "points have {} features, the model takes {}",
            x.ncols(),
            model.in_dim()
        )));
    }
    if model.out_dim() > 10 {
        return Err(ProbeError::Invalid(format!("functions are read from 1-10 outputs, not {}", model.out_dim())));
    }
    if opts.samples == 0 {
        return Err(ProbeError::Invalid("the sampler needs at least one sample".into()));
    }
    let n = x.nrows();
    let mut in_train = vec![false; n];
    if let Some(c) = condition {
        if c.train.len() != c.labels.len() {
            return Err(ProbeError::Invalid(format!("{} training rows but {} labels", c.train.len(), c.labels.len())));
        }
        for &i in c.train {
            if i >= n {
                return Err(ProbeError::Invalid(format!("training row {i} is not below {n}")));
            }
            in_train[i] = true;
        }
    }
    let test_rows: Vec<usize> = (0..n).filter(|&i| !in_train[i]).collect();
    let mut rng = stream.child("prior-functions").rng();
    let mut p = vec![T::zero(); model.num_params()];
    check_params(model, &p)?;
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut accepted = 0u64;
    for _ in 0..opts.samples {
        draw_prior(model, prior, &mut p, &mut rng);
        let z = model.forward(&p, x)?;
        let pred = predicted_classes(z.view());
        if let Some(c) = condition
            && c.train.iter().zip(c.labels).any(|(&i, &y)| pred[i] != y)
        {
            continue;
        }
        accepted += 1;
        let f: String = test_rows.iter().map(|&i| class_char(pred[i])).collect();
        *counts.entry(f).or_default() += 1;
    }
    let mut all: Vec<(String, u64)> = counts.into_iter().collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let acc = accepted.max(1) as f64;
    let entropy_bits = all
        .iter()
        .map(|(_, c)| {
            let q = *c as f64 / acc;
            -q * q.log2()
        })
        .sum::<f64>()
        .max(0.0);
    let constant: u64 =
        all.iter().filter(|(f, _)| f.bytes().all(|ch| Some(ch) == f.bytes().next())).map(|(_, c)| c).sum();
    let distinct = all.len();
    let keep = if opts.top == 0 { all.len() } else { opts.top.min(all.len()) };
    Ok(FunctionSampleEstimate {
        samples: opts.samples as u64,
        accepted,
        acceptance_rate: accepted as f64 / opts.samples as f64,
        points: test_rows.len(),
        distinct,
        most_frequent_probability: if accepted == 0 { f64::NAN } else { all[0].1 as f64 / acc },
        constant_probability: if accepted == 0 { f64::NAN } else { constant as f64 / acc },
        entropy_bits,
        top: all
            .into_iter()
            .take(keep)
            .map(|(function, count)| FunctionFrequency { function, count, probability: count as f64 / acc })
            .collect(),
    })
}
