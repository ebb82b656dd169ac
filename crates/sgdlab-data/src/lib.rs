//! Data for sgdlab: the dataset model ([`Dataset`], named [`Split`]s, [`Targets`]), seeded
//! [`BatchPlan`]s, transforms (held-out splits, balanced subsets, class-pair binarisation, label
//! noise, random labels, 2x2 pooling, standardisation), loaders for IDX, CIFAR-10 binary and
//! `.npy` files, generators (MNIST-1D, sums of sines, LMS/MS, Gaussian mixtures and clones,
//! teacher-student, boolean cube, matrix completion, dominoes), and dataset spec strings parsed in
//! one place ([`DatasetSpec`], grammar in [`SPEC_GRAMMAR`]).
//!
//! ```
//! use sgdlab_data::{load_dataset, BatchPlan};
//! use sgdlab_linalg::RngStream;
//!
//! let data = load_dataset("mnist1d:n=500").unwrap();
//! let train = data.train().unwrap();
//! assert_eq!((train.len(), train.dim(), data.num_classes()), (400, 40, Some(10)));
//! let plan = BatchPlan::new(train.len(), 128, false, RngStream::new(0).child("batches")).unwrap();
//! let first = &plan.epoch(0)[0];
//! let batch = train.select("batch", first);
//! assert_eq!(batch.len(), 128);
//! ```
//!
//! Conventions: features are f32 `[n, d]` row-major; randomness comes only from
//! [`sgdlab_linalg::RngStream`]s derived by name; every error is a one-line [`DataError`] naming
//! the file (and byte offset) or the spec; nothing panics on bad input.

mod batch;
mod dataset;
mod error;
pub mod generators;
mod info;
pub mod loaders;
mod spec;
mod transform;

pub use batch::BatchPlan;
pub use dataset::{Dataset, ImageShape, Split, Targets};
pub use error::DataError;
pub use generators::*;
pub use info::{DatasetInfo, PerFeatureRange, SplitInfo, ValueStats, dataset_info, examples_per_class};
pub use spec::{
    BinariseSpec, DatasetSpec, MNIST_TEST_FILES, SPEC_GRAMMAR, SourceSpec, TestSize, TransformSpec, load_dataset,
    mnist_test_dir,
};
pub use transform::{MIN_SD, Standardisation, StandardiseBy, randomise_columns};
