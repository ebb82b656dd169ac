//! Pooling layers (`MaxPool1d/2d`, `AvgPool1d/2d`), per channel over sliding windows.
//!
//! Max pooling picks one input per window (the first maximum in PyTorch's scan order; NaN wins):
//! its rules move values between that input and the output (a gather forward, a scatter-add
//! backward) and its second derivative vanishes. Average pooling is a fixed linear map.

use super::window::{TapTable, Window};
use super::{CotangentTrace, LayerRules, Mode, ParamCotangent, Saved, TangentTrace, Trace};
use crate::init::LayerInit;
use crate::shape::Shape;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis, CowArray, Ix2};
use sgdlab_linalg::Scalar;

/// `MaxPool1d` (`dims = 1`) or `MaxPool2d` (`dims = 2`) over each channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPool {
    pub dims: usize,
    pub channels: usize,
    pub window: Window,
}

/// `AvgPool1d` / `AvgPool2d` over each channel: the mean over the window, dividing by the
/// kernel size when `count_include_pad` (PyTorch's default), by the number of inputs inside the
/// window otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvgPool {
    pub dims: usize,
    pub channels: usize,
    pub window: Window,
    pub count_include_pad: bool,
}

fn pooled_shape(dims: usize, channels: usize, window: &Window) -> Shape {
    let (h, w) = window.output().expect("validated when the layer was built");
    if dims == 1 { Shape::seq(channels, w) } else { Shape::image(channels, h, w) }
}

fn check_input(kind: &str, dims: usize, channels: usize, window: &Window, input: Shape) -> Result<Shape, String> {
    let want = if dims == 1 {
        Shape::seq(channels, window.input.1)
    } else {
        Shape::image(channels, window.input.0, window.input.1)
    };
    if input != want {
        return Err(format!("{kind} built for {want} inputs gets {input}"));
    }
    Ok(pooled_shape(dims, channels, window))
}

/// Input values of a max-pool's batch from which its examples are split over the compute
/// threads (LeNet-5's first pool at batch 64: 301k values).
const SPLIT_VALUES: usize = 1 << 16;

/// Gathers `z[i, idx[i, o]]` into `[batch, outputs]`.
fn gather<T: Scalar>(z: ArrayView2<'_, T>, idx: &[u32], outputs: usize) -> Array2<T> {
    let mut out = Array2::zeros((z.nrows(), outputs));
    for ((zi, mut oi), ii) in z.rows().into_iter().zip(out.rows_mut()).zip(idx.chunks_exact(outputs)) {
        for (o, &k) in oi.iter_mut().zip(ii) {
            *o = zi[k as usize];
        }
    }
    out
}

/// Scatter-adds `g[i, o]` into `[batch, inputs]` at `idx[i, o]` (the adjoint of [`gather`]).
fn scatter<T: Scalar>(g: ArrayView2<'_, T>, idx: &[u32], inputs: usize) -> Array2<T> {
    let outputs = g.ncols();
    let mut out = Array2::zeros((g.nrows(), inputs));
    for ((gi, mut oi), ii) in g.rows().into_iter().zip(out.rows_mut()).zip(idx.chunks_exact(outputs.max(1))) {
        for (&v, &k) in gi.iter().zip(ii) {
            oi[k as usize] += v;
        }
    }
    out
}

impl MaxPool {
    fn outputs(&self) -> usize {
        self.channels * self.window.positions()
    }

    fn inputs(&self) -> usize {
        self.channels * self.window.input_positions()
    }

    /// The output and, per output value, the index of its input within the example. From
    /// [`SPLIT_VALUES`] input values, the examples are split over the compute threads.
    fn pool<T: Scalar>(&self, x: ArrayView2<'_, T>) -> (Array2<T>, Vec<u32>) {
        let outputs = self.outputs();
        let mut y = Array2::zeros((x.nrows(), outputs));
        let mut idx = vec![0u32; x.nrows() * outputs];
        let t = sgdlab_linalg::threads().min(x.nrows());
        if t > 1 && x.len() >= SPLIT_VALUES && outputs > 0 {
            let (mut x, mut yr, mut ir) = (x, y.view_mut(), idx.as_mut_slice());
            let mut parts = Vec::with_capacity(t);
            for k in 0..t {
                let n = x.nrows() / (t - k);
                let (x1, x2) = x.split_at(Axis(0), n);
                let (y1, y2) = yr.split_at(Axis(0), n);
                let (i1, i2) = ir.split_at_mut(n * outputs);
                parts.push((x1, y1, i1));
                (x, yr, ir) = (x2, y2, i2);
            }
            sgdlab_linalg::map_parts(parts, true, &|(x, y, i)| self.pool_rows(x, y, i));
        } else {
            self.pool_rows(x, y.view_mut(), &mut idx);
        }
        (y, idx)
    }

    /// [`MaxPool::pool`] of the examples `x` into `y` and `idx`, on the caller's thread.
    fn pool_rows<T: Scalar>(&self, x: ArrayView2<'_, T>, mut y: ArrayViewMut2<'_, T>, idx: &mut [u32]) {
        let (pos, ipos) = (self.window.positions(), self.window.input_positions());
        let table = self.window.tap_table();
        let outputs = self.outputs();
        for ((xi, mut yi), ii) in x.rows().into_iter().zip(y.rows_mut()).zip(idx.chunks_exact_mut(outputs)) {
            let xi = xi.as_standard_layout();
            let xi = xi.as_slice().expect("standard layout");
            let yi = yi.as_slice_mut().expect("fresh array");
            if self.window.is_dense() {
                self.pool_dense(xi, yi, ii);
                continue;
            }
            for c in 0..self.channels {
                let xc = &xi[c * ipos..(c + 1) * ipos];
                for o in 0..pos {
                    let taps = table.taps(o);
                    let (mut bk, mut bv) = (taps[0], xc[taps[0] as usize]);
                    for &k in &taps[1..] {
                        // Branch-free (the comparison is unpredictable on real data).
                        let v = xc[k as usize];
                        let better = v > bv || v.is_nan();
                        bk = if better { k } else { bk };
                        bv = if better { v } else { bv };
                    }
                    yi[c * pos + o] = bv;
                    ii[c * pos + o] = (c * ipos) as u32 + bk;
                }
            }
        }
    }

    /// [`MaxPool::pool`] on one example when every window is a dense block inside the input
    /// ([`Window::is_dense`]): the same scan order and comparisons, with the input indices
    /// computed instead of read from a tap table, one output row at a time.
    fn pool_dense<T: Scalar>(&self, xi: &[T], yi: &mut [T], ii: &mut [u32]) {
        let (oh_n, ow_n) = self.window.output().expect("validated when the layer was built");
        let (w_n, ipos) = (self.window.input.1, self.window.input_positions());
        let ((kh, kw), (sh, sw)) = (self.window.kernel, self.window.stride);
        for c in 0..self.channels {
            let xc = &xi[c * ipos..(c + 1) * ipos];
            for oh in 0..oh_n {
                let o0 = (c * oh_n + oh) * ow_n;
                let (yr, ir) = (&mut yi[o0..o0 + ow_n], &mut ii[o0..o0 + ow_n]);
                let top = oh * sh * w_n;
                // The first tap of every window, then the others in scan order, each a pass
                // along the output row (independent windows side by side, no dependent chain).
                for (ow, (y, i)) in yr.iter_mut().zip(ir.iter_mut()).enumerate() {
                    *y = xc[top + ow * sw];
                    *i = (top + ow * sw) as u32;
                }
                for ki in 0..kh {
                    for kj in 0..kw {
                        if ki == 0 && kj == 0 {
                            continue;
                        }
                        let start = top + ki * w_n + kj;
                        let src = &xc[start..start + (ow_n - 1) * sw + 1];
                        for (ow, (y, i)) in yr.iter_mut().zip(ir.iter_mut()).enumerate() {
                            let v = src[ow * sw];
                            // Branch-free (the comparison is unpredictable on real data): `|`,
                            // not `||`, which compiles to two conditional jumps per value.
                            #[allow(clippy::eq_op)]
                            let better = (v > *y) | (v != v);
                            *i = if better { (start + ow * sw) as u32 } else { *i };
                            *y = if better { v } else { *y };
                        }
                    }
                }
                for i in ir.iter_mut() {
                    *i += (c * ipos) as u32;
                }
            }
        }
    }

    fn argmax(trace: &Trace<impl Scalar>) -> &[u32] {
        match &trace.saved {
            Saved::ArgMax(i) => i,
            Saved::Nothing | Saved::Columns(_) | Saved::Mask(_) | Saved::BatchStats(_) => {
                unreachable!("a max-pool's trace keeps its arg-max")
            }
        }
    }
}

impl LayerRules for MaxPool {
    fn kind(&self) -> &'static str {
        if self.dims == 1 { "maxpool1d" } else { "maxpool2d" }
    }

    fn num_params(&self) -> usize {
        0
    }

    fn param_entries(&self, _: &str, _: &mut Vec<(String, Vec<usize>)>) {}

    fn out_len(&self, _: usize) -> usize {
        self.outputs()
    }

    fn out_shape(&self, input: Shape) -> Result<Shape, String> {
        check_input(self.kind(), self.dims, self.channels, &self.window, input)
    }

    fn init<T: Scalar>(&self, _: &str, _: &LayerInit<'_>, _: &mut [T]) {}

    fn couples_examples(&self, _: &Mode) -> bool {
        false
    }

    /// Half the smallest nonzero gap between a window's maximum and the next value in it. Exact
    /// ties come from inputs that are constant nearby (ReLU's zeros), where the choice changes no
    /// derivative; near ties are where a small step changes the arg-max.
    fn kink_distance<T: Scalar>(&self, trace: &Trace<T>) -> f64 {
        let ipos = self.window.input_positions();
        let table = self.window.tap_table();
        let mut gap = f64::INFINITY;
        for xi in trace.input.rows() {
            for c in 0..self.channels {
                for o in 0..table.positions() {
                    let (mut a, mut b) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
                    for &k in table.taps(o) {
                        let v = xi[c * ipos + k as usize].to_f64();
                        if v >= a {
                            (a, b) = (v, a);
                        } else if v > b {
                            b = v;
                        }
                    }
                    if a > b {
                        gap = gap.min((a - b) / 2.0);
                    }
                }
            }
        }
        gap
    }

    fn forward<T: Scalar>(&self, _: &[T], x: ArrayView2<'_, T>, _: &Mode) -> Array2<T> {
        self.pool(x).0
    }

    fn forward_traced<T: Scalar>(&self, _: &[T], x: Array2<T>, _: &Mode) -> (Array2<T>, Trace<T>) {
        let (y, idx) = self.pool(x.view());
        (y, Trace::with(x, Saved::ArgMax(idx)))
    }

    fn jvp<T: Scalar>(
        &self,
        _: &[T],
        _: Option<&[T]>,
        trace: &Trace<T>,
        dx: Option<Array2<T>>,
    ) -> (Array2<T>, TangentTrace<T>) {
        let dy = match &dx {
            Some(dx) => gather(dx.view(), Self::argmax(trace), self.outputs()),
            None => Array2::zeros((trace.input.nrows(), self.outputs())),
        };
        (dy, TangentTrace::leaf(None))
    }

    fn vjp<T: Scalar>(
        &self,
        _: &[T],
        trace: &Trace<T>,
        gy: CowArray<'_, T, Ix2>,
        _: Option<ParamCotangent<'_, T>>,
        need_gx: bool,
    ) -> Option<Array2<T>> {
        need_gx.then(|| scatter(gy.view(), Self::argmax(trace), self.inputs()))
    }

    fn vjp_per_example<T: Scalar>(
        &self,
        p: &[T],
        trace: &Trace<T>,
        gy: ArrayView2<'_, T>,
        _: ArrayViewMut2<'_, T>,
        need_gx: bool,
    ) -> Result<Option<Array2<T>>, String> {
        Ok(self.vjp(p, trace, gy.into(), None, need_gx))
    }

    /// Piecewise linear: `dgx` is the vjp of `dgy`.
    fn vjp_tangent<T: Scalar>(
        &self,
        _: &[T],
        _: &[T],
        trace: &Trace<T>,
        _: &TangentTrace<T>,
        _: &CotangentTrace<T>,
        dgy: Array2<T>,
        _: &mut [T],
        need_gx: bool,
    ) -> Option<Array2<T>> {
        need_gx.then(|| scatter(dgy.view(), Self::argmax(trace), self.inputs()))
    }

    fn jet2<T: Scalar>(
        &self,
        _: &[T],
        _: &[T],
        trace: &Trace<T>,
        dx: Option<&Array2<T>>,
        d2x: Option<&Array2<T>>,
    ) -> (Option<Array2<T>>, Option<Array2<T>>) {
        let idx = Self::argmax(trace);
        let g = |z: &Array2<T>| gather(z.view(), idx, self.outputs());
        (dx.map(g), d2x.map(g))
    }
}

impl AvgPool {
    fn outputs(&self) -> usize {
        self.channels * self.window.positions()
    }

    fn inputs(&self) -> usize {
        self.channels * self.window.input_positions()
    }

    /// `1 / divisor` per output position (the same for every channel).
    fn weights<T: Scalar>(&self, table: &TapTable) -> Vec<T> {
        let taps = self.window.taps();
        (0..table.positions())
            .map(|o| T::one() / T::from_usize(if self.count_include_pad { taps } else { table.taps(o).len() }))
            .collect()
    }

    /// The linear map: `y[c, o] = w[o] sum of z[c, window(o)]`.
    fn apply<T: Scalar>(&self, z: ArrayView2<'_, T>) -> Array2<T> {
        let (pos, ipos) = (self.window.positions(), self.window.input_positions());
        let table = self.window.tap_table();
        let w = self.weights::<T>(&table);
        let mut y = Array2::zeros((z.nrows(), self.outputs()));
        for (zi, mut yi) in z.rows().into_iter().zip(y.rows_mut()) {
            let zi = zi.as_standard_layout();
            let zi = zi.as_slice().expect("standard layout");
            let yi = yi.as_slice_mut().expect("fresh array");
            for c in 0..self.channels {
                let zc = &zi[c * ipos..(c + 1) * ipos];
                for (o, (yo, &wo)) in yi[c * pos..(c + 1) * pos].iter_mut().zip(&w).enumerate() {
                    *yo = table.taps(o).iter().map(|&k| zc[k as usize]).sum::<T>() * wo;
                }
            }
        }
        y
    }

    /// Its adjoint: `gx[c, k] = sum over windows o containing k of w[o] g[c, o]`.
    fn apply_t<T: Scalar>(&self, g: ArrayView2<'_, T>) -> Array2<T> {
        let (pos, ipos) = (self.window.positions(), self.window.input_positions());
        let table = self.window.tap_table();
        let w = self.weights::<T>(&table);
        let mut gx = Array2::zeros((g.nrows(), self.inputs()));
        for (gi, mut xi) in g.rows().into_iter().zip(gx.rows_mut()) {
            let gi = gi.as_standard_layout();
            let gi = gi.as_slice().expect("standard layout");
            let xi = xi.as_slice_mut().expect("fresh array");
            for c in 0..self.channels {
                let xc = &mut xi[c * ipos..(c + 1) * ipos];
                for (o, (&go, &wo)) in gi[c * pos..(c + 1) * pos].iter().zip(&w).enumerate() {
                    let v = wo * go;
                    for &k in table.taps(o) {
                        xc[k as usize] += v;
                    }
                }
            }
        }
        gx
    }
}

impl LayerRules for AvgPool {
    fn kind(&self) -> &'static str {
        if self.dims == 1 { "avgpool1d" } else { "avgpool2d" }
    }

    fn num_params(&self) -> usize {
        0
    }

    fn param_entries(&self, _: &str, _: &mut Vec<(String, Vec<usize>)>) {}

    fn out_len(&self, _: usize) -> usize {
        self.outputs()
    }

    fn out_shape(&self, input: Shape) -> Result<Shape, String> {
        check_input(self.kind(), self.dims, self.channels, &self.window, input)
    }

    fn init<T: Scalar>(&self, _: &str, _: &LayerInit<'_>, _: &mut [T]) {}

    fn couples_examples(&self, _: &Mode) -> bool {
        false
    }

    fn kink_distance<T: Scalar>(&self, _: &Trace<T>) -> f64 {
        f64::INFINITY
    }

    fn forward<T: Scalar>(&self, _: &[T], x: ArrayView2<'_, T>, _: &Mode) -> Array2<T> {
        self.apply(x)
    }

    fn forward_traced<T: Scalar>(&self, _: &[T], x: Array2<T>, _: &Mode) -> (Array2<T>, Trace<T>) {
        let y = self.apply(x.view());
        (y, Trace::of_input(Array2::zeros((x.nrows(), 0))))
    }

    fn jvp<T: Scalar>(
        &self,
        _: &[T],
        _: Option<&[T]>,
        trace: &Trace<T>,
        dx: Option<Array2<T>>,
    ) -> (Array2<T>, TangentTrace<T>) {
        let dy = match &dx {
            Some(dx) => self.apply(dx.view()),
            None => Array2::zeros((trace.input.nrows(), self.outputs())),
        };
        (dy, TangentTrace::leaf(None))
    }

    fn vjp<T: Scalar>(
        &self,
        _: &[T],
        _: &Trace<T>,
        gy: CowArray<'_, T, Ix2>,
        _: Option<ParamCotangent<'_, T>>,
        need_gx: bool,
    ) -> Option<Array2<T>> {
        need_gx.then(|| self.apply_t(gy.view()))
    }

    fn vjp_per_example<T: Scalar>(
        &self,
        p: &[T],
        trace: &Trace<T>,
        gy: ArrayView2<'_, T>,
        _: ArrayViewMut2<'_, T>,
        need_gx: bool,
    ) -> Result<Option<Array2<T>>, String> {
        Ok(self.vjp(p, trace, gy.into(), None, need_gx))
    }

    /// Linear: `dgx` is the vjp of `dgy`.
    fn vjp_tangent<T: Scalar>(
        &self,
        _: &[T],
        _: &[T],
        _: &Trace<T>,
        _: &TangentTrace<T>,
        _: &CotangentTrace<T>,
        dgy: Array2<T>,
        _: &mut [T],
        need_gx: bool,
    ) -> Option<Array2<T>> {
        need_gx.then(|| self.apply_t(dgy.view()))
    }

    fn jet2<T: Scalar>(
        &self,
        _: &[T],
        _: &[T],
        _: &Trace<T>,
        dx: Option<&Array2<T>>,
        d2x: Option<&Array2<T>>,
    ) -> (Option<Array2<T>>, Option<Array2<T>>) {
        (dx.map(|d| self.apply(d.view())), d2x.map(|d| self.apply(d.view())))
    }
}
