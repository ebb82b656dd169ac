//! The [`LinearOperator`] trait, its dense and composite implementations, and [`materialize`].

use crate::OperatorError;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut2, Axis, s};
use sgdlab_linalg::{Scalar, matmul_into};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A square linear map `A: R^n -> R^n` applied to blocks of vectors (the curvlinops design).
///
/// A *block* has shape `[k, n]` and **each row is one vector**; `apply_block` returns the block
/// whose row `i` is `A x_i`, i.e. `X A^T` in matrix terms. Rows are the contiguous axis of the
/// blocks this crate's estimators pass (standard layout), so a model-based operator (Hessian-,
/// GGN- or Fisher-vector products over a network) can process one vector at a time with
/// `block.row(i)`. Implementations must still accept any layout.
///
/// The trait is object safe: every estimator takes `&dyn LinearOperator<T>`.
///
/// Implementations state in their doc comment the formula and the normalisation (mean or sum
/// over the data) of the matrix they represent.
pub trait LinearOperator<T: Scalar> {
    /// `n`, the length of the vectors the operator acts on.
    fn dim(&self) -> usize;

    /// `Y = X A^T`: row `i` of the result is `A` applied to row `i` of `block` (`[k, n]` in,
    /// `[k, n]` out). May panic if `block.ncols() != self.dim()` (estimators never do that).
    fn apply_block(&self, block: ArrayView2<'_, T>) -> Array2<T>;

    /// `A v` for one vector, through [`apply_block`](Self::apply_block) on a one-row block.
    fn apply(&self, v: ArrayView1<'_, T>) -> Array1<T> {
        self.apply_block(v.insert_axis(Axis(0))).index_axis_move(Axis(0), 0)
    }

    /// Whether `A = A^T`. Curvature operators (Hessian, GGN, Fisher) are symmetric, so the
    /// default is `true`; Lanczos-based estimators refuse an operator that says `false`.
    fn is_symmetric(&self) -> bool {
        true
    }

    /// `z_i^T A z_i` for each row `z_i` of `block`, when the operator computes these quadratic
    /// forms more cheaply than the products themselves (a network's Hessian does, by
    /// second-order forward mode). `None`, the default, means it does not: trace estimators then
    /// use [`apply_block`](Self::apply_block) and take the dot products.
    fn quadratic_forms(&self, block: ArrayView2<'_, T>) -> Option<Vec<f64>> {
        let _ = block;
        None
    }
}

macro_rules! forward_operator {
    ($($ptr:ty),*) => {$(
        impl<T: Scalar, O: LinearOperator<T> + ?Sized> LinearOperator<T> for $ptr {
            fn dim(&self) -> usize {
                (**self).dim()
            }
            fn apply_block(&self, block: ArrayView2<'_, T>) -> Array2<T> {
                (**self).apply_block(block)
            }
            fn apply(&self, v: ArrayView1<'_, T>) -> Array1<T> {
                (**self).apply(v)
            }
            fn is_symmetric(&self) -> bool {
                (**self).is_symmetric()
            }
            fn quadratic_forms(&self, block: ArrayView2<'_, T>) -> Option<Vec<f64>> {
                (**self).quadratic_forms(block)
            }
        }
    )*};
}
forward_operator!(&O, &mut O, Box<O>, Rc<O>, Arc<O>);

/// Asymmetry tolerated by [`DenseOperator::new`] when it sets the symmetric flag:
/// `max |a_ij - a_ji| <= DENSE_SYMMETRY_RTOL * n * eps * max |a_ij|`.
pub const DENSE_SYMMETRY_RTOL: f64 = 16.0;

/// An explicit `n x n` matrix `A` as an operator: `apply_block(X) = X A^T`, one faer product
/// per block (no normalisation; it is the matrix itself).
#[derive(Debug, Clone)]
pub struct DenseOperator<T: Scalar> {
    matrix: Array2<T>,
    symmetric: bool,
}

impl<T: Scalar> DenseOperator<T> {
    /// Wrap a square matrix. It is flagged symmetric when
    /// `max |a_ij - a_ji| <= DENSE_SYMMETRY_RTOL * n * eps * max |a_ij|`
    /// (so that `Q diag(lambda) Q^T` computed in floating point counts as symmetric).
    pub fn new(matrix: Array2<T>) -> Result<Self, OperatorError> {
        let (r, c) = matrix.dim();
        if r != c {
            return Err(OperatorError::DimensionMismatch {
                what: format!("DenseOperator::new: a {r}x{c} matrix is not square; columns"),
                expected: r,
                actual: c,
            });
        }
        let amax = matrix.iter().fold(0.0f64, |m, &x| m.max(x.to_f64().abs()));
        let tol = DENSE_SYMMETRY_RTOL * r as f64 * T::EPS.to_f64() * amax;
        let mut symmetric = true;
        'outer: for i in 0..r {
            for j in 0..i {
                if (matrix[(i, j)].to_f64() - matrix[(j, i)].to_f64()).abs() > tol {
                    symmetric = false;
                    break 'outer;
                }
            }
        }
        Ok(DenseOperator { matrix, symmetric })
    }

    /// The wrapped matrix.
    pub fn matrix(&self) -> ArrayView2<'_, T> {
        self.matrix.view()
    }

    /// Unwrap.
    pub fn into_matrix(self) -> Array2<T> {
        self.matrix
    }
}

impl<T: Scalar> LinearOperator<T> for DenseOperator<T> {
    fn dim(&self) -> usize {
        self.matrix.nrows()
    }
    fn apply_block(&self, block: ArrayView2<'_, T>) -> Array2<T> {
        let n = self.dim();
        assert_eq!(
            block.ncols(),
            n,
            "DenseOperator::apply_block: block has {} columns, operator dimension is {n}",
            block.ncols()
        );
        let mut out = Array2::zeros((block.nrows(), n));
        matmul_into(out.view_mut(), false, block, self.matrix.t(), T::one());
        out
    }
    fn is_symmetric(&self) -> bool {
        self.symmetric
    }
}

/// `A + B` (both of the same dimension): `apply_block(X) = X A^T + X B^T`, two products per block.
/// Nest for more terms; combine with [`ScaledOperator`] for weights.
#[derive(Debug, Clone)]
pub struct SumOperator<A, B> {
    a: A,
    b: B,
}

impl<A, B> SumOperator<A, B> {
    /// `A + B`; the dimensions must agree.
    pub fn new<T: Scalar>(a: A, b: B) -> Result<Self, OperatorError>
    where
        A: LinearOperator<T>,
        B: LinearOperator<T>,
    {
        if a.dim() != b.dim() {
            return Err(OperatorError::DimensionMismatch {
                what: "SumOperator::new: second operator".into(),
                expected: a.dim(),
                actual: b.dim(),
            });
        }
        Ok(SumOperator { a, b })
    }
}

impl<T: Scalar, A: LinearOperator<T>, B: LinearOperator<T>> LinearOperator<T> for SumOperator<A, B> {
    fn dim(&self) -> usize {
        self.a.dim()
    }
    fn apply_block(&self, block: ArrayView2<'_, T>) -> Array2<T> {
        let mut y = self.a.apply_block(block);
        y += &self.b.apply_block(block);
        y
    }
    fn is_symmetric(&self) -> bool {
        self.a.is_symmetric() && self.b.is_symmetric()
    }
    fn quadratic_forms(&self, block: ArrayView2<'_, T>) -> Option<Vec<f64>> {
        let (a, b) = (self.a.quadratic_forms(block)?, self.b.quadratic_forms(block)?);
        Some(a.iter().zip(&b).map(|(x, y)| x + y).collect())
    }
}

/// `alpha A`: `apply_block(X) = alpha (X A^T)`.
#[derive(Debug, Clone)]
pub struct ScaledOperator<T, O> {
    inner: O,
    alpha: T,
}

impl<T: Scalar, O: LinearOperator<T>> ScaledOperator<T, O> {
    /// `alpha * inner`.
    pub fn new(inner: O, alpha: T) -> Self {
        ScaledOperator { inner, alpha }
    }
}

impl<T: Scalar, O: LinearOperator<T>> LinearOperator<T> for ScaledOperator<T, O> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn apply_block(&self, block: ArrayView2<'_, T>) -> Array2<T> {
        let mut y = self.inner.apply_block(block);
        y *= self.alpha;
        y
    }
    fn is_symmetric(&self) -> bool {
        self.inner.is_symmetric()
    }
    fn quadratic_forms(&self, block: ArrayView2<'_, T>) -> Option<Vec<f64>> {
        let a = self.alpha.to_f64();
        Some(self.inner.quadratic_forms(block)?.into_iter().map(|q| a * q).collect())
    }
}

/// `A + sigma I` (a spectral shift: eigenvalues `lambda_i + sigma`, same eigenvectors):
/// `apply_block(X) = X A^T + sigma X`. Shifting by `-lambda_max` turns the bottom of a spectrum
/// into its largest-magnitude end.
#[derive(Debug, Clone)]
pub struct ShiftedOperator<T, O> {
    inner: O,
    sigma: T,
}

impl<T: Scalar, O: LinearOperator<T>> ShiftedOperator<T, O> {
    /// `inner + sigma * I`.
    pub fn new(inner: O, sigma: T) -> Self {
        ShiftedOperator { inner, sigma }
    }
}

impl<T: Scalar, O: LinearOperator<T>> LinearOperator<T> for ShiftedOperator<T, O> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn apply_block(&self, block: ArrayView2<'_, T>) -> Array2<T> {
        let mut y = self.inner.apply_block(block);
        y.scaled_add(self.sigma, &block);
        y
    }
    fn is_symmetric(&self) -> bool {
        self.inner.is_symmetric()
    }
    fn quadratic_forms(&self, block: ArrayView2<'_, T>) -> Option<Vec<f64>> {
        let q = self.inner.quadratic_forms(block)?;
        let s = self.sigma.to_f64();
        Some(q.into_iter().zip(block.rows()).map(|(q, z)| q + s * norm(z).powi(2)).collect())
    }
}

/// The principal block `A[S, S]` of an operator on the contiguous coordinates `S = range`
/// (e.g. one layer's weight in a flat parameter vector), as an operator of dimension `|S|`:
/// `apply_block(X)` pads each row of `X` with zeros outside `S`, applies `A` and keeps the
/// coordinates in `S`. An estimator run on it therefore uses probe vectors that are zero outside
/// `S`: Hutchinson on it estimates `tr A[S, S]` (the trace of `A` restricted to the block), and
/// Lanczos the spectrum of the block. Each product costs one product with `A`; quadratic forms
/// `z^T A[S, S] z` are the inner operator's forms of the padded vectors, when it has them.
#[derive(Debug, Clone)]
pub struct PrincipalBlockOperator<O> {
    inner: O,
    range: std::ops::Range<usize>,
    full: usize,
}

impl<O> PrincipalBlockOperator<O> {
    /// `A[range, range]`; `range` must be non-empty and lie inside `0..A.dim()`.
    pub fn new<T: Scalar>(inner: O, range: std::ops::Range<usize>) -> Result<Self, OperatorError>
    where
        O: LinearOperator<T>,
    {
        let full = inner.dim();
        if range.start >= range.end || range.end > full {
            return Err(OperatorError::InvalidParams(format!(
                "PrincipalBlockOperator::new: the block {}..{} is not a non-empty range inside 0..{full}",
                range.start, range.end
            )));
        }
        Ok(PrincipalBlockOperator { inner, range, full })
    }

    /// The coordinates of the block in the inner operator's space.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.range.clone()
    }

    /// The wrapped operator.
    pub fn inner(&self) -> &O {
        &self.inner
    }

    fn pad<T: Scalar>(&self, block: ArrayView2<'_, T>) -> Array2<T> {
        let mut padded = Array2::zeros((block.nrows(), self.full));
        padded.slice_mut(s![.., self.range.clone()]).assign(&block);
        padded
    }
}

impl<T: Scalar, O: LinearOperator<T>> LinearOperator<T> for PrincipalBlockOperator<O> {
    fn dim(&self) -> usize {
        self.range.len()
    }
    fn apply_block(&self, block: ArrayView2<'_, T>) -> Array2<T> {
        let y = self.inner.apply_block(self.pad(block).view());
        y.slice(s![.., self.range.clone()]).to_owned()
    }
    fn is_symmetric(&self) -> bool {
        self.inner.is_symmetric()
    }
    fn quadratic_forms(&self, block: ArrayView2<'_, T>) -> Option<Vec<f64>> {
        self.inner.quadratic_forms(self.pad(block).view())
    }
}

/// A pass-through wrapper that counts matrix-vector products (rows of every block applied) and
/// `apply_block` calls, with atomics so that it is `Sync` like the operator it wraps.
///
/// Every estimator reports the products it used in its `matvecs` field; this wrapper is the
/// independent check of that number (and a budget meter for model-based operators).
#[derive(Debug)]
pub struct CountingOperator<O> {
    inner: O,
    matvecs: AtomicUsize,
    calls: AtomicUsize,
    forms: AtomicUsize,
}

impl<O> CountingOperator<O> {
    /// Wrap `inner` with both counters at zero.
    pub fn new(inner: O) -> Self {
        CountingOperator { inner, matvecs: AtomicUsize::new(0), calls: AtomicUsize::new(0), forms: AtomicUsize::new(0) }
    }
    /// Matrix-vector products so far (the sum of the row counts of all blocks applied).
    pub fn matvecs(&self) -> usize {
        self.matvecs.load(Ordering::Relaxed)
    }
    /// `apply_block` calls so far (`apply` counts as one call of one row).
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }
    /// Quadratic forms `z^T A z` the inner operator computed directly (rows of blocks passed to
    /// `quadratic_forms` for which it returned values).
    pub fn quadratic_forms_used(&self) -> usize {
        self.forms.load(Ordering::Relaxed)
    }
    /// Set all counters to zero.
    pub fn reset(&self) {
        self.matvecs.store(0, Ordering::Relaxed);
        self.calls.store(0, Ordering::Relaxed);
        self.forms.store(0, Ordering::Relaxed);
    }
    /// The wrapped operator.
    pub fn inner(&self) -> &O {
        &self.inner
    }
    /// Unwrap.
    pub fn into_inner(self) -> O {
        self.inner
    }
}

impl<T: Scalar, O: LinearOperator<T>> LinearOperator<T> for CountingOperator<O> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn apply_block(&self, block: ArrayView2<'_, T>) -> Array2<T> {
        self.matvecs.fetch_add(block.nrows(), Ordering::Relaxed);
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.apply_block(block)
    }
    fn apply(&self, v: ArrayView1<'_, T>) -> Array1<T> {
        self.matvecs.fetch_add(1, Ordering::Relaxed);
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.apply(v)
    }
    fn is_symmetric(&self) -> bool {
        self.inner.is_symmetric()
    }
    fn quadratic_forms(&self, block: ArrayView2<'_, T>) -> Option<Vec<f64>> {
        let q = self.inner.quadratic_forms(block)?;
        self.forms.fetch_add(block.nrows(), Ordering::Relaxed);
        Some(q)
    }
}

/// Columns per `apply_block` call in [`materialize`].
pub const MATERIALIZE_BLOCK: usize = 64;

/// The explicit matrix of `op`, built column by column: column `j` is `A e_j`, computed in blocks
/// of [`MATERIALIZE_BLOCK`] unit vectors (`n` matrix-vector products in all).
///
/// Refused with [`OperatorError::TooLarge`] when `op.dim() > max_dim`, so that a dense copy of a
/// network-sized operator is never built by accident. For a [`DenseOperator`] the result equals
/// the wrapped matrix exactly (each entry is a product with a single non-zero term).
pub fn materialize<T: Scalar>(op: &dyn LinearOperator<T>, max_dim: usize) -> Result<Array2<T>, OperatorError> {
    let n = op.dim();
    if n > max_dim {
        return Err(OperatorError::TooLarge {
            dim: n,
            max_dim,
            bytes: (n as u128) * (n as u128) * std::mem::size_of::<T>() as u128,
        });
    }
    sgdlab_linalg::memory::Estimate::new(format!("materialising a {n} x {n} operator"))
        .array(&[n, n], std::mem::size_of::<T>())
        .array(&[MATERIALIZE_BLOCK, n], 2 * std::mem::size_of::<T>())
        .check()?;
    let mut out = Array2::zeros((n, n));
    let mut done = 0;
    while done < n {
        let c = MATERIALIZE_BLOCK.min(n - done);
        let mut e = Array2::zeros((c, n));
        for i in 0..c {
            e[(i, done + i)] = T::one();
        }
        let y = checked_apply(op, e.view(), "materialize", done)?;
        out.slice_mut(s![.., done..done + c]).assign(&y.t());
        done += c;
    }
    Ok(out)
}

/// `op.apply_block(block)`, with the output's shape and finiteness checked.
pub(crate) fn checked_apply<T: Scalar>(
    op: &dyn LinearOperator<T>,
    block: ArrayView2<'_, T>,
    estimator: &'static str,
    matvecs_before: usize,
) -> Result<Array2<T>, OperatorError> {
    let y = op.apply_block(block);
    if y.dim() != block.dim() {
        return Err(OperatorError::BadOutputShape { estimator, expected: block.dim(), actual: y.dim() });
    }
    if let Some(((row, col), _)) = y.indexed_iter().find(|(_, x)| !x.is_finite()) {
        return Err(OperatorError::NonFinite { estimator, row, col, matvecs: matvecs_before });
    }
    Ok(y)
}

/// Apply `op` to the rows of `x` in chunks of at most `block_size` rows.
pub(crate) fn apply_in_blocks<T: Scalar>(
    op: &dyn LinearOperator<T>,
    x: ArrayView2<'_, T>,
    block_size: usize,
    estimator: &'static str,
    matvecs: &mut usize,
) -> Result<Array2<T>, OperatorError> {
    let (k, n) = x.dim();
    let mut out = Array2::zeros((k, n));
    let mut done = 0;
    while done < k {
        let c = block_size.max(1).min(k - done);
        let y = checked_apply(op, x.slice(s![done..done + c, ..]), estimator, *matvecs)?;
        *matvecs += c;
        out.slice_mut(s![done..done + c, ..]).assign(&y);
        done += c;
    }
    Ok(out)
}

/// `z_i^T A z_i` for the rows of `x`, in chunks of at most `block_size` rows: by the operator's
/// own quadratic forms when `use_forms` and it has them (counted in `forms`), else by products
/// (counted in `matvecs`) and dot products. The values are the same up to rounding either way.
pub(crate) fn quadratic_forms_in_blocks<T: Scalar>(
    op: &dyn LinearOperator<T>,
    x: ArrayView2<'_, T>,
    block_size: usize,
    use_forms: bool,
    estimator: &'static str,
    matvecs: &mut usize,
    forms: &mut usize,
) -> Result<Vec<f64>, OperatorError> {
    let k = x.nrows();
    let mut out = Vec::with_capacity(k);
    let mut done = 0;
    while done < k {
        let c = block_size.max(1).min(k - done);
        let block = x.slice(s![done..done + c, ..]);
        let direct = if use_forms { op.quadratic_forms(block) } else { None };
        match direct {
            Some(q) => {
                let bad = |problem: String| OperatorError::BadQuadraticForms { estimator, problem, forms: *forms };
                if q.len() != c {
                    return Err(bad(format!("returned {} values for a block of {c} rows", q.len())));
                }
                if let Some(i) = q.iter().position(|v| !v.is_finite()) {
                    return Err(bad(format!("returned a non-finite value for row {i}")));
                }
                *forms += c;
                out.extend(q);
            }
            None => {
                let y = checked_apply(op, block, estimator, *matvecs)?;
                *matvecs += c;
                out.extend(row_dots(block, y.view()));
            }
        }
        done += c;
    }
    Ok(out)
}

/// Row-wise dot products `sum_j a_ij b_ij`, accumulated in f64.
pub(crate) fn row_dots<T: Scalar>(a: ArrayView2<'_, T>, b: ArrayView2<'_, T>) -> Vec<f64> {
    a.rows()
        .into_iter()
        .zip(b.rows())
        .map(|(x, y)| x.iter().zip(y.iter()).map(|(&p, &q)| p.to_f64() * q.to_f64()).sum())
        .collect()
}

/// Euclidean norm accumulated in f64.
pub(crate) fn norm<T: Scalar>(x: ArrayView1<'_, T>) -> f64 {
    x.iter().map(|&v| v.to_f64() * v.to_f64()).sum::<f64>().sqrt()
}

/// One classical Gram-Schmidt pass: `x = x - sum_i q_i (q_i . x)` over the rows of `q`, the
/// coefficients `q_i . x` added to `coef`.
fn project_out<T: Scalar>(q: ArrayView2<'_, T>, x: &mut Array1<T>, coef: &mut [f64]) {
    let mut h = Array2::<T>::zeros((q.nrows(), 1));
    matmul_into(h.view_mut(), false, q, x.view().insert_axis(Axis(1)), T::one());
    let xm: ArrayViewMut2<'_, T> = x.view_mut().insert_axis(Axis(0));
    matmul_into(xm, true, h.t(), q, -T::one());
    for (c, &hv) in coef.iter_mut().zip(h.iter()) {
        *c += hv.to_f64();
    }
}

/// `x = x - sum_i q_i (q_i . x)` against the orthonormal rows of `q` (classical Gram-Schmidt),
/// repeated while a pass removes more than `1 - 1/sqrt(2)` of the norm (the criterion of Daniel,
/// Gragg, Kaufman & Stewart 1976, as in ARPACK; with "twice is enough", at most three passes).
/// The removed coefficients are added to `coef` (length `q.nrows()`). Returns the final norm of
/// `x`.
pub(crate) fn orthogonalise_against<T: Scalar>(q: ArrayView2<'_, T>, x: &mut Array1<T>, coef: &mut [f64]) -> f64 {
    debug_assert_eq!(coef.len(), q.nrows());
    let mut nrm = norm(x.view());
    if q.nrows() == 0 {
        return nrm;
    }
    for _ in 0..3 {
        project_out(q, x, coef);
        let after = norm(x.view());
        let dropped = after < std::f64::consts::FRAC_1_SQRT_2 * nrm;
        nrm = after;
        if !dropped {
            break;
        }
    }
    nrm
}

/// [`orthogonalise_against`] after a first pass against only the newest `recent` rows of `q`.
///
/// In a symmetric Lanczos step `A q_j` lies, in exact arithmetic, in the span of the newest two
/// blocks and the next one (the three-term recurrence), so the cheap local pass removes nearly
/// everything and the full passes (which read the whole basis twice each) usually stop after one:
/// full re-orthogonalisation at about half the memory traffic of two full passes.
pub(crate) fn orthogonalise_after_recent<T: Scalar>(
    q: ArrayView2<'_, T>,
    recent: usize,
    x: &mut Array1<T>,
    coef: &mut [f64],
) -> f64 {
    let lo = q.nrows().saturating_sub(recent);
    if lo > 0 {
        project_out(q.slice(s![lo.., ..]), x, &mut coef[lo..]);
    }
    orthogonalise_against(q, x, coef)
}
