//! Model-level passes, written once over the layer rules: forward, loss and gradient, exact
//! Hessian-vector products (forward-over-reverse), Gauss-Newton-vector products, output jvps,
//! per-example gradients, input Jacobians and per-layer activations; quadratic forms `v^T H v` and
//! `v^T G v` by forward passes only (module `quadratic`).
//!
//! All passes take the flat parameter vector `p` (layout of [`Model::layout`]) and a batch, never
//! mutate anything, and return an error (not a panic) when shapes do not fit.

use crate::error::NnError;
use crate::layer::{BatchStatistics, CotangentTrace, Layer, Mode, ParamCotangent, TangentTrace, Trace};
use crate::loss::{Loss, Reduction, Targets};
use crate::model::Model;
use ndarray::{Array2, Array3, ArrayView2, ArrayViewMut2, Axis};
use sgdlab_linalg::Scalar;

mod modes;
mod quadratic;

pub use modes::{ModeView, TrainStep};

/// Inputs `[batch, in_dim]` with their targets.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a, T> {
    pub x: ArrayView2<'a, T>,
    pub targets: Targets<'a, T>,
}

/// The loss a pass differentiates: which loss, and how per-example losses combine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Objective {
    pub loss: Loss,
    pub reduction: Reduction,
}

impl Objective {
    /// `loss` with `Reduction::Mean`.
    pub fn mean(loss: Loss) -> Self {
        Objective { loss, reduction: Reduction::Mean }
    }
}

/// Loss and gradient of a batch.
#[derive(Debug, Clone)]
pub struct LossGradient<T> {
    pub loss: T,
    pub gradient: Vec<T>,
}

/// Loss, gradient and Hessian-vector products of a batch.
#[derive(Debug, Clone)]
pub struct HvpResult<T> {
    pub loss: T,
    pub gradient: Vec<T>,
    /// One row per direction: `H v_j`.
    pub hvps: Array2<T>,
}

struct Forward<T> {
    logits: Array2<T>,
    traces: Vec<Trace<T>>,
}

/// A batch's forward pass and plain backward pass at fixed parameters, kept for repeated exact
/// Hessian-vector products (Lanczos, Hutchinson): each product then costs one jvp pass and the
/// tangent of the backward pass, without redoing the forward pass or recomputing the cotangents,
/// which do not depend on the direction. Gauss-Newton-vector products reuse its forward pass
/// ([`Model::ggn_vp_cached`]).
pub struct HvpCache<T> {
    forward: Forward<T>,
    /// The cotangent of every layer's output (inner layers of residual blocks included), from the
    /// loss gradient with respect to the logits.
    cotangents: Vec<CotangentTrace<T>>,
    /// The loss of the batch.
    pub loss: T,
}

impl Model {
    fn check_params<T>(&self, p: &[T]) -> Result<(), NnError> {
        if p.len() != self.num_params() {
            return Err(NnError::Shape(format!(
                "parameter vector has {} entries, model {} has {}",
                p.len(),
                self.describe(),
                self.num_params()
            )));
        }
        Ok(())
    }

    fn check_input<T: Scalar>(&self, p: &[T], x: &ArrayView2<'_, T>) -> Result<(), NnError> {
        self.check_params(p)?;
        if x.ncols() != self.in_dim() {
            return Err(NnError::Shape(format!(
                "inputs have {} features, model {} expects {}",
                x.ncols(),
                self.describe(),
                self.in_dim()
            )));
        }
        Ok(())
    }

    fn check_batch<T: Scalar>(&self, p: &[T], batch: &Batch<'_, T>, obj: &Objective) -> Result<(), NnError> {
        self.check_input(p, &batch.x)?;
        obj.loss.check(batch.x.nrows(), self.out_dim(), &batch.targets)
    }

    fn check_direction<T>(&self, v: &[T], what: &str) -> Result<(), NnError> {
        if v.len() != self.num_params() {
            return Err(NnError::Shape(format!(
                "{what} has {} entries, the model has {} parameters",
                v.len(),
                self.num_params()
            )));
        }
        Ok(())
    }

    fn check_directions<T>(&self, vs: &ArrayView2<'_, T>) -> Result<(), NnError> {
        if vs.ncols() != self.num_params() {
            return Err(NnError::Shape(format!(
                "directions have {} entries, the model has {} parameters",
                vs.ncols(),
                self.num_params()
            )));
        }
        Ok(())
    }

    fn forward_traced<T: Scalar>(&self, p: &[T], x: ArrayView2<'_, T>, mode: &Mode) -> Forward<T> {
        let mut h = x.to_owned();
        let mut traces = Vec::with_capacity(self.layers().len());
        for (i, l) in self.layers().iter().enumerate() {
            let (y, t) = l.forward_traced_in(self.layer_params(i, p), h, &mode.layer(i));
            traces.push(t);
            h = y;
        }
        Forward { logits: h, traces }
    }

    /// The forward pass without traces in `mode`.
    fn forward_in<T: Scalar>(&self, p: &[T], x: ArrayView2<'_, T>, mode: &Mode) -> Array2<T> {
        let mut h = x.to_owned();
        for (i, l) in self.layers().iter().enumerate() {
            h = l.forward_in(self.layer_params(i, p), h.view(), &mode.layer(i));
        }
        h
    }

    /// An error naming the first layer that couples the examples in `mode`, for a per-example
    /// quantity (`what`).
    fn check_per_example(&self, mode: &Mode, what: &str) -> Result<(), NnError> {
        match self.coupling_layer(mode) {
            Some((i, kind)) => Err(NnError::Coupled(format!(
                "{what} are undefined for model {}: layer {i} ({kind}) normalises by batch statistics (training mode, or track_running_stats=False), which couples the examples",
                self.describe()
            ))),
            None => Ok(()),
        }
    }

    /// The batch statistics of every batch-norm layer in a training pass's traces.
    fn batch_statistics<T: Scalar>(&self, traces: &[Trace<T>]) -> Vec<BatchStatistics> {
        fn walk<T: Scalar>(prefix: &str, layers: &[Layer], traces: &[Trace<T>], out: &mut Vec<BatchStatistics>) {
            for (j, (l, t)) in layers.iter().zip(traces).enumerate() {
                let name = if prefix.is_empty() { j.to_string() } else { format!("{prefix}.{j}") };
                match l {
                    Layer::BatchNorm(bn) => out.extend(bn.statistics_of(&name, t)),
                    Layer::Residual(inner) => walk(&name, inner, &t.inner, out),
                    Layer::Linear(_)
                    | Layer::Activation(_)
                    | Layer::LayerNorm(_)
                    | Layer::Conv(_)
                    | Layer::MaxPool(_)
                    | Layer::AvgPool(_)
                    | Layer::Flatten(_)
                    | Layer::Dropout(_) => {}
                }
            }
        }
        let mut out = Vec::new();
        walk("", self.layers(), traces, &mut out);
        out
    }

    fn jvp_pass<T: Scalar>(
        &self,
        p: &[T],
        dp: Option<&[T]>,
        traces: &[Trace<T>],
        dx: Option<Array2<T>>,
    ) -> (Array2<T>, Vec<TangentTrace<T>>) {
        let mut h = dx;
        let mut tts = Vec::with_capacity(traces.len());
        for (i, (l, t)) in self.layers().iter().zip(traces).enumerate() {
            let r = self.offset(i)..self.offset(i) + l.num_params();
            let (y, tt) = l.jvp(&p[r.clone()], dp.map(|d| &d[r]), t, h);
            tts.push(tt);
            h = Some(y);
        }
        let dz = h.unwrap_or_else(|| Array2::zeros((traces.first().map_or(0, |t| t.input.nrows()), self.out_dim())));
        (dz, tts)
    }

    /// The backward pass from the logit cotangent `gz`; parameter cotangents go to `gp` when
    /// given (added, or written over a buffer of any contents).
    fn backward<T: Scalar>(
        &self,
        p: &[T],
        traces: &[Trace<T>],
        gz: Array2<T>,
        mut gp: Option<ParamCotangent<'_, T>>,
        need_gx: bool,
    ) -> Option<Array2<T>> {
        let mut g = gz;
        for (i, (l, t)) in self.layers().iter().zip(traces).enumerate().rev() {
            let r = self.offset(i)..self.offset(i) + l.num_params();
            let need = i > 0 || need_gx;
            let gpl = gp.as_mut().map(|s| s.slice(r.clone()));
            match l.vjp_cow(&p[r], t, g.into(), gpl, need) {
                Some(gx) => g = gx,
                None => return None,
            }
        }
        Some(g)
    }

    /// The backward pass from the logit cotangent `gz`, keeping every layer's output cotangent;
    /// parameter cotangents are added into `gp` when given.
    fn backward_traced<T: Scalar>(
        &self,
        p: &[T],
        traces: &[Trace<T>],
        gz: Array2<T>,
        mut gp: Option<&mut [T]>,
    ) -> Vec<CotangentTrace<T>> {
        let mut cots = Vec::with_capacity(traces.len());
        let mut g = gz;
        for (i, (l, t)) in self.layers().iter().zip(traces).enumerate().rev() {
            let r = self.offset(i)..self.offset(i) + l.num_params();
            let gpl = gp.as_deref_mut().map(|s| &mut s[r.clone()]);
            let (gx, c) = l.vjp_traced(&p[r], t, g, gpl, i > 0);
            cots.push(c);
            match gx {
                Some(gx) => g = gx,
                None => break,
            }
        }
        cots.reverse();
        cots
    }

    /// The tangent of the backward pass cached in `cache` along `dp` (forward tangents `tts`):
    /// from the tangent `dgz` of the logit cotangent, adds the tangent of the parameter cotangents
    /// into `dgp`.
    fn backward_tangent<T: Scalar>(
        &self,
        p: &[T],
        dp: &[T],
        cache: &HvpCache<T>,
        tts: &[TangentTrace<T>],
        dgz: Array2<T>,
        dgp: &mut [T],
    ) {
        let mut dg = dgz;
        let layers = self.layers().iter().zip(&cache.forward.traces).zip(tts).zip(&cache.cotangents);
        for (i, (((l, t), tt), c)) in layers.enumerate().rev() {
            let r = self.offset(i)..self.offset(i) + l.num_params();
            match l.vjp_tangent(&p[r.clone()], &dp[r.clone()], t, tt, c, dg, &mut dgp[r], i > 0) {
                Some(d) => dg = d,
                None => return,
            }
        }
    }

    /// The logits `[batch, out_dim]`.
    pub fn forward<T: Scalar>(&self, p: &[T], x: ArrayView2<'_, T>) -> Result<Array2<T>, NnError> {
        self.check_input(p, &x)?;
        Ok(self.forward_in(p, x, &Mode::Eval))
    }

    /// The output of every top-level layer, in order (the last is the logits): the embeddings
    /// that representation probes read. `activations(..)[i]` is the output of layer `i` (PyTorch
    /// index `i`).
    pub fn activations<T: Scalar>(&self, p: &[T], x: ArrayView2<'_, T>) -> Result<Vec<Array2<T>>, NnError> {
        self.check_input(p, &x)?;
        let mut out: Vec<Array2<T>> = Vec::with_capacity(self.layers().len());
        for (i, l) in self.layers().iter().enumerate() {
            let y = l.forward(self.layer_params(i, p), out.last().map_or(x.view(), |h| h.view()));
            out.push(y);
        }
        Ok(out)
    }

    /// The reduced loss of a batch.
    pub fn loss<T: Scalar>(&self, p: &[T], batch: &Batch<'_, T>, obj: &Objective) -> Result<T, NnError> {
        self.check_batch(p, batch, obj)?;
        let z = self.forward(p, batch.x)?;
        Ok(obj.loss.value(z.view(), &batch.targets, obj.reduction))
    }

    /// The reduced loss and the logits of a batch.
    pub fn loss_and_logits<T: Scalar>(
        &self,
        p: &[T],
        batch: &Batch<'_, T>,
        obj: &Objective,
    ) -> Result<(T, Array2<T>), NnError> {
        self.check_batch(p, batch, obj)?;
        let z = self.forward(p, batch.x)?;
        Ok((obj.loss.value(z.view(), &batch.targets, obj.reduction), z))
    }

    /// Loss and gradient, the gradient written into `grad` (overwritten); returns the loss.
    pub fn gradient_into<T: Scalar>(
        &self,
        p: &[T],
        batch: &Batch<'_, T>,
        obj: &Objective,
        grad: &mut [T],
    ) -> Result<T, NnError> {
        Ok(self.gradient_in(p, batch, obj, grad, &Mode::Eval)?.0)
    }

    /// [`Model::gradient_into`] in `mode`, also returning the forward traces.
    fn gradient_in<T: Scalar>(
        &self,
        p: &[T],
        batch: &Batch<'_, T>,
        obj: &Objective,
        grad: &mut [T],
        mode: &Mode,
    ) -> Result<(T, Vec<Trace<T>>), NnError> {
        self.check_batch(p, batch, obj)?;
        self.check_direction(grad, "gradient buffer")?;
        let f = self.forward_traced(p, batch.x, mode);
        let (loss, gz) = obj.loss.value_and_grad(f.logits.view(), &batch.targets, obj.reduction);
        // Every parameter belongs to one layer, whose rule writes it once: no zeroing needed.
        self.backward(p, &f.traces, gz, Some(ParamCotangent::Overwrite(grad)), false);
        Ok((loss, f.traces))
    }

    /// Loss and gradient of a batch.
    pub fn loss_and_gradient<T: Scalar>(
        &self,
        p: &[T],
        batch: &Batch<'_, T>,
        obj: &Objective,
    ) -> Result<LossGradient<T>, NnError> {
        let mut gradient = vec![T::zero(); self.num_params()];
        let loss = self.gradient_into(p, batch, obj, &mut gradient)?;
        Ok(LossGradient { loss, gradient })
    }

    /// Exact Hessian-vector products `H v_j` for each row `v_j` of `vs` (`[k, num_params]`), by
    /// forward-over-reverse (Pearlmutter 1994): one forward and one backward pass, then per
    /// direction a jvp and the tangent of the backward pass. Also returns the loss and gradient.
    pub fn hvp_block<T: Scalar>(
        &self,
        p: &[T],
        batch: &Batch<'_, T>,
        obj: &Objective,
        vs: ArrayView2<'_, T>,
    ) -> Result<HvpResult<T>, NnError> {
        self.hvp_block_in(p, batch, obj, vs, &Mode::Eval)
    }

    /// [`Model::hvp_block`] in `mode`.
    fn hvp_block_in<T: Scalar>(
        &self,
        p: &[T],
        batch: &Batch<'_, T>,
        obj: &Objective,
        vs: ArrayView2<'_, T>,
        mode: &Mode,
    ) -> Result<HvpResult<T>, NnError> {
        self.check_batch(p, batch, obj)?;
        self.check_directions(&vs)?;
        let mut gradient = vec![T::zero(); self.num_params()];
        let cache = self.build_hvp_cache(p, batch, obj, Some(&mut gradient), mode);
        let hvps = self.hvps_with(p, &cache, batch, obj, vs);
        Ok(HvpResult { loss: cache.loss, gradient, hvps })
    }

    /// The forward pass and the backward pass's cotangents of a batch, for [`Model::hvp_cached`].
    pub fn hvp_cache<T: Scalar>(&self, p: &[T], batch: &Batch<'_, T>, obj: &Objective) -> Result<HvpCache<T>, NnError> {
        self.check_batch(p, batch, obj)?;
        Ok(self.build_hvp_cache(p, batch, obj, None, &Mode::Eval))
    }

    /// [`Model::hvp_cache`] on a checked batch; the gradient is added into `gradient` when given.
    fn build_hvp_cache<T: Scalar>(
        &self,
        p: &[T],
        batch: &Batch<'_, T>,
        obj: &Objective,
        gradient: Option<&mut [T]>,
        mode: &Mode,
    ) -> HvpCache<T> {
        let forward = self.forward_traced(p, batch.x, mode);
        let (loss, gz) = obj.loss.value_and_grad(forward.logits.view(), &batch.targets, obj.reduction);
        let cotangents = self.backward_traced(p, &forward.traces, gz, gradient);
        HvpCache { forward, cotangents, loss }
    }

    /// Exact Hessian-vector products `H v_j` for the rows of `vs` from a cached forward pass of
    /// the same parameters and batch ([`Model::hvp_cache`]).
    pub fn hvp_cached<T: Scalar>(
        &self,
        p: &[T],
        cache: &HvpCache<T>,
        batch: &Batch<'_, T>,
        obj: &Objective,
        vs: ArrayView2<'_, T>,
    ) -> Result<Array2<T>, NnError> {
        self.check_cached(p, cache, batch, &vs)?;
        Ok(self.hvps_with(p, cache, batch, obj, vs))
    }

    fn check_cached<T: Scalar>(
        &self,
        p: &[T],
        cache: &HvpCache<T>,
        batch: &Batch<'_, T>,
        vs: &ArrayView2<'_, T>,
    ) -> Result<(), NnError> {
        self.check_params(p)?;
        if vs.ncols() != self.num_params() || cache.forward.logits.nrows() != batch.x.nrows() {
            return Err(NnError::Shape(format!(
                "directions have {} entries for {} parameters; cache of {} examples for a batch of {}",
                vs.ncols(),
                self.num_params(),
                cache.forward.logits.nrows(),
                batch.x.nrows()
            )));
        }
        Ok(())
    }

    fn hvps_with<T: Scalar>(
        &self,
        p: &[T],
        cache: &HvpCache<T>,
        batch: &Batch<'_, T>,
        obj: &Objective,
        vs: ArrayView2<'_, T>,
    ) -> Array2<T> {
        let f = &cache.forward;
        let mut hvps = Array2::zeros((vs.nrows(), self.num_params()));
        for (v, mut out) in vs.rows().into_iter().zip(hvps.rows_mut()) {
            let v = v.as_standard_layout();
            let v = v.as_slice().expect("standard layout");
            let (dz, tts) = self.jvp_pass(p, Some(v), &f.traces, None);
            let dgz = obj.loss.hessian_vp(f.logits.view(), &batch.targets, dz.view(), obj.reduction);
            let out = out.as_slice_mut().expect("rows of a fresh array are contiguous");
            self.backward_tangent(p, v, cache, &tts, dgz, out);
        }
        hvps
    }

    /// Exact Hessian-vector product `H v`.
    pub fn hvp<T: Scalar>(&self, p: &[T], batch: &Batch<'_, T>, obj: &Objective, v: &[T]) -> Result<Vec<T>, NnError> {
        self.check_direction(v, "direction")?;
        let vs = ArrayView2::from_shape((1, v.len()), v).expect("one row");
        Ok(self.hvp_block(p, batch, obj, vs)?.hvps.into_raw_vec_and_offset().0)
    }

    /// Generalised Gauss-Newton-vector products `G v_j = J^T H_z J v_j` for each row of `vs`
    /// (Schraudolph 2002), `J` the Jacobian of the logits with respect to the parameters and `H_z`
    /// the Hessian of the reduced loss with respect to the logits.
    pub fn ggn_vp_block<T: Scalar>(
        &self,
        p: &[T],
        batch: &Batch<'_, T>,
        obj: &Objective,
        vs: ArrayView2<'_, T>,
    ) -> Result<Array2<T>, NnError> {
        self.check_batch(p, batch, obj)?;
        self.check_directions(&vs)?;
        let f = self.forward_traced(p, batch.x, &Mode::Eval);
        Ok(self.ggn_vps_with(p, &f, batch, obj, vs))
    }

    /// Generalised Gauss-Newton-vector products for the rows of `vs` from the forward pass cached
    /// by [`Model::hvp_cache`] for the same parameters and batch (its cotangents are not used).
    pub fn ggn_vp_cached<T: Scalar>(
        &self,
        p: &[T],
        cache: &HvpCache<T>,
        batch: &Batch<'_, T>,
        obj: &Objective,
        vs: ArrayView2<'_, T>,
    ) -> Result<Array2<T>, NnError> {
        self.check_cached(p, cache, batch, &vs)?;
        Ok(self.ggn_vps_with(p, &cache.forward, batch, obj, vs))
    }

    fn ggn_vps_with<T: Scalar>(
        &self,
        p: &[T],
        f: &Forward<T>,
        batch: &Batch<'_, T>,
        obj: &Objective,
        vs: ArrayView2<'_, T>,
    ) -> Array2<T> {
        let mut out = Array2::zeros((vs.nrows(), self.num_params()));
        for (v, mut o) in vs.rows().into_iter().zip(out.rows_mut()) {
            let v = v.as_standard_layout();
            let (dz, _) = self.jvp_pass(p, Some(v.as_slice().expect("standard layout")), &f.traces, None);
            let q = obj.loss.hessian_vp(f.logits.view(), &batch.targets, dz.view(), obj.reduction);
            let o = o.as_slice_mut().expect("contiguous");
            self.backward(p, &f.traces, q, Some(ParamCotangent::Add(o)), false);
        }
        out
    }

    /// Generalised Gauss-Newton-vector product `G v`.
    pub fn ggn_vp<T: Scalar>(
        &self,
        p: &[T],
        batch: &Batch<'_, T>,
        obj: &Objective,
        v: &[T],
    ) -> Result<Vec<T>, NnError> {
        self.check_direction(v, "direction")?;
        let vs = ArrayView2::from_shape((1, v.len()), v).expect("one row");
        Ok(self.ggn_vp_block(p, batch, obj, vs)?.into_raw_vec_and_offset().0)
    }

    /// The logits and their tangent `J_p dp + J_x dx` (either tangent may be absent = zero).
    pub fn output_jvp<T: Scalar>(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        dp: Option<&[T]>,
        dx: Option<ArrayView2<'_, T>>,
    ) -> Result<(Array2<T>, Array2<T>), NnError> {
        self.check_input(p, &x)?;
        if let Some(dp) = dp {
            self.check_direction(dp, "parameter tangent")?;
        }
        if let Some(dx) = &dx
            && dx.dim() != x.dim()
        {
            return Err(NnError::Shape(format!("input tangent has shape {:?}, inputs {:?}", dx.dim(), x.dim())));
        }
        let f = self.forward_traced(p, x, &Mode::Eval);
        let (dz, _) = self.jvp_pass(p, dp, &f.traces, dx.map(|d| d.to_owned()));
        Ok((f.logits, dz))
    }

    /// Per-example gradients `[batch, num_params]`: row `i` is example `i`'s contribution to the
    /// batch gradient, so the rows sum to the gradient for either reduction (BackPACK's
    /// convention: with `Reduction::Mean` each row is the per-example loss gradient divided by the
    /// normaliser). An error when the model couples its examples (batch norm on batch statistics)
    /// or the loss does (Sobolev).
    pub fn per_example_gradients<T: Scalar>(
        &self,
        p: &[T],
        batch: &Batch<'_, T>,
        obj: &Objective,
    ) -> Result<Array2<T>, NnError> {
        let shape = (batch.x.nrows(), self.num_params());
        let mut rows = Array2::from_shape_vec(shape, sgdlab_linalg::zeros_large(shape.0 * shape.1)).expect("sized");
        self.per_example_gradients_into(p, batch, obj, rows.view_mut())?;
        Ok(rows)
    }

    /// [`Model::per_example_gradients`] written into `out` (`[batch, num_params]`, every entry
    /// written whatever it held): a caller reusing one buffer avoids mapping and faulting in a
    /// fresh one each time (at MLP 784-512-512-10 and batch 128 the output is 343 MB).
    pub fn per_example_gradients_into<T: Scalar>(
        &self,
        p: &[T],
        batch: &Batch<'_, T>,
        obj: &Objective,
        out: ArrayViewMut2<'_, T>,
    ) -> Result<(), NnError> {
        self.per_example_gradients_in(p, batch, obj, out, &Mode::Eval)
    }

    fn per_example_gradients_in<T: Scalar>(
        &self,
        p: &[T],
        batch: &Batch<'_, T>,
        obj: &Objective,
        mut out: ArrayViewMut2<'_, T>,
        mode: &Mode,
    ) -> Result<(), NnError> {
        self.check_batch(p, batch, obj)?;
        if out.dim() != (batch.x.nrows(), self.num_params()) {
            return Err(NnError::Shape(format!(
                "per-example gradient buffer has shape {:?}, needs [{}, {}]",
                out.dim(),
                batch.x.nrows(),
                self.num_params()
            )));
        }
        self.check_per_example(mode, "per-example gradients")?;
        obj.loss.check_per_example("per-example gradients")?;
        let f = self.forward_traced(p, batch.x, mode);
        let (_, gz) = obj.loss.value_and_grad(f.logits.view(), &batch.targets, obj.reduction);
        let mut g = gz;
        for (i, (l, t)) in self.layers().iter().zip(&f.traces).enumerate().rev() {
            let r = self.offset(i)..self.offset(i) + l.num_params();
            let sub = out.slice_mut(ndarray::s![.., r.clone()]);
            let gx = l
                .vjp_per_example(&p[r], t, g.view(), sub, i > 0)
                .map_err(|m| NnError::Coupled(format!("per-example gradients: layer {i} ({}): {m}", l.kind())))?;
            match gx {
                Some(gx) => g = gx,
                None => break,
            }
        }
        Ok(())
    }

    /// The Jacobian of each example's logits with respect to its own input, `[batch, K, in_dim]`
    /// (K backward passes with one-hot cotangents).
    pub fn input_jacobian<T: Scalar>(&self, p: &[T], x: ArrayView2<'_, T>) -> Result<Array3<T>, NnError> {
        self.check_input(p, &x)?;
        self.check_per_example(&Mode::Eval, "per-example input Jacobians")?;
        let f = self.forward_traced(p, x, &Mode::Eval);
        let (b, k) = f.logits.dim();
        let mut jac = Array3::zeros((b, k, self.in_dim()));
        for c in 0..k {
            let mut gz = Array2::zeros((b, k));
            gz.column_mut(c).fill(T::one());
            let gx = self.backward(p, &f.traces, gz, None, true).expect("need_gx was set");
            jac.index_axis_mut(Axis(1), c).assign(&gx);
        }
        Ok(jac)
    }

    /// `||d z_i / d x_i||_F^2` for each example: the summand of geometric complexity (Dherin et
    /// al. 2022), exact.
    pub fn input_jacobian_sq_frobenius<T: Scalar>(&self, p: &[T], x: ArrayView2<'_, T>) -> Result<Vec<T>, NnError> {
        let j = self.input_jacobian(p, x)?;
        Ok(j.outer_iter().map(|m| m.iter().map(|&v| v * v).sum()).collect())
    }
}
