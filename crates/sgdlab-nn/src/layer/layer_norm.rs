//! Layer norm: the row normalisation of [`super::normalize`] over each example's features, then
//! `gamma * xhat + beta` per feature.

use super::normalize::{RowStats, cotangent_tangent, row_stats, xhat_jet2, xhat_tangent};
use super::{CotangentTrace, LayerNorm, LayerRules, Mode, ParamCotangent, TangentTrace, Trace, scale_rows};
use crate::init::LayerInit;
use crate::shape::Shape;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, CowArray, Ix2};
use sgdlab_linalg::Scalar;

impl LayerNorm {
    /// Number of parameters (2 * dim when affine).
    pub fn num_params(&self) -> usize {
        if self.affine { 2 * self.dim } else { 0 }
    }

    fn stats<T: Scalar>(&self, x: ArrayView2<'_, T>) -> RowStats<T> {
        row_stats(x, self.eps)
    }

    fn gamma<'a, T>(&self, p: &'a [T]) -> Option<&'a [T]> {
        self.affine.then(|| &p[..self.dim])
    }

    fn gxhat<T: Scalar>(&self, p: &[T], gy: ArrayView2<'_, T>) -> Array2<T> {
        let mut g = gy.to_owned();
        if let Some(gamma) = self.gamma(p) {
            scale_rows(&mut g, gamma);
        }
        g
    }
}

impl LayerRules for LayerNorm {
    fn kind(&self) -> &'static str {
        "layernorm"
    }

    fn num_params(&self) -> usize {
        LayerNorm::num_params(self)
    }

    fn param_entries(&self, prefix: &str, out: &mut Vec<(String, Vec<usize>)>) {
        if self.affine {
            out.push((format!("{prefix}.weight"), vec![self.dim]));
            out.push((format!("{prefix}.bias"), vec![self.dim]));
        }
    }

    fn out_len(&self, _: usize) -> usize {
        self.dim
    }

    fn out_shape(&self, input: Shape) -> Result<Shape, String> {
        if input.rank() != 1 {
            return Err(format!("layer norm gets a {input} input per example; only flat features are normalised"));
        }
        if input.len() != self.dim {
            return Err(format!("layer norm over {} features gets {}", self.dim, input.len()));
        }
        Ok(input)
    }

    /// Weight 1, bias 0 (PyTorch's).
    fn init<T: Scalar>(&self, _: &str, _: &LayerInit<'_>, p: &mut [T]) {
        if self.affine {
            p[..self.dim].fill(T::one());
            p[self.dim..].fill(T::zero());
        }
    }

    fn couples_examples(&self, _: &Mode) -> bool {
        false
    }

    fn kink_distance<T: Scalar>(&self, _: &Trace<T>) -> f64 {
        f64::INFINITY
    }

    fn forward<T: Scalar>(&self, p: &[T], x: ArrayView2<'_, T>, _: &Mode) -> Array2<T> {
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

    fn forward_traced<T: Scalar>(&self, p: &[T], x: Array2<T>, mode: &Mode) -> (Array2<T>, Trace<T>) {
        let y = LayerRules::forward(self, p, x.view(), mode);
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
        let st = self.stats(x);
        let mut dy = match &dx {
            Some(dx) => {
                let mut t = xhat_tangent(&st, dx.view());
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
        let st = self.stats(trace.input.view());
        let gy = gy.view();
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
        need_gx.then(|| xhat_tangent(&st, self.gxhat(p, gy).view()))
    }

    fn vjp_per_example<T: Scalar>(
        &self,
        p: &[T],
        trace: &Trace<T>,
        gy: ArrayView2<'_, T>,
        mut rows: ArrayViewMut2<'_, T>,
        need_gx: bool,
    ) -> Result<Option<Array2<T>>, String> {
        if self.affine {
            let st = self.stats(trace.input.view());
            let n = self.dim;
            for ((gr, xh), mut r) in gy.rows().into_iter().zip(st.xhat.rows()).zip(rows.rows_mut()) {
                for i in 0..n {
                    r[i] = gr[i] * xh[i];
                    r[n + i] = gr[i];
                }
            }
        }
        Ok(self.vjp(p, trace, gy.into(), None, need_gx))
    }

    /// With `g = gamma gy` the x-hat cotangent and `gx = (1/s)(g - mean(g) - xhat mean(xhat g))`:
    /// `dgamma += sum of (dgy xhat + gy dxhat)`, `dbeta += sum of dgy`, and `dgx` the tangent of
    /// `gx` (through `s`, `xhat` and `dg = dgy gamma + gy dgamma`).
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
        let n = self.dim;
        let x = trace.input.view();
        let dx = tangent.input.as_ref().map(|d| d.view());
        let gy = cotangent.output.view();
        let st = self.stats(x);
        let dxhat = match dx {
            Some(dx) => xhat_tangent(&st, dx),
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
        let mut dg = self.gxhat(p, dgy.view());
        if self.affine {
            let dgamma = &dp[..n];
            for (mut row, gr) in dg.rows_mut().into_iter().zip(gy.rows()) {
                for ((v, &a), &b) in row.iter_mut().zip(gr.iter()).zip(dgamma) {
                    *v += a * b;
                }
            }
        }
        Some(cotangent_tangent(&st, dx, &dxhat, &g, &dg))
    }

    /// `y = gamma xhat + beta` gives `dy = gamma dxhat + dgamma xhat + dbeta` and
    /// `d2y = gamma d2xhat + 2 dgamma dxhat` (x-hat's jet from [`xhat_jet2`]).
    fn jet2<T: Scalar>(
        &self,
        p: &[T],
        dp: &[T],
        trace: &Trace<T>,
        dx: Option<&Array2<T>>,
        d2x: Option<&Array2<T>>,
    ) -> (Option<Array2<T>>, Option<Array2<T>>) {
        let n = self.dim;
        let x = trace.input.view();
        let st = self.stats(x);
        let moving = dx.is_some() || d2x.is_some();
        let (dxhat, d2xhat) = if moving {
            xhat_jet2(&st, dx.map(|d| d.view()), d2x.map(|d| d.view()))
        } else {
            (Array2::zeros(x.dim()), Array2::zeros(x.dim()))
        };
        let Some(gamma) = self.gamma(p) else {
            return (moving.then_some(dxhat), moving.then_some(d2xhat));
        };
        let (dgamma, dbeta) = dp.split_at(n);
        // d2y = gamma d2xhat + 2 dgamma dxhat (before dxhat is scaled in place).
        let mut d2y = None;
        if moving {
            let mut t = d2xhat;
            scale_rows(&mut t, gamma);
            for (mut row, dxh) in t.rows_mut().into_iter().zip(dxhat.rows()) {
                for ((v, &a), &dg) in row.iter_mut().zip(dxh.iter()).zip(dgamma) {
                    *v += T::from_f64(2.0) * dg * a;
                }
            }
            d2y = Some(t);
        }
        let mut dy = dxhat;
        scale_rows(&mut dy, gamma);
        for (mut row, xh) in dy.rows_mut().into_iter().zip(st.xhat.rows()) {
            for (((v, &h), &dg), &db) in row.iter_mut().zip(xh.iter()).zip(dgamma).zip(dbeta) {
                *v += dg * h + db;
            }
        }
        (Some(dy), d2y)
    }
}
