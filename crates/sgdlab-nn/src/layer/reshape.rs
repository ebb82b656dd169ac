//! Layers that move no data or only mask it: `Flatten` (a new shape; rows are already flat) and
//! `Dropout` (the identity when probing; in training each value is zeroed with probability `p`
//! and the others scaled by `1 / (1 - p)`, as PyTorch's).

use super::{CotangentTrace, LayerRules, Mode, ParamCotangent, Saved, TangentTrace, Trace};
use crate::init::LayerInit;
use crate::shape::Shape;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, CowArray, Ix2};
use rand::RngExt;
use sgdlab_linalg::Scalar;

/// `Flatten(start_dim, end_dim=-1)`: dimensions from `start_dim` (1 = all, PyTorch's default,
/// counting the batch as dimension 0) merged into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flatten {
    pub start_dim: usize,
    /// Values per example.
    pub features: usize,
}

/// `Dropout(p)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    pub p: f64,
    /// Values per example.
    pub features: usize,
}

/// Rules of a layer that is the identity on its data (flatten; dropout when evaluating).
macro_rules! identity_rules {
    () => {
        fn jvp<T: Scalar>(
            &self,
            _: &[T],
            _: Option<&[T]>,
            trace: &Trace<T>,
            dx: Option<Array2<T>>,
        ) -> (Array2<T>, TangentTrace<T>) {
            let dy = self.mask_tangent(trace, dx);
            (dy, TangentTrace::leaf(None))
        }

        fn vjp<T: Scalar>(
            &self,
            _: &[T],
            trace: &Trace<T>,
            gy: CowArray<'_, T, Ix2>,
            _: Option<ParamCotangent<'_, T>>,
            need_gx: bool,
        ) -> Option<Array2<T>> {
            need_gx.then(|| self.mask_tangent(trace, Some(gy.into_owned())))
        }

        fn vjp_per_example<T: Scalar>(
            &self,
            _: &[T],
            trace: &Trace<T>,
            gy: ArrayView2<'_, T>,
            _: ArrayViewMut2<'_, T>,
            need_gx: bool,
        ) -> Result<Option<Array2<T>>, String> {
            Ok(need_gx.then(|| self.mask_tangent(trace, Some(gy.to_owned()))))
        }

        fn vjp_tangent<T: Scalar>(
            &self,
            _: &[T],
            _: &[T],
            trace: &Trace<T>,
            _: &TangentTrace<T>,
            _: &CotangentTrace<T>,
            dgy: Array2<T>,
            _: &mut [T],
            need_gx: bool,
        ) -> Option<Array2<T>> {
            need_gx.then(|| self.mask_tangent(trace, Some(dgy)))
        }

        fn jet2<T: Scalar>(
            &self,
            _: &[T],
            _: &[T],
            trace: &Trace<T>,
            dx: Option<&Array2<T>>,
            d2x: Option<&Array2<T>>,
        ) -> (Option<Array2<T>>, Option<Array2<T>>) {
            let m = |z: &Array2<T>| self.mask_tangent(trace, Some(z.clone()));
            (dx.map(m), d2x.map(m))
        }

        fn num_params(&self) -> usize {
            0
        }

        fn out_len(&self, _: usize) -> usize {
            self.features
        }

        fn param_entries(&self, _: &str, _: &mut Vec<(String, Vec<usize>)>) {}

        fn init<T: Scalar>(&self, _: &str, _: &LayerInit<'_>, _: &mut [T]) {}

        fn couples_examples(&self, _: &Mode) -> bool {
            false
        }

        fn kink_distance<T: Scalar>(&self, _: &Trace<T>) -> f64 {
            f64::INFINITY
        }
    };
}

/// A trace with no input, remembering the batch size (as rows of width 0).
fn empty_trace<T: Scalar>(batch: usize, saved: Saved<T>) -> Trace<T> {
    Trace::with(Array2::zeros((batch, 0)), saved)
}

impl Flatten {
    /// A tangent (or cotangent) passes through unchanged; `None` is a zero tangent of the
    /// traced batch size.
    fn mask_tangent<T: Scalar>(&self, trace: &Trace<T>, z: Option<Array2<T>>) -> Array2<T> {
        z.unwrap_or_else(|| Array2::zeros((trace.input.nrows(), self.features)))
    }
}

impl LayerRules for Flatten {
    fn kind(&self) -> &'static str {
        "flatten"
    }

    fn out_shape(&self, input: Shape) -> Result<Shape, String> {
        if input.len() != self.features {
            return Err(format!("flatten built for {} values gets {input}", self.features));
        }
        match (self.start_dim, input.dims()) {
            (1, _) => Ok(Shape::flat(input.len())),
            (2, [c, ..]) => Ok(if input.rank() == 1 { input } else { Shape::seq(*c, input.len() / c) }),
            (d, _) if d > input.rank() => Ok(input),
            (d, _) => Err(format!("flatten from dimension {d} is not supported (only 1 and 2)")),
        }
    }

    fn forward<T: Scalar>(&self, _: &[T], x: ArrayView2<'_, T>, _: &Mode) -> Array2<T> {
        x.to_owned()
    }

    fn forward_traced<T: Scalar>(&self, _: &[T], x: Array2<T>, _: &Mode) -> (Array2<T>, Trace<T>) {
        let t = empty_trace(x.nrows(), Saved::Nothing);
        (x, t)
    }

    identity_rules!();
}

impl Dropout {
    /// The mask of a training pass: 0 with probability `p`, `1 / (1 - p)` otherwise, drawn from
    /// the layer's stream value by value in row-major order; `None` when evaluating or `p = 0`.
    fn mask<T: Scalar>(&self, mode: &Mode, dim: (usize, usize)) -> Option<Array2<T>> {
        let Mode::Train { dropout } = mode else { return None };
        if self.p == 0.0 {
            return None;
        }
        let mut rng = dropout.rng();
        let keep = if self.p >= 1.0 { T::zero() } else { T::from_f64(1.0 / (1.0 - self.p)) };
        Some(Array2::from_shape_simple_fn(dim, || if rng.random::<f64>() < self.p { T::zero() } else { keep }))
    }

    /// A tangent (or cotangent) times the traced mask; `None` is a zero tangent.
    fn mask_tangent<T: Scalar>(&self, trace: &Trace<T>, z: Option<Array2<T>>) -> Array2<T> {
        let batch = trace.input.nrows();
        match (&trace.saved, z) {
            (Saved::Mask(m), Some(mut z)) => {
                z *= m;
                z
            }
            (Saved::Mask(m), None) => Array2::zeros(m.dim()),
            (Saved::Nothing, Some(z)) => z,
            (Saved::Nothing, None) => Array2::zeros((batch, self.features)),
            (Saved::Columns(_) | Saved::ArgMax(_) | Saved::BatchStats(_), _) => {
                unreachable!("a dropout trace keeps a mask or nothing")
            }
        }
    }
}

impl LayerRules for Dropout {
    fn kind(&self) -> &'static str {
        "dropout"
    }

    fn out_shape(&self, input: Shape) -> Result<Shape, String> {
        if !(0.0..=1.0).contains(&self.p) {
            return Err(format!("dropout probability {} is not in [0, 1]", self.p));
        }
        if input.len() != self.features {
            return Err(format!("dropout built for {} values gets {input}", self.features));
        }
        Ok(input)
    }

    fn forward<T: Scalar>(&self, _: &[T], x: ArrayView2<'_, T>, mode: &Mode) -> Array2<T> {
        match self.mask::<T>(mode, x.dim()) {
            Some(m) => &x * &m,
            None => x.to_owned(),
        }
    }

    fn forward_traced<T: Scalar>(&self, _: &[T], x: Array2<T>, mode: &Mode) -> (Array2<T>, Trace<T>) {
        match self.mask::<T>(mode, x.dim()) {
            Some(m) => {
                let y = &x * &m;
                (y, empty_trace(x.nrows(), Saved::Mask(m)))
            }
            None => {
                let t = empty_trace(x.nrows(), Saved::Nothing);
                (x, t)
            }
        }
    }

    identity_rules!();
}
