//! The one error type of this crate.

use sgdlab_linalg::DecompError;
use thiserror::Error;

/// Why an operator could not be built or an estimator could not run.
///
/// Shape mistakes inside an operator's own code are panics (programming errors); everything an
/// estimator can detect about its inputs (bad parameters, a non-symmetric operator, an operator
/// that returned the wrong shape or non-finite numbers) is an error value naming the estimator.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum OperatorError {
    /// `materialize` was asked for a matrix above its size limit.
    #[error(
        "materialize: the operator has dimension {dim}, above the limit max_dim = {max_dim} \
         (a dense copy would take {bytes} bytes); raise max_dim deliberately or use a matrix-free \
         estimator (Lanczos, Hutchinson, stochastic Lanczos quadrature)"
    )]
    TooLarge {
        /// The operator's dimension.
        dim: usize,
        /// The limit that was given.
        max_dim: usize,
        /// `dim * dim * size_of::<T>()`.
        bytes: u128,
    },
    /// A parameter outside its valid range (the message names the estimator and the parameter).
    #[error("{0}")]
    InvalidParams(String),
    /// Two dimensions that must agree do not.
    #[error("{what}: expected dimension {expected}, got {actual}")]
    DimensionMismatch {
        /// Where the mismatch was found.
        what: String,
        /// The dimension required.
        expected: usize,
        /// The dimension given.
        actual: usize,
    },
    /// A symmetric-only estimator was given an operator whose `is_symmetric()` is false.
    #[error(
        "{estimator}: the operator is not symmetric (is_symmetric() returned false); Lanczos-based estimators need a symmetric operator"
    )]
    NotSymmetric {
        /// The estimator that refused.
        estimator: &'static str,
    },
    /// The operator returned a block of the wrong shape.
    #[error("{estimator}: apply_block returned shape {actual:?} for an input of shape {expected:?}")]
    BadOutputShape {
        /// The estimator that called the operator.
        estimator: &'static str,
        /// The input block's shape (which the output must have).
        expected: (usize, usize),
        /// The output block's shape.
        actual: (usize, usize),
    },
    /// The operator returned NaN or an infinity.
    #[error(
        "{estimator}: apply_block returned a non-finite value (row {row}, column {col}) after {matvecs} matrix-vector products"
    )]
    NonFinite {
        /// The estimator that called the operator.
        estimator: &'static str,
        /// Row of the offending entry in the returned block.
        row: usize,
        /// Column of the offending entry.
        col: usize,
        /// Products done before this call.
        matvecs: usize,
    },
    /// The operator's `quadratic_forms` returned the wrong number of values or a non-finite one.
    #[error("{estimator}: quadratic_forms {problem} (after {forms} quadratic forms)")]
    BadQuadraticForms {
        /// The estimator that called the operator.
        estimator: &'static str,
        /// What was wrong: a count mismatch or the first non-finite value's row.
        problem: String,
        /// Forms computed before this call.
        forms: usize,
    },
    /// A small dense decomposition (of a projected matrix) failed.
    #[error(transparent)]
    Decomposition(#[from] DecompError),
    /// The estimator would need more memory than there is (the message states the estimate).
    #[error(transparent)]
    Memory(#[from] sgdlab_linalg::memory::MemoryError),
}
