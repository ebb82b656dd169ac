//! Seeded parameter initialisers.
//!
//! Each tensor draws from its own stream `init/<name>` of the run's seed, so changing one layer
//! never changes the draws of another.

use crate::activation::Activation;
use crate::model::Model;
use crate::params::Params;
use ndarray::Array2;
use rand::RngExt;
use serde::{Deserialize, Serialize};
use sgdlab_linalg::{RngStream, Scalar, orthonormal_rows, standard_normal};

/// How linear weights are drawn (fan_in = inputs of the layer, fan_out = outputs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum InitScheme {
    /// He for ReLU-like activations (relu, leaky_relu, gelu, hat), LeCun otherwise.
    #[default]
    Auto,
    /// N(0, 2 / fan_in) (He et al. 2015, "Delving deep into rectifiers").
    He,
    /// N(0, 1 / fan_in) (LeCun et al. 1998, "Efficient backprop").
    Lecun,
    /// U(-a, a), a = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010).
    Xavier,
    /// A Haar-random matrix with orthonormal rows or columns (Saxe, McClelland & Ganguli 2014).
    Orthogonal,
    /// PyTorch's `nn.Linear` default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights.
    Torch,
}

/// How linear biases start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BiasInit {
    /// All zeros.
    #[default]
    Zero,
    /// PyTorch's default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    Torch,
}

/// An initialiser: scheme, a multiplier on every weight, and the bias rule. Layer-norm weights
/// start at 1 and biases at 0, as in PyTorch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitSpec {
    #[serde(default)]
    pub scheme: InitScheme,
    /// Multiplies every linear weight after drawing (small-init studies use e.g. 1e-2).
    #[serde(default = "one")]
    pub scale: f64,
    #[serde(default)]
    pub bias: BiasInit,
}

fn one() -> f64 {
    1.0
}

impl Default for InitSpec {
    fn default() -> Self {
        InitSpec { scheme: InitScheme::Auto, scale: 1.0, bias: BiasInit::Zero }
    }
}

fn relu_like(a: Activation) -> bool {
    matches!(a, Activation::Relu | Activation::LeakyRelu { .. } | Activation::Gelu | Activation::Hat)
}

/// What a layer's init needs: the spec, its scheme resolved for the model, and the seed's stream.
pub(crate) struct LayerInit<'a> {
    spec: &'a InitSpec,
    scheme: InitScheme,
    stream: &'a RngStream,
}

impl LayerInit<'_> {
    /// Draws the weight `w` (`rows x cols` row-major; `fan_in`, `fan_out` as PyTorch counts them)
    /// from the stream `init/<name>`, times the spec's scale.
    pub(crate) fn weight<T: Scalar>(&self, name: &str, w: &mut [T], rows: usize, cols: usize, fan_out: usize) {
        let (fi, fo) = (cols as f64, fan_out as f64);
        let mut rng = self.stream.child("init").child(name).rng();
        let scale = self.spec.scale;
        match self.scheme {
            InitScheme::He | InitScheme::Lecun => {
                let sd = if self.scheme == InitScheme::He { (2.0 / fi).sqrt() } else { (1.0 / fi).sqrt() };
                for v in w.iter_mut() {
                    *v = T::from_f64(sd * scale * standard_normal::<f64, _>(&mut rng));
                }
            }
            InitScheme::Xavier | InitScheme::Torch => {
                let a = if self.scheme == InitScheme::Xavier { (6.0 / (fi + fo)).sqrt() } else { 1.0 / fi.sqrt() };
                for v in w.iter_mut() {
                    *v = T::from_f64(scale * a * (2.0 * rng.random::<f64>() - 1.0));
                }
            }
            InitScheme::Orthogonal => {
                let g = Array2::from_shape_fn((rows, cols), |_| standard_normal::<f64, _>(&mut rng));
                let q = orthonormal_rows(g.view());
                for (v, &qv) in w.iter_mut().zip(q.iter()) {
                    *v = T::from_f64(scale * qv);
                }
            }
            InitScheme::Auto => unreachable!("resolved in InitSpec::init"),
        }
    }

    /// Draws the bias `b` of a layer with `fan_in` inputs per output: zeros, or PyTorch's
    /// U(-1/sqrt(fan_in), 1/sqrt(fan_in)) from the stream `init/<name>`.
    pub(crate) fn bias<T: Scalar>(&self, name: &str, b: &mut [T], fan_in: usize) {
        match self.spec.bias {
            BiasInit::Zero => b.fill(T::zero()),
            BiasInit::Torch => {
                let mut rng = self.stream.child("init").child(name).rng();
                let a = 1.0 / (fan_in as f64).sqrt();
                for v in b.iter_mut() {
                    *v = T::from_f64(a * (2.0 * rng.random::<f64>() - 1.0));
                }
            }
        }
    }
}

impl InitSpec {
    /// Draws a model's parameters from `stream` (its child `init/<tensor name>` per tensor).
    pub fn init<T: Scalar>(&self, model: &Model, stream: &RngStream) -> Params<T> {
        let mut params = Params::<T>::zeros(model.layout().clone());
        let scheme = match self.scheme {
            InitScheme::Auto if model.activation().is_some_and(relu_like) => InitScheme::He,
            InitScheme::Auto => InitScheme::Lecun,
            s => s,
        };
        let init = LayerInit { spec: self, scheme, stream };
        let data = params.as_mut_slice();
        for (i, layer) in model.layers().iter().enumerate() {
            let off = model.offset(i);
            layer.init(&model.layer_name(i), &init, &mut data[off..off + layer.num_params()]);
        }
        params
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::ArchSpec;

    fn model(s: &str) -> Model {
        Model::new(&s.parse::<ArchSpec>().unwrap())
    }

    #[test]
    fn he_init_has_the_stated_variance_and_zero_bias() {
        let m = model("mlp:400-300-10:relu");
        let p: Params<f64> = InitSpec::default().init(&m, &RngStream::new(3));
        let w = p.tensor("0.weight").unwrap();
        let n = w.len() as f64;
        let var = w.iter().map(|x| x * x).sum::<f64>() / n;
        // 120,000 draws: the relative sd of the variance estimate is sqrt(2/n) = 0.004; 5 sd.
        assert!((var / (2.0 / 400.0) - 1.0).abs() < 0.02, "var {var}");
        assert!(p.tensor("0.bias").unwrap().iter().all(|&b| b == 0.0));
    }

    #[test]
    fn same_seed_same_params_and_layers_draw_independently() {
        let a: Params<f32> = InitSpec::default().init(&model("mlp:4-5-3:tanh"), &RngStream::new(1));
        let b: Params<f32> = InitSpec::default().init(&model("mlp:4-5-3:tanh"), &RngStream::new(1));
        assert_eq!(a, b);
        // Widening the last layer leaves the first layer's draws unchanged.
        let c: Params<f32> = InitSpec::default().init(&model("mlp:4-5-7:tanh"), &RngStream::new(1));
        assert_eq!(a.tensor("0.weight"), c.tensor("0.weight"));
        let d: Params<f32> = InitSpec::default().init(&model("mlp:4-5-3:tanh"), &RngStream::new(2));
        assert_ne!(a, d);
    }

    #[test]
    fn orthogonal_and_uniform_schemes() {
        let m = model("mlp:6-4-6:identity:nobias");
        let spec = InitSpec { scheme: InitScheme::Orthogonal, scale: 2.0, bias: BiasInit::Zero };
        let p: Params<f64> = spec.init(&m, &RngStream::new(5));
        let w = p.tensor("0.weight").unwrap().into_dimensionality::<ndarray::Ix2>().unwrap().to_owned();
        let g = w.dot(&w.t());
        for i in 0..4 {
            for j in 0..4 {
                let e = if i == j { 4.0 } else { 0.0 };
                assert!((g[(i, j)] - e).abs() < 1e-12);
            }
        }
        let spec = InitSpec { scheme: InitScheme::Torch, scale: 1.0, bias: BiasInit::Torch };
        let p: Params<f64> = spec.init(&model("mlp:16-8-2:relu"), &RngStream::new(5));
        let a = 0.25;
        assert!(p.tensor("0.weight").unwrap().iter().all(|x| x.abs() <= a));
        assert!(p.tensor("0.bias").unwrap().iter().any(|&x| x != 0.0));
        let lm = model("mlp:4-8-2:relu:layernorm");
        let p: Params<f64> = InitSpec::default().init(&lm, &RngStream::new(5));
        assert!(p.tensor("1.weight").unwrap().iter().all(|&x| x == 1.0));
        assert!(p.tensor("1.bias").unwrap().iter().all(|&x| x == 0.0));
    }
}
