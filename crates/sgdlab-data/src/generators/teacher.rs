//! Teacher-student data: a random MLP labels Gaussian inputs.

use crate::{DataError, Dataset, Split, Targets};
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};
use sgdlab_linalg::memory::Estimate;
use sgdlab_linalg::{RngStream, standard_normal};

/// Hidden activation of the teacher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// `max(0, x)`.
    Relu,
    /// `tanh(x)`.
    Tanh,
    /// `x` (a deep linear teacher).
    Linear,
}

impl Activation {
    fn apply(self, x: f64) -> f64 {
        match self {
            Activation::Relu => x.max(0.0),
            Activation::Tanh => x.tanh(),
            Activation::Linear => x,
        }
    }
}

/// How the teacher's outputs become targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TeacherTargets {
    /// The outputs themselves (plus noise), `[n, outputs]`.
    Regression,
    /// Class `argmax` of the outputs, or `output > 0` for a single output (2 classes).
    Classes,
}

/// A plain MLP `f(x) = W_L phi(... phi(W_1 x + b_1) ...) + b_L` (weights `[out, in]`), `phi` after
/// every layer but the last.
#[derive(Debug, Clone, PartialEq)]
pub struct TeacherMlp {
    /// Weights per layer, `[out, in]`.
    pub weights: Vec<Array2<f64>>,
    /// Biases per layer.
    pub biases: Vec<Array1<f64>>,
    /// Hidden activation.
    pub activation: Activation,
}

impl TeacherMlp {
    /// Outputs `[n, out]` for inputs `[n, in]`.
    pub fn forward(&self, x: &Array2<f64>) -> Array2<f64> {
        let mut h = x.clone();
        let last = self.weights.len().saturating_sub(1);
        for (l, (w, b)) in self.weights.iter().zip(&self.biases).enumerate() {
            h = h.dot(&w.t()) + b;
            if l < last {
                h.mapv_inplace(|v| self.activation.apply(v));
            }
        }
        h
    }
}

/// Teacher-student data (e.g. Andriushchenko, Varre, Pillaud-Vivien & Flammarion, "SGD with Large
/// Step Sizes Learns Sparse Features", ICML 2023): inputs `x ~ N(0, I_d)`, targets from a random
/// teacher MLP with widths `d, hidden..., outputs`, weights `W_l ~ N(0, 1 / fan_in)` and biases
/// `b_l ~ N(0, bias_sd^2)` (stream `teacher/weights`), plus `N(0, noise^2)` noise on regression
/// targets of the training split only. Splits `train` (`n_train`) and `test` (`n_test`; streams
/// `teacher/train`, `teacher/test`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeacherSpec {
    /// Input dimension.
    pub d: usize,
    /// Hidden widths of the teacher.
    pub hidden: Vec<usize>,
    /// Teacher outputs.
    pub outputs: usize,
    /// Hidden activation.
    pub activation: Activation,
    /// Standard deviation of the teacher's biases.
    pub bias_sd: f64,
    /// Training examples.
    pub n_train: usize,
    /// Test examples.
    pub n_test: usize,
    /// Label noise sd on regression training targets.
    pub noise: f64,
    /// Regression or classes.
    pub targets: TeacherTargets,
    /// Seed.
    pub seed: u64,
}

impl Default for TeacherSpec {
    /// The large-step-size protocol: d = 10, 3 ReLU neurons, 50 train, 2000 test.
    fn default() -> Self {
        TeacherSpec {
            d: 10,
            hidden: vec![3],
            outputs: 1,
            activation: Activation::Relu,
            bias_sd: 0.0,
            n_train: 50,
            n_test: 2000,
            noise: 0.0,
            targets: TeacherTargets::Regression,
            seed: 0,
        }
    }
}

impl TeacherSpec {
    /// The teacher (deterministic in the spec).
    pub fn teacher(&self) -> TeacherMlp {
        let mut rng = RngStream::new(self.seed).child("teacher").child("weights").rng();
        let mut widths = vec![self.d];
        widths.extend(&self.hidden);
        widths.push(self.outputs);
        let mut weights = Vec::new();
        let mut biases = Vec::new();
        for w in widths.windows(2) {
            let (fan_in, fan_out) = (w[0], w[1]);
            let s = 1.0 / (fan_in as f64).sqrt();
            weights.push(Array2::from_shape_fn((fan_out, fan_in), |_| s * standard_normal::<f64, _>(&mut rng)));
            biases.push(Array1::from_shape_fn(fan_out, |_| self.bias_sd * standard_normal::<f64, _>(&mut rng)));
        }
        TeacherMlp { weights, biases, activation: self.activation }
    }

    /// Peak memory of [`TeacherSpec::generate`]: the teacher's weights, and per split its inputs
    /// in f64 and f32, the widest layer's activations and the targets.
    pub fn memory_estimate(&self) -> Estimate {
        let mut widths = vec![self.d];
        widths.extend(&self.hidden);
        widths.push(self.outputs);
        let widest = widths.iter().copied().max().unwrap_or(0);
        let n = self.n_train.max(self.n_test);
        let mut e = Estimate::new(format!(
            "teacher data with {} + {} examples of dimension {}",
            self.n_train, self.n_test, self.d
        ));
        for w in widths.windows(2) {
            e = e.array(&[w[0], w[1]], 8).array(&[w[1]], 8);
        }
        let split =
            Estimate::new("").array(&[n, self.d], 8 + 4).array(&[n, widest], 8 * 2).array(&[n, self.outputs], 4);
        e.plus(&split).plus(&split)
    }

    /// Splits `train` and `test`.
    pub fn generate(&self) -> Result<Dataset, DataError> {
        if self.d == 0 || self.outputs == 0 || self.hidden.contains(&0) || self.n_train == 0 || self.n_test == 0 {
            return Err(DataError::invalid("teacher", "dimensions, widths and split sizes must be positive"));
        }
        if !(self.noise >= 0.0 && self.bias_sd >= 0.0 && self.noise.is_finite() && self.bias_sd.is_finite()) {
            return Err(DataError::invalid("teacher", "noise and bias_sd must be finite and non-negative"));
        }
        self.memory_estimate().check()?;
        let teacher = self.teacher();
        let root = RngStream::new(self.seed).child("teacher");
        let mut splits = Vec::new();
        for (name, n) in [("train", self.n_train), ("test", self.n_test)] {
            let mut rng = root.child(name).rng();
            let x = Array2::from_shape_fn((n, self.d), |_| standard_normal::<f64, _>(&mut rng));
            let mut f = teacher.forward(&x);
            let targets = match self.targets {
                TeacherTargets::Regression => {
                    if name == "train" && self.noise > 0.0 {
                        f.mapv_inplace(|v| v + self.noise * standard_normal::<f64, _>(&mut rng));
                    }
                    Targets::Regression(f.mapv(|v| v as f32))
                }
                TeacherTargets::Classes => {
                    let labels = f
                        .rows()
                        .into_iter()
                        .map(|r| {
                            if r.len() == 1 {
                                u32::from(r[0] > 0.0)
                            } else {
                                (0..r.len()).fold(0, |best, j| if r[j] > r[best] { j } else { best }) as u32
                            }
                        })
                        .collect();
                    Targets::Classes { labels, num_classes: self.outputs.max(2) }
                }
            };
            splits.push(Split::new(name, x.mapv(|v| v as f32), targets)?);
        }
        Dataset::new("teacher", None, splits)
    }
}
