//! Layers and their derivative rules.
//!
//! Every layer maps a batch `x` of shape `[batch, in]` to `y` of shape `[batch, out]` and
//! implements, on the slice `p` of the flat parameter vector it owns:
//!
//! * `forward`: `y = f(x; p)`, optionally keeping a [`Trace`] (what the derivative rules need);
//! * `jvp`: the output tangent `dy = J_x dx + J_p dp`;
//! * `vjp`: the cotangents `gx = J_x^T gy` and `gp += J_p^T gy` (summed over the batch);
//! * `vjp_per_example`: the same with one row of parameter cotangents per example;
//! * `vjp_traced`: the vjp, keeping the output cotangent `gy` (of every inner layer too) in a
//!   [`CotangentTrace`];
//! * `vjp_tangent` (the R-operator of Pearlmutter 1994): the tangent `(dgx, dgp)` of `(gx, gp)`
//!   along `(dx, dp, dgy)`, at the cotangents `gy` of a plain backward pass ([`CotangentTrace`]),
//!   which makes Hessian-vector products exact by forward-over-reverse. `gy` does not depend on
//!   the direction, so one backward pass serves every product;
//! * `jet2` (module `jet`): second-order forward mode along a line in parameter space, which
//!   gives quadratic forms `v^T H v` without a backward pass.
//!
//! Parameter layout per layer (PyTorch names and shapes): linear `weight [out, in]` (row-major)
//! then `bias [out]`; layer norm `weight [dim]` then `bias [dim]`; a residual block's parameters are
//! those of its inner layers in order.

use crate::activation::Activation;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, CowArray, Ix2, Zip};
use sgdlab_linalg::{PARALLEL_MIN_FLOPS, Scalar, join_sequential, matmul_into};
use std::ops::Range;

mod jet;

/// A linear (fully connected) layer `y = x W^T + b`.
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
}

/// What a layer's derivative rules need from its forward pass: its input and, for a residual
/// block, the traces of its inner layers.
#[derive(Debug, Clone)]
pub struct Trace<T> {
    pub input: Array2<T>,
    pub inner: Vec<Trace<T>>,
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
    fn parts(self) -> (&'a mut [T], bool) {
        match self {
            ParamCotangent::Add(s) => (s, true),
            ParamCotangent::Overwrite(s) => (s, false),
        }
    }
}

fn view2<T>(p: &[T], rows: usize, cols: usize) -> ArrayView2<'_, T> {
    ArrayView2::from_shape((rows, cols), &p[..rows * cols]).expect("parameter slice has the layer's size")
}

fn view2_mut<T>(p: &mut [T], rows: usize, cols: usize) -> ArrayViewMut2<'_, T> {
    ArrayViewMut2::from_shape((rows, cols), &mut p[..rows * cols]).expect("parameter slice has the layer's size")
}

/// Adds `v` to every row of `y` (a bias).
fn add_to_rows<T: Scalar>(y: &mut Array2<T>, v: &[T]) {
    for mut row in y.rows_mut() {
        for (a, &b) in row.iter_mut().zip(v) {
            *a += b;
        }
    }
}

/// Multiplies every row of `y` element-wise by `v` (a layer-norm gain).
fn scale_rows<T: Scalar>(y: &mut Array2<T>, v: &[T]) {
    for mut row in y.rows_mut() {
        for (a, &b) in row.iter_mut().zip(v) {
            *a *= b;
        }
    }
}

fn add_row_sums<T: Scalar>(dst: &mut [T], g: &ArrayView2<'_, T>) {
    for row in g.rows() {
        for (d, &v) in dst.iter_mut().zip(row.iter()) {
            *d += v;
        }
    }
}

impl Linear {
    /// Number of parameters (weight, then bias if any).
    pub fn num_params(&self) -> usize {
        self.in_dim * self.out_dim + if self.bias { self.out_dim } else { 0 }
    }

    fn weight<'a, T>(&self, p: &'a [T]) -> ArrayView2<'a, T> {
        view2(p, self.out_dim, self.in_dim)
    }

    fn bias_of<'a, T>(&self, p: &'a [T]) -> &'a [T] {
        &p[self.in_dim * self.out_dim..self.num_params()]
    }

    fn forward<T: Scalar>(&self, p: &[T], x: ArrayView2<'_, T>) -> Array2<T> {
        let mut y = Array2::zeros((x.nrows(), self.out_dim));
        matmul_into(y.view_mut(), false, x, self.weight(p).t(), T::one());
        if self.bias {
            add_to_rows(&mut y, self.bias_of(p));
        }
        y
    }

    fn jvp<T: Scalar>(
        &self,
        p: &[T],
        dp: Option<&[T]>,
        x: ArrayView2<'_, T>,
        dx: Option<ArrayView2<'_, T>>,
    ) -> Array2<T> {
        let mut dy = Array2::zeros((x.nrows(), self.out_dim));
        let mut started = false;
        if let Some(dx) = dx {
            matmul_into(dy.view_mut(), false, dx, self.weight(p).t(), T::one());
            started = true;
        }
        if let Some(dp) = dp {
            matmul_into(dy.view_mut(), started, x, self.weight(dp).t(), T::one());
            if self.bias {
                add_to_rows(&mut dy, self.bias_of(dp));
            }
        }
        dy
    }

    fn vjp<T: Scalar>(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        gy: ArrayView2<'_, T>,
        gp: Option<ParamCotangent<'_, T>>,
        need_gx: bool,
    ) -> Option<Array2<T>> {
        let gp_flops = if gp.is_some() { gy.nrows() * self.in_dim * self.out_dim } else { 0 };
        let param_cotangent = || {
            if let Some(gp) = gp {
                let (gp, add) = gp.parts();
                let (gw, gb) = gp.split_at_mut(self.in_dim * self.out_dim);
                matmul_into(view2_mut(gw, self.out_dim, self.in_dim), add, gy.t(), x, T::one());
                if self.bias {
                    if !add {
                        gb.fill(T::zero());
                    }
                    add_row_sums(gb, &gy);
                }
            }
        };
        let input_cotangent = || {
            need_gx.then(|| {
                let mut gx = Array2::zeros((gy.nrows(), self.in_dim));
                matmul_into(gx.view_mut(), false, gy, self.weight(p), T::one());
                gx
            })
        };
        // The two products are independent and of equal size: side by side when both are big.
        if gp_flops >= PARALLEL_MIN_FLOPS && need_gx {
            join_sequential(param_cotangent, input_cotangent).1
        } else {
            param_cotangent();
            input_cotangent()
        }
    }

    fn vjp_per_example<T: Scalar>(&self, x: ArrayView2<'_, T>, gy: ArrayView2<'_, T>, mut rows: ArrayViewMut2<'_, T>) {
        let wn = self.in_dim * self.out_dim;
        for ((xi, gi), mut r) in x.rows().into_iter().zip(gy.rows()).zip(rows.rows_mut()) {
            let r = r.as_slice_mut().expect("per-example rows are contiguous");
            for (o, &g) in gi.iter().enumerate() {
                let dst = &mut r[o * self.in_dim..(o + 1) * self.in_dim];
                for (d, &xv) in dst.iter_mut().zip(xi.iter()) {
                    *d += g * xv;
                }
            }
            if self.bias {
                for (d, &g) in r[wn..wn + self.out_dim].iter_mut().zip(gi.iter()) {
                    *d += g;
                }
            }
        }
    }

    /// `dgw += dgy^T x + gy^T dx`, `dgb += sum of dgy`, `dgx = dgy W + gy dW`.
    #[allow(clippy::too_many_arguments)]
    fn vjp_tangent<T: Scalar>(
        &self,
        p: &[T],
        dp: &[T],
        x: ArrayView2<'_, T>,
        dx: Option<ArrayView2<'_, T>>,
        gy: ArrayView2<'_, T>,
        dgy: ArrayView2<'_, T>,
        dgp: &mut [T],
        need_gx: bool,
    ) -> Option<Array2<T>> {
        let (dgw, dgb) = dgp.split_at_mut(self.in_dim * self.out_dim);
        let mut dgw = view2_mut(dgw, self.out_dim, self.in_dim);
        matmul_into(dgw.view_mut(), true, dgy.t(), x, T::one());
        if let Some(dx) = dx {
            matmul_into(dgw, true, gy.t(), dx, T::one());
        }
        if self.bias {
            add_row_sums(dgb, &dgy);
        }
        need_gx.then(|| {
            let mut dgx = Array2::zeros((gy.nrows(), self.in_dim));
            matmul_into(dgx.view_mut(), false, dgy, self.weight(p), T::one());
            matmul_into(dgx.view_mut(), true, gy, self.weight(dp), T::one());
            dgx
        })
    }
}

/// Row statistics of layer norm: the normalised input and 1/s per row.
struct NormStats<T> {
    xhat: Array2<T>,
    inv_s: Vec<T>,
}

fn row_mean<T: Scalar>(r: impl Iterator<Item = T>, n: usize) -> T {
    r.sum::<T>() / T::from_usize(n)
}

impl LayerNorm {
    /// Number of parameters (2 * dim when affine).
    pub fn num_params(&self) -> usize {
        if self.affine { 2 * self.dim } else { 0 }
    }

    fn stats<T: Scalar>(&self, x: ArrayView2<'_, T>) -> NormStats<T> {
        let n = self.dim;
        let mut xhat = x.to_owned();
        let mut inv_s = Vec::with_capacity(x.nrows());
        for mut row in xhat.rows_mut() {
            let mu = row_mean(row.iter().copied(), n);
            row.mapv_inplace(|v| v - mu);
            let var = row_mean(row.iter().map(|&v| v * v), n);
            let is = T::one() / (var + T::from_f64(self.eps)).sqrt();
            row.mapv_inplace(|v| v * is);
            inv_s.push(is);
        }
        NormStats { xhat, inv_s }
    }

    fn gamma<'a, T>(&self, p: &'a [T]) -> Option<&'a [T]> {
        self.affine.then(|| &p[..self.dim])
    }

    fn forward<T: Scalar>(&self, p: &[T], x: ArrayView2<'_, T>) -> Array2<T> {
        let mut y = self.stats(x).xhat;
        if self.affine {
            let (g, b) = p.split_at(self.dim);
            for mut row in y.rows_mut() {
                for ((v, &gi), &bi) in row.iter_mut().zip(g).zip(b) {
                    *v = *v * gi + bi;
                }
            }
        }
        y
    }

    /// Tangent of x-hat: (1/s)(dx - mean(dx) - xhat * mean(xhat dx)).
    fn xhat_tangent<T: Scalar>(&self, st: &NormStats<T>, dx: ArrayView2<'_, T>) -> Array2<T> {
        let n = self.dim;
        let mut out = dx.to_owned();
        for ((mut o, xh), &is) in out.rows_mut().into_iter().zip(st.xhat.rows()).zip(&st.inv_s) {
            let m = row_mean(o.iter().copied(), n);
            let mx = row_mean(o.iter().zip(xh.iter()).map(|(&a, &b)| a * b), n);
            Zip::from(&mut o).and(&xh).for_each(|v, &h| *v = (*v - m - h * mx) * is);
        }
        out
    }

    /// x-cotangent from the x-hat cotangent: (1/s)(g - mean(g) - xhat * mean(xhat g)).
    fn input_cotangent<T: Scalar>(&self, st: &NormStats<T>, gxhat: &Array2<T>) -> Array2<T> {
        self.xhat_tangent(st, gxhat.view())
    }

    fn jvp<T: Scalar>(
        &self,
        p: &[T],
        dp: Option<&[T]>,
        x: ArrayView2<'_, T>,
        dx: Option<ArrayView2<'_, T>>,
    ) -> Array2<T> {
        let st = self.stats(x);
        let mut dy = match dx {
            Some(dx) => {
                let mut t = self.xhat_tangent(&st, dx);
                if let Some(g) = self.gamma(p) {
                    scale_rows(&mut t, g);
                }
                t
            }
            None => Array2::zeros(x.dim()),
        };
        if let (true, Some(dp)) = (self.affine, dp) {
            let (dg, db) = dp.split_at(self.dim);
            for (mut row, xh) in dy.rows_mut().into_iter().zip(st.xhat.rows()) {
                for (((v, &h), &dgi), &dbi) in row.iter_mut().zip(xh.iter()).zip(dg).zip(db) {
                    *v += dgi * h + dbi;
                }
            }
        }
        dy
    }

    fn gxhat<T: Scalar>(&self, p: &[T], gy: ArrayView2<'_, T>) -> Array2<T> {
        let mut g = gy.to_owned();
        if let Some(gamma) = self.gamma(p) {
            scale_rows(&mut g, gamma);
        }
        g
    }

    fn vjp<T: Scalar>(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        gy: ArrayView2<'_, T>,
        gp: Option<ParamCotangent<'_, T>>,
        need_gx: bool,
    ) -> Option<Array2<T>> {
        let st = self.stats(x);
        if let (true, Some(gp)) = (self.affine, gp) {
            let (gp, add) = gp.parts();
            if !add {
                gp.fill(T::zero());
            }
            let (gg, gb) = gp.split_at_mut(self.dim);
            for (gr, xh) in gy.rows().into_iter().zip(st.xhat.rows()) {
                for (((a, b), &g), &h) in gg.iter_mut().zip(gb.iter_mut()).zip(gr.iter()).zip(xh.iter()) {
                    *a += g * h;
                    *b += g;
                }
            }
        }
        need_gx.then(|| self.input_cotangent(&st, &self.gxhat(p, gy)))
    }

    fn vjp_per_example<T: Scalar>(&self, x: ArrayView2<'_, T>, gy: ArrayView2<'_, T>, mut rows: ArrayViewMut2<'_, T>) {
        if !self.affine {
            return;
        }
        let st = self.stats(x);
        let n = self.dim;
        for ((gr, xh), mut r) in gy.rows().into_iter().zip(st.xhat.rows()).zip(rows.rows_mut()) {
            for i in 0..n {
                r[i] += gr[i] * xh[i];
                r[n + i] += gr[i];
            }
        }
    }

    /// With `g = gamma gy` the x-hat cotangent and `gx = (1/s)(g - mean(g) - xhat mean(xhat g))`:
    /// `dgamma += sum of (dgy xhat + gy dxhat)`, `dbeta += sum of dgy`, and `dgx` the tangent of
    /// `gx` (through `s`, `xhat` and `dg = dgy gamma + gy dgamma`).
    #[allow(clippy::too_many_arguments)]
    fn vjp_tangent<T: Scalar>(
        &self,
        p: &[T],
        dp: &[T],
        x: ArrayView2<'_, T>,
        dx: Option<ArrayView2<'_, T>>,
        gy: ArrayView2<'_, T>,
        dgy: ArrayView2<'_, T>,
        dgp: &mut [T],
        need_gx: bool,
    ) -> Option<Array2<T>> {
        let n = self.dim;
        let st = self.stats(x);
        let dxhat = match dx {
            Some(dx) => self.xhat_tangent(&st, dx),
            None => Array2::zeros(x.dim()),
        };
        if self.affine {
            let (gg, gb) = dgp.split_at_mut(n);
            for (((gr, dgr), xh), dxh) in gy.rows().into_iter().zip(dgy.rows()).zip(st.xhat.rows()).zip(dxhat.rows()) {
                for i in 0..n {
                    gg[i] += dgr[i] * xh[i] + gr[i] * dxh[i];
                    gb[i] += dgr[i];
                }
            }
        }
        if !need_gx {
            return None;
        }
        let g = self.gxhat(p, gy);
        // Tangent of the x-hat cotangent: dgy * gamma + gy * dgamma.
        let mut dg = self.gxhat(p, dgy);
        if self.affine {
            let dgamma = &dp[..n];
            for (mut row, gr) in dg.rows_mut().into_iter().zip(gy.rows()) {
                for ((v, &a), &b) in row.iter_mut().zip(gr.iter()).zip(dgamma) {
                    *v += a * b;
                }
            }
        }
        let mut dgx = Array2::zeros(x.dim());
        let nn = T::from_usize(n);
        for r in 0..x.nrows() {
            let is = st.inv_s[r];
            let xh = st.xhat.row(r);
            let dxh = dxhat.row(r);
            let gr = g.row(r);
            let dgr = dg.row(r);
            let ds = match dx {
                Some(dx) => dx.row(r).iter().zip(xh.iter()).map(|(&a, &b)| a * b).sum::<T>() / nn,
                None => T::zero(),
            };
            let mean_g = gr.iter().copied().sum::<T>() / nn;
            let m_xg = xh.iter().zip(gr.iter()).map(|(&a, &b)| a * b).sum::<T>() / nn;
            let mean_dg = dgr.iter().copied().sum::<T>() / nn;
            let dm = (dxh.iter().zip(gr.iter()).map(|(&a, &b)| a * b).sum::<T>()
                + xh.iter().zip(dgr.iter()).map(|(&a, &b)| a * b).sum::<T>())
                / nn;
            for i in 0..n {
                // gx = is * (g - mean(g) - xhat * mean(xhat g)).
                let gx = is * (gr[i] - mean_g - xh[i] * m_xg);
                dgx[(r, i)] = -ds * is * gx + is * (dgr[i] - mean_dg - dxh[i] * m_xg - xh[i] * dm);
            }
        }
        Some(dgx)
    }
}

impl Layer {
    /// Number of parameters this layer owns.
    pub fn num_params(&self) -> usize {
        match self {
            Layer::Linear(l) => l.num_params(),
            Layer::Activation(_) => 0,
            Layer::LayerNorm(l) => l.num_params(),
            Layer::Residual(inner) => inner.iter().map(Layer::num_params).sum(),
        }
    }

    /// Output width given the input width.
    pub fn out_dim(&self, in_dim: usize) -> usize {
        match self {
            Layer::Linear(l) => l.out_dim,
            Layer::Activation(_) | Layer::LayerNorm(_) | Layer::Residual(_) => in_dim,
        }
    }

    /// Checks that the layer accepts `in_dim` inputs (and a residual block keeps its width).
    pub fn check_dims(&self, in_dim: usize) -> Result<usize, String> {
        match self {
            Layer::Linear(l) if l.in_dim != in_dim => {
                Err(format!("linear layer expects {} inputs, gets {in_dim}", l.in_dim))
            }
            Layer::LayerNorm(l) if l.dim != in_dim => Err(format!("layer norm over {} features gets {in_dim}", l.dim)),
            Layer::Residual(inner) => {
                let mut d = in_dim;
                for l in inner {
                    d = l.check_dims(d)?;
                }
                if d != in_dim {
                    return Err(format!("residual branch maps {in_dim} to {d} features"));
                }
                Ok(in_dim)
            }
            _ => Ok(self.out_dim(in_dim)),
        }
    }

    /// The PyTorch names and shapes of this layer's parameters under `prefix` (e.g. `"0"`).
    pub fn param_entries(&self, prefix: &str, out: &mut Vec<(String, Vec<usize>)>) {
        match self {
            Layer::Linear(l) => {
                out.push((format!("{prefix}.weight"), vec![l.out_dim, l.in_dim]));
                if l.bias {
                    out.push((format!("{prefix}.bias"), vec![l.out_dim]));
                }
            }
            Layer::LayerNorm(l) if l.affine => {
                out.push((format!("{prefix}.weight"), vec![l.dim]));
                out.push((format!("{prefix}.bias"), vec![l.dim]));
            }
            Layer::Residual(inner) => {
                for (j, l) in inner.iter().enumerate() {
                    l.param_entries(&format!("{prefix}.{j}"), out);
                }
            }
            _ => {}
        }
    }

    /// Forward pass without a trace.
    pub fn forward<T: Scalar>(&self, p: &[T], x: ArrayView2<'_, T>) -> Array2<T> {
        match self {
            Layer::Linear(l) => l.forward(p, x),
            Layer::Activation(a) => a.apply(x),
            Layer::LayerNorm(l) => l.forward(p, x),
            Layer::Residual(inner) => {
                let mut h = x.to_owned();
                let mut off = 0;
                for l in inner {
                    let n = l.num_params();
                    h = l.forward(&p[off..off + n], h.view());
                    off += n;
                }
                h += &x;
                h
            }
        }
    }

    /// Forward pass keeping what the derivative rules need.
    pub fn forward_traced<T: Scalar>(&self, p: &[T], x: Array2<T>) -> (Array2<T>, Trace<T>) {
        match self {
            Layer::Residual(inner) => {
                let mut h = x.clone();
                let mut traces = Vec::with_capacity(inner.len());
                let mut off = 0;
                for l in inner {
                    let n = l.num_params();
                    let (y, t) = l.forward_traced(&p[off..off + n], h);
                    traces.push(t);
                    h = y;
                    off += n;
                }
                h += &x;
                (h, Trace { input: x, inner: traces })
            }
            _ => {
                let y = self.forward(p, x.view());
                (y, Trace { input: x, inner: Vec::new() })
            }
        }
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
        let x = trace.input.view();
        let dy = match self {
            Layer::Linear(l) => l.jvp(p, dp, x, dx.as_ref().map(|d| d.view())),
            Layer::Activation(a) => match dx {
                Some(mut dx) if a.is_piecewise_linear() => {
                    a.scale_by_derivative(dx.view_mut(), x);
                    return (dx, TangentTrace { input: None, inner: Vec::new() });
                }
                Some(ref dx) => {
                    // Copy then scale: measured faster than `map_collect`.
                    let mut dy = dx.clone();
                    a.scale_by_derivative(dy.view_mut(), x);
                    dy
                }
                None => Array2::zeros(x.dim()),
            },
            Layer::LayerNorm(l) => l.jvp(p, dp, x, dx.as_ref().map(|d| d.view())),
            Layer::Residual(inner) => {
                let mut h = dx.clone();
                let mut tts = Vec::with_capacity(inner.len());
                let mut off = 0;
                for (l, t) in inner.iter().zip(&trace.inner) {
                    let n = l.num_params();
                    let (y, tt) = l.jvp(&p[off..off + n], dp.map(|d| &d[off..off + n]), t, h);
                    tts.push(tt);
                    h = Some(y);
                    off += n;
                }
                let mut y = h.expect("a residual block has at least one layer");
                if let Some(dx) = &dx {
                    y += dx;
                }
                return (y, TangentTrace { input: dx, inner: tts });
            }
        };
        (dy, TangentTrace { input: dx, inner: Vec::new() })
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
        let x = trace.input.view();
        match self {
            Layer::Linear(l) => l.vjp(p, x, gy.view(), gp, need_gx),
            Layer::Activation(a) => need_gx.then(|| {
                let mut gx = gy.into_owned();
                a.scale_by_derivative(gx.view_mut(), x);
                gx
            }),
            Layer::LayerNorm(l) => l.vjp(p, x, gy.view(), gp, need_gx),
            Layer::Residual(inner) => {
                let mut g: Option<Array2<T>> = None;
                let mut gp = gp;
                let offs = offsets(inner);
                for ((l, t), &off) in inner.iter().zip(&trace.inner).rev().zip(offs.iter().rev()) {
                    let n = l.num_params();
                    let gpl = gp.as_mut().map(|s| s.slice(off..off + n));
                    let gin = g.take().map_or_else(|| gy.view().into(), CowArray::from);
                    g = Some(l.vjp_cow(&p[off..off + n], t, gin, gpl, true).expect("need_gx was set"));
                }
                need_gx.then(|| g.expect("a residual block has at least one layer") + &gy)
            }
        }
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
        match self {
            Layer::Residual(inner) => {
                let mut g = gy.clone();
                let mut gp = gp;
                let mut cots = Vec::with_capacity(inner.len());
                let offs = offsets(inner);
                for ((l, t), &off) in inner.iter().zip(&trace.inner).rev().zip(offs.iter().rev()) {
                    let n = l.num_params();
                    let gpl = gp.as_deref_mut().map(|s| &mut s[off..off + n]);
                    let (gx, c) = l.vjp_traced(&p[off..off + n], t, g, gpl, true);
                    cots.push(c);
                    g = gx.expect("need_gx was set");
                }
                cots.reverse();
                let gx = need_gx.then(|| g + &gy);
                (gx, CotangentTrace { output: gy, inner: cots })
            }
            _ => {
                let gx = self.vjp(p, trace, gy.view(), gp, need_gx);
                (gx, CotangentTrace { output: gy, inner: Vec::new() })
            }
        }
    }

    /// Like [`Layer::vjp`], but the parameter cotangents of example `i` are added into row `i` of
    /// `rows` (shape `[batch, num_params]`).
    pub fn vjp_per_example<T: Scalar>(
        &self,
        p: &[T],
        trace: &Trace<T>,
        gy: ArrayView2<'_, T>,
        mut rows: ArrayViewMut2<'_, T>,
        need_gx: bool,
    ) -> Option<Array2<T>> {
        let x = trace.input.view();
        match self {
            Layer::Linear(l) => l.vjp_per_example(x, gy, rows),
            Layer::LayerNorm(l) => l.vjp_per_example(x, gy, rows),
            Layer::Activation(_) => {}
            Layer::Residual(inner) => {
                let mut g = gy.to_owned();
                let offs = offsets(inner);
                for ((l, t), &off) in inner.iter().zip(&trace.inner).rev().zip(offs.iter().rev()) {
                    let n = l.num_params();
                    let sub = rows.slice_mut(ndarray::s![.., off..off + n]);
                    g = l.vjp_per_example(&p[off..off + n], t, g.view(), sub, true).expect("need_gx was set");
                }
                return need_gx.then(|| g + gy);
            }
        }
        if need_gx { self.vjp(p, trace, gy, None, true) } else { None }
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
        let x = trace.input.view();
        let dx = tangent.input.as_ref().map(|d| d.view());
        let gy = cotangent.output.view();
        match self {
            Layer::Linear(l) => l.vjp_tangent(p, dp, x, dx, gy, dgy.view(), dgp, need_gx),
            Layer::LayerNorm(l) => l.vjp_tangent(p, dp, x, dx, gy, dgy.view(), dgp, need_gx),
            Layer::Activation(a) => need_gx.then(|| {
                let mut dgx = dgy;
                match dx {
                    Some(dx) if !a.is_piecewise_linear() => {
                        Zip::from(&mut dgx).and(&gy).and(&x).and(&dx).for_each(|dg, &g, &xv, &dxv| {
                            let (_, d1, d2) = a.f012(xv);
                            *dg = d2 * dxv * g + d1 * *dg;
                        });
                    }
                    _ => a.scale_by_derivative(dgx.view_mut(), x),
                }
                dgx
            }),
            Layer::Residual(inner) => {
                let mut dg = dgy.clone();
                let offs = offsets(inner);
                for ((((l, t), tt), c), &off) in inner
                    .iter()
                    .zip(&trace.inner)
                    .zip(&tangent.inner)
                    .zip(&cotangent.inner)
                    .rev()
                    .zip(offs.iter().rev())
                {
                    let n = l.num_params();
                    dg = l
                        .vjp_tangent(&p[off..off + n], &dp[off..off + n], t, tt, c, dg, &mut dgp[off..off + n], true)
                        .expect("need_gx was set");
                }
                need_gx.then(|| dg + dgy)
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_forward_matches_definition() {
        let l = Linear { in_dim: 2, out_dim: 3, bias: true };
        // W = [[1,2],[3,4],[5,6]], b = [0.5, -1, 2]
        let p = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.5, -1.0, 2.0];
        let x = ndarray::array![[1.0, -1.0], [0.0, 2.0]];
        let y = l.forward(&p, x.view());
        assert_eq!(y, ndarray::array![[-0.5, -2.0, 1.0], [4.5, 7.0, 14.0]]);
    }

    #[test]
    fn layer_norm_output_is_normalised() {
        let ln = LayerNorm { dim: 4, affine: false, eps: 0.0 };
        let x = ndarray::array![[1.0, 2.0, 3.0, 6.0]];
        let y = ln.forward::<f64>(&[], x.view());
        let m: f64 = y.iter().sum::<f64>() / 4.0;
        let v: f64 = y.iter().map(|a| a * a).sum::<f64>() / 4.0;
        assert!(m.abs() < 1e-15 && (v - 1.0).abs() < 1e-14);
    }
}
