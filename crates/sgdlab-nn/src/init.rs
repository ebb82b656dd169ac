//! Seeded parameter initialisers.
//!
//! Each tensor draws from its own stream `init/<name>` of the run's seed, so changing one layer
//! never changes the draws of another.
//!
//! `first_layer = "tile"` replaces the draws of a 1-D-input first layer by a layout that tiles an
//! input interval (Hong et al. 2022, PROTOCOLS 2.3): see [`FirstLayerInit::Tile`].

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

/// How the first linear layer starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FirstLayerInit {
    /// Like every other layer: `scheme`, `scale` and `bias`.
    #[default]
    Scheme,
    /// The units tile the input interval `domain = [a, b]` (Hong et al. 2022, PROTOCOLS 2.3; the
    /// first layer must be `Linear(1, m)` with a bias). With `h = (b - a) / m`, unit `j` gets
    /// the centre `c_j = a + (j + 1/2) h` (evenly spaced, one per cell of width `h`), a weight
    /// `w_j = s_j u_j / h` with `u_j ~ U(0.5, 2)` and a random sign `s_j`, and the bias
    /// `b_j = z* - w_j c_j`, so its pre-activation `w_j (x - c_j) + z*` takes the activation's
    /// centre `z*` at `x = c_j`. `z*` is the middle of the activation's kinks: 1 for Hat (its
    /// peak, so the support `(0, 2)` is `c_j -+ 1 / |w_j|`, half-width between h / 2 and 2 h,
    /// and the supports cover `[a, b]`: every point of `(a, b)` lies in 1 to 4 of them), 0 for ReLU and
    /// leaky ReLU (the kink at `c_j`), 0 for smooth activations. The draws come from the stream
    /// `init/tile` and do not depend on the activation, so a Hat and a ReLU network of one seed
    /// get the same layout. `scale` does not apply to this layer; `tile_scale` multiplies its
    /// weights (the centres kept).
    Tile,
}

/// An initialiser: scheme, a multiplier on every weight, the bias rule, and optionally a tiling
/// first layer. Layer-norm weights start at 1 and biases at 0, as in PyTorch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitSpec {
    /// Start from the parameters of this checkpoint (a `final.safetensors` or
    /// `checkpoints/step-N.safetensors` of another run, or any sgdlab/PyTorch safetensors file of
    /// the same architecture) instead of drawing them; the other keys are then unused. Read by
    /// the trainer (`sgdlab_train`), which resolves a relative path against its base directory.
    /// Not written to a resolved spec when absent, so specs without it keep their hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default)]
    pub scheme: InitScheme,
    /// Multiplies every linear weight after drawing (small-init studies use e.g. 1e-2).
    #[serde(default = "one")]
    pub scale: f64,
    #[serde(default)]
    pub bias: BiasInit,
    /// `scheme` (default) or `tile` ([`FirstLayerInit::Tile`]); not written to a resolved spec
    /// when it is the default, so specs without it keep their hashes.
    #[serde(default, skip_serializing_if = "is_default_first_layer")]
    pub first_layer: FirstLayerInit,
    /// The input interval `[a, b]` a `tile` first layer covers (default `[-1, 1]`).
    #[serde(default = "default_domain", skip_serializing_if = "is_default_domain")]
    pub domain: [f64; 2],
    /// Multiplies the weights of a `tile` first layer, the centres kept (default 1). A ReLU
    /// unit's kink does not depend on it, a Hat unit's support half-width is `1 / |w_j|`.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub tile_scale: f64,
}

fn is_one(v: &f64) -> bool {
    *v == 1.0
}

fn one() -> f64 {
    1.0
}

fn default_domain() -> [f64; 2] {
    [-1.0, 1.0]
}

fn is_default_domain(d: &[f64; 2]) -> bool {
    *d == default_domain()
}

fn is_default_first_layer(f: &FirstLayerInit) -> bool {
    *f == FirstLayerInit::Scheme
}

impl Default for InitSpec {
    fn default() -> Self {
        InitSpec {
            from: None,
            scheme: InitScheme::Auto,
            scale: 1.0,
            bias: BiasInit::Zero,
            first_layer: FirstLayerInit::Scheme,
            domain: default_domain(),
            tile_scale: 1.0,
        }
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

/// Centre `z*` of an activation for a tiling first layer: the middle of its kinks (Hat 1,
/// ReLU 0), 0 without kinks.
fn activation_centre(a: Option<Activation>) -> f64 {
    let kinks = a.map_or(&[][..], |a| a.kinks());
    match (kinks.first(), kinks.last()) {
        (Some(lo), Some(hi)) => 0.5 * (lo + hi),
        _ => 0.0,
    }
}

impl InitSpec {
    /// Checks that the spec applies to `model`: a `tile` first layer needs a finite `domain` with
    /// a < b and a first layer `Linear(1, m)` with a bias.
    pub fn check(&self, model: &Model) -> Result<(), String> {
        if self.first_layer == FirstLayerInit::Scheme {
            return Ok(());
        }
        let [a, b] = self.domain;
        if !(a.is_finite() && b.is_finite() && a < b) {
            return Err(format!("init.domain must be a finite interval [a, b] with a < b, got [{a}, {b}]"));
        }
        if !(self.tile_scale.is_finite() && self.tile_scale > 0.0) {
            return Err(format!("init.tile_scale must be a finite positive number, got {}", self.tile_scale));
        }
        let name = model.layer_name(0);
        let layout = model.layout();
        let weight = layout.get(&format!("{name}.weight"));
        match (model.layers().first(), weight, layout.get(&format!("{name}.bias"))) {
            (Some(crate::layer::Layer::Linear(_)), Some(w), Some(_)) if w.shape.len() == 2 && w.shape[1] == 1 => Ok(()),
            _ => Err(format!(
                "init.first_layer = \"tile\" needs a first layer Linear(1, m) with a bias (a 1-D input), not {}",
                model.arch().map_or_else(|| "this model".to_string(), |a| a.to_string())
            )),
        }
    }

    /// Draws a model's parameters from `stream` (its child `init/<tensor name>` per tensor).
    ///
    /// # Panics
    /// If [`InitSpec::check`] fails for `model` (the trainer checks first).
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
        if self.first_layer == FirstLayerInit::Tile {
            if let Err(e) = self.check(model) {
                panic!("{e}");
            }
            self.tile_first_layer(model, stream, &mut params);
        }
        params
    }

    /// Overwrites the first layer with the tiling layout of [`FirstLayerInit::Tile`].
    fn tile_first_layer<T: Scalar>(&self, model: &Model, stream: &RngStream, params: &mut Params<T>) {
        let name = model.layer_name(0);
        let layout = params.layout().clone();
        let w = layout.get(&format!("{name}.weight")).expect("checked");
        let b = layout.get(&format!("{name}.bias")).expect("checked");
        let m = w.shape[0];
        let act = match model.layers().get(1) {
            Some(crate::layer::Layer::Activation(a)) => Some(*a),
            _ => model.activation(),
        };
        let centre = activation_centre(act);
        let [lo, hi] = self.domain;
        let h = (hi - lo) / m as f64;
        let mut rng = stream.child("init").child("tile").rng();
        let data = params.as_mut_slice();
        for j in 0..m {
            let c = lo + (j as f64 + 0.5) * h;
            let u = 0.5 + 1.5 * rng.random::<f64>();
            let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
            let wj = self.tile_scale * sign * u / h;
            data[w.offset + j] = T::from_f64(wj);
            data[b.offset + j] = T::from_f64(centre - wj * c);
        }
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
        let spec = InitSpec { scheme: InitScheme::Orthogonal, scale: 2.0, bias: BiasInit::Zero, ..Default::default() };
        let p: Params<f64> = spec.init(&m, &RngStream::new(5));
        let w = p.tensor("0.weight").unwrap().into_dimensionality::<ndarray::Ix2>().unwrap().to_owned();
        let g = w.dot(&w.t());
        for i in 0..4 {
            for j in 0..4 {
                let e = if i == j { 4.0 } else { 0.0 };
                assert!((g[(i, j)] - e).abs() < 1e-12);
            }
        }
        let spec = InitSpec { scheme: InitScheme::Torch, scale: 1.0, bias: BiasInit::Torch, ..Default::default() };
        let p: Params<f64> = spec.init(&model("mlp:16-8-2:relu"), &RngStream::new(5));
        let a = 0.25;
        assert!(p.tensor("0.weight").unwrap().iter().all(|x| x.abs() <= a));
        assert!(p.tensor("0.bias").unwrap().iter().any(|&x| x != 0.0));
        let lm = model("mlp:4-8-2:relu:layernorm");
        let p: Params<f64> = InitSpec::default().init(&lm, &RngStream::new(5));
        assert!(p.tensor("1.weight").unwrap().iter().all(|&x| x == 1.0));
        assert!(p.tensor("1.bias").unwrap().iter().all(|&x| x == 0.0));
    }

    #[test]
    fn tile_first_layer_tiles_the_domain_for_hat_and_places_relu_kinks_alike() {
        let tile = InitSpec { first_layer: FirstLayerInit::Tile, domain: [-1.0, 2.0], ..Default::default() };
        let (m, [lo, hi]) = (64usize, tile.domain);
        let h = (hi - lo) / m as f64;
        let hat: Params<f64> = tile.init(&model("mlp:1-64-1:hat"), &RngStream::new(7));
        let relu: Params<f64> = tile.init(&model("mlp:1-64-1:relu"), &RngStream::new(7));
        let (wh, bh) = (hat.tensor("0.weight").unwrap(), hat.tensor("0.bias").unwrap());
        let (wr, br) = (relu.tensor("0.weight").unwrap(), relu.tensor("0.bias").unwrap());
        // The same weights for both activations; |w| h in [0.5, 2]; both signs occur.
        assert_eq!(wh, wr);
        assert!(wh.iter().all(|&w| (0.5..=2.0).contains(&(w.abs() * h))));
        assert!(wh.iter().any(|&w| w > 0.0) && wh.iter().any(|&w| w < 0.0));
        for j in 0..m {
            let (w, c) = (wh[[j, 0]], lo + (j as f64 + 0.5) * h);
            // Hat's peak (pre-activation 1) and ReLU's kink (pre-activation 0) sit at c_j.
            assert!((w * c + bh[j] - 1.0).abs() < 1e-12, "hat unit {j}");
            assert!((w * c + br[j]).abs() < 1e-12, "relu unit {j}");
        }
        // Every point of (a, b) lies in 1 to 4 Hat supports (pre-activation in (0, 2)).
        let mut max_cover = 0;
        for i in 1..3000 {
            let x = lo + (hi - lo) * i as f64 / 3000.0;
            let inside = |j: usize| {
                let z = wh[[j, 0]] * x + bh[j];
                z > 0.0 && z < 2.0
            };
            let n = (0..m).filter(|&j| inside(j)).count();
            assert!((1..=4).contains(&n), "x = {x}: {n} supports");
            max_cover = max_cover.max(n);
        }
        assert!(max_cover >= 2, "supports overlap");
        // tile_scale multiplies the weights and keeps the centres (ReLU kinks).
        let scaled = InitSpec { tile_scale: h, ..tile.clone() };
        let rs: Params<f64> = scaled.init(&model("mlp:1-64-1:relu"), &RngStream::new(7));
        let ws = rs.tensor("0.weight").unwrap();
        for j in 0..m {
            let c = lo + (j as f64 + 0.5) * h;
            assert!(
                (ws[[j, 0]] - h * wr[[j, 0]]).abs() < 1e-12
                    && (ws[[j, 0]] * c + rs.tensor("0.bias").unwrap()[j]).abs() < 1e-12
            );
        }
        // The other layers are drawn as without tiling; another seed gives other draws.
        let plain: Params<f64> = InitSpec::default().init(&model("mlp:1-64-1:hat"), &RngStream::new(7));
        assert_eq!(hat.tensor("2.weight"), plain.tensor("2.weight"));
        let other: Params<f64> = tile.init(&model("mlp:1-64-1:hat"), &RngStream::new(8));
        assert_ne!(other.tensor("0.weight"), hat.tensor("0.weight"));
    }

    #[test]
    fn tile_first_layer_needs_a_one_dimensional_input_with_a_bias_and_a_proper_domain() {
        let tile = InitSpec { first_layer: FirstLayerInit::Tile, ..Default::default() };
        assert!(tile.check(&model("mlp:1-8-1:relu")).is_ok());
        let e = tile.check(&model("mlp:2-8-1:relu")).unwrap_err();
        assert!(e.contains("Linear(1, m)") && e.contains("mlp:2-8-1:relu"), "{e}");
        assert!(tile.check(&model("mlp:1-8-1:relu:nobias")).is_err());
        let bad = InitSpec { domain: [1.0, 1.0], ..tile.clone() };
        assert!(bad.check(&model("mlp:1-8-1:relu")).unwrap_err().contains("init.domain"));
        let bad = InitSpec { tile_scale: 0.0, ..tile };
        assert!(bad.check(&model("mlp:1-8-1:relu")).unwrap_err().contains("init.tile_scale"));
        // The default first layer never fails the check.
        assert!(InitSpec::default().check(&model("mlp:2-8-1:relu")).is_ok());
    }
}
