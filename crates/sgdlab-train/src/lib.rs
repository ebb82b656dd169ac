//! sgdlab-train: optimisers (SGD, GD, Adam, AdamW, label-noise SGD, noisy SGD/GD, SAM,
//! Entropy-SGD), regularisers (L2, exact gradient-norm penalty), schedules, the resumable and
//! interruptible training loop, run specs in TOML and run records on disk.

mod error;
mod lock;
pub mod noise;
pub mod optim;
pub mod record;
mod schedule;
pub mod spec;
mod trainer;
mod verify;

pub use error::TrainError;
pub use lock::{DirLock, LOCK_FILE};
pub use record::{MetricRecord, RunRecord, RunStatus, content_hash, read_metrics, read_record};
pub use spec::{
    BudgetSpec, CheckpointSpec, Dtype, EvalSpec, NoiseSpec, OptimizerSpec, RegularizerSpec, RunSpec, ScheduleSpec,
};
pub use trainer::{AdamSecondMoment, Measurement, MeasurementHook, NoHook, Progress, RunContext, RunOptions, train};
pub use verify::{RunState, inspect_run};
