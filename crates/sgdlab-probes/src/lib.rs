//! sgdlab-probes: every measure of the survey as a pure function of (model, parameters, data,
//! seed) returning named values with diagnostics.
//!
//! * [`curvature`]: Hessian, Gauss-Newton, Fisher and gradient-noise operators over a fixed list
//!   of batches, and the measures built on them (top eigenvalues, trace, spectral density,
//!   epsilon-sharpness, landscape slices, noise alignment, tail index, effective dimensionality).
//! * [`simplicity`]: rank, spectral bias, kernel spectra, effective depth and neural collapse,
//!   geometric complexity, residual lesions, simplicity-bias randomisation, training dynamics,
//!   feature sparsity.

mod common;
pub mod curvature;
pub mod registry;
pub mod simplicity;

pub use common::{EvalSet, ProbeError};
