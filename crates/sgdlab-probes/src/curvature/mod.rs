//! Curvature operators and measures (PROTOCOLS 7, 8, 10.2).
//!
//! Operators ([`operators`]) are [`sgdlab_operators::LinearOperator`]s over the flat parameter
//! vector, for the mean loss over an [`crate::EvalSet`] evaluated in a fixed list of batches;
//! the estimators of `sgdlab-operators` (Lanczos, Hutchinson, SLQ) apply to them directly.

mod backward;
mod iterates;
mod measures;
mod operators;
mod shift;
mod sobolev;

pub use backward::{
    BackwardErrorEstimate, BackwardErrorParams, BackwardErrorPoint, backward_error, least_squares_slope,
};
pub use iterates::{IterateTailEstimate, IterateTailParams, StepScale, iterate_tails, mean_square_step_limit};
pub use measures::{
    DensityGrid, ExactSpectrum, LandscapeParams, LossSummary, MohammadiBlocks, NoiseEstimate, NoiseParams,
    SharpnessEstimate, SlicePoint, TailIndexEstimate, epsilon_sharpness, exact_spectrum, filter_normalized_direction,
    gradient_noise, gradient_noise_tail_index, grid_points, hill_estimator, interpolation, landscape, landscape_slice,
    linspace, loss_summary, mohammadi_estimator, precondition_rows, smoothed_density,
};
pub use operators::{
    CurvatureContext, FisherKind, FisherOperator, GgnOperator, GradientNoiseOperator, HessianOperator,
    MAX_STORED_GRADIENT_BYTES,
};
pub use shift::{
    MinimiseReport, NewtonCgParams, ShiftCurvatureEstimate, ShiftCurvatureParams, ShiftData, TraceValue,
    mean_curvature, minimise_regularised, shift_curvature,
};
pub use sobolev::{SobolevFlatnessEstimate, SobolevFlatnessParams, sobolev_flatness};
