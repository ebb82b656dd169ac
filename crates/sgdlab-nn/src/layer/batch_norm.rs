//! Batch norm (`BatchNorm1d`, `BatchNorm2d`; Ioffe & Szegedy 2015) with PyTorch's semantics.
//!
//! Per channel `c`, with `gamma`, `beta` the parameters (`weight`, `bias`):
//! * evaluation mode (running statistics): `y = (x - mean_c) / sqrt(var_c + eps) * gamma_c +
//!   beta_c`, an affine map of `x` (bilinear in `x` and `gamma`), examples independent;
//! * training mode, or without running statistics: the mean and (biased) variance of channel `c`
//!   over the batch and the positions, i.e. the row normalisation of [`super::normalize`] on the
//!   `[C, batch * positions]` transpose of the batch. Every example's output then depends on the
//!   whole batch, so per-example rules refuse it.
//!
//! The running statistics are buffers of the layer (`running_mean`, `running_var`,
//! `num_batches_tracked` in a `state_dict`), not parameters; a training pass reports its batch
//! statistics and [`crate::Model::update_running_stats`] updates them as PyTorch does
//! (momentum, unbiased variance).

use super::normalize::{RowStats, cotangent_tangent, row_stats, xhat_jet2, xhat_tangent};
use super::{CotangentTrace, LayerRules, Mode, ParamCotangent, Saved, TangentTrace, Trace, coupled_error};
use crate::init::LayerInit;
use crate::shape::Shape;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, CowArray, Ix2};
use sgdlab_linalg::Scalar;

/// `BatchNorm1d` (`dims = 1`: input `[C]` or `[C, L]`) or `BatchNorm2d` (`dims = 2`: `[C, H, W]`).
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNorm {
    pub dims: usize,
    /// Channels (`num_features`).
    pub features: usize,
    /// Values per channel and example: 1 for `[C]`, `L` for `[C, L]`, `H W` for `[C, H, W]`.
    pub positions: usize,
    /// The input shape (to check it).
    pub input: Shape,
    pub eps: f64,
    /// Weight of a new batch in the running statistics; `None`: their cumulative average.
    pub momentum: Option<f64>,
    /// Learnable `weight` (gamma) and `bias` (beta).
    pub affine: bool,
    /// Keeps running statistics (and uses them in evaluation mode); without, batch statistics
    /// are used in every mode.
    pub track_running_stats: bool,
    pub running_mean: Vec<f64>,
    pub running_var: Vec<f64>,
    pub num_batches_tracked: u64,
}

/// The statistics of one training batch of one batch-norm layer.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchStatistics {
    /// The layer's name (`3`, or `1.0` inside a residual block).
    pub layer: String,
    /// Per channel: the mean and the biased variance over the batch and the positions.
    pub mean: Vec<f64>,
    pub var: Vec<f64>,
    /// Values per channel they were computed from (batch size x positions).
    pub count: usize,
}

/// `[batch, C * S]` to `[C, batch * S]`: row `c` holds channel `c` of every example.
fn channel_rows<T: Scalar>(x: ArrayView2<'_, T>, c: usize, s: usize) -> Array2<T> {
    let b = x.nrows();
    let mut out = Array2::zeros((c, b * s));
    for (i, xi) in x.rows().into_iter().enumerate() {
        for ch in 0..c {
            for k in 0..s {
                out[(ch, i * s + k)] = xi[ch * s + k];
            }
        }
    }
    out
}

/// The inverse of [`channel_rows`].
fn example_rows<T: Scalar>(z: &Array2<T>, b: usize, s: usize) -> Array2<T> {
    let c = z.nrows();
    let mut out = Array2::zeros((b, c * s));
    for (i, mut oi) in out.rows_mut().into_iter().enumerate() {
        for ch in 0..c {
            for k in 0..s {
                oi[ch * s + k] = z[(ch, i * s + k)];
            }
        }
    }
    out
}

impl BatchNorm {
    /// A layer with PyTorch's initial buffers (mean 0, variance 1, no batches).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        dims: usize,
        input: Shape,
        eps: f64,
        momentum: Option<f64>,
        affine: bool,
        track_running_stats: bool,
    ) -> Self {
        let features = input.channels();
        BatchNorm {
            dims,
            features,
            positions: input.len() / features.max(1),
            input,
            eps,
            momentum,
            affine,
            track_running_stats,
            running_mean: vec![0.0; features],
            running_var: vec![1.0; features],
            num_batches_tracked: 0,
        }
    }

    /// Number of parameters (2 per channel when affine).
    pub fn num_params(&self) -> usize {
        if self.affine { 2 * self.features } else { 0 }
    }

    /// True when a pass in `mode` normalises by batch statistics.
    pub fn uses_batch_statistics(&self, mode: &Mode) -> bool {
        mode.is_train() || !self.track_running_stats
    }

    /// Updates the running statistics from a training batch's (PyTorch: the unbiased variance
    /// enters them; momentum `None` averages over all batches).
    pub fn update_running_stats(&mut self, stats: &BatchStatistics) {
        if !self.track_running_stats {
            return;
        }
        self.num_batches_tracked += 1;
        let m = self.momentum.unwrap_or(1.0 / self.num_batches_tracked as f64);
        let n = stats.count as f64;
        let unbias = if stats.count > 1 { n / (n - 1.0) } else { 1.0 };
        for c in 0..self.features {
            self.running_mean[c] = (1.0 - m) * self.running_mean[c] + m * stats.mean[c];
            self.running_var[c] = (1.0 - m) * self.running_var[c] + m * stats.var[c] * unbias;
        }
    }

    /// The buffers as (name suffix, shape, values), in `state_dict` order.
    pub fn buffers(&self) -> Vec<(&'static str, Vec<usize>, Vec<f64>)> {
        if !self.track_running_stats {
            return Vec::new();
        }
        vec![
            ("running_mean", vec![self.features], self.running_mean.clone()),
            ("running_var", vec![self.features], self.running_var.clone()),
            ("num_batches_tracked", vec![], vec![self.num_batches_tracked as f64]),
        ]
    }

    /// `(gamma_c, beta_c)` of channel `c` (1 and 0 without affine parameters).
    fn affine_of<T: Scalar>(&self, p: &[T], c: usize) -> (T, T) {
        if self.affine { (p[c], p[self.features + c]) } else { (T::one(), T::zero()) }
    }

    /// `1 / sqrt(running_var + eps)` per channel.
    fn inv_std<T: Scalar>(&self) -> Vec<T> {
        self.running_var.iter().map(|&v| T::from_f64(1.0 / (v + self.eps).sqrt())).collect()
    }

    /// Evaluation mode: x-hat from the running statistics.
    fn eval_xhat<T: Scalar>(&self, x: ArrayView2<'_, T>) -> Array2<T> {
        let s = self.positions;
        let inv = self.inv_std::<T>();
        let mut xh = x.to_owned();
        for mut row in xh.rows_mut() {
            let row = row.as_slice_mut().expect("fresh array");
            for (c, chunk) in row.chunks_exact_mut(s).enumerate() {
                let (m, is) = (T::from_f64(self.running_mean[c]), inv[c]);
                chunk.iter_mut().for_each(|v| *v = (*v - m) * is);
            }
        }
        xh
    }

    /// `out = a_c * z + (b_c)` per channel on `[batch, C * S]` (in place).
    fn per_channel<T: Scalar>(&self, z: &mut Array2<T>, a: &[T], b: Option<&[T]>) {
        let s = self.positions;
        for mut row in z.rows_mut() {
            let row = row.as_slice_mut().expect("fresh array");
            for (c, chunk) in row.chunks_exact_mut(s).enumerate() {
                let (ac, bc) = (a[c], b.map_or(T::zero(), |b| b[c]));
                chunk.iter_mut().for_each(|v| *v = *v * ac + bc);
            }
        }
    }

    /// Adds `a_c * z` per channel into `out` (all `[batch, C * S]`).
    fn add_scaled<T: Scalar>(&self, out: &mut Array2<T>, z: &ArrayView2<'_, T>, a: &[T]) {
        let s = self.positions;
        for (mut o, zi) in out.rows_mut().into_iter().zip(z.rows()) {
            let o = o.as_slice_mut().expect("fresh array");
            for (c, (oc, zc)) in o.chunks_exact_mut(s).zip(zi.to_vec().chunks_exact(s)).enumerate() {
                for (v, &w) in oc.iter_mut().zip(zc) {
                    *v += a[c] * w;
                }
            }
        }
    }

    /// Per channel, `sum over examples and positions of a * b` into `dst` (added).
    fn add_channel_dots<T: Scalar>(&self, dst: &mut [T], a: &ArrayView2<'_, T>, b: &ArrayView2<'_, T>) {
        let s = self.positions;
        for (ai, bi) in a.rows().into_iter().zip(b.rows()) {
            for (c, d) in dst.iter_mut().enumerate().take(self.features) {
                let mut acc = T::zero();
                for k in c * s..(c + 1) * s {
                    acc += ai[k] * bi[k];
                }
                *d += acc;
            }
        }
    }

    /// Per channel, `sum of a` into `dst` (added).
    fn add_channel_sums<T: Scalar>(&self, dst: &mut [T], a: &ArrayView2<'_, T>) {
        let s = self.positions;
        for ai in a.rows() {
            for (c, d) in dst.iter_mut().enumerate().take(self.features) {
                let mut acc = T::zero();
                for k in c * s..(c + 1) * s {
                    acc += ai[k];
                }
                *d += acc;
            }
        }
    }

    fn gammas<T: Scalar>(&self, p: &[T]) -> Vec<T> {
        (0..self.features).map(|c| self.affine_of(p, c).0).collect()
    }

    fn batch_stats<T>(trace: &Trace<T>) -> Option<&RowStats<T>> {
        match &trace.saved {
            Saved::BatchStats(st) => Some(st),
            Saved::Nothing => None,
            Saved::Columns(_) | Saved::ArgMax(_) | Saved::Mask(_) => unreachable!("a batch norm trace"),
        }
    }

    /// The batch statistics of a training pass, for the running statistics.
    pub(crate) fn statistics_of<T: Scalar>(&self, layer: &str, trace: &Trace<T>) -> Option<BatchStatistics> {
        let st = Self::batch_stats(trace)?;
        Some(BatchStatistics {
            layer: layer.to_string(),
            mean: st.mean.iter().map(|&v| v.to_f64()).collect(),
            var: st.var.iter().map(|&v| v.to_f64()).collect(),
            count: st.xhat.ncols(),
        })
    }

    /// Batch-statistics forward: `(y, stats)`.
    fn forward_batch<T: Scalar>(&self, p: &[T], x: ArrayView2<'_, T>) -> (Array2<T>, RowStats<T>) {
        let st = row_stats(channel_rows(x, self.features, self.positions).view(), self.eps);
        let mut z = st.xhat.clone();
        for (c, mut row) in z.rows_mut().into_iter().enumerate() {
            let (g, b) = self.affine_of(p, c);
            row.mapv_inplace(|v| v * g + b);
        }
        (example_rows(&z, x.nrows(), self.positions), st)
    }

    /// `dy = gamma dxhat + dgamma xhat + dbeta` on `[C, n]` rows.
    fn affine_tangent_rows<T: Scalar>(
        &self,
        p: &[T],
        dp: Option<&[T]>,
        dxhat: Option<Array2<T>>,
        xhat: &Array2<T>,
    ) -> Array2<T> {
        let mut dy = dxhat.unwrap_or_else(|| Array2::zeros(xhat.dim()));
        for (c, (mut row, xh)) in dy.rows_mut().into_iter().zip(xhat.rows()).enumerate() {
            let g = self.affine_of(p, c).0;
            let (dg, db) = match (self.affine, dp) {
                (true, Some(dp)) => self.affine_of(dp, c),
                _ => (T::zero(), T::zero()),
            };
            for (v, &h) in row.iter_mut().zip(xh.iter()) {
                *v = g * *v + dg * h + db;
            }
        }
        dy
    }
}

impl LayerRules for BatchNorm {
    fn kind(&self) -> &'static str {
        if self.dims == 1 { "batchnorm1d" } else { "batchnorm2d" }
    }

    fn num_params(&self) -> usize {
        BatchNorm::num_params(self)
    }

    fn param_entries(&self, prefix: &str, out: &mut Vec<(String, Vec<usize>)>) {
        if self.affine {
            out.push((format!("{prefix}.weight"), vec![self.features]));
            out.push((format!("{prefix}.bias"), vec![self.features]));
        }
    }

    fn out_len(&self, _: usize) -> usize {
        self.input.len()
    }

    fn out_shape(&self, input: Shape) -> Result<Shape, String> {
        if input != self.input {
            return Err(format!("{} built for {} inputs gets {input}", self.kind(), self.input));
        }
        Ok(input)
    }

    /// Weight 1, bias 0 (PyTorch's).
    fn init<T: Scalar>(&self, _: &str, _: &LayerInit<'_>, p: &mut [T]) {
        if self.affine {
            p[..self.features].fill(T::one());
            p[self.features..].fill(T::zero());
        }
    }

    fn couples_examples(&self, mode: &Mode) -> bool {
        self.uses_batch_statistics(mode)
    }

    fn kink_distance<T: Scalar>(&self, _: &Trace<T>) -> f64 {
        f64::INFINITY
    }

    fn forward<T: Scalar>(&self, p: &[T], x: ArrayView2<'_, T>, mode: &Mode) -> Array2<T> {
        if self.uses_batch_statistics(mode) {
            return self.forward_batch(p, x).0;
        }
        let mut y = self.eval_xhat(x);
        if self.affine {
            self.per_channel(&mut y, &p[..self.features], Some(&p[self.features..]));
        }
        y
    }

    fn forward_traced<T: Scalar>(&self, p: &[T], x: Array2<T>, mode: &Mode) -> (Array2<T>, Trace<T>) {
        if self.uses_batch_statistics(mode) {
            let (y, st) = self.forward_batch(p, x.view());
            return (y, Trace::with(Array2::zeros((x.nrows(), 0)), Saved::BatchStats(st)));
        }
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
        let (s, b) = (self.positions, trace.input.nrows());
        if let Some(st) = Self::batch_stats(trace) {
            let dxhat = dx.as_ref().map(|d| xhat_tangent(st, channel_rows(d.view(), self.features, s).view()));
            let dy = self.affine_tangent_rows(p, dp, dxhat, &st.xhat);
            return (example_rows(&dy, b, s), TangentTrace::leaf(dx));
        }
        // Evaluation: dy = gamma inv dx + dgamma xhat + dbeta.
        let a: Vec<T> = self.gammas(p).iter().zip(self.inv_std::<T>()).map(|(&g, i)| g * i).collect();
        let mut dy = match &dx {
            Some(dx) => {
                let mut t = dx.clone();
                self.per_channel(&mut t, &a, None);
                t
            }
            None => Array2::zeros(trace.input.dim()),
        };
        if let (true, Some(dp)) = (self.affine, dp) {
            let xh = self.eval_xhat(trace.input.view());
            self.add_scaled(&mut dy, &xh.view(), &dp[..self.features]);
            let db = &dp[self.features..];
            for mut row in dy.rows_mut() {
                for (c, chunk) in row.as_slice_mut().expect("fresh array").chunks_exact_mut(s).enumerate() {
                    chunk.iter_mut().for_each(|v| *v += db[c]);
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
        let (s, c) = (self.positions, self.features);
        let gy = gy.view();
        if let Some(st) = Self::batch_stats(trace) {
            let gyr = channel_rows(gy, c, s);
            if let (true, Some(gp)) = (self.affine, gp) {
                let (gp, add) = gp.parts();
                if !add {
                    gp.fill(T::zero());
                }
                let (gg, gb) = gp.split_at_mut(c);
                for (ch, (gr, xh)) in gyr.rows().into_iter().zip(st.xhat.rows()).enumerate() {
                    gg[ch] += gr.iter().zip(xh.iter()).map(|(&a, &b)| a * b).sum::<T>();
                    gb[ch] += gr.iter().copied().sum::<T>();
                }
            }
            return need_gx.then(|| {
                let mut gxhat = gyr;
                for (ch, mut row) in gxhat.rows_mut().into_iter().enumerate() {
                    let g = self.affine_of(p, ch).0;
                    row.mapv_inplace(|v| v * g);
                }
                example_rows(&xhat_tangent(st, gxhat.view()), gy.nrows(), s)
            });
        }
        if let (true, Some(gp)) = (self.affine, gp) {
            let (gp, add) = gp.parts();
            if !add {
                gp.fill(T::zero());
            }
            let xh = self.eval_xhat(trace.input.view());
            let (gg, gb) = gp.split_at_mut(c);
            self.add_channel_dots(gg, &gy, &xh.view());
            self.add_channel_sums(gb, &gy);
        }
        need_gx.then(|| {
            let a: Vec<T> = self.gammas(p).iter().zip(self.inv_std::<T>()).map(|(&g, i)| g * i).collect();
            let mut gx = gy.to_owned();
            self.per_channel(&mut gx, &a, None);
            gx
        })
    }

    fn vjp_per_example<T: Scalar>(
        &self,
        p: &[T],
        trace: &Trace<T>,
        gy: ArrayView2<'_, T>,
        mut rows: ArrayViewMut2<'_, T>,
        need_gx: bool,
    ) -> Result<Option<Array2<T>>, String> {
        if Self::batch_stats(trace).is_some() {
            return Err(coupled_error(self.kind()));
        }
        if self.affine {
            let (s, c) = (self.positions, self.features);
            let xh = self.eval_xhat(trace.input.view());
            for ((gi, xi), mut r) in gy.rows().into_iter().zip(xh.rows()).zip(rows.rows_mut()) {
                for ch in 0..c {
                    let (mut dot, mut sum) = (T::zero(), T::zero());
                    for k in ch * s..(ch + 1) * s {
                        dot += gi[k] * xi[k];
                        sum += gi[k];
                    }
                    r[ch] = dot;
                    r[c + ch] = sum;
                }
            }
        }
        Ok(self.vjp(p, trace, gy.into(), None, need_gx))
    }

    /// Evaluation: `dgx = inv (gamma dgy + dgamma gy)`, `dgamma += sum(dgy xhat + gy inv dx)`,
    /// `dbeta += sum dgy`. Batch statistics: the row-normalisation R-operator on the transpose
    /// with the x-hat cotangent `gamma gy` and its tangent `gamma dgy + dgamma gy`.
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
        let (s, c) = (self.positions, self.features);
        let gy = cotangent.output.view();
        let dx = tangent.input.as_ref();
        if let Some(st) = Self::batch_stats(trace) {
            let b = gy.nrows();
            let dxr = dx.map(|d| channel_rows(d.view(), c, s));
            let dxhat = match &dxr {
                Some(d) => xhat_tangent(st, d.view()),
                None => Array2::zeros(st.xhat.dim()),
            };
            let (gyr, dgyr) = (channel_rows(gy, c, s), channel_rows(dgy.view(), c, s));
            if self.affine {
                let (gg, gb) = dgp.split_at_mut(c);
                for ch in 0..c {
                    let (gr, dgr, xh, dxh) = (gyr.row(ch), dgyr.row(ch), st.xhat.row(ch), dxhat.row(ch));
                    let mut acc = T::zero();
                    for k in 0..gr.len() {
                        acc += dgr[k] * xh[k] + gr[k] * dxh[k];
                    }
                    gg[ch] += acc;
                    gb[ch] += dgr.iter().copied().sum::<T>();
                }
            }
            if !need_gx {
                return None;
            }
            let mut g = gyr.clone();
            let mut dg = dgyr;
            // `dp` holds the gamma tangents only for an affine layer: index it, do not iterate it.
            #[allow(clippy::needless_range_loop)]
            for ch in 0..c {
                let gamma = self.affine_of(p, ch).0;
                let dgamma = if self.affine { dp[ch] } else { T::zero() };
                g.row_mut(ch).mapv_inplace(|v| v * gamma);
                let gr = gyr.row(ch);
                for (v, &gv) in dg.row_mut(ch).iter_mut().zip(gr.iter()) {
                    *v = *v * gamma + dgamma * gv;
                }
            }
            let dgx = cotangent_tangent(st, dxr.as_ref().map(|d| d.view()), &dxhat, &g, &dg);
            return Some(example_rows(&dgx, b, s));
        }
        let inv = self.inv_std::<T>();
        if self.affine {
            let xh = self.eval_xhat(trace.input.view());
            let (gg, gb) = dgp.split_at_mut(c);
            self.add_channel_dots(gg, &dgy.view(), &xh.view());
            if let Some(dx) = dx {
                let mut scaled = dx.clone();
                self.per_channel(&mut scaled, &inv, None);
                self.add_channel_dots(gg, &gy, &scaled.view());
            }
            self.add_channel_sums(gb, &dgy.view());
        }
        need_gx.then(|| {
            let a: Vec<T> = self.gammas(p).iter().zip(&inv).map(|(&g, &i)| g * i).collect();
            let mut dgx = dgy;
            self.per_channel(&mut dgx, &a, None);
            if self.affine {
                let da: Vec<T> = dp[..c].iter().zip(&inv).map(|(&g, &i)| g * i).collect();
                self.add_scaled(&mut dgx, &gy, &da);
            }
            dgx
        })
    }

    /// Evaluation: `dy = gamma inv dx + dgamma xhat + dbeta`, `d2y = gamma inv d2x + 2 dgamma
    /// inv dx`. Batch statistics: x-hat's jet on the transpose, then `dy = gamma dxhat + dgamma
    /// xhat + dbeta`, `d2y = gamma d2xhat + 2 dgamma dxhat`.
    fn jet2<T: Scalar>(
        &self,
        p: &[T],
        dp: &[T],
        trace: &Trace<T>,
        dx: Option<&Array2<T>>,
        d2x: Option<&Array2<T>>,
    ) -> (Option<Array2<T>>, Option<Array2<T>>) {
        let (s, c) = (self.positions, self.features);
        let moving = dx.is_some() || d2x.is_some();
        let dpa = self.affine.then_some(dp);
        if let Some(st) = Self::batch_stats(trace) {
            let b = trace.input.nrows();
            let (dxhat, d2xhat) = if moving {
                let dxr = dx.map(|d| channel_rows(d.view(), c, s));
                let d2xr = d2x.map(|d| channel_rows(d.view(), c, s));
                let (a, b2) = xhat_jet2(st, dxr.as_ref().map(|d| d.view()), d2xr.as_ref().map(|d| d.view()));
                (Some(a), Some(b2))
            } else {
                (None, None)
            };
            let d2y = d2xhat.map(|mut t| {
                let dxh = dxhat.as_ref().expect("set together");
                #[allow(clippy::needless_range_loop)]
                for ch in 0..c {
                    let g = self.affine_of(p, ch).0;
                    let dg = if self.affine { dp[ch] } else { T::zero() };
                    for (v, &a) in t.row_mut(ch).iter_mut().zip(dxh.row(ch).iter()) {
                        *v = g * *v + T::from_f64(2.0) * dg * a;
                    }
                }
                example_rows(&t, b, s)
            });
            let dy =
                (moving || self.affine).then(|| example_rows(&self.affine_tangent_rows(p, dpa, dxhat, &st.xhat), b, s));
            return (dy, d2y);
        }
        let inv = self.inv_std::<T>();
        let a: Vec<T> = self.gammas(p).iter().zip(&inv).map(|(&g, &i)| g * i).collect();
        let (dy, _) = self.jvp(p, dpa, trace, dx.cloned());
        let dy = (moving || self.affine).then_some(dy);
        let d2y = moving.then(|| {
            let mut t = match d2x {
                Some(d2x) => {
                    let mut t = d2x.clone();
                    self.per_channel(&mut t, &a, None);
                    t
                }
                None => Array2::zeros(trace.input.dim()),
            };
            if let (Some(dx), true) = (dx, self.affine) {
                let da: Vec<T> = dp[..c].iter().zip(&inv).map(|(&g, &i)| T::from_f64(2.0) * g * i).collect();
                self.add_scaled(&mut t, &dx.view(), &da);
            }
            t
        });
        (dy, d2y)
    }
}
