//! `Params`: one flat parameter vector with a named layout (PyTorch `state_dict` names/shapes).

use crate::error::NnError;
use ndarray::{ArrayViewD, IxDyn};
use sgdlab_linalg::Scalar;
use std::sync::Arc;

/// One named tensor inside the flat vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamEntry {
    /// PyTorch `state_dict` name, e.g. `0.weight`.
    pub name: String,
    /// PyTorch shape, e.g. `[out, in]` for a linear weight.
    pub shape: Vec<usize>,
    /// Start within the flat vector.
    pub offset: usize,
    /// Number of elements (product of the shape).
    pub len: usize,
}

/// The layout of a model's parameters: entries in `state_dict` order, contiguous, row-major.
/// It never changes for a given architecture.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParamLayout {
    entries: Vec<ParamEntry>,
    len: usize,
}

impl ParamLayout {
    /// Lays out `(name, shape)` pairs one after the other.
    pub fn new(named_shapes: Vec<(String, Vec<usize>)>) -> Self {
        let mut offset = 0;
        let entries = named_shapes
            .into_iter()
            .map(|(name, shape)| {
                let len = shape.iter().product();
                let e = ParamEntry { name, shape, offset, len };
                offset += len;
                e
            })
            .collect();
        ParamLayout { entries, len: offset }
    }

    /// Entries in order.
    pub fn entries(&self) -> &[ParamEntry] {
        &self.entries
    }

    /// Total number of parameters.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a model without parameters.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entry called `name`.
    pub fn get(&self, name: &str) -> Option<&ParamEntry> {
        self.entries.iter().find(|e| e.name == name)
    }
}

/// A model's parameters: a flat vector plus its layout. `Default` is the empty parameter set
/// of a model without parameters.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Params<T> {
    layout: Arc<ParamLayout>,
    data: Vec<T>,
}

impl<T: Scalar> Params<T> {
    /// All zeros.
    pub fn zeros(layout: Arc<ParamLayout>) -> Self {
        let data = vec![T::zero(); layout.len()];
        Params { layout, data }
    }

    /// Wraps a flat vector; its length must match the layout.
    pub fn from_vec(layout: Arc<ParamLayout>, data: Vec<T>) -> Result<Self, NnError> {
        if data.len() != layout.len() {
            return Err(NnError::Shape(format!(
                "parameter vector has {} entries, the model has {}",
                data.len(),
                layout.len()
            )));
        }
        Ok(Params { layout, data })
    }

    /// The layout.
    pub fn layout(&self) -> &Arc<ParamLayout> {
        &self.layout
    }

    /// The flat vector.
    pub fn as_slice(&self) -> &[T] {
        &self.data
    }

    /// The flat vector, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// Consumes into the flat vector.
    pub fn into_vec(self) -> Vec<T> {
        self.data
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The named tensor, in its PyTorch shape.
    pub fn tensor(&self, name: &str) -> Option<ArrayViewD<'_, T>> {
        let e = self.layout.get(name)?;
        ArrayViewD::from_shape(IxDyn(&e.shape), &self.data[e.offset..e.offset + e.len]).ok()
    }

    /// The same parameters in another precision (rounded to nearest).
    pub fn cast<U: Scalar>(&self) -> Params<U> {
        Params { layout: self.layout.clone(), data: self.data.iter().map(|&x| U::from_f64(x.to_f64())).collect() }
    }

    /// Euclidean norm of the whole vector (accumulated in f64).
    pub fn norm(&self) -> f64 {
        self.data.iter().map(|&x| x.to_f64() * x.to_f64()).sum::<f64>().sqrt()
    }

    /// Euclidean norm of each named tensor, in layout order.
    pub fn tensor_norms(&self) -> Vec<(String, f64)> {
        self.layout
            .entries()
            .iter()
            .map(|e| {
                let n =
                    self.data[e.offset..e.offset + e.len].iter().map(|&x| x.to_f64() * x.to_f64()).sum::<f64>().sqrt();
                (e.name.clone(), n)
            })
            .collect()
    }
}
