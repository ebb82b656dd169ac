//! Losses on logits `z` of shape `[batch, K]`, with their gradient and Hessian-vector product with
//! respect to the logits (PyTorch conventions).
//!
//! | loss | per-example loss `l_i` | `Reduction::Mean` divides the sum by |
//! |---|---|---|
//! | `CrossEntropy` (class targets) | `-log softmax(z_i)[y_i]` | B |
//! | `Mse` (value targets, or class targets as one-hot) | `sum_k (z_ik - y_ik)^2` over observed targets (a NaN target is unobserved and contributes nothing: masked losses such as matrix completion) | B * K (all elements, as `nn.MSELoss`, observed or not) |
//! | `Logistic` (K = 1, class targets 0/1) | `softplus(z_i) - y_i z_i` (`BCEWithLogitsLoss`) | B |
//!
//! `Reduction::Sum` is the plain sum of the per-example losses.

use crate::activation::softplus;
use crate::error::NnError;
use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};
use sgdlab_linalg::Scalar;
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

/// A loss on logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Softmax cross-entropy with integer class targets.
    CrossEntropy,
    /// Squared error; class targets are one-hot encoded.
    Mse,
    /// Binary logistic loss on a single logit, targets 0/1.
    Logistic,
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
        f.write_str(match self {
            Loss::CrossEntropy => "cross_entropy",
            Loss::Mse => "mse",
            Loss::Logistic => "logistic",
        })
    }
}

impl FromStr for Loss {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cross_entropy" | "ce" => Ok(Loss::CrossEntropy),
            "mse" => Ok(Loss::Mse),
            "logistic" | "bce" => Ok(Loss::Logistic),
            _ => Err(format!("unknown loss '{s}' (known: cross_entropy, mse, logistic)")),
        }
    }
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
        }
        Ok(())
    }

    /// The factor that turns the sum of per-example losses into the reduced loss.
    pub fn scale<T: Scalar>(&self, batch: usize, k: usize, reduction: Reduction) -> T {
        match (reduction, self) {
            (Reduction::Sum, _) => T::one(),
            (Reduction::Mean, Loss::Mse) => T::one() / T::from_usize(batch * k),
            (Reduction::Mean, _) => T::one() / T::from_usize(batch),
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

    /// Per-example losses `l_i` (unreduced). Targets must have passed [`Loss::check`].
    pub fn per_example<T: Scalar>(&self, z: ArrayView2<'_, T>, targets: &Targets<'_, T>) -> Vec<T> {
        let k = z.ncols();
        let mut ls = vec![T::zero(); k];
        z.rows()
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
            })
            .collect()
    }

    /// The reduced loss.
    pub fn value<T: Scalar>(&self, z: ArrayView2<'_, T>, targets: &Targets<'_, T>, reduction: Reduction) -> T {
        let s: T = self.per_example(z, targets).into_iter().sum();
        s * self.scale::<T>(z.nrows(), z.ncols(), reduction)
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
            }
        }
        (total * s, g)
    }

    /// `H_z dz`: the Hessian of the reduced loss with respect to the logits (block diagonal over
    /// examples) applied to `dz`. Only MSE reads the targets (unobserved NaN entries have zero
    /// curvature).
    pub fn hessian_vp<T: Scalar>(
        &self,
        z: ArrayView2<'_, T>,
        targets: &Targets<'_, T>,
        dz: ArrayView2<'_, T>,
        reduction: Reduction,
    ) -> Array2<T> {
        let (b, k) = z.dim();
        let s: T = self.scale(b, k, reduction);
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
        let l = Loss::Logistic.per_example(z.view(), &t);
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
    fn accuracy_counts_argmax_hits() {
        let z = ndarray::array![[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]];
        assert!(
            (Loss::CrossEntropy.accuracy(z.view(), &Targets::<f64>::Classes(&[1, 0, 0])) - 2.0 / 3.0).abs() < 1e-15
        );
    }
}
