//! What every probe shares: the evaluation data in the probe's precision, split into a fixed
//! list of batches, and the error type.

use ndarray::{Array2, Axis};
use rand::RngExt;
use sgdlab_data::Split;
use sgdlab_linalg::{RngStream, Scalar};
use sgdlab_nn::Targets;
use std::ops::Range;

/// Errors of probes: one line naming what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Bad input (shapes, options, data that does not fit the measure).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Nn(#[from] sgdlab_nn::NnError),
    #[error(transparent)]
    Operator(#[from] sgdlab_operators::OperatorError),
    /// The measure would need more memory than there is (the message states the estimate).
    #[error(transparent)]
    Memory(#[from] sgdlab_linalg::memory::MemoryError),
}

/// The examples a probe evaluates, converted to its precision `T`, with their targets.
#[derive(Debug, Clone)]
pub struct EvalSet<T> {
    pub x: Array2<T>,
    pub labels: Option<Vec<u32>>,
    pub values: Option<Array2<T>>,
    pub num_classes: Option<usize>,
}

impl<T: Scalar> EvalSet<T> {
    /// `samples` examples of `split` (0 or more than there are = all), chosen by a seeded
    /// shuffle of `stream` and kept in their original order; converted to `T`.
    pub fn from_split(split: &Split, samples: usize, stream: &RngStream) -> Self {
        let n = split.len();
        let idx: Vec<usize> = if samples == 0 || samples >= n {
            (0..n).collect()
        } else {
            let mut rng = stream.child("probe-samples").rng();
            let mut all: Vec<usize> = (0..n).collect();
            for i in 0..samples {
                let j = rng.random_range(i..n);
                all.swap(i, j);
            }
            let mut s = all[..samples].to_vec();
            s.sort_unstable();
            s
        };
        let x = split.features().select(Axis(0), &idx).mapv(|v| T::from_f64(v as f64));
        let labels = split.labels().map(|l| idx.iter().map(|&i| l[i]).collect());
        let values = split.targets().values().map(|v| v.select(Axis(0), &idx).mapv(|a| T::from_f64(a as f64)));
        EvalSet { x, labels, values, num_classes: split.targets().num_classes() }
    }

    /// From arrays (tests, synthetic data).
    pub fn new(x: Array2<T>, labels: Option<Vec<u32>>, values: Option<Array2<T>>) -> Self {
        let num_classes = labels.as_ref().map(|l| l.iter().max().map_or(0, |&m| m as usize + 1));
        EvalSet { x, labels, values, num_classes }
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.x.nrows()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.x.nrows() == 0
    }

    /// Targets of the examples in `r`.
    pub fn targets(&self, r: Range<usize>) -> Targets<'_, T> {
        match (&self.values, &self.labels) {
            (Some(v), _) => Targets::Values(v.slice(ndarray::s![r, ..])),
            (None, Some(l)) => Targets::Classes(&l[r]),
            (None, None) => Targets::Classes(&[]),
        }
    }

    /// Consecutive batches of at most `batch_size` examples (0 = one batch) covering the set.
    pub fn batches(&self, batch_size: usize) -> Vec<Range<usize>> {
        let n = self.len();
        let b = if batch_size == 0 { n.max(1) } else { batch_size };
        (0..n).step_by(b).map(|s| s..(s + b).min(n)).collect()
    }

    /// The same examples in another precision.
    pub fn cast<U: Scalar>(&self) -> EvalSet<U> {
        EvalSet {
            x: self.x.mapv(|v| U::from_f64(v.to_f64())),
            labels: self.labels.clone(),
            values: self.values.as_ref().map(|v| v.mapv(|a| U::from_f64(a.to_f64()))),
            num_classes: self.num_classes,
        }
    }
}
