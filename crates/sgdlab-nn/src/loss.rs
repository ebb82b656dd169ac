//! Losses on logits `z` of shape `[batch, K]`, with their gradient and Hessian-vector product with
//! respect to the logits (PyTorch conventions).
//!
//! | loss | per-example loss `l_i` | `Reduction::Mean` divides the sum by |
//! |---|---|---|
//! | `CrossEntropy` (class targets) | `-log softmax(z_i)[y_i]` | B |
//! | `Mse` (value targets, or class targets as one-hot) | `sum_k (z_ik - y_ik)^2` over observed targets (a NaN target is unobserved and contributes nothing: masked losses such as matrix completion) | B * K (all elements, as `nn.MSELoss`, observed or not) |
//! | `Logistic` (K = 1, class targets 0/1) | `softplus(z_i) - y_i z_i` (`BCEWithLogitsLoss`) | B |
//! | `Sobolev { s }` (K = 1, value targets: the batch is a 1-periodic function sampled on a uniform grid of N = B points, in grid order) | none: the loss couples the examples (below) | N |
//!
//! `Reduction::Sum` is the plain sum of the per-example losses.
//!
//! **The Sobolev-weighted loss** (Yu, Yang & Townsend 2022, arXiv:2205.14300; PROTOCOLS 2.4). For
//! the residual `r = z - y` on the grid and its unitary DFT
//! `r^_k = N^{-1/2} sum_j r_j exp(-2 pi i j k / N)`, the `Reduction::Sum` loss is
//!
//! `L_s = sum_k (1 + k^2)^s |r^_k|^2 = r^T A r`, `A = F^* diag(w) F`, `w_k = (1 + k^2)^s`,
//!
//! with `k` the signed frequency of bin `k`, taken in `(-N/2, N/2]` (bins `k` and `N - k` are `+-k`).
//! `A` is a real symmetric circulant matrix; the gradient in the outputs is `2 A r` and the Hessian
//! `2 A` (constant, and *not* block diagonal over examples). `Reduction::Mean` divides by `N`. For
//! `s = 0`, `A = I`: `Sobolev { s: 0 }` with `Reduction::Sum` is `Mse` with `Reduction::Sum`
//! (`sum_j r_j^2 = N * MSE`), and with `Reduction::Mean` it is `Mse` with `Reduction::Mean` (K = 1).
//! Products with `A` go through an FFT (`O(N log N)`, in f64 whatever `T`). Per-example losses,
//! gradients and Fisher matrices are undefined ([`Loss::check_per_example`] says so), and the
//! loss of a subset or a shuffled batch of the grid is a different loss: callers pass the whole
//! grid in order.

use crate::activation::softplus;
use crate::error::NnError;
use ndarray::{Array2, ArrayView2};
use rustfft::FftPlanner;
use rustfft::num_complex::Complex64;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sgdlab_linalg::Scalar;
use std::cell::RefCell;
use std::fmt;
use std::str::FromStr;

/// How per-example losses combine into the batch loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Reduction {
    #[default]
    Mean,
    Sum,
}

/// A loss on logits. Specs write it as a string (its `Display`, which `FromStr` and serde read
/// back): `cross_entropy`, `mse`, `logistic`, `sobolev:s=1`.
///
/// `PartialEq` but not `Eq`: the Sobolev exponent is an `f64`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loss {
    /// Softmax cross-entropy with integer class targets.
    CrossEntropy,
    /// Squared error; class targets are one-hot encoded.
    Mse,
    /// Binary logistic loss on a single logit, targets 0/1.
    Logistic,
    /// The Sobolev `H^s`-weighted squared error of a 1-periodic residual on a uniform grid (the
    /// batch, in grid order; see the module documentation). `s` is finite; `s = 0` is MSE.
    Sobolev { s: f64 },
}

impl Serialize for Loss {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Loss {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Targets of a batch.
#[derive(Debug, Clone, Copy)]
pub enum Targets<'a, T> {
    /// Class indices.
    Classes(&'a [u32]),
    /// Real values, shape `[batch, K]`.
    Values(ArrayView2<'a, T>),
}

impl<T> Targets<'_, T> {
    /// Number of examples.
    pub fn len(&self) -> usize {
        match self {
            Targets::Classes(c) => c.len(),
            Targets::Values(v) => v.nrows(),
        }
    }

    /// True when there are no examples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Loss::CrossEntropy => f.write_str("cross_entropy"),
            Loss::Mse => f.write_str("mse"),
            Loss::Logistic => f.write_str("logistic"),
            // f64's Display is the shortest string that parses back to the same value.
            Loss::Sobolev { s } => write!(f, "sobolev:s={s}"),
        }
    }
}

/// The names `FromStr` knows, for error messages.
const KNOWN_LOSSES: &str = "cross_entropy, mse, logistic, sobolev:s=S";

impl FromStr for Loss {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cross_entropy" | "ce" => Ok(Loss::CrossEntropy),
            "mse" => Ok(Loss::Mse),
            "logistic" | "bce" => Ok(Loss::Logistic),
            "sobolev" => Err(format!("loss '{s}' needs its exponent: sobolev:s=S (e.g. sobolev:s=1)")),
            _ => match s.strip_prefix("sobolev:") {
                Some(opts) => parse_sobolev(s, opts),
                None => Err(format!("unknown loss '{s}' (known: {KNOWN_LOSSES})")),
            },
        }
    }
}

/// The options of `sobolev:s=S` (`opts` after the colon; `whole` for messages).
fn parse_sobolev(whole: &str, opts: &str) -> Result<Loss, String> {
    let mut exponent = None;
    for kv in opts.split(',') {
        let (k, v) = kv.split_once('=').ok_or_else(|| format!("loss '{whole}': '{kv}' is not key=value"))?;
        match k.trim() {
            "s" => {
                let s: f64 = v.trim().parse().map_err(|_| format!("loss '{whole}': s = '{v}' is not a number"))?;
                if !s.is_finite() {
                    return Err(format!("loss '{whole}': s must be finite"));
                }
                if exponent.replace(s).is_some() {
                    return Err(format!("loss '{whole}': s is given twice"));
                }
            }
            other => return Err(format!("loss '{whole}': unknown key '{other}' (known: s)")),
        }
    }
    match exponent {
        Some(s) => Ok(Loss::Sobolev { s }),
        None => Err(format!("loss '{whole}' needs s (e.g. sobolev:s=1)")),
    }
}

thread_local! {
    /// Plans are cached by the planner, per thread (plans are `Send + Sync`, the planner is not).
    static FFT_PLANNER: RefCell<FftPlanner<f64>> = RefCell::new(FftPlanner::new());
}

/// The Sobolev weight `w_k = (1 + k^2)^s` of DFT bin `j` of an `n`-point grid, whose signed
/// frequency `k` is `j` for `j <= n/2` and `j - n` otherwise (`k` in `(-n/2, n/2]`).
pub fn sobolev_weight(j: usize, n: usize, s: f64) -> f64 {
    let k = if 2 * j <= n { j as f64 } else { j as f64 - n as f64 };
    (1.0 + k * k).powf(s)
}

/// The unnormalised DFT `R_k = sum_j r_j exp(-2 pi i j k / N)` of a real vector, by FFT.
fn fft_real(r: &[f64]) -> Vec<Complex64> {
    let mut buf: Vec<Complex64> = r.iter().map(|&v| Complex64::new(v, 0.0)).collect();
    if !buf.is_empty() {
        FFT_PLANNER.with(|p| p.borrow_mut().plan_fft_forward(buf.len())).process(&mut buf);
    }
    buf
}

/// `r^T A r = (1/N) sum_k w_k |R_k|^2` (the unitary DFT is `R / sqrt(N)`).
fn sobolev_form(spectrum: &[Complex64], s: f64) -> f64 {
    let n = spectrum.len();
    if n == 0 {
        return 0.0;
    }
    spectrum.iter().enumerate().map(|(j, c)| sobolev_weight(j, n, s) * c.norm_sqr()).sum::<f64>() / n as f64
}

/// `A x = Re IDFT(w * DFT(x))` from the unnormalised spectrum of `x` (consumed), by inverse FFT.
fn sobolev_apply_spectrum(mut spectrum: Vec<Complex64>, s: f64) -> Vec<f64> {
    let n = spectrum.len();
    if n == 0 {
        return Vec::new();
    }
    for (j, c) in spectrum.iter_mut().enumerate() {
        *c *= sobolev_weight(j, n, s);
    }
    FFT_PLANNER.with(|p| p.borrow_mut().plan_fft_inverse(n)).process(&mut spectrum);
    // A is real (w_k = w_{-k}): the imaginary parts are rounding.
    spectrum.iter().map(|c| c.re / n as f64).collect()
}

/// `A x` for the Sobolev matrix `A = F^* diag(w) F` of an `N = x.len()` point grid (module
/// documentation), in `O(N log N)`.
pub fn sobolev_apply(x: &[f64], s: f64) -> Vec<f64> {
    sobolev_apply_spectrum(fft_real(x), s)
}

/// The single column of `[N, 1]` logits (or tangents) as f64.
fn column_f64<T: Scalar>(a: ArrayView2<'_, T>) -> Vec<f64> {
    a.column(0).iter().map(|&v| v.to_f64()).collect()
}

/// The residual `z - y` of `[N, 1]` logits and value targets, in f64.
fn residual_f64<T: Scalar>(z: ArrayView2<'_, T>, targets: &Targets<'_, T>) -> Vec<f64> {
    let Targets::Values(y) = targets else { unreachable!("checked: Sobolev targets are values") };
    z.column(0).iter().zip(y.column(0)).map(|(&a, &b)| a.to_f64() - b.to_f64()).collect()
}

/// `[N, 1]` from f64 values times `c`.
fn column_from_f64<T: Scalar>(v: &[f64], c: f64) -> Array2<T> {
    Array2::from_shape_fn((v.len(), 1), |(i, _)| T::from_f64(c * v[i]))
}

fn log_softmax_row<T: Scalar>(z: &[T], out: &mut [T]) {
    let m = z.iter().copied().fold(T::neg_infinity(), T::max);
    let lse = m + z.iter().map(|&v| (v - m).exp()).sum::<T>().ln();
    for (o, &v) in out.iter_mut().zip(z) {
        *o = v - lse;
    }
}

impl Loss {
    /// Checks that targets fit logits of shape `[batch, k]`.
    pub fn check<T: Scalar>(&self, batch: usize, k: usize, targets: &Targets<'_, T>) -> Result<(), NnError> {
        if targets.len() != batch {
            return Err(NnError::Shape(format!("{batch} inputs but {} targets", targets.len())));
        }
        match (self, targets) {
            (Loss::CrossEntropy, Targets::Classes(c)) | (Loss::Mse, Targets::Classes(c)) => {
                if let Some((i, &bad)) = c.iter().enumerate().find(|(_, y)| **y as usize >= k) {
                    return Err(NnError::Targets(format!(
                        "label {bad} of example {i} is out of range for {k} outputs"
                    )));
                }
            }
            (Loss::CrossEntropy, Targets::Values(_)) => {
                return Err(NnError::Targets("cross_entropy needs class targets, got real values".into()));
            }
            (Loss::Mse, Targets::Values(v)) => {
                if let Some(((i, j), y)) = v.indexed_iter().find(|(_, y)| y.is_infinite()) {
                    return Err(NnError::Targets(format!(
                        "target {j} of example {i} is {y} (NaN marks an unobserved target; infinities are errors)"
                    )));
                }
                if v.ncols() != k {
                    return Err(NnError::Shape(format!(
                        "targets have {} columns, the model has {k} outputs",
                        v.ncols()
                    )));
                }
            }
            (Loss::Logistic, Targets::Classes(c)) => {
                if k != 1 {
                    return Err(NnError::Shape(format!("logistic loss needs 1 output, the model has {k}")));
                }
                if let Some((i, &bad)) = c.iter().enumerate().find(|(_, y)| **y > 1) {
                    return Err(NnError::Targets(format!(
                        "label {bad} of example {i}: logistic loss needs labels 0 or 1"
                    )));
                }
            }
            (Loss::Logistic, Targets::Values(_)) => {
                return Err(NnError::Targets("logistic loss needs class targets 0/1, got real values".into()));
            }
            (Loss::Sobolev { s }, t) => {
                if !s.is_finite() {
                    return Err(NnError::Targets(format!("loss {self}: the exponent s must be finite")));
                }
                if k != 1 {
                    return Err(NnError::Shape(format!(
                        "loss {self} needs 1 output (a function on a periodic grid), the model has {k}"
                    )));
                }
                let Targets::Values(v) = t else {
                    return Err(NnError::Targets(format!(
                        "loss {self} needs real-valued targets on a grid, got class targets"
                    )));
                };
                if v.ncols() != 1 {
                    return Err(NnError::Shape(format!("loss {self} needs 1 target column, got {}", v.ncols())));
                }
                if let Some((i, y)) = v.column(0).iter().enumerate().find(|(_, y)| !y.is_finite()) {
                    return Err(NnError::Targets(format!(
                        "loss {self}: target of grid point {i} is {y} (the grid must be complete and finite)"
                    )));
                }
            }
        }
        Ok(())
    }

    /// True when the loss of a batch is not a sum of per-example losses (Sobolev: the DFT couples
    /// every grid point), so per-example quantities are undefined and the batch must be the whole
    /// grid in order.
    pub fn couples_examples(&self) -> bool {
        match self {
            Loss::CrossEntropy | Loss::Mse | Loss::Logistic => false,
            Loss::Sobolev { .. } => true,
        }
    }

    /// An error naming the loss when it couples the examples ([`Loss::couples_examples`]), for
    /// a per-example quantity (`what`, e.g. "per-example gradients").
    pub fn check_per_example(&self, what: &str) -> Result<(), NnError> {
        if self.couples_examples() {
            return Err(NnError::Coupled(format!(
                "{what} are undefined for loss {self}: it weights the DFT of the residual over the whole grid, which couples the examples"
            )));
        }
        Ok(())
    }

    /// The factor that turns the sum of per-example losses into the reduced loss.
    pub fn scale<T: Scalar>(&self, batch: usize, k: usize, reduction: Reduction) -> T {
        match (reduction, self) {
            (Reduction::Sum, _) => T::one(),
            // Sobolev has K = 1: both read "divide by N".
            (Reduction::Mean, Loss::Mse | Loss::Sobolev { .. }) => T::one() / T::from_usize(batch * k),
            (Reduction::Mean, Loss::CrossEntropy | Loss::Logistic) => T::one() / T::from_usize(batch),
        }
    }

    fn target_value<T: Scalar>(targets: &Targets<'_, T>, i: usize, k: usize) -> T {
        match targets {
            Targets::Classes(c) => {
                if c[i] as usize == k {
                    T::one()
                } else {
                    T::zero()
                }
            }
            Targets::Values(v) => v[(i, k)],
        }
    }

    /// Per-example losses `l_i` (unreduced). Targets must have passed [`Loss::check`]. An error
    /// for a loss that couples the examples (Sobolev).
    pub fn per_example<T: Scalar>(&self, z: ArrayView2<'_, T>, targets: &Targets<'_, T>) -> Result<Vec<T>, NnError> {
        self.check_per_example("per-example losses")?;
        let k = z.ncols();
        let mut ls = vec![T::zero(); k];
        Ok(z.rows()
            .into_iter()
            .enumerate()
            .map(|(i, row)| match self {
                Loss::CrossEntropy => {
                    let Targets::Classes(c) = targets else { unreachable!("checked") };
                    let r: Vec<T> = row.iter().copied().collect();
                    log_softmax_row(&r, &mut ls);
                    -ls[c[i] as usize]
                }
                Loss::Mse => row
                    .iter()
                    .enumerate()
                    .map(|(j, &v)| {
                        let y = Self::target_value(targets, i, j);
                        // A NaN target is unobserved: it contributes nothing.
                        if y.is_nan() { T::zero() } else { (v - y) * (v - y) }
                    })
                    .sum(),
                Loss::Logistic => {
                    let y = Self::target_value(targets, i, 1);
                    softplus(row[0]) - y * row[0]
                }
                Loss::Sobolev { .. } => unreachable!("refused by check_per_example"),
            })
            .collect())
    }

    /// The reduced loss.
    pub fn value<T: Scalar>(&self, z: ArrayView2<'_, T>, targets: &Targets<'_, T>, reduction: Reduction) -> T {
        let c = self.scale::<T>(z.nrows(), z.ncols(), reduction);
        if let Loss::Sobolev { s } = *self {
            return T::from_f64(sobolev_form(&fft_real(&residual_f64(z, targets)), s)) * c;
        }
        let s: T = self.per_example(z, targets).expect("not coupled").into_iter().sum();
        s * c
    }

    /// The reduced loss and its gradient with respect to the logits.
    pub fn value_and_grad<T: Scalar>(
        &self,
        z: ArrayView2<'_, T>,
        targets: &Targets<'_, T>,
        reduction: Reduction,
    ) -> (T, Array2<T>) {
        let (b, k) = z.dim();
        let s: T = self.scale(b, k, reduction);
        if let Loss::Sobolev { s: order } = *self {
            // L = r^T A r, dL/dz = 2 A r (one forward and one inverse FFT).
            let spectrum = fft_real(&residual_f64(z, targets));
            let value = sobolev_form(&spectrum, order);
            let ar = sobolev_apply_spectrum(spectrum, order);
            return (T::from_f64(value) * s, column_from_f64(&ar, 2.0 * s.to_f64()));
        }
        let mut g = Array2::zeros((b, k));
        let mut total = T::zero();
        let mut ls = vec![T::zero(); k];
        for (i, (row, mut grow)) in z.rows().into_iter().zip(g.rows_mut()).enumerate() {
            match self {
                Loss::CrossEntropy => {
                    let Targets::Classes(c) = targets else { unreachable!("checked") };
                    let r: Vec<T> = row.iter().copied().collect();
                    log_softmax_row(&r, &mut ls);
                    let y = c[i] as usize;
                    total -= ls[y];
                    for (j, gv) in grow.iter_mut().enumerate() {
                        *gv = s * (ls[j].exp() - if j == y { T::one() } else { T::zero() });
                    }
                }
                Loss::Mse => {
                    for (j, gv) in grow.iter_mut().enumerate() {
                        let y = Self::target_value(targets, i, j);
                        if y.is_nan() {
                            continue;
                        }
                        let d = row[j] - y;
                        total += d * d;
                        *gv = s * T::from_f64(2.0) * d;
                    }
                }
                Loss::Logistic => {
                    let y = Self::target_value(targets, i, 1);
                    let zi = row[0];
                    total += softplus(zi) - y * zi;
                    let sig = T::one() / (T::one() + (-zi).exp());
                    grow[0] = s * (sig - y);
                }
                Loss::Sobolev { .. } => unreachable!("handled above"),
            }
        }
        (total * s, g)
    }

    /// `H_z dz`: the Hessian of the reduced loss with respect to the logits applied to `dz`. It is
    /// block diagonal over examples for every loss but Sobolev, whose Hessian `2 c A` couples all
    /// of them (`c` the reduction's factor): callers pass the whole batch, never a part of it.
    /// Only MSE reads the targets (unobserved NaN entries have zero curvature).
    pub fn hessian_vp<T: Scalar>(
        &self,
        z: ArrayView2<'_, T>,
        targets: &Targets<'_, T>,
        dz: ArrayView2<'_, T>,
        reduction: Reduction,
    ) -> Array2<T> {
        let (b, k) = z.dim();
        let s: T = self.scale(b, k, reduction);
        if let Loss::Sobolev { s: order } = *self {
            return column_from_f64(&sobolev_apply(&column_f64(dz), order), 2.0 * s.to_f64());
        }
        let mut out = Array2::zeros((b, k));
        let mut ls = vec![T::zero(); k];
        for (i, ((row, drow), mut orow)) in z.rows().into_iter().zip(dz.rows()).zip(out.rows_mut()).enumerate() {
            match self {
                Loss::CrossEntropy => {
                    let r: Vec<T> = row.iter().copied().collect();
                    log_softmax_row(&r, &mut ls);
                    let pdz: T = ls.iter().zip(drow.iter()).map(|(&l, &d)| l.exp() * d).sum();
                    for (j, o) in orow.iter_mut().enumerate() {
                        let p = ls[j].exp();
                        *o = s * p * (drow[j] - pdz);
                    }
                }
                Loss::Mse => {
                    let masked = matches!(targets, Targets::Values(_));
                    for (j, (o, &d)) in orow.iter_mut().zip(drow.iter()).enumerate() {
                        if masked && Self::target_value(targets, i, j).is_nan() {
                            continue;
                        }
                        *o = s * T::from_f64(2.0) * d;
                    }
                }
                Loss::Logistic => {
                    let sig = T::one() / (T::one() + (-row[0]).exp());
                    orow[0] = s * sig * (T::one() - sig) * drow[0];
                }
                Loss::Sobolev { .. } => unreachable!("handled above"),
            }
        }
        out
    }

    /// Fraction of correct predictions: argmax of the logits against class targets (for value
    /// targets, against the argmax of the targets); logistic: `z > 0` against the label.
    pub fn accuracy<T: Scalar>(&self, z: ArrayView2<'_, T>, targets: &Targets<'_, T>) -> f64 {
        let n = z.nrows();
        if n == 0 {
            return f64::NAN;
        }
        let argmax = |r: ndarray::ArrayView1<'_, T>| {
            let mut best = 0;
            for (j, &v) in r.iter().enumerate() {
                if v > r[best] {
                    best = j;
                }
            }
            best
        };
        let correct = (0..n)
            .filter(|&i| match (self, targets) {
                (Loss::Logistic, Targets::Classes(c)) => (z[(i, 0)] > T::zero()) == (c[i] == 1),
                (_, Targets::Classes(c)) => argmax(z.row(i)) == c[i] as usize,
                (_, Targets::Values(v)) => argmax(z.row(i)) == argmax(v.row(i)),
            })
            .count();
        correct as f64 / n as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_of_uniform_logits_is_log_k() {
        let z = Array2::<f64>::zeros((3, 4));
        let t = Targets::Classes(&[0, 1, 3]);
        let (v, g) = Loss::CrossEntropy.value_and_grad(z.view(), &t, Reduction::Mean);
        assert!((v - 4f64.ln()).abs() < 1e-15);
        assert!((g[(0, 0)] - (0.25 - 1.0) / 3.0).abs() < 1e-15);
        assert!((Loss::CrossEntropy.value(z.view(), &t, Reduction::Sum) - 3.0 * 4f64.ln()).abs() < 1e-14);
    }

    #[test]
    fn mse_mean_divides_by_all_elements() {
        let z = ndarray::array![[1.0, 2.0], [0.0, 0.0]];
        let y = ndarray::array![[0.0, 0.0], [1.0, 1.0]];
        let t = Targets::Values(y.view());
        assert_eq!(Loss::Mse.value(z.view(), &t, Reduction::Mean), 7.0 / 4.0);
        assert_eq!(Loss::Mse.value(z.view(), &t, Reduction::Sum), 7.0);
        // One-hot class targets equal explicit value targets.
        let c = Targets::Classes(&[1, 0]);
        let yo = ndarray::array![[0.0, 1.0], [1.0, 0.0]];
        assert_eq!(
            Loss::Mse.value(z.view(), &c, Reduction::Mean),
            Loss::Mse.value(z.view(), &Targets::Values(yo.view()), Reduction::Mean)
        );
    }

    #[test]
    fn mse_ignores_unobserved_nan_targets() {
        let z = ndarray::array![[1.0, 2.0], [0.5, -1.0]];
        let dz = ndarray::array![[0.3, -0.2], [0.7, 0.1]];
        let y = ndarray::array![[0.0, f64::NAN], [f64::NAN, 1.0]];
        let t = Targets::Values(y.view());
        // Observed: (1 - 0)^2 + (-1 - 1)^2 = 5, over all 4 elements.
        assert_eq!(Loss::Mse.value(z.view(), &t, Reduction::Mean), 5.0 / 4.0);
        let (v, g) = Loss::Mse.value_and_grad(z.view(), &t, Reduction::Sum);
        assert_eq!(v, 5.0);
        assert_eq!(g, ndarray::array![[2.0, 0.0], [0.0, -4.0]]);
        let h = Loss::Mse.hessian_vp(z.view(), &t, dz.view(), Reduction::Sum);
        assert_eq!(h, ndarray::array![[0.6, 0.0], [0.0, 0.2]]);
        // Differences of the gradient agree with the masked Hessian.
        let eps = 1e-6;
        let (_, gp) = Loss::Mse.value_and_grad((&z + &(&dz * eps)).view(), &t, Reduction::Sum);
        let (_, gm) = Loss::Mse.value_and_grad((&z - &(&dz * eps)).view(), &t, Reduction::Sum);
        for (a, b) in ((&gp - &gm) / (2.0 * eps)).iter().zip(h.iter()) {
            assert!((a - b).abs() < 1e-8);
        }
    }

    #[test]
    fn logistic_is_stable_and_matches_formula() {
        let z = ndarray::array![[2.0], [-800.0]];
        let t = Targets::Classes(&[0, 0]);
        let l = Loss::Logistic.per_example(z.view(), &t).unwrap();
        assert!((l[0] - (1.0 + 2f64.exp()).ln()).abs() < 1e-15);
        assert!(l[1].abs() < 1e-300);
    }

    #[test]
    fn grad_and_hessian_match_differences() {
        let z = ndarray::array![[0.3, -1.2, 0.7], [1.5, 0.1, -0.4]];
        let dz = ndarray::array![[0.2, 0.5, -0.3], [-0.7, 0.4, 0.9]];
        let y = ndarray::array![[0.0, 1.0, 0.5], [1.0, -1.0, 0.0]];
        let zl = ndarray::array![[0.3], [-1.2]];
        let dzl = ndarray::array![[0.6], [-0.25]];
        let classes = [2u32, 0];
        let bin = [1u32, 0];
        type LossCase<'a> = (Loss, ArrayView2<'a, f64>, ArrayView2<'a, f64>, Targets<'a, f64>);
        let cases: Vec<LossCase> = vec![
            (Loss::CrossEntropy, z.view(), dz.view(), Targets::Classes(&classes)),
            (Loss::Mse, z.view(), dz.view(), Targets::Values(y.view())),
            (Loss::Logistic, zl.view(), dzl.view(), Targets::Classes(&bin)),
        ];
        for (loss, z, dz, t) in cases {
            for red in [Reduction::Mean, Reduction::Sum] {
                loss.check(z.nrows(), z.ncols(), &t).unwrap();
                let h = 1e-6;
                let (_, g) = loss.value_and_grad(z, &t, red);
                let zp = &z + &(&dz * h);
                let zm = &z - &(&dz * h);
                let fd = (loss.value(zp.view(), &t, red) - loss.value(zm.view(), &t, red)) / (2.0 * h);
                let gd: f64 = (&g * &dz).sum();
                assert!((fd - gd).abs() < 1e-9, "{loss} {red:?}: {fd} vs {gd}");
                let (_, gp) = loss.value_and_grad(zp.view(), &t, red);
                let (_, gm) = loss.value_and_grad(zm.view(), &t, red);
                let hfd = (&gp - &gm) / (2.0 * h);
                let hv = loss.hessian_vp(z, &t, dz, red);
                for (a, b) in hfd.iter().zip(hv.iter()) {
                    assert!((a - b).abs() < 1e-8, "{loss} {red:?} Hessian: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn bad_targets_are_named_errors() {
        let l = Loss::CrossEntropy;
        assert!(
            l.check::<f64>(2, 3, &Targets::Classes(&[0, 3])).unwrap_err().to_string().contains("label 3 of example 1")
        );
        assert!(
            l.check::<f64>(3, 3, &Targets::Classes(&[0, 1]))
                .unwrap_err()
                .to_string()
                .contains("3 inputs but 2 targets")
        );
        assert!(Loss::Logistic.check::<f64>(1, 2, &Targets::Classes(&[0])).is_err());
        assert!(Loss::Logistic.check::<f64>(1, 1, &Targets::Classes(&[2])).is_err());
        assert_eq!("ce".parse::<Loss>().unwrap(), Loss::CrossEntropy);
        assert!("hinge".parse::<Loss>().unwrap_err().contains("known: cross_entropy"));
    }

    #[test]
    fn sobolev_specs_parse_display_and_serialise_as_strings() {
        for (text, s) in [("sobolev:s=1", 1.0), ("sobolev:s=-1", -1.0), ("sobolev:s=0.5", 0.5), ("sobolev:s=2", 2.0)] {
            let l: Loss = text.parse().unwrap();
            assert_eq!(l, Loss::Sobolev { s });
            assert_eq!(l.to_string(), text);
            assert_eq!(serde_json::to_string(&l).unwrap(), format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<Loss>(&format!("\"{text}\"")).unwrap(), l);
        }
        // Display round-trips any exponent exactly.
        for s in [0.1, -1.0 / 3.0, 1e-300, 12345.678] {
            assert_eq!(Loss::Sobolev { s }.to_string().parse::<Loss>().unwrap(), Loss::Sobolev { s });
        }
        assert_eq!("sobolev:s=+1.0".parse::<Loss>().unwrap(), Loss::Sobolev { s: 1.0 });
        // The other losses keep their names (the serde form of existing specs and records).
        assert_eq!(serde_json::to_string(&Loss::CrossEntropy).unwrap(), "\"cross_entropy\"");
        assert_eq!(serde_json::from_str::<Loss>("\"mse\"").unwrap(), Loss::Mse);
        for (bad, says) in [
            ("sobolev", "needs its exponent"),
            ("sobolev:", "not key=value"),
            ("sobolev:s=", "not a number"),
            ("sobolev:s=inf", "finite"),
            ("sobolev:s=nan", "finite"),
            ("sobolev:t=1", "unknown key 't'"),
            ("sobolev:s=1,s=2", "twice"),
        ] {
            let e = bad.parse::<Loss>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert!(serde_json::from_str::<Loss>("\"sobolev:s=x\"").unwrap_err().to_string().contains("not a number"));
    }

    #[test]
    fn sobolev_fft_matches_the_definition_and_mean_divides_by_n() {
        // A single Fourier mode cos(2 pi m j / N) has |r^_{+-m}|^2 = N/4 each: L_s = (N/2) (1 + m^2)^s.
        for n in [8usize, 9, 16] {
            for m in [1usize, 2, 3] {
                let r: Vec<f64> =
                    (0..n).map(|j| (2.0 * std::f64::consts::PI * (m * j) as f64 / n as f64).cos()).collect();
                let z = Array2::from_shape_vec((n, 1), r).unwrap();
                let y = Array2::zeros((n, 1));
                let t = Targets::Values(y.view());
                for s in [-1.0, 0.0, 1.0, 2.0] {
                    let loss = Loss::Sobolev { s };
                    loss.check(n, 1, &t).unwrap();
                    let expected = n as f64 / 2.0 * (1.0 + (m * m) as f64).powf(s);
                    let sum = loss.value(z.view(), &t, Reduction::Sum);
                    assert!((sum - expected).abs() <= 1e-12 * expected, "N={n} m={m} s={s}: {sum} vs {expected}");
                    let mean = loss.value(z.view(), &t, Reduction::Mean);
                    assert!((mean - expected / n as f64).abs() <= 1e-12 * expected);
                    // A cos mode is an eigenvector of A with eigenvalue (1 + m^2)^s.
                    let az = sobolev_apply(z.as_slice().unwrap(), s);
                    for (a, b) in az.iter().zip(z.iter()) {
                        assert!((a - (1.0 + (m * m) as f64).powf(s) * b).abs() < 1e-12 * expected);
                    }
                }
            }
        }
        // The Nyquist bin of an even grid has k = N/2: (-1)^j has L_s = N (1 + N^2/4)^s.
        let z = Array2::<f64>::from_shape_fn((6, 1), |(j, _)| if j % 2 == 0 { 1.0 } else { -1.0 });
        let y = Array2::zeros((6, 1));
        let v = Loss::Sobolev { s: 1.0 }.value(z.view(), &Targets::Values(y.view()), Reduction::Sum);
        assert!((v - 6.0 * 10.0).abs() < 1e-12);
        // An empty batch has zero loss.
        let e = Array2::<f64>::zeros((0, 1));
        assert_eq!(Loss::Sobolev { s: 1.0 }.value(e.view(), &Targets::Values(e.view()), Reduction::Sum), 0.0);
    }

    #[test]
    fn accuracy_counts_argmax_hits() {
        let z = ndarray::array![[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]];
        assert!(
            (Loss::CrossEntropy.accuracy(z.view(), &Targets::<f64>::Classes(&[1, 0, 0])) - 2.0 / 3.0).abs() < 1e-15
        );
    }
}
