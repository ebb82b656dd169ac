//! `Model`: an immutable sequential network built from an [`ArchSpec`] (or from layers).

use crate::activation::Activation;
use crate::arch::{ArchKind, ArchSpec};
use crate::error::NnError;
use crate::layer::{BatchStatistics, Layer, LayerNorm, Linear, Mode, offsets};
use crate::params::ParamLayout;
use crate::shape::Shape;
use std::sync::Arc;

/// The layer-norm epsilon (PyTorch's default).
pub const LAYER_NORM_EPS: f64 = crate::arch::seq::NORM_EPS;

/// A sequential network: a list of layers, each owning a contiguous slice of the flat parameter
/// vector. The model is a description; parameters live in [`crate::Params`].
///
/// Top-level layer `i` is named `i` as in PyTorch's `nn.Sequential` (activations take an index
/// too, so an MLP's linear layers are `0`, `2`, `4`, ...); the inner layer `j` of residual block
/// `i` is `i.j` (the block is an `nn.Sequential` subclass returning `x + super().forward(x)`).
///
/// Every activation has a per-example [`Shape`] (`shapes()[i]` enters layer `i`; the last is
/// the logits'); a batch is stored as `[batch, shape.len()]` rows in PyTorch's order. Batch-norm
/// running statistics are buffers of the model (see [`Model::buffers`]), not parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    arch: Option<ArchSpec>,
    layers: Vec<Layer>,
    offsets: Vec<usize>,
    shapes: Vec<Shape>,
    layout: Arc<ParamLayout>,
}

/// One buffer of a model (a batch-norm running statistic): its `state_dict` name, shape and values.
#[derive(Debug, Clone, PartialEq)]
pub struct Buffer {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f64>,
}

impl Model {
    /// Builds the network an architecture spec describes (see [`crate::arch`] for the layer
    /// sequence of each kind).
    pub fn new(arch: &ArchSpec) -> Self {
        if let Some(seq) = &arch.seq {
            let (layers, _) = seq.build().expect("a validated seq spec builds");
            let mut m = Model::from_layers_shaped(layers, seq.input).expect("a validated seq spec builds");
            m.arch = Some(arch.clone());
            return m;
        }
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
            ArchKind::Seq => unreachable!("built above"),
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

    /// A model from explicit layers on flat inputs (for tests and custom stacks); checks that
    /// widths chain.
    pub fn from_layers(layers: Vec<Layer>, in_dim: usize) -> Result<Self, NnError> {
        Model::from_layers_shaped(layers, Shape::flat(in_dim))
    }

    /// A model from explicit layers on inputs of per-example shape `input`; checks that shapes
    /// chain and that the output is flat (the logits).
    pub fn from_layers_shaped(layers: Vec<Layer>, input: Shape) -> Result<Self, NnError> {
        let mut shapes = vec![input];
        for (i, l) in layers.iter().enumerate() {
            let s = l.out_shape(*shapes.last().expect("starts with the input"));
            shapes.push(s.map_err(|m| NnError::Shape(format!("layer {i}: {m}")))?);
        }
        let out = shapes.last().expect("starts with the input");
        if out.rank() != 1 {
            return Err(NnError::Shape(format!("the output has shape {out} per example; logits are flat")));
        }
        let mut entries = Vec::new();
        for (i, l) in layers.iter().enumerate() {
            l.param_entries(&i.to_string(), &mut entries);
        }
        let offsets = offsets(&layers);
        Ok(Model { arch: None, offsets, shapes, layout: Arc::new(ParamLayout::new(entries)), layers })
    }

    /// The architecture spec, when the model was built from one.
    pub fn arch(&self) -> Option<&ArchSpec> {
        self.arch.as_ref()
    }

    /// The common activation of the architecture, if built from a spec (for a `seq`
    /// architecture: the one every activation layer uses, if they agree).
    pub fn activation(&self) -> Option<Activation> {
        let arch = self.arch.as_ref()?;
        match &arch.seq {
            Some(seq) => seq.common_activation(),
            None => Some(arch.activation),
        }
    }

    /// The `state_dict` name of top-level layer `i` (its index, as in `nn.Sequential`).
    pub fn layer_name(&self, i: usize) -> String {
        i.to_string()
    }

    /// Per-example shapes: `shapes()[i]` enters top-level layer `i`, the last is the logits'.
    pub fn shapes(&self) -> &[Shape] {
        &self.shapes
    }

    /// The per-example input shape.
    pub fn in_shape(&self) -> Shape {
        self.shapes[0]
    }

    /// The first top-level layer whose output, in `mode`, depends on the other examples of the
    /// batch (batch norm on batch statistics), as `(index, kind)`.
    pub fn coupling_layer(&self, mode: &Mode) -> Option<(usize, &'static str)> {
        self.layers.iter().enumerate().find(|(i, l)| l.couples_examples(&mode.layer(*i))).map(|(i, l)| (i, l.kind()))
    }

    /// True when some layer behaves differently in training (dropout, batch norm).
    pub fn has_train_mode(&self) -> bool {
        let mut any = false;
        self.for_each_layer(&mut |_, l, _| any |= matches!(l, Layer::Dropout(_) | Layer::BatchNorm(_)));
        any
    }

    /// The buffers (batch-norm running statistics) in `state_dict` order, named as PyTorch
    /// names them (`3.running_mean`, `3.running_var`, `3.num_batches_tracked`).
    pub fn buffers(&self) -> Vec<Buffer> {
        let mut out = Vec::new();
        self.for_each_layer(&mut |name, l, _| {
            if let Layer::BatchNorm(bn) = l {
                for (suffix, shape, values) in bn.buffers() {
                    out.push(Buffer { name: format!("{name}.{suffix}"), shape, values });
                }
            }
        });
        out
    }

    /// Sets the buffer `name` (from a checkpoint); an error naming it when the model has no such
    /// buffer or the length differs.
    pub fn set_buffer(&mut self, name: &str, values: &[f64]) -> Result<(), NnError> {
        let (layer, suffix) = name.rsplit_once('.').ok_or_else(|| NnError::Shape(format!("no buffer '{name}'")))?;
        let bn =
            batch_norm_mut(&mut self.layers, layer).ok_or_else(|| NnError::Shape(format!("no buffer '{name}'")))?;
        let n = bn.features;
        let bad = || NnError::Shape(format!("buffer '{name}' has {} values, the layer needs {n}", values.len()));
        match suffix {
            "running_mean" if bn.track_running_stats && values.len() == n => bn.running_mean = values.to_vec(),
            "running_var" if bn.track_running_stats && values.len() == n => bn.running_var = values.to_vec(),
            "num_batches_tracked" if bn.track_running_stats && values.len() == 1 => {
                let v = values[0];
                if !(v >= 0.0 && v.fract() == 0.0) {
                    return Err(NnError::Shape(format!("buffer '{name}' is {v}, not a count")));
                }
                bn.num_batches_tracked = v as u64;
            }
            "running_mean" | "running_var" | "num_batches_tracked" if bn.track_running_stats => return Err(bad()),
            _ => return Err(NnError::Shape(format!("no buffer '{name}'"))),
        }
        Ok(())
    }

    /// Updates the running statistics of the batch-norm layers from a training pass's batch
    /// statistics (PyTorch's update: momentum, unbiased variance).
    pub fn update_running_stats(&mut self, stats: &[BatchStatistics]) {
        for s in stats {
            if let Some(bn) = batch_norm_mut(&mut self.layers, &s.layer) {
                bn.update_running_stats(s);
            }
        }
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

    /// Input width (values per example).
    pub fn in_dim(&self) -> usize {
        self.shapes[0].len()
    }

    /// Output width (number of logits).
    pub fn out_dim(&self) -> usize {
        self.shapes.last().expect("an input shape at least").len()
    }

    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        self.layout.len()
    }

    /// Multiply-adds of the products in a forward pass of one example (see
    /// [`Layer::forward_macs`]).
    pub fn forward_macs(&self) -> usize {
        self.layers().iter().map(Layer::forward_macs).sum()
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
            None => format!("{} layers, {} -> {}", self.layers.len(), self.in_shape(), self.out_dim()),
        }
    }
}

/// The batch-norm layer at path `name` (`3`, or `1.0` inside a residual block).
fn batch_norm_mut<'a>(layers: &'a mut [Layer], name: &str) -> Option<&'a mut crate::layer::BatchNorm> {
    let (head, rest) = match name.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (name, None),
    };
    let layer = layers.get_mut(head.parse::<usize>().ok()?)?;
    match (layer, rest) {
        (Layer::BatchNorm(bn), None) => Some(bn),
        (Layer::Residual(inner), Some(r)) => batch_norm_mut(inner, r),
        _ => None,
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
