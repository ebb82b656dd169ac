//! The residual block `y = x + F(x)`, `F` its inner layers in order: every rule is the rule of
//! the chain plus the identity.

use super::{CotangentTrace, Layer, LayerRules, Mode, ParamCotangent, TangentTrace, Trace, offsets};
use crate::init::LayerInit;
use crate::shape::Shape;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, CowArray, Ix2};
use sgdlab_linalg::Scalar;

/// The rules of `Layer::Residual(inner)`, over the inner layers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Residual<'a>(pub &'a [Layer]);

impl LayerRules for Residual<'_> {
    fn kind(&self) -> &'static str {
        "residual"
    }

    fn num_params(&self) -> usize {
        self.0.iter().map(Layer::num_params).sum()
    }

    fn param_entries(&self, prefix: &str, out: &mut Vec<(String, Vec<usize>)>) {
        for (j, l) in self.0.iter().enumerate() {
            l.param_entries(&format!("{prefix}.{j}"), out);
        }
    }

    fn out_len(&self, in_len: usize) -> usize {
        in_len
    }

    fn out_shape(&self, input: Shape) -> Result<Shape, String> {
        let mut s = input;
        for l in self.0 {
            s = l.out_shape(s)?;
        }
        if s != input {
            return Err(format!("residual branch maps {input} to {s} features"));
        }
        Ok(input)
    }

    fn init<T: Scalar>(&self, prefix: &str, init: &LayerInit<'_>, p: &mut [T]) {
        for ((j, l), off) in self.0.iter().enumerate().zip(offsets(self.0)) {
            l.init(&format!("{prefix}.{j}"), init, &mut p[off..off + l.num_params()]);
        }
    }

    fn couples_examples(&self, mode: &Mode) -> bool {
        self.0.iter().enumerate().any(|(j, l)| l.couples_examples(&mode.layer(j)))
    }

    fn kink_distance<T: Scalar>(&self, trace: &Trace<T>) -> f64 {
        self.0.iter().zip(&trace.inner).map(|(l, t)| l.kink_distance(t)).fold(f64::INFINITY, f64::min)
    }

    fn forward<T: Scalar>(&self, p: &[T], x: ArrayView2<'_, T>, mode: &Mode) -> Array2<T> {
        let mut h = x.to_owned();
        let mut off = 0;
        for (j, l) in self.0.iter().enumerate() {
            let n = l.num_params();
            h = l.forward_in(&p[off..off + n], h.view(), &mode.layer(j));
            off += n;
        }
        h += &x;
        h
    }

    fn forward_traced<T: Scalar>(&self, p: &[T], x: Array2<T>, mode: &Mode) -> (Array2<T>, Trace<T>) {
        let mut h = x.clone();
        let mut traces = Vec::with_capacity(self.0.len());
        let mut off = 0;
        for (j, l) in self.0.iter().enumerate() {
            let n = l.num_params();
            let (y, t) = l.forward_traced_in(&p[off..off + n], h, &mode.layer(j));
            traces.push(t);
            h = y;
            off += n;
        }
        h += &x;
        let mut trace = Trace::of_input(x);
        trace.inner = traces;
        (h, trace)
    }

    fn jvp<T: Scalar>(
        &self,
        p: &[T],
        dp: Option<&[T]>,
        trace: &Trace<T>,
        dx: Option<Array2<T>>,
    ) -> (Array2<T>, TangentTrace<T>) {
        let mut h = dx.clone();
        let mut tts = Vec::with_capacity(self.0.len());
        let mut off = 0;
        for (l, t) in self.0.iter().zip(&trace.inner) {
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
        (y, TangentTrace { input: dx, inner: tts })
    }

    fn vjp<T: Scalar>(
        &self,
        p: &[T],
        trace: &Trace<T>,
        gy: CowArray<'_, T, Ix2>,
        gp: Option<ParamCotangent<'_, T>>,
        need_gx: bool,
    ) -> Option<Array2<T>> {
        let mut g: Option<Array2<T>> = None;
        let mut gp = gp;
        let offs = offsets(self.0);
        for ((l, t), &off) in self.0.iter().zip(&trace.inner).rev().zip(offs.iter().rev()) {
            let n = l.num_params();
            let gpl = gp.as_mut().map(|s| s.slice(off..off + n));
            let gin = g.take().map_or_else(|| gy.view().into(), CowArray::from);
            g = Some(l.vjp_cow(&p[off..off + n], t, gin, gpl, true).expect("need_gx was set"));
        }
        need_gx.then(|| g.expect("a residual block has at least one layer") + &gy)
    }

    fn vjp_traced<T: Scalar>(
        &self,
        p: &[T],
        trace: &Trace<T>,
        gy: Array2<T>,
        gp: Option<&mut [T]>,
        need_gx: bool,
    ) -> (Option<Array2<T>>, CotangentTrace<T>) {
        let mut g = gy.clone();
        let mut gp = gp;
        let mut cots = Vec::with_capacity(self.0.len());
        let offs = offsets(self.0);
        for ((l, t), &off) in self.0.iter().zip(&trace.inner).rev().zip(offs.iter().rev()) {
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

    fn vjp_per_example<T: Scalar>(
        &self,
        p: &[T],
        trace: &Trace<T>,
        gy: ArrayView2<'_, T>,
        mut rows: ArrayViewMut2<'_, T>,
        need_gx: bool,
    ) -> Result<Option<Array2<T>>, String> {
        let mut g = gy.to_owned();
        let offs = offsets(self.0);
        for ((l, t), &off) in self.0.iter().zip(&trace.inner).rev().zip(offs.iter().rev()) {
            let n = l.num_params();
            let sub = rows.slice_mut(ndarray::s![.., off..off + n]);
            g = l.vjp_per_example(&p[off..off + n], t, g.view(), sub, true)?.expect("need_gx was set");
        }
        Ok(need_gx.then(|| g + gy))
    }

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
        let mut dg = dgy.clone();
        let offs = offsets(self.0);
        for ((((l, t), tt), c), &off) in
            self.0.iter().zip(&trace.inner).zip(&tangent.inner).zip(&cotangent.inner).rev().zip(offs.iter().rev())
        {
            let n = l.num_params();
            dg = l
                .vjp_tangent(&p[off..off + n], &dp[off..off + n], t, tt, c, dg, &mut dgp[off..off + n], true)
                .expect("need_gx was set");
        }
        need_gx.then(|| dg + dgy)
    }

    fn jet2<T: Scalar>(
        &self,
        p: &[T],
        dp: &[T],
        trace: &Trace<T>,
        dx: Option<&Array2<T>>,
        d2x: Option<&Array2<T>>,
    ) -> (Option<Array2<T>>, Option<Array2<T>>) {
        let (mut h, mut h2) = (dx.cloned(), d2x.cloned());
        let mut off = 0;
        for (l, t) in self.0.iter().zip(&trace.inner) {
            let n = l.num_params();
            (h, h2) = l.jet2(&p[off..off + n], &dp[off..off + n], t, h.as_ref(), h2.as_ref());
            off += n;
        }
        (super::add_opt(h, dx), super::add_opt(h2, d2x))
    }
}
