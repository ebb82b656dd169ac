//! Curvature matrices of a model as linear operators over the flat parameter vector, evaluated on
//! a fixed list of batches of an [`EvalSet`]. Every operator refers to the *mean* loss over the
//! whole set, `L = c * sum_i l_i` with `c` the loss's mean normaliser over all `N` examples
//! (`1/N`, or `1/(N K)` for MSE): batches only bound memory and never change the matrix.
//!
//! | operator | matrix |
//! |---|---|
//! | [`HessianOperator`] | `H = d^2 L / d theta^2`, exact (forward-over-reverse HVPs) |
//! | [`GgnOperator`] | `G = c sum_i J_i^T H_{z,i} J_i` (Schraudolph 2002) |
//! | [`FisherOperator`] exact | equal to `G` for the canonical losses here (softmax CE, logistic, and MSE read as the Gaussian likelihood whose negative log is the per-example objective `c N l_i`, variance `K/2`): `E_{y~p(y|x)}[grad l grad l^T] = H_z` |
//! | [`FisherOperator`] Monte-Carlo | `c^2 N / m sum_i sum_s g_i(y_s) g_i(y_s)^T`, `y_s ~ p(y|x_i)`, `m` samples per example |
//! | [`FisherOperator`] empirical | `c^2 N sum_i g_i(y_i) g_i(y_i)^T` with the true labels |
//! | [`GradientNoiseOperator`] | `Sigma = (1/N) sum_i (g_i - g)(g_i - g)^T`, per-example gradients `g_i = grad(c N l_i)` (their mean is `g = grad L`) |
//!
//! (With `g_i = grad(c N l_i)`, the MC and empirical Fisher read `(1/N) sum_i g_i g_i^T`.)
//!
//! A loss that couples the examples (Sobolev, `c = 1/N`) is evaluated in one batch of the whole
//! set in order, whatever the batch size asked for; its GGN is `c J^T (2 A) J` with the full
//! (not block-diagonal) output Hessian `2 A`, the exact Fisher of the Gaussian whose negative log
//! is `c N L_s` is that GGN too, and the quantities built from per-example gradients (MC and
//! empirical Fisher, gradient noise, its tail index) are errors naming the loss.

use crate::common::{EvalSet, ProbeError};
use ndarray::{Array2, ArrayView2, Axis};
use rand::RngExt;
use sgdlab_linalg::{RngStream, Scalar, matmul_into, standard_normal};
use sgdlab_nn::{Batch, Loss, Model, Objective, Reduction, Targets};
use sgdlab_operators::LinearOperator;
use std::ops::Range;

/// Model, parameters, data and loss that a curvature operator is evaluated at.
pub struct CurvatureContext<'a, T> {
    pub model: &'a Model,
    pub params: &'a [T],
    pub set: &'a EvalSet<T>,
    pub batches: Vec<Range<usize>>,
    pub loss: Loss,
    /// Forward (and backward) passes kept for Hessian- and Gauss-Newton-vector products, built on
    /// first use.
    hvp_caches: std::sync::OnceLock<Vec<sgdlab_nn::HvpCache<T>>>,
}

impl<'a, T: Scalar> CurvatureContext<'a, T> {
    /// Checks shapes and targets once, so that operators never fail later.
    pub fn new(
        model: &'a Model,
        params: &'a [T],
        set: &'a EvalSet<T>,
        batch_size: usize,
        loss: Loss,
    ) -> Result<Self, ProbeError> {
        if set.is_empty() {
            return Err(ProbeError::Invalid("the evaluation set is empty".into()));
        }
        // Batches only bound memory; a coupling loss is defined on the whole grid only.
        let batches = set.batches(if loss.couples_examples() { 0 } else { batch_size });
        let ctx = CurvatureContext { model, params, set, batches, loss, hvp_caches: std::sync::OnceLock::new() };
        for r in &ctx.batches {
            let b = ctx.batch(r.clone());
            model.loss(params, &b, &ctx.sum())?;
        }
        Ok(ctx)
    }

    /// Number of parameters.
    pub fn dim(&self) -> usize {
        self.model.num_params()
    }

    /// The forward and backward pass of each batch, computed once and reused by every product and
    /// quadratic form (Hessian and GGN alike).
    fn hvp_caches(&self) -> &[sgdlab_nn::HvpCache<T>] {
        self.hvp_caches.get_or_init(|| {
            self.batches
                .iter()
                .map(|r| {
                    self.model.hvp_cache(self.params, &self.batch(r.clone()), &self.sum()).expect("checked in new")
                })
                .collect()
        })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// True when there are no examples (never, after `new`).
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// The batch of examples `r`.
    pub fn batch(&self, r: Range<usize>) -> Batch<'_, T> {
        Batch { x: self.set.x.slice(ndarray::s![r.clone(), ..]), targets: self.set.targets(r) }
    }

    /// The per-batch objective: sums, scaled at the end by [`Self::scale`].
    pub fn sum(&self) -> Objective {
        Objective { loss: self.loss, reduction: Reduction::Sum }
    }

    /// `c`: the mean normaliser over the whole set.
    pub fn scale(&self) -> T {
        self.loss.scale(self.len(), self.model.out_dim(), Reduction::Mean)
    }

    /// Mean loss, accuracy and gradient over the whole set.
    pub fn loss_accuracy_gradient(&self) -> (f64, f64, Vec<T>) {
        let mut g = vec![T::zero(); self.dim()];
        let mut gb = vec![T::zero(); self.dim()];
        let (mut loss, mut correct) = (0.0, 0.0);
        for r in &self.batches {
            let b = self.batch(r.clone());
            loss += self.model.gradient_into(self.params, &b, &self.sum(), &mut gb).expect("checked in new").to_f64();
            let z = self.model.forward(self.params, b.x).expect("checked in new");
            correct += self.loss.accuracy(z.view(), &b.targets) * r.len() as f64;
            for (a, &v) in g.iter_mut().zip(&gb) {
                *a += v;
            }
        }
        let c = self.scale();
        g.iter_mut().for_each(|v| *v *= c);
        (loss * c.to_f64(), correct / self.len() as f64, g)
    }

    /// Mean loss over the whole set at parameters `p` (same model and data).
    pub fn loss_at(&self, p: &[T]) -> f64 {
        let obj = self.sum();
        let s: f64 = self
            .batches
            .iter()
            .map(|r| self.model.loss(p, &self.batch(r.clone()), &obj).expect("checked in new").to_f64())
            .sum();
        s * self.scale().to_f64()
    }

    /// Mean loss and accuracy over the whole set at parameters `p`.
    pub fn loss_accuracy_at(&self, p: &[T]) -> (f64, f64) {
        let obj = self.sum();
        let (mut l, mut c) = (0.0, 0.0);
        for r in &self.batches {
            let b = self.batch(r.clone());
            let (v, z) = self.model.loss_and_logits(p, &b, &obj).expect("checked in new");
            l += v.to_f64();
            c += self.loss.accuracy(z.view(), &b.targets) * r.len() as f64;
        }
        (l * self.scale().to_f64(), c / self.len() as f64)
    }

    /// Mean loss and gradient at parameters `p`.
    pub fn loss_gradient_at(&self, p: &[T]) -> (f64, Vec<T>) {
        let mut g = vec![T::zero(); self.dim()];
        let mut gb = vec![T::zero(); self.dim()];
        let mut loss = 0.0;
        for r in &self.batches {
            loss += self
                .model
                .gradient_into(p, &self.batch(r.clone()), &self.sum(), &mut gb)
                .expect("checked in new")
                .to_f64();
            for (a, &v) in g.iter_mut().zip(&gb) {
                *a += v;
            }
        }
        let c = self.scale();
        g.iter_mut().for_each(|v| *v *= c);
        (loss * c.to_f64(), g)
    }

    /// The Hessian of the mean loss at parameters `p` (not the context's) times `v`, by exact
    /// HVPs over the batches.
    pub fn hvp_at(&self, p: &[T], v: &[T]) -> Vec<T> {
        let vs = ArrayView2::from_shape((1, v.len()), v).expect("one direction");
        let mut out = vec![T::zero(); self.dim()];
        for r in &self.batches {
            let h = self.model.hvp_block(p, &self.batch(r.clone()), &self.sum(), vs).expect("checked in new");
            for (a, &b) in out.iter_mut().zip(h.hvps.row(0)) {
                *a += b;
            }
        }
        let c = self.scale();
        out.iter_mut().for_each(|x| *x *= c);
        out
    }

    /// `c * sum over batches` of per-batch quadratic forms of the rows of `block`, in f64.
    fn forms_over_batches(
        &self,
        block: ArrayView2<'_, T>,
        per_batch: impl Fn(&sgdlab_nn::HvpCache<T>, &Batch<'_, T>) -> Vec<T>,
    ) -> Vec<f64> {
        let mut q = vec![0.0f64; block.nrows()];
        for (r, cache) in self.batches.iter().zip(self.hvp_caches()) {
            for (a, v) in q.iter_mut().zip(per_batch(cache, &self.batch(r.clone()))) {
                *a += v.to_f64();
            }
        }
        let c = self.scale().to_f64();
        q.iter_mut().for_each(|v| *v *= c);
        q
    }

    /// Per-example gradients `g_i = grad(c N l_i)` (rows), whose mean is the gradient of `L`,
    /// with the given targets for the examples of each batch (`None` = the true targets).
    fn per_example_rows(&self, r: Range<usize>, labels: Option<Vec<u32>>, values: Option<Array2<T>>) -> Array2<T> {
        let x = self.set.x.slice(ndarray::s![r.clone(), ..]);
        let targets = match (&labels, &values) {
            (Some(l), _) => Targets::Classes(l),
            (None, Some(v)) => Targets::Values(v.view()),
            (None, None) => self.set.targets(r),
        };
        let rows = self.model.per_example_gradients(self.params, &Batch { x, targets }, &self.sum());
        let mut rows = rows.expect("checked in new");
        let f = self.scale() * T::from_usize(self.len());
        rows.mapv_inplace(|v| v * f);
        rows
    }
}

fn scaled_sum<T: Scalar>(dim: usize, k: usize, c: T, mut per_batch: impl FnMut(&mut Array2<T>)) -> Array2<T> {
    let mut out = Array2::zeros((k, dim));
    per_batch(&mut out);
    out.mapv_inplace(|v| v * c);
    out
}

/// The Hessian of the mean loss over the set, by exact Hessian-vector products.
pub struct HessianOperator<'a, T> {
    pub ctx: &'a CurvatureContext<'a, T>,
}

impl<T: Scalar> LinearOperator<T> for HessianOperator<'_, T> {
    fn dim(&self) -> usize {
        self.ctx.dim()
    }
    fn apply_block(&self, block: ArrayView2<'_, T>) -> Array2<T> {
        let c = self.ctx;
        scaled_sum(c.dim(), block.nrows(), c.scale(), |out| {
            for (r, cache) in c.batches.iter().zip(c.hvp_caches()) {
                *out +=
                    &c.model.hvp_cached(c.params, cache, &c.batch(r.clone()), &c.sum(), block).expect("checked in new");
            }
        })
    }

    /// `v^T H v` by second-order forward mode (no backward pass), summed over the batches.
    fn quadratic_forms(&self, block: ArrayView2<'_, T>) -> Option<Vec<f64>> {
        let c = self.ctx;
        Some(c.forms_over_batches(block, |cache, b| {
            c.model.hessian_quadratic_forms_cached(c.params, cache, b, &c.sum(), block).expect("checked in new")
        }))
    }
}

/// The generalised Gauss-Newton matrix of the mean loss over the set.
pub struct GgnOperator<'a, T> {
    pub ctx: &'a CurvatureContext<'a, T>,
}

impl<T: Scalar> LinearOperator<T> for GgnOperator<'_, T> {
    fn dim(&self) -> usize {
        self.ctx.dim()
    }
    fn apply_block(&self, block: ArrayView2<'_, T>) -> Array2<T> {
        let c = self.ctx;
        let caches = c.hvp_caches();
        scaled_sum(c.dim(), block.nrows(), c.scale(), |out| {
            for (r, cache) in c.batches.iter().zip(caches) {
                *out += &c
                    .model
                    .ggn_vp_cached(c.params, cache, &c.batch(r.clone()), &c.sum(), block)
                    .expect("checked in new");
            }
        })
    }

    /// `v^T G v = (J v)^T H_z (J v)`, one jvp per direction and batch.
    fn quadratic_forms(&self, block: ArrayView2<'_, T>) -> Option<Vec<f64>> {
        let c = self.ctx;
        Some(c.forms_over_batches(block, |cache, b| {
            c.model.ggn_quadratic_forms_cached(c.params, cache, b, &c.sum(), block).expect("checked in new")
        }))
    }
}

/// Which Fisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FisherKind {
    /// The exact Fisher, equal to the GGN for the losses here.
    Exact,
    /// Monte-Carlo: `samples` labels drawn per example from the model's predictive distribution.
    MonteCarlo { samples: usize },
    /// The empirical Fisher (true labels).
    Empirical,
}

/// `(1/N) sum_rows g g^T` products from stored per-example gradient rows `G` ([rows, P]).
fn outer_product_apply<T: Scalar>(g: &Array2<T>, block: ArrayView2<'_, T>, norm: T) -> Array2<T> {
    // Y = (X G^T) G / rows-normaliser.
    let mut xg = Array2::zeros((block.nrows(), g.nrows()));
    matmul_into(xg.view_mut(), false, block, g.t(), T::one());
    let mut y = Array2::zeros((block.nrows(), g.ncols()));
    matmul_into(y.view_mut(), false, xg.view(), g.view(), norm);
    y
}

/// Bytes of per-example gradients an operator may keep in memory.
pub const MAX_STORED_GRADIENT_BYTES: usize = 1 << 30;

fn check_storage<T>(rows: usize, dim: usize, what: &str) -> Result<(), ProbeError> {
    let bytes = rows.saturating_mul(dim).saturating_mul(std::mem::size_of::<T>());
    if bytes > MAX_STORED_GRADIENT_BYTES {
        return Err(ProbeError::Invalid(format!(
            "{what} needs {rows} per-example gradients of {dim} parameters ({:.1} GiB, limit {:.0} GiB): use fewer --samples",
            bytes as f64 / (1u64 << 30) as f64,
            MAX_STORED_GRADIENT_BYTES as f64 / (1u64 << 30) as f64
        )));
    }
    Ok(())
}

/// A Fisher information matrix of the model's predictive distribution over the set.
pub struct FisherOperator<'a, T> {
    ctx: &'a CurvatureContext<'a, T>,
    kind: FisherKind,
    rows: Option<Array2<T>>,
}

impl<'a, T: Scalar> FisherOperator<'a, T> {
    /// Builds the operator; the sampled variants compute and keep the per-example gradients
    /// (labels for the Monte-Carlo Fisher come from the stream `fisher-labels`).
    pub fn new(ctx: &'a CurvatureContext<'a, T>, kind: FisherKind, stream: &RngStream) -> Result<Self, ProbeError> {
        match kind {
            FisherKind::Exact => {}
            FisherKind::Empirical => ctx.loss.check_per_example("the per-example gradients of the empirical Fisher")?,
            FisherKind::MonteCarlo { .. } => {
                ctx.loss.check_per_example("the per-example gradients of the Monte-Carlo Fisher")?;
            }
        }
        let rows = match kind {
            FisherKind::Exact => None,
            FisherKind::Empirical => {
                check_storage::<T>(ctx.len(), ctx.dim(), "the empirical Fisher")?;
                let parts: Vec<Array2<T>> =
                    ctx.batches.iter().map(|r| ctx.per_example_rows(r.clone(), None, None)).collect();
                Some(
                    ndarray::concatenate(Axis(0), &parts.iter().map(|a| a.view()).collect::<Vec<_>>())
                        .expect("same widths"),
                )
            }
            FisherKind::MonteCarlo { samples } => {
                if samples == 0 {
                    return Err(ProbeError::Invalid(
                        "the Monte-Carlo Fisher needs at least one sample per example".into(),
                    ));
                }
                check_storage::<T>(ctx.len() * samples, ctx.dim(), "the Monte-Carlo Fisher")?;
                let mut rng = stream.child("fisher-labels").rng();
                let cn = ctx.scale().to_f64() * ctx.len() as f64;
                let mse_variance = 1.0 / (2.0 * cn);
                let mut parts = Vec::new();
                for r in &ctx.batches {
                    let z = ctx
                        .model
                        .forward(ctx.params, ctx.set.x.slice(ndarray::s![r.clone(), ..]))
                        .expect("checked in new");
                    for _ in 0..samples {
                        let (labels, values) = sample_targets(ctx.loss, z.view(), mse_variance, &mut rng);
                        parts.push(ctx.per_example_rows(r.clone(), labels, values));
                    }
                }
                Some(
                    ndarray::concatenate(Axis(0), &parts.iter().map(|a| a.view()).collect::<Vec<_>>())
                        .expect("same widths"),
                )
            }
        };
        Ok(FisherOperator { ctx, kind, rows })
    }

    /// Which Fisher this is.
    pub fn kind(&self) -> FisherKind {
        self.kind
    }
}

/// Draws targets from the model's predictive distribution: a class from softmax(z) (CE), a
/// label from sigmoid(z) (logistic), or z + N(0, variance) (MSE). The per-example objective is
/// `c N l_i`, so MSE's is `(c N) ||z - y||^2`: the negative log-likelihood (up to a constant) of a
/// Gaussian with variance `1 / (2 c N)`, which is `K / 2` for the mean over all elements.
fn sample_targets<T: Scalar>(
    loss: Loss,
    z: ArrayView2<'_, T>,
    mse_variance: f64,
    rng: &mut sgdlab_linalg::StreamRng,
) -> (Option<Vec<u32>>, Option<Array2<T>>) {
    match loss {
        Loss::CrossEntropy => {
            let labels = z
                .rows()
                .into_iter()
                .map(|row| {
                    let m = row.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v.to_f64()));
                    let w: Vec<f64> = row.iter().map(|&v| (v.to_f64() - m).exp()).collect();
                    let total: f64 = w.iter().sum();
                    let mut u = rng.random::<f64>() * total;
                    for (k, wk) in w.iter().enumerate() {
                        if u < *wk {
                            return k as u32;
                        }
                        u -= wk;
                    }
                    (w.len() - 1) as u32
                })
                .collect();
            (Some(labels), None)
        }
        Loss::Logistic => {
            let labels = z
                .rows()
                .into_iter()
                .map(|row| u32::from(rng.random::<f64>() < 1.0 / (1.0 + (-row[0].to_f64()).exp())))
                .collect();
            (Some(labels), None)
        }
        Loss::Sobolev { .. } => unreachable!("refused in FisherOperator::new"),
        Loss::Mse => {
            let sd = mse_variance.sqrt();
            (None, Some(z.mapv(|v| v + T::from_f64(sd * standard_normal::<f64, _>(rng)))))
        }
    }
}

impl<T: Scalar> LinearOperator<T> for FisherOperator<'_, T> {
    fn dim(&self) -> usize {
        self.ctx.dim()
    }
    fn apply_block(&self, block: ArrayView2<'_, T>) -> Array2<T> {
        match &self.rows {
            None => GgnOperator { ctx: self.ctx }.apply_block(block),
            Some(g) => outer_product_apply(g, block, T::one() / T::from_usize(g.nrows())),
        }
    }

    /// The exact Fisher's forms are the GGN's; the sampled ones are products with stored rows
    /// already, so they have none of their own.
    fn quadratic_forms(&self, block: ArrayView2<'_, T>) -> Option<Vec<f64>> {
        match self.rows {
            None => GgnOperator { ctx: self.ctx }.quadratic_forms(block),
            Some(_) => None,
        }
    }
}

/// The covariance of per-example gradients, `Sigma = (1/N) sum_i (g_i - g)(g_i - g)^T`. The
/// noise of a minibatch gradient of size `B` drawn with replacement has covariance `Sigma / B`
/// (times `(N - B)/(N - 1)` without replacement): Zhu et al. 2019 (PROTOCOLS 8.1).
pub struct GradientNoiseOperator<T> {
    centred: Array2<T>,
    mean: Vec<T>,
}

impl<T: Scalar> GradientNoiseOperator<T> {
    /// Computes and keeps the centred per-example gradients.
    pub fn new(ctx: &CurvatureContext<'_, T>) -> Result<Self, ProbeError> {
        ctx.loss.check_per_example("the per-example gradients of the gradient-noise covariance")?;
        check_storage::<T>(ctx.len(), ctx.dim(), "the gradient-noise covariance")?;
        let parts: Vec<Array2<T>> = ctx.batches.iter().map(|r| ctx.per_example_rows(r.clone(), None, None)).collect();
        let mut g =
            ndarray::concatenate(Axis(0), &parts.iter().map(|a| a.view()).collect::<Vec<_>>()).expect("same widths");
        let inv = T::one() / T::from_usize(g.nrows());
        let mean = g.sum_axis(Axis(0)).mapv(|v| v * inv);
        for mut row in g.rows_mut() {
            row -= &mean;
        }
        Ok(GradientNoiseOperator { centred: g, mean: mean.to_vec() })
    }

    /// The centred per-example gradients `g_i - g` (rows).
    pub fn centred(&self) -> &Array2<T> {
        &self.centred
    }

    /// The mean gradient `g`.
    pub fn mean(&self) -> &[T] {
        &self.mean
    }

    /// `Tr Sigma = (1/N) sum_i ||g_i - g||^2`.
    pub fn trace(&self) -> f64 {
        self.centred.iter().map(|&v| v.to_f64() * v.to_f64()).sum::<f64>() / self.centred.nrows() as f64
    }

    /// `||Sigma||_F`, from the Gram matrix of the centred gradients:
    /// `||Sigma||_F^2 = (1/N^2) sum_ij ((g_i - g).(g_j - g))^2`.
    pub fn frobenius_norm(&self) -> f64 {
        let n = self.centred.nrows();
        let mut gram = Array2::<T>::zeros((n, n));
        matmul_into(gram.view_mut(), false, self.centred.view(), self.centred.t(), T::one());
        (gram.iter().map(|&v| v.to_f64() * v.to_f64()).sum::<f64>()).sqrt() / n as f64
    }
}

impl<T: Scalar> LinearOperator<T> for GradientNoiseOperator<T> {
    fn dim(&self) -> usize {
        self.centred.ncols()
    }
    fn apply_block(&self, block: ArrayView2<'_, T>) -> Array2<T> {
        outer_product_apply(&self.centred, block, T::one() / T::from_usize(self.centred.nrows()))
    }
}
