//! The linear layer `y = x W^T + b`: every rule is one or two products.

use super::{
    CotangentTrace, LayerRules, Linear, Mode, ParamCotangent, TangentTrace, Trace, add_row_sums, add_to_rows, view2,
    view2_mut,
};
use crate::init::LayerInit;
use crate::shape::Shape;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis, CowArray, Ix2};
use sgdlab_linalg::{
    LARGE_BYTES, PARALLEL_MIN_FLOPS, Scalar, join_sequential, map_parts, matmul_into, scale_into_streaming,
    streaming_fence, threads,
};

impl Linear {
    /// Number of parameters (weight, then bias if any).
    pub fn num_params(&self) -> usize {
        self.in_dim * self.out_dim + if self.bias { self.out_dim } else { 0 }
    }

    pub(crate) fn weight<'a, T>(&self, p: &'a [T]) -> ArrayView2<'a, T> {
        view2(p, self.out_dim, self.in_dim)
    }

    fn bias_of<'a, T>(&self, p: &'a [T]) -> &'a [T] {
        &p[self.in_dim * self.out_dim..self.num_params()]
    }

    fn forward_plain<T: Scalar>(&self, p: &[T], x: ArrayView2<'_, T>) -> Array2<T> {
        let mut y = Array2::zeros((x.nrows(), self.out_dim));
        matmul_into(y.view_mut(), false, x, self.weight(p).t(), T::one());
        if self.bias {
            add_to_rows(&mut y, self.bias_of(p));
        }
        y
    }
}

/// Bytes of per-example rows from which [`outer_rows`] splits them over the compute threads
/// (LeNet-5's first linear layer at batch 128 writes 24 MB, its second 5 MB).
const SPLIT_ROWS_BYTES: usize = 1 << 20;

/// Row `i` of `rows` gets the outer product `gy_i x_i^T` (the weight block, row-major
/// `[out, in]`) and `gy_i` (the bias block), written, not added. The writes are bound by memory
/// bandwidth. On one thread, a block far larger than the caches (`LARGE_BYTES`) is written with
/// streaming stores. On several, such a block is halved over the threads until the pieces fall
/// below `LARGE_BYTES`, and from [`SPLIT_ROWS_BYTES`] a block is split over the threads, one run
/// of examples each; both with plain stores (measured in one sitting, MLP 784-512-512-10 at batch
/// 128 into a reused buffer on two threads: streaming stores 47 ms, plain stores 23 ms).
pub(crate) fn outer_rows<T: Scalar>(
    x: ArrayView2<'_, T>,
    gy: ArrayView2<'_, T>,
    bias: bool,
    rows: ArrayViewMut2<'_, T>,
) {
    let bytes = rows.len() * std::mem::size_of::<T>();
    let large = bytes >= LARGE_BYTES;
    if large && threads() > 1 && x.nrows() >= 2 {
        let mid = x.nrows() / 2;
        let (x1, x2) = x.split_at(Axis(0), mid);
        let (g1, g2) = gy.split_at(Axis(0), mid);
        let (r1, r2) = rows.split_at(Axis(0), mid);
        join_sequential(|| outer_rows(x1, g1, bias, r1), || outer_rows(x2, g2, bias, r2));
        return;
    }
    let t = threads().min(x.nrows());
    if t > 1 && bytes >= SPLIT_ROWS_BYTES {
        let (mut x, mut gy, mut rows) = (x, gy, rows);
        let mut parts = Vec::with_capacity(t);
        for k in 0..t {
            let n = x.nrows() / (t - k);
            let ((x1, x2), (g1, g2)) = (x.split_at(Axis(0), n), gy.split_at(Axis(0), n));
            let (r1, r2) = rows.split_at(Axis(0), n);
            parts.push((x1, g1, r1));
            (x, gy, rows) = (x2, g2, r2);
        }
        map_parts(parts, true, &|(x, g, r)| outer_rows_in(x, g, bias, r, false));
    } else {
        outer_rows_in(x, gy, bias, rows, large);
    }
}

/// [`outer_rows`] on the caller's thread.
fn outer_rows_in<T: Scalar>(
    x: ArrayView2<'_, T>,
    gy: ArrayView2<'_, T>,
    bias: bool,
    rows: ArrayViewMut2<'_, T>,
    large: bool,
) {
    let (in_dim, out_dim) = (x.ncols(), gy.ncols());
    let wn = in_dim * out_dim;
    let mut rows = rows;
    for ((xi, gi), mut r) in x.rows().into_iter().zip(gy.rows()).zip(rows.rows_mut()) {
        let r = r.as_slice_mut().expect("per-example rows are contiguous");
        let xi_owned: Vec<T>;
        let xi: &[T] = match xi.to_slice() {
            Some(s) => s,
            None => {
                xi_owned = xi.to_vec();
                &xi_owned
            }
        };
        for (dst, &g) in r[..wn].chunks_exact_mut(in_dim).zip(gi.iter()) {
            scale_into_streaming(dst, xi, g, large);
        }
        if bias {
            for (d, &g) in r[wn..wn + out_dim].iter_mut().zip(gi.iter()) {
                *d = g;
            }
        }
    }
    if large {
        streaming_fence();
    }
}

impl LayerRules for Linear {
    fn kind(&self) -> &'static str {
        "linear"
    }

    fn num_params(&self) -> usize {
        Linear::num_params(self)
    }

    fn param_entries(&self, prefix: &str, out: &mut Vec<(String, Vec<usize>)>) {
        out.push((format!("{prefix}.weight"), vec![self.out_dim, self.in_dim]));
        if self.bias {
            out.push((format!("{prefix}.bias"), vec![self.out_dim]));
        }
    }

    fn out_len(&self, _: usize) -> usize {
        self.out_dim
    }

    fn out_shape(&self, input: Shape) -> Result<Shape, String> {
        if input.rank() != 1 {
            return Err(format!("linear layer gets a {} input per example; flatten it first", input));
        }
        if input.len() != self.in_dim {
            return Err(format!("linear layer expects {} inputs, gets {}", self.in_dim, input.len()));
        }
        Ok(Shape::flat(self.out_dim))
    }

    fn init<T: Scalar>(&self, prefix: &str, init: &LayerInit<'_>, p: &mut [T]) {
        let (w, b) = p.split_at_mut(self.in_dim * self.out_dim);
        init.weight(&format!("{prefix}.weight"), w, self.out_dim, self.in_dim, self.out_dim);
        if self.bias {
            init.bias(&format!("{prefix}.bias"), b, self.in_dim);
        }
    }

    fn couples_examples(&self, _: &Mode) -> bool {
        false
    }

    fn kink_distance<T: Scalar>(&self, _: &Trace<T>) -> f64 {
        f64::INFINITY
    }

    fn forward<T: Scalar>(&self, p: &[T], x: ArrayView2<'_, T>, _: &Mode) -> Array2<T> {
        self.forward_plain(p, x)
    }

    fn forward_traced<T: Scalar>(&self, p: &[T], x: Array2<T>, _: &Mode) -> (Array2<T>, Trace<T>) {
        let y = self.forward_plain(p, x.view());
        (y, Trace::of_input(x))
    }

    fn jvp<T: Scalar>(
        &self,
        p: &[T],
        dp: Option<&[T]>,
        trace: &Trace<T>,
        dx: Option<Array2<T>>,
    ) -> (Array2<T>, TangentTrace<T>) {
        let x = trace.input.view();
        let mut dy = Array2::zeros((x.nrows(), self.out_dim));
        let mut started = false;
        if let Some(dx) = &dx {
            matmul_into(dy.view_mut(), false, dx.view(), self.weight(p).t(), T::one());
            started = true;
        }
        if let Some(dp) = dp {
            matmul_into(dy.view_mut(), started, x, self.weight(dp).t(), T::one());
            if self.bias {
                add_to_rows(&mut dy, self.bias_of(dp));
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
        let x = trace.input.view();
        let gy = gy.view();
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

    fn vjp_per_example<T: Scalar>(
        &self,
        p: &[T],
        trace: &Trace<T>,
        gy: ArrayView2<'_, T>,
        rows: ArrayViewMut2<'_, T>,
        need_gx: bool,
    ) -> Result<Option<Array2<T>>, String> {
        outer_rows(trace.input.view(), gy, self.bias, rows);
        Ok(self.vjp(p, trace, gy.into(), None, need_gx))
    }

    /// `dgw += dgy^T x + gy^T dx`, `dgb += sum of dgy`, `dgx = dgy W + gy dW`.
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
        let x = trace.input.view();
        let dx = tangent.input.as_ref().map(|d| d.view());
        let gy = cotangent.output.view();
        let (dgw, dgb) = dgp.split_at_mut(self.in_dim * self.out_dim);
        let mut dgw = view2_mut(dgw, self.out_dim, self.in_dim);
        matmul_into(dgw.view_mut(), true, dgy.t(), x, T::one());
        if let Some(dx) = dx {
            matmul_into(dgw, true, gy.t(), dx, T::one());
        }
        if self.bias {
            add_row_sums(dgb, &dgy.view());
        }
        need_gx.then(|| {
            let mut dgx = Array2::zeros((gy.nrows(), self.in_dim));
            matmul_into(dgx.view_mut(), false, dgy.view(), self.weight(p), T::one());
            matmul_into(dgx.view_mut(), true, gy, self.weight(dp), T::one());
            dgx
        })
    }

    /// `dy = x dW^T + dx W^T + db`, `d2y = d2x W^T + 2 dx dW^T`.
    fn jet2<T: Scalar>(
        &self,
        p: &[T],
        dp: &[T],
        trace: &Trace<T>,
        dx: Option<&Array2<T>>,
        d2x: Option<&Array2<T>>,
    ) -> (Option<Array2<T>>, Option<Array2<T>>) {
        let x = trace.input.view();
        let (w, dw) = (self.weight(p), self.weight(dp));
        let mut dy = Array2::zeros((x.nrows(), self.out_dim));
        matmul_into(dy.view_mut(), false, x, dw.t(), T::one());
        if let Some(dx) = dx {
            matmul_into(dy.view_mut(), true, dx.view(), w.t(), T::one());
        }
        if self.bias {
            add_to_rows(&mut dy, self.bias_of(dp));
        }
        if dx.is_none() && d2x.is_none() {
            return (Some(dy), None);
        }
        let mut d2y = Array2::zeros((x.nrows(), self.out_dim));
        if let Some(d2x) = d2x {
            matmul_into(d2y.view_mut(), false, d2x.view(), w.t(), T::one());
        }
        if let Some(dx) = dx {
            matmul_into(d2y.view_mut(), d2x.is_some(), dx.view(), dw.t(), T::from_f64(2.0));
        }
        (Some(dy), Some(d2y))
    }
}
