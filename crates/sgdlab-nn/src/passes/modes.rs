//! Passes in a chosen [`Mode`]: a model's passes as PyTorch runs them after `model.train()`
//! (dropout masks, batch-norm batch statistics). [`Model`]'s own passes are evaluation-mode.
//!
//! ```
//! use sgdlab_nn::{ArchSpec, Batch, InitSpec, Loss, Mode, Model, Objective, Targets};
//! use sgdlab_linalg::RngStream;
//! let arch: ArchSpec = "seq:1x4x4:conv2d(2,3)-batchnorm2d-relu-flatten-dropout(0.5)-linear(3)".parse().unwrap();
//! let mut model = Model::new(&arch);
//! let p = InitSpec::default().init::<f64>(&model, &RngStream::new(0));
//! let x = ndarray::Array2::from_shape_fn((4, 16), |(i, j)| ((i * 16 + j) as f64 * 0.37).sin());
//! let batch = Batch { x: x.view(), targets: Targets::Classes(&[0, 1, 2, 0]) };
//! let obj = Objective::mean(Loss::CrossEntropy);
//! let train = Mode::Train { dropout: RngStream::new(0).child("dropout").child("0") };
//! let mut grad = vec![0.0; model.num_params()];
//! let step = model.in_mode(&train).gradient_into(p.as_slice(), &batch, &obj, &mut grad).unwrap();
//! model.update_running_stats(&step.batch_statistics);
//! // Per-example gradients of a batch-normalised model in training mode are undefined:
//! let e = model.in_mode(&train).per_example_gradients(p.as_slice(), &batch, &obj).unwrap_err();
//! assert!(e.to_string().contains("layer 1 (batchnorm2d)"));
//! ```

use super::{Batch, HvpResult, Objective};
use crate::error::NnError;
use crate::layer::{BatchStatistics, Mode};
use crate::model::Model;
use ndarray::{Array2, ArrayView2, ArrayViewMut2};
use sgdlab_linalg::Scalar;

/// A model's passes in a mode (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct ModeView<'a> {
    model: &'a Model,
    mode: &'a Mode,
}

/// The loss of a training pass and the batch statistics its batch-norm layers saw (for
/// [`Model::update_running_stats`]).
#[derive(Debug, Clone)]
pub struct TrainStep<T> {
    pub loss: T,
    pub batch_statistics: Vec<BatchStatistics>,
}

impl Model {
    /// The passes of this model in `mode`.
    pub fn in_mode<'a>(&'a self, mode: &'a Mode) -> ModeView<'a> {
        ModeView { model: self, mode }
    }
}

impl ModeView<'_> {
    /// The logits.
    pub fn forward<T: Scalar>(&self, p: &[T], x: ArrayView2<'_, T>) -> Result<Array2<T>, NnError> {
        self.model.check_input(p, &x)?;
        Ok(self.model.forward_in(p, x, self.mode))
    }

    /// The reduced loss of a batch.
    pub fn loss<T: Scalar>(&self, p: &[T], batch: &Batch<'_, T>, obj: &Objective) -> Result<T, NnError> {
        self.model.check_batch(p, batch, obj)?;
        let z = self.model.forward_in(p, batch.x, self.mode);
        Ok(obj.loss.value(z.view(), &batch.targets, obj.reduction))
    }

    /// Loss and gradient (written into `grad`), with the batch statistics of the pass.
    pub fn gradient_into<T: Scalar>(
        &self,
        p: &[T],
        batch: &Batch<'_, T>,
        obj: &Objective,
        grad: &mut [T],
    ) -> Result<TrainStep<T>, NnError> {
        let (loss, traces) = self.model.gradient_in(p, batch, obj, grad, self.mode)?;
        Ok(TrainStep { loss, batch_statistics: self.model.batch_statistics(&traces) })
    }

    /// Exact Hessian-vector products of the loss in this mode (with fixed dropout masks; through
    /// the batch statistics of batch norm), with the loss and gradient.
    pub fn hvp_block<T: Scalar>(
        &self,
        p: &[T],
        batch: &Batch<'_, T>,
        obj: &Objective,
        vs: ArrayView2<'_, T>,
    ) -> Result<HvpResult<T>, NnError> {
        self.model.hvp_block_in(p, batch, obj, vs, self.mode)
    }

    /// Exact Hessian-vector product `H v` in this mode.
    pub fn hvp<T: Scalar>(&self, p: &[T], batch: &Batch<'_, T>, obj: &Objective, v: &[T]) -> Result<Vec<T>, NnError> {
        self.model.check_direction(v, "direction")?;
        let vs = ArrayView2::from_shape((1, v.len()), v).expect("one row");
        Ok(self.hvp_block(p, batch, obj, vs)?.hvps.into_raw_vec_and_offset().0)
    }

    /// Per-example gradients in this mode; an error naming the layer when the examples are coupled.
    pub fn per_example_gradients<T: Scalar>(
        &self,
        p: &[T],
        batch: &Batch<'_, T>,
        obj: &Objective,
    ) -> Result<Array2<T>, NnError> {
        let shape = (batch.x.nrows(), self.model.num_params());
        let mut rows = Array2::from_shape_vec(shape, sgdlab_linalg::zeros_large(shape.0 * shape.1)).expect("sized");
        self.per_example_gradients_into(p, batch, obj, rows.view_mut())?;
        Ok(rows)
    }

    /// [`ModeView::per_example_gradients`] into a buffer.
    pub fn per_example_gradients_into<T: Scalar>(
        &self,
        p: &[T],
        batch: &Batch<'_, T>,
        obj: &Objective,
        out: ArrayViewMut2<'_, T>,
    ) -> Result<(), NnError> {
        self.model.per_example_gradients_in(p, batch, obj, out, self.mode)
    }
}
