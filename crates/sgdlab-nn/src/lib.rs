//! sgdlab-nn: models, parameters, layers with exact derivative rules, losses and model-level
//! passes (loss, gradient, Hessian- and Gauss-Newton-vector products, output jvps, per-example
//! gradients, input Jacobians, activations), plus safetensors checkpoints.
//!
//! ```
//! use sgdlab_nn::{ArchSpec, InitSpec, Model, Batch, Objective, Loss, Targets};
//! use sgdlab_linalg::RngStream;
//! let arch: ArchSpec = "mlp:3-5-2:tanh".parse().unwrap();
//! let model = Model::new(&arch);
//! let params = InitSpec::default().init::<f64>(&model, &RngStream::new(0));
//! let x = ndarray::array![[0.1, -0.2, 0.3], [1.0, 0.5, -0.5]];
//! let batch = Batch { x: x.view(), targets: Targets::Classes(&[0, 1]) };
//! let obj = Objective::mean(Loss::CrossEntropy);
//! let lg = model.loss_and_gradient(params.as_slice(), &batch, &obj).unwrap();
//! // The Hessian along the gradient direction, exact:
//! let hv = model.hvp(params.as_slice(), &batch, &obj, &lg.gradient).unwrap();
//! assert_eq!(hv.len(), model.num_params());
//! ```

pub mod activation;
pub mod arch;
pub mod checkpoint;
pub mod error;
pub mod init;
pub mod layer;
pub mod loss;
pub mod model;
pub mod params;
pub mod passes;
pub mod shape;
pub mod torch_text;

pub use activation::Activation;
pub use arch::{ArchKind, ArchSpec, LayerSpec, SeqSpec};
pub use checkpoint::{
    ARCH_METADATA_KEY, CHECKSUM_METADATA_KEY, Checkpoint, DATA_METADATA_KEY, LoadOptions, NamedTensor,
    SEED_METADATA_KEY, SPLIT_METADATA_KEY, load_checkpoint, load_checkpoint_with, load_tensors, load_tensors_with,
    save_checkpoint, save_tensors, sync_dir, write_atomic,
};
pub use error::NnError;
pub use init::{BiasInit, FirstLayerInit, InitScheme, InitSpec};
pub use layer::{
    AvgPool, BatchNorm, BatchStatistics, Conv, Dropout, Flatten, Layer, LayerNorm, Linear, MaxPool, Mode, Window,
};
pub use loss::{Loss, Reduction, Targets};
pub use model::{Buffer, Model};
pub use params::{ParamEntry, ParamLayout, Params};
pub use passes::{Batch, HvpCache, HvpResult, LossGradient, ModeView, Objective, TrainStep};
pub use shape::Shape;
pub use torch_text::{arch_from_torch_text, load_arch_file};
