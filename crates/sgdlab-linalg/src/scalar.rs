//! The floating-point element type of every tensor, parameter vector and derivative.

use std::fmt::{Debug, Display};
use std::iter::Sum;

/// f32 or f64: everything the engine needs from an element type.
///
/// `from_f64`/`to_f64` convert (rounding to nearest for f32); constants are written in f64 and
/// converted at use so that formulas read the same in both precisions.
pub trait Scalar:
    num_traits::Float
    + ndarray::LinalgScalar
    + ndarray::ScalarOperand
    + faer::traits::RealField
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::MulAssign
    + std::ops::DivAssign
    + Sum
    + Default
    + Debug
    + Display
    + Send
    + Sync
    + 'static
{
    /// The name used in specs, records and error messages (`"f32"` or `"f64"`).
    const NAME: &'static str;
    /// Machine epsilon.
    const EPS: Self;
    /// Convert from f64 (round to nearest).
    fn from_f64(x: f64) -> Self;
    /// Convert to f64 (exact).
    fn to_f64(self) -> f64;
    /// Convert a usize (exact below 2^24 for f32, 2^53 for f64).
    fn from_usize(n: usize) -> Self {
        Self::from_f64(n as f64)
    }
}

impl Scalar for f32 {
    const NAME: &'static str = "f32";
    const EPS: Self = f32::EPSILON;
    #[inline]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    #[inline]
    fn to_f64(self) -> f64 {
        self as f64
    }
}

impl Scalar for f64 {
    const NAME: &'static str = "f64";
    const EPS: Self = f64::EPSILON;
    #[inline]
    fn from_f64(x: f64) -> Self {
        x
    }
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
}
