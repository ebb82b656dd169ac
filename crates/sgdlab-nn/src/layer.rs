//! Layers and their derivative rules.
//!
//! A batch of activations is a row-major `[batch, len]` array, row `i` being example `i`
//! flattened in PyTorch's order; its per-example [`Shape`] (`[features]`, `[C, L]`, `[C, H, W]`)
//! is fixed when the model is built, and a layer that needs it (a convolution, a pooling layer,
//! batch norm) holds its input geometry. Every layer implements [`LayerRules`], on the slice `p`
//! of the flat parameter vector it owns:
//!
//! * `forward`: `y = f(x; p)`, optionally keeping a [`Trace`] (what the derivative rules need);
//! * `jvp`: the output tangent `dy = J_x dx + J_p dp`;
//! * `vjp`: the cotangents `gx = J_x^T gy` and `gp += J_p^T gy` (summed over the batch);
//! * `vjp_per_example`: the same with one row of parameter cotangents per example (an error
//!   when the layer couples the examples, as batch norm on batch statistics does);
//! * `vjp_traced`: the vjp, keeping the output cotangent `gy` (of every inner layer too) in a
//!   [`CotangentTrace`];
//! * `vjp_tangent` (the R-operator of Pearlmutter 1994): the tangent `(dgx, dgp)` of `(gx, gp)`
//!   along `(dx, dp, dgy)`, at the cotangents `gy` of a plain backward pass ([`CotangentTrace`]),
//!   which makes Hessian-vector products exact by forward-over-reverse. `gy` does not depend on
//!   the direction, so one backward pass serves every product;
//! * `jet2`: second-order forward mode along a line in parameter space (below), which gives
//!   quadratic forms `v^T H v` without a backward pass;
//! * its PyTorch parameter names and shapes, its output shape, its initialisation, and where it
//!   is not differentiable.
//!
//! Each layer's rules live in one file (`layer/<kind>.rs`) behind that one trait, and
//! [`Layer`] dispatches to them without wildcard arms: a layer kind lacking a rule, its parameter
//! names or its init does not compile.
//!
//! Second-order forward mode: along `p(t) = p + t dp` with the layer's input moving as
//! `x(t) = x + t dx + (t^2 / 2) d2x`, `jet2` returns the first two t-derivatives of the output at
//! `t = 0`: `dy = J_x dx + J_p dp` and `d2y = J_x d2x + D^2 f[(dx, dp), (dx, dp)]` (the parameter
//! path is a straight line). Chained through a model and its loss this gives
//! `d^2/dt^2 L(p + t v) = v^T H v` with forward products only. `None` stands for a zero tangent
//! everywhere (the data entering the first layer does not move).
//!
//! Parameter layout per layer (PyTorch names and shapes): linear `weight [out, in]` then
//! `bias [out]`; convolution `weight [out, in / groups, (kh,) kw]` then `bias [out]`; layer norm
//! and batch norm `weight` then `bias`; a residual block's parameters are those of its inner
//! layers in order. Batch norm's running statistics are buffers of the layer, not parameters.

use crate::activation::Activation;
use crate::init::LayerInit;
use crate::shape::Shape;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, CowArray, Ix2};
use sgdlab_linalg::{RngStream, Scalar};
use std::ops::Range;

mod activation;
mod batch_norm;
mod conv;
mod layer_norm;
mod linear;
mod normalize;
mod pool;
mod reshape;
mod residual;
mod window;

pub use batch_norm::{BatchNorm, BatchStatistics};
pub use conv::Conv;
pub use pool::{AvgPool, MaxPool};
pub use reshape::{Dropout, Flatten};
use residual::Residual;
pub use window::Window;

/// A linear (fully connected) layer `y = x W^T + b` on flat features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Linear {
    pub in_dim: usize,
    pub out_dim: usize,
    pub bias: bool,
}

/// Layer normalisation over the features of each example (Ba, Kiros & Hinton 2016):
/// `y = gamma * (x - mean(x)) / sqrt(var(x) + eps) + beta`, with the biased variance, as PyTorch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerNorm {
    pub dim: usize,
    /// Learnable `weight` (gamma) and `bias` (beta), PyTorch's `elementwise_affine`.
    pub affine: bool,
    pub eps: f64,
}

/// One layer of a sequential model.
#[derive(Debug, Clone, PartialEq)]
pub enum Layer {
    Linear(Linear),
    Activation(Activation),
    LayerNorm(LayerNorm),
    /// `y = x + F(x)` with `F` the inner layers applied in order (He et al. 2016).
    Residual(Vec<Layer>),
    /// `Conv1d` / `Conv2d`.
    Conv(Conv),
    /// `MaxPool1d` / `MaxPool2d`.
    MaxPool(MaxPool),
    /// `AvgPool1d` / `AvgPool2d` (and `AdaptiveAvgPool2d` when the input divides evenly).
    AvgPool(AvgPool),
    /// `BatchNorm1d` / `BatchNorm2d`.
    BatchNorm(BatchNorm),
    /// `Flatten`: a new shape, the same data.
    Flatten(Flatten),
    /// `Dropout`: the identity when probing, a random mask in training.
    Dropout(Dropout),
}

/// How a pass treats the layers that behave differently in training (PyTorch's
/// `model.train()` / `model.eval()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Probing: dropout is the identity and batch norm an affine map of its running statistics.
    /// Every quantity is a function of (model, params, batch), examples independent.
    Eval,
    /// Training: dropout zeroes each value with its probability (masks drawn from child
    /// streams of `dropout`, one per layer, named by its index), batch norm normalises by the
    /// statistics of the batch (coupling the examples).
    Train {
        /// The stream of this pass's dropout masks (e.g. `dropout/<step>` of the run's seed).
        dropout: RngStream,
    },
}

impl Mode {
    /// The mode of layer `index` inside this one (its own dropout stream).
    pub fn layer(&self, index: usize) -> Mode {
        match self {
            Mode::Eval => Mode::Eval,
            Mode::Train { dropout } => Mode::Train { dropout: dropout.child(&index.to_string()) },
        }
    }

    /// True in training mode.
    pub fn is_train(&self) -> bool {
        matches!(self, Mode::Train { .. })
    }
}

/// What a layer's derivative rules need from its forward pass: its input (empty for the layers
/// whose rules never read it: flatten, dropout), for a residual block the traces of its inner
/// layers, and layer-specific values kept by the forward pass.
#[derive(Debug, Clone)]
pub struct Trace<T> {
    pub input: Array2<T>,
    pub inner: Vec<Trace<T>>,
    pub(crate) saved: Saved<T>,
}

/// Values a forward pass keeps for the derivative rules of particular layers.
#[derive(Debug, Clone)]
pub(crate) enum Saved<T> {
    /// Nothing beyond the input.
    Nothing,
    /// A convolution's input unfolded into columns (im2col), one `[K, n * positions]` array per
    /// chunk of `n` examples (see `layer/conv.rs`).
    Columns(Vec<Array2<T>>),
    /// A max-pool's arg-max: for each output value, the index of its input within the example.
    ArgMax(Vec<u32>),
    /// A dropout mask (0 or 1 / (1 - p) per value), in training mode.
    Mask(Array2<T>),
    /// Batch norm on batch statistics (training mode): the normalised input per channel.
    BatchStats(normalize::RowStats<T>),
}

impl<T> Trace<T> {
    /// A leaf trace holding the input only.
    pub(crate) fn of_input(input: Array2<T>) -> Self {
        Trace { input, inner: Vec::new(), saved: Saved::Nothing }
    }

    /// A leaf trace with saved values.
    pub(crate) fn with(input: Array2<T>, saved: Saved<T>) -> Self {
        Trace { input, inner: Vec::new(), saved }
    }
}

/// The forward tangents of one layer: the tangent of its input and, for a residual block, those
/// of its inner layers. The input tangent is `None` when it is zero (as for the data entering the
/// first layer) or when the R-operator does not need it: a piecewise-linear activation's rule
/// does not use it (its second derivative vanishes), so its jvp updates the tangent in place.
#[derive(Debug, Clone)]
pub struct TangentTrace<T> {
    pub input: Option<Array2<T>>,
    pub inner: Vec<TangentTrace<T>>,
}

impl<T> TangentTrace<T> {
    /// A leaf tangent trace.
    pub(crate) fn leaf(input: Option<Array2<T>>) -> Self {
        TangentTrace { input, inner: Vec::new() }
    }
}

/// The cotangents of one layer from a plain backward pass: the cotangent `gy` of its output and,
/// for a residual block, those of its inner layers. They are what the R-operator needs besides the
/// forward and tangent traces, and do not depend on the direction of the product.
#[derive(Debug, Clone)]
pub struct CotangentTrace<T> {
    pub output: Array2<T>,
    pub inner: Vec<CotangentTrace<T>>,
}

/// Where a vjp puts the parameter cotangents of its layer.
pub(crate) enum ParamCotangent<'a, T> {
    /// Added into the slice (the convention of the public rules).
    Add(&'a mut [T]),
    /// Written over the slice, whose contents are ignored: a plain backward pass writes every
    /// parameter exactly once, so a gradient needs no zeroed buffer.
    Overwrite(&'a mut [T]),
}

impl<'a, T> ParamCotangent<'a, T> {
    /// The same write mode on the sub-slice `r`.
    pub(crate) fn slice(&mut self, r: Range<usize>) -> ParamCotangent<'_, T> {
        match self {
            ParamCotangent::Add(s) => ParamCotangent::Add(&mut s[r]),
            ParamCotangent::Overwrite(s) => ParamCotangent::Overwrite(&mut s[r]),
        }
    }

    /// The slice, and whether to add into it.
    pub(crate) fn parts(self) -> (&'a mut [T], bool) {
        match self {
            ParamCotangent::Add(s) => (s, true),
            ParamCotangent::Overwrite(s) => (s, false),
        }
    }
}

/// The rules of one layer kind (see the module documentation). Every method is required: a
/// layer is one unit.
pub(crate) trait LayerRules {
    /// The kind as written in architecture strings (`linear`, `conv2d`, `relu`, `residual`, ...).
    fn kind(&self) -> &'static str;

    /// Number of parameters.
    fn num_params(&self) -> usize;

    /// The PyTorch names and shapes of the parameters under `prefix` (e.g. `"0"`), in layout order.
    fn param_entries(&self, prefix: &str, out: &mut Vec<(String, Vec<usize>)>);

    /// The output shape for an input of shape `input`, or why the layer does not accept it.
    fn out_shape(&self, input: Shape) -> Result<Shape, String>;

    /// Values per example of the output for `in_len` input values (a layer that holds its input
    /// geometry ignores `in_len`).
    fn out_len(&self, in_len: usize) -> usize;

    /// Draws the parameters `p` (named under `prefix`) as `init` says.
    fn init<T: Scalar>(&self, prefix: &str, init: &LayerInit<'_>, p: &mut [T]);

    /// True when, in `mode`, an example's output depends on the other examples of the batch.
    fn couples_examples(&self, mode: &Mode) -> bool;

    /// Distance of the traced forward pass from the points where the layer is not differentiable
    /// (an activation's kinks, ties inside a max-pool window); infinite for smooth layers.
    /// Finite differences are valid only well inside that distance.
    fn kink_distance<T: Scalar>(&self, trace: &Trace<T>) -> f64;

    /// Forward pass without a trace.
    fn forward<T: Scalar>(&self, p: &[T], x: ArrayView2<'_, T>, mode: &Mode) -> Array2<T>;

    /// Forward pass keeping what the derivative rules need.
    fn forward_traced<T: Scalar>(&self, p: &[T], x: Array2<T>, mode: &Mode) -> (Array2<T>, Trace<T>);

    /// Output tangent along an input tangent `dx` and a parameter tangent `dp` (`None` = zero),
    /// with the tangent trace the R-operator needs.
    fn jvp<T: Scalar>(
        &self,
        p: &[T],
        dp: Option<&[T]>,
        trace: &Trace<T>,
        dx: Option<Array2<T>>,
    ) -> (Array2<T>, TangentTrace<T>);

    /// Input cotangent (when `need_gx`) and parameter cotangents into `gp` (added or written),
    /// from an output cotangent `gy` that element-wise rules update in place when it is owned.
    fn vjp<T: Scalar>(
        &self,
        p: &[T],
        trace: &Trace<T>,
        gy: CowArray<'_, T, Ix2>,
        gp: Option<ParamCotangent<'_, T>>,
        need_gx: bool,
    ) -> Option<Array2<T>>;

    /// The vjp keeping the output cotangents for `vjp_tangent`; parameter
    /// cotangents are added into `gp`. A leaf layer keeps `gy` only.
    fn vjp_traced<T: Scalar>(
        &self,
        p: &[T],
        trace: &Trace<T>,
        gy: Array2<T>,
        gp: Option<&mut [T]>,
        need_gx: bool,
    ) -> (Option<Array2<T>>, CotangentTrace<T>) {
        let gx = self.vjp(p, trace, gy.view().into(), gp.map(ParamCotangent::Add), need_gx);
        (gx, CotangentTrace { output: gy, inner: Vec::new() })
    }

    /// The vjp with the parameter cotangents of example `i` written into row `i` of `rows`
    /// (`[batch, num_params]`, every entry written); an error naming the reason when the layer
    /// couples the examples in the traced pass.
    fn vjp_per_example<T: Scalar>(
        &self,
        p: &[T],
        trace: &Trace<T>,
        gy: ArrayView2<'_, T>,
        rows: ArrayViewMut2<'_, T>,
        need_gx: bool,
    ) -> Result<Option<Array2<T>>, String>;

    /// The R-operator (see the module documentation): adds `dgp` and returns `dgx` when `need_gx`.
    #[allow(clippy::too_many_arguments)]
    fn vjp_tangent<T: Scalar>(
        &self,
        p: &[T],
        dp: &[T],
        trace: &Trace<T>,
        tangent: &TangentTrace<T>,
        cotangent: &CotangentTrace<T>,
        dgy: Array2<T>,
        dgp: &mut [T],
        need_gx: bool,
    ) -> Option<Array2<T>>;

    /// Second-order forward mode: `(dy, d2y)`, `None` where identically zero.
    fn jet2<T: Scalar>(
        &self,
        p: &[T],
        dp: &[T],
        trace: &Trace<T>,
        dx: Option<&Array2<T>>,
        d2x: Option<&Array2<T>>,
    ) -> (Option<Array2<T>>, Option<Array2<T>>);
}

/// Calls `$body` with `$l` bound to the rules of `$layer`'s kind. No wildcard arm: a new
/// variant does not compile until it is listed here, and its type implements [`LayerRules`].
macro_rules! dispatch {
    ($layer:expr, $l:ident => $body:expr) => {
        match $layer {
            Layer::Linear($l) => $body,
            Layer::Activation($l) => $body,
            Layer::LayerNorm($l) => $body,
            Layer::Residual(inner) => {
                let $l = &Residual(inner.as_slice());
                $body
            }
            Layer::Conv($l) => $body,
            Layer::MaxPool($l) => $body,
            Layer::AvgPool($l) => $body,
            Layer::BatchNorm($l) => $body,
            Layer::Flatten($l) => $body,
            Layer::Dropout($l) => $body,
        }
    };
}

impl Layer {
    /// The kind as written in architecture strings (`linear`, `conv2d`, `relu`, ...).
    pub fn kind(&self) -> &'static str {
        dispatch!(self, l => l.kind())
    }

    /// Number of parameters this layer owns.
    pub fn num_params(&self) -> usize {
        dispatch!(self, l => l.num_params())
    }

    /// Multiply-adds of the layer's products in a forward pass of one example (a linear layer's
    /// `in * out`, a convolution's weight size times its output positions; 0 for layers without
    /// products): a measure of work for deciding what runs on several threads.
    pub fn forward_macs(&self) -> usize {
        match self {
            Layer::Linear(l) => l.in_dim * l.out_dim,
            Layer::Conv(c) => c.forward_macs(),
            Layer::Residual(inner) => inner.iter().map(Layer::forward_macs).sum(),
            Layer::Activation(_)
            | Layer::LayerNorm(_)
            | Layer::MaxPool(_)
            | Layer::AvgPool(_)
            | Layer::BatchNorm(_)
            | Layer::Flatten(_)
            | Layer::Dropout(_) => 0,
        }
    }

    /// Output width given the input width (layers that hold their input geometry ignore it).
    pub fn out_dim(&self, in_dim: usize) -> usize {
        dispatch!(self, l => l.out_len(in_dim))
    }

    /// The output shape for an input of shape `input`, or why the layer does not accept it.
    pub fn out_shape(&self, input: Shape) -> Result<Shape, String> {
        dispatch!(self, l => l.out_shape(input))
    }

    /// Checks that the layer accepts flat inputs of width `in_dim`; returns the output width.
    pub fn check_dims(&self, in_dim: usize) -> Result<usize, String> {
        self.out_shape(Shape::flat(in_dim)).map(|s| s.len())
    }

    /// The PyTorch names and shapes of this layer's parameters under `prefix` (e.g. `"0"`).
    pub fn param_entries(&self, prefix: &str, out: &mut Vec<(String, Vec<usize>)>) {
        dispatch!(self, l => l.param_entries(prefix, out))
    }

    /// Draws this layer's parameters `p` (named under `prefix`).
    pub(crate) fn init<T: Scalar>(&self, prefix: &str, init: &LayerInit<'_>, p: &mut [T]) {
        dispatch!(self, l => l.init(prefix, init, p))
    }

    /// True when, in `mode`, an example's output depends on the other examples of the batch.
    pub fn couples_examples(&self, mode: &Mode) -> bool {
        dispatch!(self, l => l.couples_examples(mode))
    }

    /// Distance of a traced forward pass from the layer's non-differentiable points (see
    /// `LayerRules::kink_distance`).
    pub fn kink_distance<T: Scalar>(&self, trace: &Trace<T>) -> f64 {
        dispatch!(self, l => l.kink_distance(trace))
    }

    /// Forward pass without a trace (evaluation mode).
    pub fn forward<T: Scalar>(&self, p: &[T], x: ArrayView2<'_, T>) -> Array2<T> {
        self.forward_in(p, x, &Mode::Eval)
    }

    /// Forward pass without a trace in `mode`.
    pub fn forward_in<T: Scalar>(&self, p: &[T], x: ArrayView2<'_, T>, mode: &Mode) -> Array2<T> {
        dispatch!(self, l => l.forward(p, x, mode))
    }

    /// Forward pass keeping what the derivative rules need (evaluation mode).
    pub fn forward_traced<T: Scalar>(&self, p: &[T], x: Array2<T>) -> (Array2<T>, Trace<T>) {
        self.forward_traced_in(p, x, &Mode::Eval)
    }

    /// Forward pass keeping what the derivative rules need, in `mode`.
    pub fn forward_traced_in<T: Scalar>(&self, p: &[T], x: Array2<T>, mode: &Mode) -> (Array2<T>, Trace<T>) {
        dispatch!(self, l => l.forward_traced(p, x, mode))
    }

    /// Output tangent along an input tangent `dx` (`None` = zero) and a parameter tangent `dp`
    /// (`None` = zero), with the tangent trace the R-operator needs.
    pub fn jvp<T: Scalar>(
        &self,
        p: &[T],
        dp: Option<&[T]>,
        trace: &Trace<T>,
        dx: Option<Array2<T>>,
    ) -> (Array2<T>, TangentTrace<T>) {
        dispatch!(self, l => l.jvp(p, dp, trace, dx))
    }

    /// Input cotangent (when `need_gx`) and, when `gp` is given, parameter cotangents added into it.
    pub fn vjp<T: Scalar>(
        &self,
        p: &[T],
        trace: &Trace<T>,
        gy: ArrayView2<'_, T>,
        gp: Option<&mut [T]>,
        need_gx: bool,
    ) -> Option<Array2<T>> {
        self.vjp_cow(p, trace, gy.into(), gp.map(ParamCotangent::Add), need_gx)
    }

    /// [`Layer::vjp`] with the parameter cotangents added or written (`gp`), from an output
    /// cotangent `gy` that element-wise rules update in place when it is owned.
    pub(crate) fn vjp_cow<T: Scalar>(
        &self,
        p: &[T],
        trace: &Trace<T>,
        gy: CowArray<'_, T, Ix2>,
        gp: Option<ParamCotangent<'_, T>>,
        need_gx: bool,
    ) -> Option<Array2<T>> {
        dispatch!(self, l => l.vjp(p, trace, gy, gp, need_gx))
    }

    /// [`Layer::vjp`] keeping the output cotangent `gy` (and, in a residual block, that of every
    /// inner layer) for [`Layer::vjp_tangent`].
    pub fn vjp_traced<T: Scalar>(
        &self,
        p: &[T],
        trace: &Trace<T>,
        gy: Array2<T>,
        gp: Option<&mut [T]>,
        need_gx: bool,
    ) -> (Option<Array2<T>>, CotangentTrace<T>) {
        dispatch!(self, l => l.vjp_traced(p, trace, gy, gp, need_gx))
    }

    /// Like [`Layer::vjp`], but the parameter cotangents of example `i` are written into row `i`
    /// of `rows` (shape `[batch, num_params]`; every entry is written, whatever it held). An
    /// error when the traced pass coupled the examples (batch norm on batch statistics).
    pub fn vjp_per_example<T: Scalar>(
        &self,
        p: &[T],
        trace: &Trace<T>,
        gy: ArrayView2<'_, T>,
        rows: ArrayViewMut2<'_, T>,
        need_gx: bool,
    ) -> Result<Option<Array2<T>>, String> {
        dispatch!(self, l => l.vjp_per_example(p, trace, gy, rows, need_gx))
    }

    /// The R-operator: the tangent of [`Layer::vjp`] along the input tangent (in `tangent`), the
    /// parameter tangent `dp` and the output-cotangent tangent `dgy`, at the output cotangent `gy`
    /// of a plain backward pass (in `cotangent`, from [`Layer::vjp_traced`]). Adds the parameter
    /// cotangent's tangent `dgp` into `dgp` and returns the input cotangent's tangent `dgx` when
    /// `need_gx`. The cotangents themselves (`gx`, `gp`) come from the plain backward pass. `dgy`
    /// is taken by value so that element-wise rules can update it in place.
    #[allow(clippy::too_many_arguments)]
    pub fn vjp_tangent<T: Scalar>(
        &self,
        p: &[T],
        dp: &[T],
        trace: &Trace<T>,
        tangent: &TangentTrace<T>,
        cotangent: &CotangentTrace<T>,
        dgy: Array2<T>,
        dgp: &mut [T],
        need_gx: bool,
    ) -> Option<Array2<T>> {
        dispatch!(self, l => l.vjp_tangent(p, dp, trace, tangent, cotangent, dgy, dgp, need_gx))
    }

    /// Second-order forward mode along `p + t dp` with the input moving as
    /// `x + t dx + (t^2/2) d2x` (`None` = zero): the output's `(dy, d2y)` at `t = 0`, `None` where
    /// a derivative is identically zero. See the module documentation.
    pub fn jet2<T: Scalar>(
        &self,
        p: &[T],
        dp: &[T],
        trace: &Trace<T>,
        dx: Option<&Array2<T>>,
        d2x: Option<&Array2<T>>,
    ) -> (Option<Array2<T>>, Option<Array2<T>>) {
        dispatch!(self, l => l.jet2(p, dp, trace, dx, d2x))
    }
}

/// Parameter offsets of a list of layers within their joint slice.
pub(crate) fn offsets(layers: &[Layer]) -> Vec<usize> {
    let mut off = 0;
    layers
        .iter()
        .map(|l| {
            let o = off;
            off += l.num_params();
            o
        })
        .collect()
}

pub(crate) fn view2<T>(p: &[T], rows: usize, cols: usize) -> ArrayView2<'_, T> {
    ArrayView2::from_shape((rows, cols), &p[..rows * cols]).expect("parameter slice has the layer's size")
}

pub(crate) fn view2_mut<T>(p: &mut [T], rows: usize, cols: usize) -> ArrayViewMut2<'_, T> {
    ArrayViewMut2::from_shape((rows, cols), &mut p[..rows * cols]).expect("parameter slice has the layer's size")
}

/// Adds `v` to every row of `y` (a bias).
pub(crate) fn add_to_rows<T: Scalar>(y: &mut Array2<T>, v: &[T]) {
    for mut row in y.rows_mut() {
        for (a, &b) in row.iter_mut().zip(v) {
            *a += b;
        }
    }
}

/// Multiplies every row of `y` element-wise by `v` (a layer-norm gain).
pub(crate) fn scale_rows<T: Scalar>(y: &mut Array2<T>, v: &[T]) {
    for mut row in y.rows_mut() {
        for (a, &b) in row.iter_mut().zip(v) {
            *a *= b;
        }
    }
}

pub(crate) fn add_row_sums<T: Scalar>(dst: &mut [T], g: &ArrayView2<'_, T>) {
    for row in g.rows() {
        for (d, &v) in dst.iter_mut().zip(row.iter()) {
            *d += v;
        }
    }
}

/// `a + b` for optional tangents (`None` = zero).
pub(crate) fn add_opt<T: Scalar>(a: Option<Array2<T>>, b: Option<&Array2<T>>) -> Option<Array2<T>> {
    match (a, b) {
        (Some(mut a), Some(b)) => {
            a += b;
            Some(a)
        }
        (Some(a), None) => Some(a),
        (None, Some(b)) => Some(b.clone()),
        (None, None) => None,
    }
}

/// The error of a per-example rule on a pass that coupled the examples.
pub(crate) fn coupled_error(kind: &str) -> String {
    format!("{kind} normalises by batch statistics (training mode), which couples the examples")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_forward_matches_definition() {
        let l = Layer::Linear(Linear { in_dim: 2, out_dim: 3, bias: true });
        // W = [[1,2],[3,4],[5,6]], b = [0.5, -1, 2]
        let p = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.5, -1.0, 2.0];
        let x = ndarray::array![[1.0, -1.0], [0.0, 2.0]];
        let y = l.forward(&p, x.view());
        assert_eq!(y, ndarray::array![[-0.5, -2.0, 1.0], [4.5, 7.0, 14.0]]);
    }

    #[test]
    fn layer_norm_output_is_normalised() {
        let ln = Layer::LayerNorm(LayerNorm { dim: 4, affine: false, eps: 0.0 });
        let x = ndarray::array![[1.0, 2.0, 3.0, 6.0]];
        let y = ln.forward::<f64>(&[], x.view());
        let m: f64 = y.iter().sum::<f64>() / 4.0;
        let v: f64 = y.iter().map(|a| a * a).sum::<f64>() / 4.0;
        assert!(m.abs() < 1e-15 && (v - 1.0).abs() < 1e-14);
    }
}
