//! Normalisation of the rows of a matrix, `xhat = (x - mean(x)) / sqrt(var(x) + eps)` per row
//! (biased variance), with its first- and second-order rules. Layer norm normalises the rows of a
//! batch (one per example); batch norm on batch statistics the rows of its transpose (one per
//! channel, over the batch and the positions). Each layer adds its own affine map.
//!
//! With `s = sqrt(var(x) + eps)`, `c = x - mean(x)` and `n` values per row:
//! `dxhat = (dx - mean(dx) - xhat mean(xhat dx)) / s`, and the cotangent of `x` from that of
//! `xhat` has the same form (the map is self-adjoint).

use ndarray::{Array2, ArrayView2, Zip};
use sgdlab_linalg::Scalar;

/// The normalised rows, `1 / s`, the mean and the (biased) variance per row.
#[derive(Debug, Clone)]
pub(crate) struct RowStats<T> {
    pub xhat: Array2<T>,
    pub inv_s: Vec<T>,
    pub mean: Vec<T>,
    pub var: Vec<T>,
}

pub(crate) fn row_mean<T: Scalar>(r: impl Iterator<Item = T>, n: usize) -> T {
    r.sum::<T>() / T::from_usize(n)
}

/// Normalises every row of `x`.
pub(crate) fn row_stats<T: Scalar>(x: ArrayView2<'_, T>, eps: f64) -> RowStats<T> {
    let n = x.ncols();
    let mut xhat = x.to_owned();
    let mut inv_s = Vec::with_capacity(x.nrows());
    let (mut means, mut vars) = (Vec::with_capacity(x.nrows()), Vec::with_capacity(x.nrows()));
    for mut row in xhat.rows_mut() {
        let mu = row_mean(row.iter().copied(), n);
        row.mapv_inplace(|v| v - mu);
        let var = row_mean(row.iter().map(|&v| v * v), n);
        let is = T::one() / (var + T::from_f64(eps)).sqrt();
        row.mapv_inplace(|v| v * is);
        inv_s.push(is);
        means.push(mu);
        vars.push(var);
    }
    RowStats { xhat, inv_s, mean: means, var: vars }
}

/// Tangent of x-hat: `(1/s)(dx - mean(dx) - xhat * mean(xhat dx))`; also the x-cotangent from an
/// x-hat cotangent.
pub(crate) fn xhat_tangent<T: Scalar>(st: &RowStats<T>, dx: ArrayView2<'_, T>) -> Array2<T> {
    let n = dx.ncols();
    let mut out = dx.to_owned();
    for ((mut o, xh), &is) in out.rows_mut().into_iter().zip(st.xhat.rows()).zip(&st.inv_s) {
        let m = row_mean(o.iter().copied(), n);
        let mx = row_mean(o.iter().zip(xh.iter()).map(|(&a, &b)| a * b), n);
        Zip::from(&mut o).and(&xh).for_each(|v, &h| *v = (*v - m - h * mx) * is);
    }
    out
}

/// The tangent of the x-cotangent `gx = (1/s)(g - mean(g) - xhat mean(xhat g))` along the input
/// tangent `dx` (x-hat tangent `dxhat`) and the x-hat cotangent's tangent `dg`, at the x-hat
/// cotangent `g`.
pub(crate) fn cotangent_tangent<T: Scalar>(
    st: &RowStats<T>,
    dx: Option<ArrayView2<'_, T>>,
    dxhat: &Array2<T>,
    g: &Array2<T>,
    dg: &Array2<T>,
) -> Array2<T> {
    let n = g.ncols();
    let mut dgx = Array2::zeros(g.dim());
    let nn = T::from_usize(n);
    for r in 0..g.nrows() {
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
    dgx
}

/// Second-order forward mode of x-hat along `x + t dx + (t^2/2) d2x`, per row:
/// `ds = mean(xhat dx)`, `dxhat = (dc - xhat ds) / s`,
/// `d2s = (mean(dc^2) + s mean(xhat d2x) - ds^2) / s`,
/// `d2xhat = (d2c - 2 dxhat ds - xhat d2s) / s` (`c` the centred input).
pub(crate) fn xhat_jet2<T: Scalar>(
    st: &RowStats<T>,
    dx: Option<ArrayView2<'_, T>>,
    d2x: Option<ArrayView2<'_, T>>,
) -> (Array2<T>, Array2<T>) {
    let dim = st.xhat.dim();
    let n = dim.1;
    let (mut dxhat, mut d2xhat) = (Array2::zeros(dim), Array2::zeros(dim));
    let two = T::from_f64(2.0);
    for r in 0..dim.0 {
        let is = st.inv_s[r];
        let xh = st.xhat.row(r);
        let mut dxh = dxhat.row_mut(r);
        let (mut ds, mut q) = (T::zero(), T::zero());
        if let Some(dx) = dx {
            let dxr = dx.row(r);
            let m1 = row_mean(dxr.iter().copied(), n);
            ds = row_mean(xh.iter().zip(dxr.iter()).map(|(&a, &b)| a * b), n);
            q = row_mean(dxr.iter().map(|&v| (v - m1) * (v - m1)), n);
            Zip::from(&mut dxh).and(&xh).and(&dxr).for_each(|o, &h, &d| *o = (d - m1 - h * ds) * is);
        }
        let (mut m2, mut e) = (T::zero(), T::zero());
        if let Some(d2x) = d2x {
            let d2r = d2x.row(r);
            m2 = row_mean(d2r.iter().copied(), n);
            e = row_mean(xh.iter().zip(d2r.iter()).map(|(&a, &b)| a * b), n);
        }
        let d2s = (q + e / is - ds * ds) * is;
        let mut d2xh = d2xhat.row_mut(r);
        for i in 0..n {
            let d2c = d2x.map_or(T::zero(), |d| d[(r, i)] - m2);
            d2xh[i] = (d2c - two * dxh[i] * ds - xh[i] * d2s) * is;
        }
    }
    (dxhat, d2xhat)
}
