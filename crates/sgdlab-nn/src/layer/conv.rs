//! Convolutions (`Conv1d`, `Conv2d`) as matrix products on unfolded inputs.
//!
//! Per example, with the input unfolded into columns `X = im2col(x)` (`[C_in k, P]`, `k` the
//! kernel taps and `P` the output positions) and the weight as a matrix `W` (`[C_out, C_in / G
//! k]`, PyTorch's `[out, in / groups, kh, kw]` row-major), group `g` computes
//! `Y_g = W_g X_g + b_g` (`Y` is `[C_out, P]`, the example's output row). Every rule is then the
//! linear layer's on these matrices, per example and group: `gW += gY X^T`, `gX = W^T gY` folded
//! back by col2im, and so on. The forward pass keeps `X` for the rules.

use super::window::Window;
use super::{CotangentTrace, LayerRules, Mode, ParamCotangent, Saved, TangentTrace, Trace, view2, view2_mut};
use crate::init::LayerInit;
use crate::shape::Shape;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, CowArray, Ix2};
use sgdlab_linalg::{Scalar, matmul_into};

/// `Conv1d` (`dims = 1`, input `[C, L]` read as `[C, 1, L]`) or `Conv2d` (`dims = 2`), zero
/// padding, PyTorch's semantics and parameter layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv {
    /// Spatial dimensions: 1 (`Conv1d`) or 2 (`Conv2d`).
    pub dims: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub groups: usize,
    pub bias: bool,
    /// Kernel, stride, padding and dilation on the input's spatial size (for `Conv1d` the first
    /// of each pair is 1, 1, 0, 1).
    pub window: Window,
}

impl Conv {
    /// Weight columns per output channel: `in_channels / groups * taps`.
    pub fn fan_in(&self) -> usize {
        self.in_channels / self.groups * self.window.taps()
    }

    fn weight_len(&self) -> usize {
        self.out_channels * self.fan_in()
    }

    /// Number of parameters (weight, then bias if any).
    pub fn num_params(&self) -> usize {
        self.weight_len() + if self.bias { self.out_channels } else { 0 }
    }

    /// The output shape (`[C_out, L_out]` or `[C_out, H_out, W_out]`).
    fn output(&self) -> Shape {
        let (h, w) = self.window.output().expect("validated when the layer was built");
        if self.dims == 1 { Shape::seq(self.out_channels, w) } else { Shape::image(self.out_channels, h, w) }
    }

    /// Rows of the unfolded input per example.
    fn col_rows(&self) -> usize {
        self.in_channels * self.window.taps()
    }

    fn in_len(&self) -> usize {
        self.in_channels * self.window.input_positions()
    }

    /// The unfolded input of every example, `[batch * col_rows, positions]`.
    fn unfold<T: Scalar>(&self, x: ArrayView2<'_, T>) -> Array2<T> {
        let (k, pos) = (self.col_rows(), self.window.positions());
        let mut data = Vec::with_capacity(x.nrows() * k * pos);
        for xi in x.rows() {
            let xi = xi.as_standard_layout();
            self.window.im2col(self.in_channels, xi.as_slice().expect("standard layout"), &mut data);
        }
        Array2::from_shape_vec((x.nrows() * k, pos), data).expect("one unfolding per example")
    }

    /// `y = alpha W cols (+ y when beta_one)` per group, on one example (`cols`: `[col_rows, P]`,
    /// `y`: `[C_out, P]`).
    fn apply<T: Scalar>(
        &self,
        w: &[T],
        cols: ArrayView2<'_, T>,
        mut y: ArrayViewMut2<'_, T>,
        beta_one: bool,
        alpha: T,
    ) {
        let (og, kg) = (self.out_channels / self.groups, self.fan_in());
        let w = view2(w, self.out_channels, kg);
        for g in 0..self.groups {
            matmul_into(
                y.slice_mut(ndarray::s![g * og..(g + 1) * og, ..]),
                beta_one,
                w.slice(ndarray::s![g * og..(g + 1) * og, ..]),
                cols.slice(ndarray::s![g * kg..(g + 1) * kg, ..]),
                alpha,
            );
        }
    }

    /// `gcols = alpha W^T gy (+ gcols when beta_one)` per group, on one example.
    fn apply_t<T: Scalar>(
        &self,
        w: &[T],
        gy: ArrayView2<'_, T>,
        mut gcols: ArrayViewMut2<'_, T>,
        beta_one: bool,
        alpha: T,
    ) {
        let (og, kg) = (self.out_channels / self.groups, self.fan_in());
        let w = view2(w, self.out_channels, kg);
        for g in 0..self.groups {
            matmul_into(
                gcols.slice_mut(ndarray::s![g * kg..(g + 1) * kg, ..]),
                beta_one,
                w.slice(ndarray::s![g * og..(g + 1) * og, ..]).t(),
                gy.slice(ndarray::s![g * og..(g + 1) * og, ..]),
                alpha,
            );
        }
    }

    /// `gw = gy cols^T (+ gw when beta_one)` per group, on one example (`gw`: `[C_out, fan_in]`).
    fn weight_cotangent<T: Scalar>(
        &self,
        gy: ArrayView2<'_, T>,
        cols: ArrayView2<'_, T>,
        mut gw: ArrayViewMut2<'_, T>,
        beta_one: bool,
    ) {
        let (og, kg) = (self.out_channels / self.groups, self.fan_in());
        for g in 0..self.groups {
            matmul_into(
                gw.slice_mut(ndarray::s![g * og..(g + 1) * og, ..]),
                beta_one,
                gy.slice(ndarray::s![g * og..(g + 1) * og, ..]),
                cols.slice(ndarray::s![g * kg..(g + 1) * kg, ..]).t(),
                T::one(),
            );
        }
    }

    /// Example `i`'s block of a `[batch * col_rows, P]` unfolding.
    fn cols_of<'a, T>(&self, cols: &'a Array2<T>, i: usize) -> ArrayView2<'a, T> {
        let k = self.col_rows();
        cols.slice(ndarray::s![i * k..(i + 1) * k, ..])
    }

    fn columns<T>(trace: &Trace<T>) -> &Array2<T> {
        match &trace.saved {
            Saved::Columns(c) => c,
            Saved::Nothing | Saved::ArgMax(_) | Saved::Mask(_) | Saved::BatchStats(_) => {
                unreachable!("a convolution's trace keeps its columns")
            }
        }
    }

    /// Adds the bias `b` to every position of every output channel.
    fn add_bias<T: Scalar>(&self, y: &mut Array2<T>, b: &[T]) {
        let pos = self.window.positions();
        for mut row in y.rows_mut() {
            let row = row.as_slice_mut().expect("fresh array");
            for (chunk, &bv) in row.chunks_exact_mut(pos).zip(b) {
                chunk.iter_mut().for_each(|v| *v += bv);
            }
        }
    }

    /// Adds, per output channel, the sum of `g` over the batch and positions into `gb`.
    fn bias_cotangent<T: Scalar>(&self, g: ArrayView2<'_, T>, gb: &mut [T]) {
        let pos = self.window.positions();
        for row in g.rows() {
            let row = row.as_standard_layout();
            for (chunk, b) in row.as_slice().expect("standard layout").chunks_exact(pos).zip(gb.iter_mut()) {
                *b += chunk.iter().copied().sum::<T>();
            }
        }
    }

    /// `out_i = W cols(z_i)` for every example (with `z`'s own unfolding).
    fn apply_to_input<T: Scalar>(&self, w: &[T], z: ArrayView2<'_, T>, out: &mut Array2<T>, beta_one: bool, alpha: T) {
        let (k, pos) = (self.col_rows(), self.window.positions());
        let mut cols = Vec::with_capacity(k * pos);
        for (zi, mut yi) in z.rows().into_iter().zip(out.rows_mut()) {
            let zi = zi.as_standard_layout();
            cols.clear();
            self.window.im2col(self.in_channels, zi.as_slice().expect("standard layout"), &mut cols);
            let cv = ArrayView2::from_shape((k, pos), &cols).expect("sized above");
            let yv = ArrayViewMut2::from_shape((self.out_channels, pos), yi.as_slice_mut().expect("fresh array"))
                .expect("an example's output row");
            self.apply(w, cv, yv, beta_one, alpha);
        }
    }

    /// `out_i = W cols_i` for every example, from a kept unfolding.
    fn apply_to_cols<T: Scalar>(&self, w: &[T], cols: &Array2<T>, out: &mut Array2<T>, beta_one: bool, alpha: T) {
        let pos = self.window.positions();
        for (i, mut yi) in out.rows_mut().into_iter().enumerate() {
            let yv = ArrayViewMut2::from_shape((self.out_channels, pos), yi.as_slice_mut().expect("fresh array"))
                .expect("an example's output row");
            self.apply(w, self.cols_of(cols, i), yv, beta_one, alpha);
        }
    }

    /// `gx_i = col2im(sum_j W_j^T g_j,i)` for the pairs `(W_j, g_j)`: the input cotangent.
    fn input_cotangent<T: Scalar>(&self, terms: &[(&[T], ArrayView2<'_, T>)]) -> Array2<T> {
        let batch = terms[0].1.nrows();
        let (k, pos) = (self.col_rows(), self.window.positions());
        let mut gx = Array2::zeros((batch, self.in_len()));
        let mut gcols = Array2::zeros((k, pos));
        for (i, mut gxi) in gx.rows_mut().into_iter().enumerate() {
            for (j, (w, g)) in terms.iter().enumerate() {
                let gi = g.row(i);
                let gi = gi.as_standard_layout();
                let gv = ArrayView2::from_shape((self.out_channels, pos), gi.as_slice().expect("standard layout"))
                    .expect("an example's output row");
                self.apply_t(w, gv, gcols.view_mut(), j > 0, T::one());
            }
            self.window.col2im_add(
                self.in_channels,
                gcols.as_slice().expect("fresh array"),
                gxi.as_slice_mut().expect("fresh array"),
            );
        }
        gx
    }

    /// `gw (+)= sum_i g_i cols_i^T` over the batch.
    fn weight_cotangent_sum<T: Scalar>(&self, g: ArrayView2<'_, T>, cols: &Array2<T>, gw: &mut [T], beta_one: bool) {
        let pos = self.window.positions();
        let mut gw = view2_mut(gw, self.out_channels, self.fan_in());
        for (i, gi) in g.rows().into_iter().enumerate() {
            let gi = gi.as_standard_layout();
            let gv = ArrayView2::from_shape((self.out_channels, pos), gi.as_slice().expect("standard layout"))
                .expect("an example's output row");
            self.weight_cotangent(gv, self.cols_of(cols, i), gw.view_mut(), beta_one || i > 0);
        }
    }

    fn forward_cols<T: Scalar>(&self, p: &[T], x: ArrayView2<'_, T>) -> (Array2<T>, Array2<T>) {
        let cols = self.unfold(x);
        let mut y = Array2::zeros((x.nrows(), self.output().len()));
        self.apply_to_cols(p, &cols, &mut y, false, T::one());
        if self.bias {
            self.add_bias(&mut y, &p[self.weight_len()..]);
        }
        (y, cols)
    }
}

impl LayerRules for Conv {
    fn kind(&self) -> &'static str {
        if self.dims == 1 { "conv1d" } else { "conv2d" }
    }

    fn num_params(&self) -> usize {
        Conv::num_params(self)
    }

    fn param_entries(&self, prefix: &str, out: &mut Vec<(String, Vec<usize>)>) {
        let mut shape = vec![self.out_channels, self.in_channels / self.groups];
        if self.dims == 2 {
            shape.push(self.window.kernel.0);
        }
        shape.push(self.window.kernel.1);
        out.push((format!("{prefix}.weight"), shape));
        if self.bias {
            out.push((format!("{prefix}.bias"), vec![self.out_channels]));
        }
    }

    fn out_len(&self, _: usize) -> usize {
        self.output().len()
    }

    fn out_shape(&self, input: Shape) -> Result<Shape, String> {
        let want = if self.dims == 1 {
            Shape::seq(self.in_channels, self.window.input.1)
        } else {
            Shape::image(self.in_channels, self.window.input.0, self.window.input.1)
        };
        if input != want {
            return Err(format!("{} built for {want} inputs gets {input}", self.kind()));
        }
        Ok(self.output())
    }

    fn init<T: Scalar>(&self, prefix: &str, init: &LayerInit<'_>, p: &mut [T]) {
        let (w, b) = p.split_at_mut(self.weight_len());
        let fan_out = self.out_channels / self.groups * self.window.taps();
        init.weight(&format!("{prefix}.weight"), w, self.out_channels, self.fan_in(), fan_out);
        if self.bias {
            init.bias(&format!("{prefix}.bias"), b, self.fan_in());
        }
    }

    fn couples_examples(&self, _: &Mode) -> bool {
        false
    }

    fn kink_distance<T: Scalar>(&self, _: &Trace<T>) -> f64 {
        f64::INFINITY
    }

    fn forward<T: Scalar>(&self, p: &[T], x: ArrayView2<'_, T>, _: &Mode) -> Array2<T> {
        self.forward_cols(p, x).0
    }

    fn forward_traced<T: Scalar>(&self, p: &[T], x: Array2<T>, _: &Mode) -> (Array2<T>, Trace<T>) {
        let (y, cols) = self.forward_cols(p, x.view());
        (y, Trace::with(Array2::zeros((0, 0)), Saved::Columns(cols)))
    }

    /// `dY = W cols(dx) + dW X + db`.
    fn jvp<T: Scalar>(
        &self,
        p: &[T],
        dp: Option<&[T]>,
        trace: &Trace<T>,
        dx: Option<Array2<T>>,
    ) -> (Array2<T>, TangentTrace<T>) {
        let cols = Self::columns(trace);
        let batch = cols.nrows() / self.col_rows();
        let mut dy = Array2::zeros((batch, self.output().len()));
        if let Some(dx) = &dx {
            self.apply_to_input(p, dx.view(), &mut dy, false, T::one());
        }
        if let Some(dp) = dp {
            self.apply_to_cols(dp, cols, &mut dy, dx.is_some(), T::one());
            if self.bias {
                self.add_bias(&mut dy, &dp[self.weight_len()..]);
            }
        }
        (dy, TangentTrace::leaf(dx))
    }

    fn vjp<T: Scalar>(
        &self,
        p: &[T],
        trace: &Trace<T>,
        gy: CowArray<'_, T, Ix2>,
        gp: Option<ParamCotangent<'_, T>>,
        need_gx: bool,
    ) -> Option<Array2<T>> {
        let cols = Self::columns(trace);
        let gy = gy.view();
        if let Some(gp) = gp {
            let (gp, add) = gp.parts();
            let (gw, gb) = gp.split_at_mut(self.weight_len());
            self.weight_cotangent_sum(gy, cols, gw, add);
            if self.bias {
                if !add {
                    gb.fill(T::zero());
                }
                self.bias_cotangent(gy, gb);
            }
        }
        need_gx.then(|| self.input_cotangent(&[(p, gy)]))
    }

    fn vjp_per_example<T: Scalar>(
        &self,
        p: &[T],
        trace: &Trace<T>,
        gy: ArrayView2<'_, T>,
        mut rows: ArrayViewMut2<'_, T>,
        need_gx: bool,
    ) -> Result<Option<Array2<T>>, String> {
        let cols = Self::columns(trace);
        let (wn, pos) = (self.weight_len(), self.window.positions());
        for (i, (gi, mut r)) in gy.rows().into_iter().zip(rows.rows_mut()).enumerate() {
            let r = r.as_slice_mut().expect("per-example rows are contiguous");
            let gi = gi.as_standard_layout();
            let gi = gi.as_slice().expect("standard layout");
            let gv = ArrayView2::from_shape((self.out_channels, pos), gi).expect("an example's output row");
            let gw = view2_mut(&mut r[..wn], self.out_channels, self.fan_in());
            self.weight_cotangent(gv, self.cols_of(cols, i), gw, false);
            if self.bias {
                for (b, chunk) in r[wn..].iter_mut().zip(gi.chunks_exact(pos)) {
                    *b = chunk.iter().copied().sum::<T>();
                }
            }
        }
        Ok(need_gx.then(|| self.input_cotangent(&[(p, gy)])))
    }

    /// `dgW += dgY X^T + gY cols(dx)^T`, `dgb += sums of dgY`, `dgx = col2im(W^T dgY + dW^T gY)`.
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
    ) -> Option<Array2<T>> {
        let cols = Self::columns(trace);
        let gy = cotangent.output.view();
        let (dgw, dgb) = dgp.split_at_mut(self.weight_len());
        self.weight_cotangent_sum(dgy.view(), cols, dgw, true);
        if let Some(dx) = &tangent.input {
            let dcols = self.unfold(dx.view());
            self.weight_cotangent_sum(gy, &dcols, dgw, true);
        }
        if self.bias {
            self.bias_cotangent(dgy.view(), dgb);
        }
        need_gx.then(|| self.input_cotangent(&[(p, dgy.view()), (&dp[..self.weight_len()], gy)]))
    }

    /// `dY = W cols(dx) + dW X + db`, `d2Y = W cols(d2x) + 2 dW cols(dx)`.
    fn jet2<T: Scalar>(
        &self,
        p: &[T],
        dp: &[T],
        trace: &Trace<T>,
        dx: Option<&Array2<T>>,
        d2x: Option<&Array2<T>>,
    ) -> (Option<Array2<T>>, Option<Array2<T>>) {
        let (dy, _) = self.jvp(p, Some(dp), trace, dx.cloned());
        if dx.is_none() && d2x.is_none() {
            return (Some(dy), None);
        }
        let mut d2y = Array2::zeros(dy.dim());
        if let Some(d2x) = d2x {
            self.apply_to_input(p, d2x.view(), &mut d2y, false, T::one());
        }
        if let Some(dx) = dx {
            self.apply_to_input(dp, dx.view(), &mut d2y, d2x.is_some(), T::from_f64(2.0));
        }
        (Some(dy), Some(d2y))
    }
}
