//! Linear operators applied to blocks of vectors, and the Krylov and stochastic estimators that
//! only need products with them (the curvlinops design: curvature matrices are operators,
//! estimators are plain functions over the trait, tested on dense matrices with known spectra).
//!
//! - [`LinearOperator`]: `apply_block` on `[k, n]` blocks whose rows are vectors; dense,
//!   sum, scaled, shifted, principal-block and product-counting implementations; [`materialize`].
//! - Eigenvalues: [`lanczos_eigenpairs`] (full re-orthogonalisation, residual-based stopping),
//!   [`power_iteration`] (PyHessian's method, for comparison).
//! - Trace: [`hutchinson_trace`], [`hutch_plus_plus_trace`].
//! - Spectral density: [`spectral_density`] (stochastic Lanczos quadrature), [`lanczos_quadrature`].
//! - Functions of a spectrum: [`effective_dimensionality`], [`near_zero_fraction`].
//!
//! Every estimator takes a `…Params` struct (with a `Default`) and an
//! [`RngStream`](sgdlab_linalg::RngStream) from which it derives named child streams, and
//! returns an `…Estimate` with diagnostics: matrix-vector products used, standard errors,
//! residuals, a converged flag. Scalar diagnostics are f64 whatever the operator's precision.
//!
//! ```
//! use ndarray::array;
//! use sgdlab_linalg::RngStream;
//! use sgdlab_operators::{DenseOperator, LanczosParams, lanczos_eigenpairs};
//!
//! let a = DenseOperator::new(array![[2.0, 1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, -1.0]]).unwrap();
//! let params = LanczosParams { k: 1, tol: 1e-10, ..Default::default() };
//! let top = lanczos_eigenpairs(&a, &params, &RngStream::new(0).child("doc")).unwrap();
//! assert!(top.converged && (top.eigenvalues[0] - 3.0).abs() < 1e-10);
//! assert!(top.matvecs <= 3);
//! ```

#![warn(missing_docs)]

mod error;
mod krylov;
mod lanczos;
mod operator;
mod power;
mod probes;
mod slq;
mod spectrum;
mod trace;

pub use error::OperatorError;
pub use krylov::{BREAKDOWN_FACTOR, LanczosDecomposition, lanczos_decomposition};
pub use lanczos::{
    EigenTarget, LanczosEstimate, LanczosParams, RitzSnapshot, lanczos_eigenpairs, lanczos_eigenpairs_from,
};
pub use operator::{
    CountingOperator, DENSE_SYMMETRY_RTOL, DenseOperator, LinearOperator, MATERIALIZE_BLOCK, PrincipalBlockOperator,
    ScaledOperator, ShiftedOperator, SumOperator, materialize,
};
pub use power::{PowerIterationEstimate, PowerIterationParams, PowerStop, power_iteration};
pub use probes::{MeanEstimate, ProbeDistribution, ProbeSampler};
pub use slq::{QuadratureRule, SpectralDensityEstimate, SpectralDensityParams, lanczos_quadrature, spectral_density};
pub use spectrum::{EffectiveDimensionalityEstimate, effective_dimensionality, near_zero_fraction};
pub use trace::{
    HutchPlusPlusEstimate, HutchPlusPlusParams, HutchinsonParams, TraceEstimate, hutch_plus_plus_trace,
    hutchinson_trace,
};
