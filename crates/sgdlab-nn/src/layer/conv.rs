//! Convolutions (`Conv1d`, `Conv2d`) as matrix products on unfolded inputs.
//!
//! The batch is cut into chunks of a fixed number of examples (about [`CHUNK_BYTES`] of unfolded
//! input each, from the layer's geometry alone). For a chunk of `n` examples, with their inputs
//! unfolded into columns `X = im2col(x)` (`[C_in k, n P]`, `k` the kernel taps and `P` the output
//! positions, example after example) and the weight as a matrix `W` (`[C_out, C_in / G k]`,
//! PyTorch's `[out, in / groups, kh, kw]` row-major), group `g` computes `Y_g = W_g X_g + b_g`
//! in one product (`Y` is `[C_out, n P]`, channel-major; it is copied into the examples' output
//! rows). Every rule is then the linear layer's on these matrices: `gW = sum over chunks of gY
//! X^T`, `gX = W^T gY` folded back by col2im, and so on; per-example weight cotangents are one
//! product per example, `gY_i X_i^T`. A traced forward pass keeps `X`, chunk by chunk, for the
//! rules when it is small ([`KEEP_COLUMNS_BYTES`]); otherwise it keeps the input, and each rule
//! unfolds its chunks again (the same values, so the same results either way).
//!
//! Chunks run on the compute threads ([`map_parts`]) when the pass is large enough. Sums over
//! the batch (the weight and bias cotangents) add one partial sum per chunk in chunk order, so
//! results are the same for every thread count.

use super::window::Window;
use super::{CotangentTrace, LayerRules, Mode, ParamCotangent, Saved, TangentTrace, Trace, view2, view2_mut};
use crate::init::LayerInit;
use crate::shape::Shape;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis, CowArray, Ix2};
use sgdlab_linalg::{PARALLEL_MIN_FLOPS, Scalar, map_parts, matmul_into};
use std::ops::Range;

/// Bytes of unfolded input per chunk of examples: small enough for the unfolding and the
/// chunk's products to stay in the caches, large enough for products of useful size.
const CHUNK_BYTES: usize = 256 << 10;

/// Multiply-adds of a pass (the forward product over the batch) from which its chunks run on
/// several threads; below it, waking a thread costs about as much as it saves.
const PARALLEL_MIN_MACS: usize = PARALLEL_MIN_FLOPS / 8;

/// Bytes of a traced pass's whole unfolding up to which the forward pass keeps it for the rules
/// (one chunk: it stays in the caches). Above, the trace keeps the input and each rule unfolds
/// its chunks again, into memory that is still in the caches from the chunk before: reading
/// back a kept unfolding of many megabytes from memory cost more than unfolding again
/// (measured, LeNet-5 f32: per-example gradients at batch 128 20.3 -> 18.8 ms; at batch 64 an
/// HVP 17.9 -> 16.7 ms and one from a cached pass 10.3 -> 9.0 ms, the gradient unchanged).
const KEEP_COLUMNS_BYTES: usize = CHUNK_BYTES;

/// A chunk's unfolding as a traced pass left it (see [`Conv::chunk_columns`]).
enum ChunkColumns<'a, T> {
    /// Kept by the forward pass.
    Kept(&'a Array2<T>),
    /// To unfold from these examples' inputs.
    Input(ArrayView2<'a, T>),
}

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

/// `a`'s rows cut at consecutive `chunks` (starting at 0).
fn rows_of<'a, T>(mut a: ArrayView2<'a, T>, chunks: &[Range<usize>]) -> Vec<ArrayView2<'a, T>> {
    let mut out = Vec::with_capacity(chunks.len());
    for r in chunks {
        let (head, tail) = a.split_at(Axis(0), r.len());
        out.push(head);
        a = tail;
    }
    out
}

/// `a`'s rows cut at consecutive `chunks` (starting at 0), mutable.
fn rows_of_mut<'a, T>(mut a: ArrayViewMut2<'a, T>, chunks: &[Range<usize>]) -> Vec<ArrayViewMut2<'a, T>> {
    let mut out = Vec::with_capacity(chunks.len());
    for r in chunks {
        let (head, tail) = a.split_at(Axis(0), r.len());
        out.push(head);
        a = tail;
    }
    out
}

/// Optional rows cut at the chunks (`None` for every chunk when there is no array).
fn opt_rows_of_mut<'a, T>(a: Option<&'a mut Array2<T>>, chunks: &[Range<usize>]) -> Vec<Option<ArrayViewMut2<'a, T>>> {
    match a {
        Some(a) => rows_of_mut(a.view_mut(), chunks).into_iter().map(Some).collect(),
        None => chunks.iter().map(|_| None).collect(),
    }
}

/// `dst = src (+ b)` or, with `add`, `dst += src (+ b)`.
#[inline]
fn store<T: Scalar>(dst: &mut [T], src: &[T], add: bool, b: Option<T>) {
    match (add, b) {
        (false, None) => dst.copy_from_slice(src),
        (false, Some(b)) => dst.iter_mut().zip(src).for_each(|(d, &s)| *d = s + b),
        (true, None) => dst.iter_mut().zip(src).for_each(|(d, &s)| *d += s),
        (true, Some(b)) => dst.iter_mut().zip(src).for_each(|(d, &s)| *d = *d + s + b),
    }
}

/// The sum of `v` over 8 interleaved partial sums, added in a fixed order: the same value on
/// every thread count, with 8 independent additions in flight instead of one dependent chain
/// (a bias cotangent sums tens of thousands of values per channel).
fn lane_sum<T: Scalar>(v: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    for (a, &x) in acc.iter_mut().zip(chunks.remainder()) {
        *a += x;
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
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

    /// Multiply-adds of the forward product for one example.
    pub fn forward_macs(&self) -> usize {
        self.weight_len().saturating_mul(self.window.positions())
    }

    /// The output shape (`[C_out, L_out]` or `[C_out, H_out, W_out]`).
    fn output(&self) -> Shape {
        let (h, w) = self.window.output().expect("validated when the layer was built");
        if self.dims == 1 { Shape::seq(self.out_channels, w) } else { Shape::image(self.out_channels, h, w) }
    }

    /// Rows of the unfolded input.
    fn col_rows(&self) -> usize {
        self.in_channels * self.window.taps()
    }

    fn in_len(&self) -> usize {
        self.in_channels * self.window.input_positions()
    }

    /// The chunks of a batch: consecutive ranges of a fixed number of examples (from the
    /// geometry and the scalar size only, never from the thread count).
    fn chunks<T>(&self, batch: usize) -> Vec<Range<usize>> {
        let per_example = self.col_rows() * self.window.positions() * std::mem::size_of::<T>();
        let len = (CHUNK_BYTES / per_example.max(1)).max(1);
        (0..batch.div_ceil(len)).map(|i| i * len..((i + 1) * len).min(batch)).collect()
    }

    /// Whether a pass over `batch` examples is worth splitting over threads.
    fn parallel(&self, batch: usize) -> bool {
        self.forward_macs().saturating_mul(batch) >= PARALLEL_MIN_MACS
    }

    /// The unfolding `[col_rows, n P]` of the examples `x` (`[n, in_len]`).
    fn unfold<T: Scalar>(&self, x: ArrayView2<'_, T>) -> Array2<T> {
        let mut data = Vec::new();
        self.window.im2col(self.in_channels, x, &mut data);
        Array2::from_shape_vec((self.col_rows(), x.nrows() * self.window.positions()), data)
            .expect("one unfolding per example")
    }

    /// `alpha W cols` per group (`cols`: `[col_rows, n P]`; the result `[C_out, n P]`).
    fn apply<T: Scalar>(&self, w: &[T], cols: ArrayView2<'_, T>, alpha: T) -> Array2<T> {
        let (og, kg) = (self.out_channels / self.groups, self.fan_in());
        let w = view2(w, self.out_channels, kg);
        let mut y = Array2::zeros((self.out_channels, cols.ncols()));
        for g in 0..self.groups {
            matmul_into(
                y.slice_mut(ndarray::s![g * og..(g + 1) * og, ..]),
                false,
                w.slice(ndarray::s![g * og..(g + 1) * og, ..]),
                cols.slice(ndarray::s![g * kg..(g + 1) * kg, ..]),
                alpha,
            );
        }
        y
    }

    /// `sum_j W_j^T g_j` per group, for channel-major cotangents `g_j` (`[C_out, n P]`; the
    /// result `[col_rows, n P]`).
    fn apply_t<T: Scalar>(&self, terms: &[(&[T], ArrayView2<'_, T>)]) -> Array2<T> {
        let (og, kg) = (self.out_channels / self.groups, self.fan_in());
        let mut gcols = Array2::zeros((self.col_rows(), terms[0].1.ncols()));
        for (j, (w, gy)) in terms.iter().enumerate() {
            let w = view2(w, self.out_channels, kg);
            for g in 0..self.groups {
                matmul_into(
                    gcols.slice_mut(ndarray::s![g * kg..(g + 1) * kg, ..]),
                    j > 0,
                    w.slice(ndarray::s![g * og..(g + 1) * og, ..]).t(),
                    gy.slice(ndarray::s![g * og..(g + 1) * og, ..]),
                    T::one(),
                );
            }
        }
        gcols
    }

    /// `gw = gy cols^T (+ gw when beta_one)` per group (`gy`: `[C_out, m]`, `cols`:
    /// `[col_rows, m]`, `gw`: `[C_out, fan_in]`).
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

    /// A chunk's parameter cotangent from its channel-major `gy` (`[C_out, n P]`): `gy cols^T`,
    /// then the sums of `gy` per channel (the bias).
    fn param_partial<T: Scalar>(&self, gy: ArrayView2<'_, T>, cols: ArrayView2<'_, T>) -> Vec<T> {
        let wn = self.weight_len();
        let mut part = vec![T::zero(); self.num_params()];
        self.weight_cotangent(gy, cols, view2_mut(&mut part[..wn], self.out_channels, self.fan_in()), false);
        if self.bias {
            for (b, row) in part[wn..].iter_mut().zip(gy.rows()) {
                *b = lane_sum(row.to_slice().expect("a fresh array"));
            }
        }
        part
    }

    /// Adds the chunks' partial cotangents into `gp` in chunk order (overwriting `gp` unless
    /// `add`).
    fn add_partials<T: Scalar>(partials: Vec<Vec<T>>, gp: &mut [T], add: bool) {
        if !add {
            gp.fill(T::zero());
        }
        for part in partials {
            gp.iter_mut().zip(&part).for_each(|(g, &v)| *g += v);
        }
    }

    /// The examples' cotangents `g` (`[n, C_out P]`) channel-major (`[C_out, n P]`), the layout
    /// of the products.
    fn channel_major<T: Scalar>(&self, g: ArrayView2<'_, T>) -> Array2<T> {
        let pos = self.window.positions();
        let g = g.as_standard_layout();
        let mut t = Vec::with_capacity(g.len());
        for o in 0..self.out_channels {
            for row in g.rows() {
                t.extend_from_slice(&row.to_slice().expect("standard layout")[o * pos..(o + 1) * pos]);
            }
        }
        Array2::from_shape_vec((self.out_channels, g.nrows() * pos), t).expect("sized above")
    }

    /// Writes the channel-major `t` (`[C_out, n P]`) plus the bias `b` into the examples' rows
    /// `y` (`[n, C_out P]`), or adds it with `add`.
    fn store_rows<T: Scalar>(&self, t: ArrayView2<'_, T>, mut y: ArrayViewMut2<'_, T>, add: bool, b: Option<&[T]>) {
        let pos = self.window.positions();
        for (j, mut yr) in y.rows_mut().into_iter().enumerate() {
            let yr = yr.as_slice_mut().expect("rows of a fresh array are contiguous");
            for (o, (dst, tr)) in yr.chunks_exact_mut(pos).zip(t.rows()).enumerate() {
                let src = &tr.to_slice().expect("a fresh array")[j * pos..(j + 1) * pos];
                store(dst, src, add, b.map(|b| b[o]));
            }
        }
    }

    /// Where the rules find each chunk's unfolding (the chunks of `batch` examples): kept by
    /// the forward pass, or to unfold again from the kept input.
    fn chunk_columns<'a, T: Scalar>(&self, trace: &'a Trace<T>, chunks: &[Range<usize>]) -> Vec<ChunkColumns<'a, T>> {
        match &trace.saved {
            Saved::Columns(c) => c.iter().map(ChunkColumns::Kept).collect(),
            Saved::Nothing => rows_of(trace.input.view(), chunks).into_iter().map(ChunkColumns::Input).collect(),
            Saved::ArgMax(_) | Saved::Mask(_) | Saved::BatchStats(_) => {
                unreachable!("a convolution's trace keeps its columns or its input")
            }
        }
    }

    /// A chunk's unfolding, borrowed when kept, computed otherwise.
    fn columns_of<'a, T: Scalar>(&self, c: &ChunkColumns<'a, T>) -> CowArray<'a, T, Ix2> {
        match c {
            ChunkColumns::Kept(a) => a.view().into(),
            ChunkColumns::Input(x) => self.unfold(x.view()).into(),
        }
    }

    /// Examples in a traced pass.
    fn batch_of<T>(&self, trace: &Trace<T>) -> usize {
        match &trace.saved {
            Saved::Columns(cols) => cols.iter().map(|c| c.ncols()).sum::<usize>() / self.window.positions(),
            Saved::Nothing | Saved::ArgMax(_) | Saved::Mask(_) | Saved::BatchStats(_) => trace.input.nrows(),
        }
    }

    /// Whether a traced pass over `batch` examples keeps its unfolding ([`KEEP_COLUMNS_BYTES`]).
    fn keeps_columns<T>(&self, batch: usize) -> bool {
        batch.saturating_mul(self.col_rows() * self.window.positions() * std::mem::size_of::<T>()) <= KEEP_COLUMNS_BYTES
    }

    /// The traced forward pass, keeping the unfolding (`keep`) or the input.
    fn traced<T: Scalar>(&self, p: &[T], x: Array2<T>, keep: bool) -> (Array2<T>, Trace<T>) {
        if keep {
            let (y, cols) = self.forward_cols(p, x.view(), true);
            (y, Trace::with(Array2::zeros((0, 0)), Saved::Columns(cols)))
        } else {
            let (y, _) = self.forward_cols(p, x.view(), false);
            (y, Trace::of_input(x))
        }
    }

    /// `out_i (+)= alpha W cols(z_i)` for every example (with `z`'s own unfolding).
    fn apply_to_input<T: Scalar>(&self, w: &[T], z: ArrayView2<'_, T>, out: &mut Array2<T>, add: bool, alpha: T) {
        let chunks = self.chunks::<T>(z.nrows());
        let parts: Vec<_> = rows_of(z, &chunks).into_iter().zip(rows_of_mut(out.view_mut(), &chunks)).collect();
        map_parts(parts, self.parallel(z.nrows()), &|(zc, yc)| {
            let t = self.apply(w, self.unfold(zc).view(), alpha);
            self.store_rows(t.view(), yc, add, None);
        });
    }

    /// `out_i (+)= W cols_i + b` for every example, from a traced pass.
    fn apply_to_cols<T: Scalar>(&self, w: &[T], trace: &Trace<T>, out: &mut Array2<T>, add: bool, b: Option<&[T]>) {
        let batch = out.nrows();
        let chunks = self.chunks::<T>(batch);
        let parts: Vec<_> =
            self.chunk_columns(trace, &chunks).into_iter().zip(rows_of_mut(out.view_mut(), &chunks)).collect();
        map_parts(parts, self.parallel(batch), &|(c, yc)| {
            let t = self.apply(w, self.columns_of(&c).view(), T::one());
            self.store_rows(t.view(), yc, add, b);
        });
    }

    /// The forward pass, with the unfolding of every chunk when `keep`.
    fn forward_cols<T: Scalar>(&self, p: &[T], x: ArrayView2<'_, T>, keep: bool) -> (Array2<T>, Vec<Array2<T>>) {
        let batch = x.nrows();
        let chunks = self.chunks::<T>(batch);
        let mut y = Array2::zeros((batch, self.output().len()));
        let b = self.bias.then(|| &p[self.weight_len()..]);
        let parts: Vec<_> = rows_of(x, &chunks).into_iter().zip(rows_of_mut(y.view_mut(), &chunks)).collect();
        let cols = map_parts(parts, self.parallel(batch), &|(xc, yc)| {
            let cols = self.unfold(xc);
            let t = self.apply(p, cols.view(), T::one());
            self.store_rows(t.view(), yc, false, b);
            keep.then_some(cols)
        });
        (y, cols.into_iter().flatten().collect())
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
        self.forward_cols(p, x, false).0
    }

    fn forward_traced<T: Scalar>(&self, p: &[T], x: Array2<T>, _: &Mode) -> (Array2<T>, Trace<T>) {
        let keep = self.keeps_columns::<T>(x.nrows());
        self.traced(p, x, keep)
    }

    /// `dY = W cols(dx) + dW X + db`.
    fn jvp<T: Scalar>(
        &self,
        p: &[T],
        dp: Option<&[T]>,
        trace: &Trace<T>,
        dx: Option<Array2<T>>,
    ) -> (Array2<T>, TangentTrace<T>) {
        let mut dy = Array2::zeros((self.batch_of(trace), self.output().len()));
        if let Some(dx) = &dx {
            self.apply_to_input(p, dx.view(), &mut dy, false, T::one());
        }
        if let Some(dp) = dp {
            let db = self.bias.then(|| &dp[self.weight_len()..]);
            self.apply_to_cols(dp, trace, &mut dy, dx.is_some(), db);
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
        let batch = gy.nrows();
        let chunks = self.chunks::<T>(batch);
        let mut gx = need_gx.then(|| Array2::zeros((batch, self.in_len())));
        let want_gp = gp.is_some();
        let parts: Vec<_> = self
            .chunk_columns(trace, &chunks)
            .into_iter()
            .zip(rows_of(gy.view(), &chunks))
            .zip(opt_rows_of_mut(gx.as_mut(), &chunks))
            .collect();
        let partials = map_parts(parts, self.parallel(batch), &|((c, g), gxc)| {
            let g = self.channel_major(g);
            if let Some(gxc) = gxc {
                self.window.col2im_add(self.in_channels, self.apply_t(&[(p, g.view())]).view(), gxc);
            }
            want_gp.then(|| self.param_partial(g.view(), self.columns_of(&c).view()))
        });
        if let Some(gp) = gp {
            let (gp, add) = gp.parts();
            Self::add_partials(partials.into_iter().flatten().collect(), gp, add);
        }
        gx
    }

    fn vjp_per_example<T: Scalar>(
        &self,
        p: &[T],
        trace: &Trace<T>,
        gy: ArrayView2<'_, T>,
        rows: ArrayViewMut2<'_, T>,
        need_gx: bool,
    ) -> Result<Option<Array2<T>>, String> {
        let (wn, pos) = (self.weight_len(), self.window.positions());
        let batch = gy.nrows();
        let chunks = self.chunks::<T>(batch);
        let mut gx = need_gx.then(|| Array2::zeros((batch, self.in_len())));
        let parts: Vec<_> = self
            .chunk_columns(trace, &chunks)
            .into_iter()
            .zip(rows_of(gy, &chunks))
            .zip(rows_of_mut(rows, &chunks))
            .zip(opt_rows_of_mut(gx.as_mut(), &chunks))
            .collect();
        map_parts(parts, self.parallel(batch), &|(((c, g), mut rc), gxc)| {
            let c = self.columns_of(&c);
            let g = g.as_standard_layout();
            for (j, (gi, mut r)) in g.rows().into_iter().zip(rc.rows_mut()).enumerate() {
                let r = r.as_slice_mut().expect("per-example rows are contiguous");
                let gi = gi.to_slice().expect("standard layout");
                let gv = ArrayView2::from_shape((self.out_channels, pos), gi).expect("an example's output row");
                let gw = view2_mut(&mut r[..wn], self.out_channels, self.fan_in());
                self.weight_cotangent(gv, c.slice(ndarray::s![.., j * pos..(j + 1) * pos]), gw, false);
                if self.bias {
                    for (b, chunk) in r[wn..].iter_mut().zip(gi.chunks_exact(pos)) {
                        *b = lane_sum(chunk);
                    }
                }
            }
            if let Some(gxc) = gxc {
                let g = self.channel_major(g.view());
                self.window.col2im_add(self.in_channels, self.apply_t(&[(p, g.view())]).view(), gxc);
            }
        });
        Ok(gx)
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
        let wn = self.weight_len();
        let batch = dgy.nrows();
        let chunks = self.chunks::<T>(batch);
        let mut gx = need_gx.then(|| Array2::zeros((batch, self.in_len())));
        let dxs: Vec<Option<ArrayView2<'_, T>>> = match &tangent.input {
            Some(dx) => rows_of(dx.view(), &chunks).into_iter().map(Some).collect(),
            None => chunks.iter().map(|_| None).collect(),
        };
        let parts: Vec<_> = self
            .chunk_columns(trace, &chunks)
            .into_iter()
            .zip(rows_of(dgy.view(), &chunks))
            .zip(rows_of(cotangent.output.view(), &chunks))
            .zip(dxs)
            .zip(opt_rows_of_mut(gx.as_mut(), &chunks))
            .collect();
        let partials = map_parts(parts, self.parallel(batch), &|((((c, dg), g), dx), gxc)| {
            let (dg, g) = (self.channel_major(dg), self.channel_major(g));
            let mut part = self.param_partial(dg.view(), self.columns_of(&c).view());
            if let Some(dx) = dx {
                let dw = view2_mut(&mut part[..wn], self.out_channels, self.fan_in());
                self.weight_cotangent(g.view(), self.unfold(dx).view(), dw, true);
            }
            if let Some(gxc) = gxc {
                let gcols = self.apply_t(&[(p, dg.view()), (&dp[..wn], g.view())]);
                self.window.col2im_add(self.in_channels, gcols.view(), gxc);
            }
            part
        });
        Self::add_partials(partials, dgp, true);
        gx
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every rule gives the same bits from a trace that kept the unfolding and from one that
    /// kept the input (a padded, strided, grouped geometry; batches of one and several chunks).
    #[test]
    fn rules_agree_with_the_unfolding_kept_and_unfolded_again() {
        let window = Window { kernel: (3, 2), stride: (2, 1), padding: (1, 1), dilation: (1, 2), input: (7, 6) };
        let conv = Conv { dims: 2, in_channels: 4, out_channels: 6, groups: 2, bias: true, window };
        let f = |n: usize, seed: f64| (0..n).map(|i| ((i as f64 + seed) * 0.731).sin()).collect::<Vec<f64>>();
        let p = f(conv.num_params(), 0.5);
        let dp = f(conv.num_params(), 1.5);
        for batch in [3usize, 2 * conv.chunks::<f64>(1000)[0].len() + 1] {
            let sh = (batch, conv.in_len());
            let x = Array2::from_shape_vec(sh, f(sh.0 * sh.1, 2.5)).unwrap();
            let dx = Array2::from_shape_vec(sh, f(sh.0 * sh.1, 3.5)).unwrap();
            let d2x = Array2::from_shape_vec(sh, f(sh.0 * sh.1, 4.5)).unwrap();
            let out = (batch, conv.output().len());
            let gy = Array2::from_shape_vec(out, f(out.0 * out.1, 5.5)).unwrap();
            let dgy = Array2::from_shape_vec(out, f(out.0 * out.1, 6.5)).unwrap();
            let run = |keep: bool| {
                let (y, t) = conv.traced(&p, x.clone(), keep);
                assert_eq!(matches!(t.saved, Saved::Columns(_)), keep);
                let (dy, tt) = conv.jvp(&p, Some(&dp), &t, Some(dx.clone()));
                let mut gp = vec![0.0; conv.num_params()];
                let gx = conv.vjp(&p, &t, gy.view().into(), Some(ParamCotangent::Add(&mut gp)), true).unwrap();
                let mut rows = Array2::from_elem((batch, conv.num_params()), f64::NAN);
                let gx_pe = conv.vjp_per_example(&p, &t, gy.view(), rows.view_mut(), true).unwrap().unwrap();
                let cot = CotangentTrace { output: gy.clone(), inner: Vec::new() };
                let mut dgp = vec![0.0; conv.num_params()];
                let dgx = conv.vjp_tangent(&p, &dp, &t, &tt, &cot, dgy.clone(), &mut dgp, true).unwrap();
                let (j1, j2) = conv.jet2(&p, &dp, &t, Some(&dx), Some(&d2x));
                let mut all: Vec<f64> = Vec::new();
                for a in [&y, &dy, &gx, &rows, &gx_pe, &dgx, &j1.unwrap(), &j2.unwrap()] {
                    all.extend(a.iter());
                }
                all.extend(gp);
                all.extend(dgp);
                all.into_iter().map(f64::to_bits).collect::<Vec<u64>>()
            };
            assert_eq!(run(true), run(false), "batch {batch}");
        }
    }
}
