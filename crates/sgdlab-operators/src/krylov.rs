//! The (block) Lanczos process with full re-orthogonalisation, shared by the eigensolver and
//! stochastic Lanczos quadrature.
//!
//! With every new vector orthogonalised against the whole basis, Lanczos is Arnoldi on a
//! symmetric operator: the coefficients of `A v_j` on the basis are kept as column `j` of the
//! projected matrix, which is then symmetrised (its entries above the block tridiagonal are at
//! rounding level). This costs `O(n m)` per step in memory and `O(n m)` flops per step, nothing
//! next to a Hessian-vector product, and avoids the ghost eigenvalues of plain Lanczos
//! (Paige 1971; Parlett 1998, ch. 13).

use crate::OperatorError;
use crate::operator::{LinearOperator, checked_apply, norm, orthogonalise_after_recent, orthogonalise_against};
use crate::probes::ProbeDistribution;
use ndarray::{Array1, Array2, ArrayView2, s};
use sgdlab_linalg::{Scalar, StreamRng, matmul_into, symmetric_eigen};

/// A new basis vector is dropped (the Krylov space is invariant: breakdown) when orthogonalisation
/// leaves less than `BREAKDOWN_FACTOR * eps * ||A||_est` of it, `||A||_est` being the largest
/// `||A v_j||` seen. The coupling coefficient then is set to 0, which perturbs the projected matrix
/// by at most that much.
pub const BREAKDOWN_FACTOR: f64 = 100.0;

/// The output of [`lanczos_decomposition`]: an orthonormal basis `V` (rows `v_0..v_{m-1}`) of the
/// Krylov space `K_m(A, X_0)` and the projected matrix `T = V A V^T`, with the relation
///
/// `V A = T V + C^T N`  (row form of `A V^T = V^T T + N^T C`)
///
/// where `N` holds the next block of basis vectors (orthonormal, orthogonal to `V`) and `C` the
/// coupling coefficients. For a single start vector, `T` is the Lanczos tridiagonal matrix
/// (`alpha_j` on the diagonal, `beta_j` off it), `N` is `v_m` and `C = beta_m e_m^T`.
#[derive(Debug, Clone)]
pub struct LanczosDecomposition<T: Scalar> {
    /// `V`, `[m, n]`, orthonormal rows.
    pub basis: Array2<T>,
    /// `T = V A V^T`, `[m, m]`, symmetric (symmetrised from the computed coefficients).
    pub projected: Array2<f64>,
    /// `N`, `[p, n]` with `p <= block size` (`p = 0` after a breakdown).
    pub next_block: Array2<T>,
    /// `C`, `[p, m]`, non-zero only in the last block's columns.
    pub coupling: Array2<f64>,
    /// Matrix-vector products used (`m` for a single start vector without breakdown).
    pub matvecs: usize,
    /// `true` when the Krylov space became invariant before `steps` steps (the projected matrix
    /// then carries exact eigenvalues of `A` and quadrature is exact for every polynomial).
    pub breakdown: bool,
}

/// `steps` steps of block Lanczos with full re-orthogonalisation from the rows of `start`
/// (Golub & Underwood 1977 for the block form; Parlett 1998 for re-orthogonalisation).
///
/// Each step applies `A` to the newest block of basis vectors (one `apply_block` call, one
/// matrix-vector product per row), orthogonalises the result against the whole basis (two
/// classical Gram-Schmidt passes, a third when the second removes more than half the norm) and
/// appends what is left. Stops early on breakdown (invariant subspace); never restarts, so the
/// basis spans exactly `K_m(A, start)`. Rank-deficient start rows are dropped.
pub fn lanczos_decomposition<T: Scalar>(
    op: &dyn LinearOperator<T>,
    start: ArrayView2<'_, T>,
    steps: usize,
) -> Result<LanczosDecomposition<T>, OperatorError> {
    if !op.is_symmetric() {
        return Err(OperatorError::NotSymmetric { estimator: "lanczos_decomposition" });
    }
    let mut kr = Krylov::new(op, start, None, "lanczos_decomposition")?;
    let dropped_at_start = kr.dropped;
    for _ in 0..steps {
        if kr.exhausted() {
            break;
        }
        kr.step(None)?;
    }
    let m = kr.applied;
    let total = kr.basis.nrows();
    let (projected, coupling) = kr.projected();
    Ok(LanczosDecomposition {
        basis: kr.basis.slice(s![0..m, ..]).to_owned(),
        projected,
        next_block: kr.basis.slice(s![m..total, ..]).to_owned(),
        coupling,
        matvecs: kr.matvecs,
        breakdown: kr.dropped > dropped_at_start,
    })
}

/// Ritz pairs of the current projected matrix.
pub(crate) struct Ritz {
    /// Ritz values, ascending.
    pub values: Vec<f64>,
    /// Eigenvectors of the projected matrix, as columns (`[m, m]`).
    pub vectors: Array2<f64>,
    /// `||A y_i - theta_i y_i||` for each Ritz pair (unit `y_i`), from the coupling block.
    pub residuals: Vec<f64>,
}

pub(crate) struct Krylov<'a, T: Scalar> {
    op: &'a dyn LinearOperator<T>,
    estimator: &'static str,
    n: usize,
    /// Orthonormal rows; rows `0..applied` have had `A` applied.
    pub basis: Array2<T>,
    pub applied: usize,
    /// `columns[j][l]` = coefficient of `A v_j` on `v_l` (missing entries are zero).
    columns: Vec<Vec<f64>>,
    pub matvecs: usize,
    pub norm_estimate: f64,
    /// Rows dropped because they were (numerically) in the span of the basis.
    pub dropped: usize,
    /// Random rows added in place of dropped ones.
    pub random_fills: usize,
}

impl<'a, T: Scalar> Krylov<'a, T> {
    /// Orthonormalise the start rows. Rows that are zero or dependent are replaced by random rows
    /// when `fill` is given, dropped otherwise.
    pub fn new(
        op: &'a dyn LinearOperator<T>,
        start: ArrayView2<'_, T>,
        fill: Option<&mut StreamRng>,
        estimator: &'static str,
    ) -> Result<Self, OperatorError> {
        let n = op.dim();
        if start.ncols() != n {
            return Err(OperatorError::DimensionMismatch {
                what: format!("{estimator}: start vectors (columns)"),
                expected: n,
                actual: start.ncols(),
            });
        }
        if start.nrows() == 0 {
            return Err(OperatorError::InvalidParams(format!("{estimator}: no start vector given")));
        }
        let mut kr = Krylov {
            op,
            estimator,
            n,
            basis: Array2::zeros((0, n)),
            applied: 0,
            columns: Vec::new(),
            matvecs: 0,
            norm_estimate: 0.0,
            dropped: 0,
            random_fills: 0,
        };
        let mut missing = 0;
        for row in start.rows() {
            let before = norm(row);
            let mut x = row.to_owned();
            let mut coef = vec![0.0; kr.basis.nrows()];
            let after = orthogonalise_against(kr.basis.view(), &mut x, &mut coef);
            if before > 0.0 && after > BREAKDOWN_FACTOR * T::EPS.to_f64() * before {
                kr.push(x, after);
            } else {
                missing += 1;
            }
        }
        if missing > 0 {
            kr.dropped += missing;
            if let Some(rng) = fill {
                kr.fill_random(missing, rng);
            }
        }
        if kr.basis.nrows() == 0 {
            return Err(OperatorError::InvalidParams(format!(
                "{estimator}: the start vector is zero (or the start block has rank 0)"
            )));
        }
        Ok(kr)
    }

    fn push(&mut self, mut x: Array1<T>, nrm: f64) {
        x *= T::from_f64(1.0 / nrm);
        self.basis.push_row(x.view()).expect("row length equals the operator dimension");
    }

    /// Add up to `count` random unit rows orthogonal to the basis (fewer if the basis spans
    /// (numerically) the whole space).
    fn fill_random(&mut self, count: usize, rng: &mut StreamRng) {
        for _ in 0..count {
            if self.basis.nrows() >= self.n {
                return;
            }
            let mut x = ProbeDistribution::Gaussian.sample::<T, _>(1, self.n, rng).row(0).to_owned();
            let before = norm(x.view());
            let mut coef = vec![0.0; self.basis.nrows()];
            let after = orthogonalise_against(self.basis.view(), &mut x, &mut coef);
            // A Gaussian vector keeps about sqrt((n - r) / n) of its norm; far less means the
            // basis already spans everything up to rounding.
            if after > 1e3 * T::EPS.to_f64() * before {
                self.push(x, after);
                self.random_fills += 1;
            }
        }
    }

    /// No rows left to apply.
    pub fn exhausted(&self) -> bool {
        self.applied == self.basis.nrows()
    }

    /// Apply `A` to the newest block and extend the basis. Dependent new rows are replaced by
    /// random orthogonal rows (zero coupling) when `fill` is given, dropped otherwise.
    pub fn step(&mut self, fill: Option<&mut StreamRng>) -> Result<(), OperatorError> {
        let lo = self.applied;
        let hi = self.basis.nrows();
        if lo == hi {
            return Ok(());
        }
        let w = checked_apply(self.op, self.basis.slice(s![lo..hi, ..]), self.estimator, self.matvecs)?;
        self.matvecs += hi - lo;
        for row in w.rows() {
            self.norm_estimate = self.norm_estimate.max(norm(row));
        }
        let floor = BREAKDOWN_FACTOR * T::EPS.to_f64() * self.norm_estimate;
        let mut missing = 0;
        for row in w.rows() {
            let mut x = row.to_owned();
            let mut coef = vec![0.0; self.basis.nrows()];
            // The newest rows: this block and the one before it (the three-term recurrence).
            let recent = (self.basis.nrows() - lo) + (hi - lo);
            let after = orthogonalise_after_recent(self.basis.view(), recent, &mut x, &mut coef);
            if after > floor && self.basis.nrows() < self.n {
                coef.push(after);
                self.push(x, after);
            } else {
                missing += 1;
            }
            self.columns.push(coef);
        }
        self.applied = hi;
        if missing > 0 {
            self.dropped += missing;
            if let Some(rng) = fill {
                self.fill_random(missing, rng);
            }
        }
        Ok(())
    }

    /// The symmetrised projected matrix `[m, m]` (`m = applied`) and the coupling strip
    /// `[rows - m, m]`.
    pub fn projected(&self) -> (Array2<f64>, Array2<f64>) {
        let m = self.applied;
        let rows = self.basis.nrows();
        let mut t = Array2::<f64>::zeros((m, m));
        let mut c = Array2::<f64>::zeros((rows - m, m));
        for (j, col) in self.columns.iter().enumerate() {
            for (l, &v) in col.iter().enumerate() {
                if l < m {
                    t[(l, j)] = v;
                } else {
                    c[(l - m, j)] = v;
                }
            }
        }
        let sym = (&t + &t.t()) * 0.5;
        (sym, c)
    }

    /// Eigenpairs of the projected matrix and their residual norms.
    pub fn ritz(&self) -> Result<Ritz, OperatorError> {
        let (t, c) = self.projected();
        let e = symmetric_eigen(t.view())?;
        let cs = c.dot(&e.vectors);
        let residuals = (0..e.values.len()).map(|i| cs.column(i).iter().map(|x| x * x).sum::<f64>().sqrt()).collect();
        Ok(Ritz { values: e.values.to_vec(), vectors: e.vectors, residuals })
    }

    /// Ritz vectors `y_i = V^T s_i` for the given columns of the projected eigenvectors, as rows.
    pub fn ritz_vectors(&self, vectors: &Array2<f64>, which: &[usize]) -> Array2<T> {
        let m = self.applied;
        let mut sel = Array2::<T>::zeros((which.len(), m));
        for (r, &i) in which.iter().enumerate() {
            for l in 0..m {
                sel[(r, l)] = T::from_f64(vectors[(l, i)]);
            }
        }
        let mut y = Array2::<T>::zeros((which.len(), self.n));
        matmul_into(y.view_mut(), false, sel.view(), self.basis.slice(s![0..m, ..]), T::one());
        y
    }
}
