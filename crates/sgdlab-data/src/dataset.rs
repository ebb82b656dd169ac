//! The dataset model: features, targets, named splits.

use crate::DataError;
use ndarray::{Array2, Axis};
use serde::{Deserialize, Serialize};

/// Image layout of a feature row: `channels x height x width`, row-major, so feature
/// `c * height * width + r * width + col` is pixel `(c, r, col)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageShape {
    /// Number of channels (1 for MNIST, 3 for CIFAR-10).
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

impl ImageShape {
    /// Number of features of one image (`channels * height * width`).
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// True when the image has no pixels.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Display for ImageShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}", self.channels, self.height, self.width)
    }
}

/// What is predicted: class labels or real-valued regression targets.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// One label per example, each `< num_classes`.
    Classes {
        /// The labels.
        labels: Vec<u32>,
        /// Number of classes (labels are `0..num_classes`).
        num_classes: usize,
    },
    /// `[n, k]` real targets.
    Regression(Array2<f32>),
}

impl Targets {
    /// Number of examples.
    pub fn len(&self) -> usize {
        match self {
            Targets::Classes { labels, .. } => labels.len(),
            Targets::Regression(y) => y.nrows(),
        }
    }

    /// True when there are no examples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The labels, for classification targets.
    pub fn labels(&self) -> Option<&[u32]> {
        match self {
            Targets::Classes { labels, .. } => Some(labels),
            Targets::Regression(_) => None,
        }
    }

    /// The number of classes, for classification targets.
    pub fn num_classes(&self) -> Option<usize> {
        match self {
            Targets::Classes { num_classes, .. } => Some(*num_classes),
            Targets::Regression(_) => None,
        }
    }

    /// The `[n, k]` values, for regression targets.
    pub fn values(&self) -> Option<&Array2<f32>> {
        match self {
            Targets::Classes { .. } => None,
            Targets::Regression(y) => Some(y),
        }
    }

    /// Number of outputs a model needs: the class count, or `k` for `[n, k]` regression.
    pub fn output_dim(&self) -> usize {
        match self {
            Targets::Classes { num_classes, .. } => *num_classes,
            Targets::Regression(y) => y.ncols(),
        }
    }

    /// Examples per class (`None` for regression; labels out of range, which [`Split::new`]
    /// rejects, are not counted).
    pub fn class_counts(&self) -> Option<Vec<usize>> {
        match self {
            Targets::Classes { labels, num_classes } => {
                let mut counts = vec![0usize; *num_classes];
                for &l in labels {
                    if let Some(c) = counts.get_mut(l as usize) {
                        *c += 1;
                    }
                }
                Some(counts)
            }
            Targets::Regression(_) => None,
        }
    }

    /// The targets of the examples `indices`, in that order (indices must be `< len()`).
    pub fn select(&self, indices: &[usize]) -> Targets {
        match self {
            Targets::Classes { labels, num_classes } => {
                Targets::Classes { labels: indices.iter().map(|&i| labels[i]).collect(), num_classes: *num_classes }
            }
            Targets::Regression(y) => Targets::Regression(y.select(Axis(0), indices)),
        }
    }

    fn concat(parts: &[&Targets]) -> Option<Targets> {
        match parts.first()? {
            Targets::Classes { num_classes, .. } => {
                let mut labels = Vec::new();
                for p in parts {
                    match p {
                        Targets::Classes { labels: l, num_classes: c } if c == num_classes => {
                            labels.extend_from_slice(l)
                        }
                        _ => return None,
                    }
                }
                Some(Targets::Classes { labels, num_classes: *num_classes })
            }
            Targets::Regression(_) => {
                let views: Option<Vec<_>> = parts.iter().map(|p| p.values().map(|v| v.view())).collect();
                ndarray::concatenate(Axis(0), &views?).ok().map(Targets::Regression)
            }
        }
    }
}

/// One named split: `[n, d]` features (row-major, f32) and `n` targets.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    name: String,
    features: Array2<f32>,
    targets: Targets,
}

impl Split {
    /// A split; errors if the features and targets disagree on `n`, a label is out of range, or a
    /// feature is not finite.
    pub fn new(name: impl Into<String>, features: Array2<f32>, targets: Targets) -> Result<Split, DataError> {
        let name = name.into();
        if features.nrows() != targets.len() {
            return Err(DataError::invalid(
                &name,
                format!("{} feature rows but {} targets", features.nrows(), targets.len()),
            ));
        }
        if let Targets::Classes { labels, num_classes } = &targets
            && let Some((i, &l)) = labels.iter().enumerate().find(|(_, l)| **l as usize >= *num_classes)
        {
            return Err(DataError::invalid(
                &name,
                format!("label {l} of example {i} is not below the class count {num_classes}"),
            ));
        }
        if let Some(((i, j), v)) = features.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(DataError::invalid(&name, format!("feature {j} of example {i} is {v}")));
        }
        // NaN marks an unobserved regression target (masked losses); infinities are errors.
        if let Targets::Regression(y) = &targets
            && let Some(((i, j), v)) = y.indexed_iter().find(|(_, v)| v.is_infinite())
        {
            return Err(DataError::invalid(&name, format!("target {j} of example {i} is {v}")));
        }
        let features =
            if features.is_standard_layout() { features } else { features.as_standard_layout().into_owned() };
        Ok(Split { name, features, targets })
    }

    /// The split's name (`train`, `test`, `all`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `[n, d]` features, standard (row-major) layout.
    pub fn features(&self) -> &Array2<f32> {
        &self.features
    }

    /// The targets.
    pub fn targets(&self) -> &Targets {
        &self.targets
    }

    /// The labels, for classification targets.
    pub fn labels(&self) -> Option<&[u32]> {
        self.targets.labels()
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.features.nrows()
    }

    /// True when the split has no examples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of features per example.
    pub fn dim(&self) -> usize {
        self.features.ncols()
    }

    /// The examples `indices` (each `< len()`, repeats allowed) as a new split called `name`.
    ///
    /// This is how a batch is gathered: `split.select("batch", &indices)`.
    pub fn select(&self, name: impl Into<String>, indices: &[usize]) -> Split {
        Split {
            name: name.into(),
            features: self.features.select(Axis(0), indices),
            targets: self.targets.select(indices),
        }
    }

    /// The same split under another name.
    pub fn renamed(mut self, name: impl Into<String>) -> Split {
        self.name = name.into();
        self
    }

    /// The parts: `(name, features, targets)`.
    pub fn into_parts(self) -> (String, Array2<f32>, Targets) {
        (self.name, self.features, self.targets)
    }

    /// The splits `parts` one after another, as a split called `name` (same dimension and target
    /// kind required).
    pub fn concat(name: impl Into<String>, parts: &[&Split]) -> Result<Split, DataError> {
        let name = name.into();
        let views: Vec<_> = parts.iter().map(|p| p.features.view()).collect();
        let features = ndarray::concatenate(Axis(0), &views)
            .map_err(|_| DataError::invalid(&name, "cannot concatenate splits of different dimensions"))?;
        let targets = Targets::concat(&parts.iter().map(|p| &p.targets).collect::<Vec<_>>())
            .ok_or_else(|| DataError::invalid(&name, "cannot concatenate splits with different kinds of targets"))?;
        Split::new(name, features, targets)
    }
}

/// A dataset: a name (the spec string it was made from), an optional image shape shared by every
/// split, and one or more named splits with the same feature dimension and target kind.
///
/// Conventions: generated and loaded sets name their splits `train` and `test`; a set read from a
/// single pair of files has the one split `all` (use [`Dataset::split_off_test`] to hold some out);
/// generators may add evaluation splits (e.g. `test-s-randomised`).
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    name: String,
    image_shape: Option<ImageShape>,
    splits: Vec<Split>,
}

impl Dataset {
    /// A dataset; errors if a split name repeats, the splits differ in dimension or target kind
    /// (class count, regression width), or the image shape does not match the dimension.
    pub fn new(
        name: impl Into<String>,
        image_shape: Option<ImageShape>,
        splits: Vec<Split>,
    ) -> Result<Dataset, DataError> {
        let name = name.into();
        if splits.is_empty() {
            return Err(DataError::invalid(&name, "a dataset needs at least one split"));
        }
        let first = &splits[0];
        for (i, s) in splits.iter().enumerate() {
            if splits[..i].iter().any(|t| t.name == s.name) {
                return Err(DataError::invalid(&name, format!("split name `{}` appears twice", s.name)));
            }
            if s.dim() != first.dim() {
                return Err(DataError::invalid(
                    &name,
                    format!(
                        "split `{}` has {} features but split `{}` has {}",
                        s.name,
                        s.dim(),
                        first.name,
                        first.dim()
                    ),
                ));
            }
            let same_kind = match (&s.targets, &first.targets) {
                (Targets::Classes { num_classes: a, .. }, Targets::Classes { num_classes: b, .. }) => a == b,
                (Targets::Regression(a), Targets::Regression(b)) => a.ncols() == b.ncols(),
                _ => false,
            };
            if !same_kind {
                return Err(DataError::invalid(
                    &name,
                    format!("splits `{}` and `{}` have different kinds of targets", s.name, first.name),
                ));
            }
        }
        if let Some(shape) = image_shape
            && shape.len() != first.dim()
        {
            return Err(DataError::invalid(
                &name,
                format!("image shape {shape} has {} pixels but examples have {} features", shape.len(), first.dim()),
            ));
        }
        Ok(Dataset { name, image_shape, splits })
    }

    /// The dataset's name (usually the spec string it was made from).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The same dataset under another name.
    pub fn renamed(mut self, name: impl Into<String>) -> Dataset {
        self.name = name.into();
        self
    }

    /// `C x H x W` when the features are images.
    pub fn image_shape(&self) -> Option<ImageShape> {
        self.image_shape
    }

    /// All splits, in order.
    pub fn splits(&self) -> &[Split] {
        &self.splits
    }

    /// The split names, in order.
    pub fn split_names(&self) -> Vec<&str> {
        self.splits.iter().map(|s| s.name.as_str()).collect()
    }

    /// The split called `name`; the error lists the splits there are.
    pub fn split(&self, name: &str) -> Result<&Split, DataError> {
        self.splits.iter().find(|s| s.name == name).ok_or_else(|| {
            DataError::invalid(&self.name, format!("no split `{name}`; splits: {}", self.split_names().join(", ")))
        })
    }

    /// The split `train`.
    pub fn train(&self) -> Result<&Split, DataError> {
        self.split("train")
    }

    /// The split `test`.
    pub fn test(&self) -> Result<&Split, DataError> {
        self.split("test")
    }

    /// Number of features per example.
    pub fn dim(&self) -> usize {
        self.splits[0].dim()
    }

    /// The class count (`None` for regression).
    pub fn num_classes(&self) -> Option<usize> {
        self.splits[0].targets.num_classes()
    }

    /// Number of model outputs the targets need (class count or regression width).
    pub fn output_dim(&self) -> usize {
        self.splits[0].targets.output_dim()
    }

    /// The parts: `(name, image_shape, splits)`.
    pub fn into_parts(self) -> (String, Option<ImageShape>, Vec<Split>) {
        (self.name, self.image_shape, self.splits)
    }

    /// A copy with the split `name` replaced by (or, if absent, extended with) `split`, which is
    /// renamed to `name`.
    pub fn with_split(&self, name: &str, split: Split) -> Result<Dataset, DataError> {
        let split = split.renamed(name);
        let mut splits = self.splits.clone();
        match splits.iter_mut().find(|s| s.name == name) {
            Some(s) => *s = split,
            None => splits.push(split),
        }
        Dataset::new(self.name.clone(), self.image_shape, splits)
    }
}
