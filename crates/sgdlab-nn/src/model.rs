//! `Model`: an immutable sequential network built from an [`ArchSpec`] (or from layers).

use crate::activation::Activation;
use crate::arch::{ArchKind, ArchSpec};
use crate::error::NnError;
use crate::layer::{Layer, LayerNorm, Linear, offsets};
use crate::params::ParamLayout;
use std::sync::Arc;

/// The layer-norm epsilon (PyTorch's default).
pub const LAYER_NORM_EPS: f64 = 1e-5;

/// A sequential network: a list of layers, each owning a contiguous slice of the flat parameter
/// vector. The model is a description; parameters live in [`crate::Params`].
///
/// Top-level layer `i` is named `i` as in PyTorch's `nn.Sequential` (activations take an index
/// too, so an MLP's linear layers are `0`, `2`, `4`, ...); the inner layer `j` of residual block
/// `i` is `i.j` (the block is an `nn.Sequential` subclass returning `x + super().forward(x)`).
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    arch: Option<ArchSpec>,
    layers: Vec<Layer>,
    offsets: Vec<usize>,
    in_dim: usize,
    out_dim: usize,
    layout: Arc<ParamLayout>,
}

impl Model {
    /// Builds the network an architecture spec describes (see [`crate::arch`] for the layer
    /// sequence of each kind).
    pub fn new(arch: &ArchSpec) -> Self {
        let lin = |i, o| Layer::Linear(Linear { in_dim: i, out_dim: o, bias: arch.bias });
        let ln = |d| Layer::LayerNorm(LayerNorm { dim: d, affine: true, eps: LAYER_NORM_EPS });
        let act = Layer::Activation(arch.activation);
        let mut layers = Vec::new();
        match arch.kind {
            ArchKind::Mlp => {
                let w = &arch.widths;
                for i in 0..w.len() - 1 {
                    layers.push(lin(w[i], w[i + 1]));
                    if i + 2 < w.len() {
                        if arch.layernorm {
                            layers.push(ln(w[i + 1]));
                        }
                        layers.push(act.clone());
                    }
                }
            }
            ArchKind::Resmlp => {
                let (i, h, o) = (arch.widths[0], arch.widths[1], arch.widths[2]);
                layers.push(lin(i, h));
                for _ in 0..arch.blocks {
                    let mut inner = Vec::new();
                    if arch.layernorm {
                        inner.push(ln(h));
                    }
                    inner.extend([lin(h, h), act.clone(), lin(h, h)]);
                    layers.push(Layer::Residual(inner));
                }
                layers.push(lin(h, o));
            }
        }
        let mut m = Model::from_layers(layers, arch.in_dim()).expect("an ArchSpec always builds a consistent model");
        m.arch = Some(arch.clone());
        m
    }

    /// A model from explicit layers (for tests and custom stacks); checks that widths chain.
    pub fn from_layers(layers: Vec<Layer>, in_dim: usize) -> Result<Self, NnError> {
        let mut d = in_dim;
        for (i, l) in layers.iter().enumerate() {
            d = l.check_dims(d).map_err(|m| NnError::Shape(format!("layer {i}: {m}")))?;
        }
        let mut entries = Vec::new();
        for (i, l) in layers.iter().enumerate() {
            l.param_entries(&i.to_string(), &mut entries);
        }
        let offsets = offsets(&layers);
        Ok(Model { arch: None, offsets, in_dim, out_dim: d, layout: Arc::new(ParamLayout::new(entries)), layers })
    }

    /// The architecture spec, when the model was built from one.
    pub fn arch(&self) -> Option<&ArchSpec> {
        self.arch.as_ref()
    }

    /// The common activation of the architecture, if built from a spec.
    pub fn activation(&self) -> Option<Activation> {
        self.arch.as_ref().map(|a| a.activation)
    }

    /// The top-level layers.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Start of top-level layer `i`'s parameters in the flat vector.
    pub fn offset(&self, i: usize) -> usize {
        self.offsets[i]
    }

    /// The parameter slice of top-level layer `i`.
    pub fn layer_params<'a, T>(&self, i: usize, p: &'a [T]) -> &'a [T] {
        &p[self.offsets[i]..self.offsets[i] + self.layers[i].num_params()]
    }

    /// Input width.
    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    /// Output width (number of logits).
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        self.layout.len()
    }

    /// The parameter layout (PyTorch names and shapes).
    pub fn layout(&self) -> &Arc<ParamLayout> {
        &self.layout
    }

    /// Visits every layer (descending into residual blocks) with its name prefix and the offset of
    /// its parameters in the flat vector.
    pub fn for_each_layer(&self, f: &mut dyn FnMut(&str, &Layer, usize)) {
        fn walk(prefix: &str, layers: &[Layer], base: usize, f: &mut dyn FnMut(&str, &Layer, usize)) {
            for ((j, l), off) in layers.iter().enumerate().zip(offsets(layers)) {
                let name = if prefix.is_empty() { j.to_string() } else { format!("{prefix}.{j}") };
                f(&name, l, base + off);
                if let Layer::Residual(inner) = l {
                    walk(&name, inner, base + off, f);
                }
            }
        }
        walk("", &self.layers, 0, f);
    }

    /// A short human description: the arch string, or the layer count.
    pub fn describe(&self) -> String {
        match &self.arch {
            Some(a) => a.to_string(),
            None => format!("{} layers, {} -> {}", self.layers.len(), self.in_dim, self.out_dim),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mlp_layout_uses_pytorch_names() {
        let m = Model::new(&"mlp:40-100-100-10:relu".parse().unwrap());
        let names: Vec<_> = m.layout().entries().iter().map(|e| (e.name.as_str(), e.shape.clone())).collect();
        assert_eq!(
            names,
            vec![
                ("0.weight", vec![100, 40]),
                ("0.bias", vec![100]),
                ("2.weight", vec![100, 100]),
                ("2.bias", vec![100]),
                ("4.weight", vec![10, 100]),
                ("4.bias", vec![10]),
            ]
        );
        assert_eq!(m.num_params(), 40 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10);
        assert_eq!((m.in_dim(), m.out_dim()), (40, 10));
    }

    #[test]
    fn layernorm_and_residual_layouts() {
        let m = Model::new(&"mlp:4-8-3:relu:layernorm:nobias".parse().unwrap());
        let names: Vec<_> = m.layout().entries().iter().map(|e| e.name.clone()).collect();
        assert_eq!(names, ["0.weight", "1.weight", "1.bias", "3.weight"]);
        let r = Model::new(&"resmlp:6-4x2-3:tanh:layernorm".parse().unwrap());
        let names: Vec<_> = r.layout().entries().iter().map(|e| e.name.clone()).collect();
        assert_eq!(
            names,
            [
                "0.weight",
                "0.bias",
                "1.0.weight",
                "1.0.bias",
                "1.1.weight",
                "1.1.bias",
                "1.3.weight",
                "1.3.bias",
                "2.0.weight",
                "2.0.bias",
                "2.1.weight",
                "2.1.bias",
                "2.3.weight",
                "2.3.bias",
                "3.weight",
                "3.bias"
            ]
        );
        let mut seen = Vec::new();
        r.for_each_layer(&mut |name, l, off| {
            if let Layer::Linear(_) = l {
                seen.push((name.to_string(), off));
            }
        });
        assert_eq!(seen[0], ("0".to_string(), 0));
        assert_eq!(seen[1].0, "1.1");
        assert_eq!(seen[1].1, r.layout().get("1.1.weight").unwrap().offset);
    }

    #[test]
    fn from_layers_checks_widths() {
        let bad = Model::from_layers(
            vec![
                Layer::Linear(Linear { in_dim: 3, out_dim: 4, bias: true }),
                Layer::Linear(Linear { in_dim: 5, out_dim: 2, bias: true }),
            ],
            3,
        );
        assert!(bad.unwrap_err().to_string().contains("layer 1: linear layer expects 5 inputs, gets 4"));
    }
}
