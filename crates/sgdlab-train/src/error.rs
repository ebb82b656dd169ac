//! Errors of training: each a one-line message naming the file or key at fault.

use sgdlab_linalg::text::one_line;

/// What can go wrong before or while training (a diverged run is not an error: it is a status).
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A malformed run spec or override (message names file, line and key).
    #[error("{}", one_line(.0))]
    Spec(String),
    /// Data that cannot be loaded or does not fit the model.
    #[error("{}", one_line(.0))]
    Data(String),
    /// A model-layer error (shapes, checkpoints).
    #[error(transparent)]
    Nn(#[from] sgdlab_nn::NnError),
    /// Reading or writing the run directory.
    #[error("{path}: {}", one_line(message))]
    Io { path: String, message: String },
    /// A measurement hook failed.
    #[error("measurement failed at step {step}: {message}")]
    Hook { step: u64, message: String },
    /// Another process holds the directory's lock ([`crate::DirLock`]).
    #[error(
        "{dir} is in use by another sgdlab process (pid {}); wait for it to finish, or choose another directory",
        pid.map_or_else(|| "unknown".to_string(), |p| p.to_string())
    )]
    Busy { dir: String, pid: Option<u32> },
    /// The run would need more memory than there is (the message states the estimate).
    #[error(transparent)]
    Memory(#[from] sgdlab_linalg::memory::MemoryError),
}

impl TrainError {
    pub(crate) fn io(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        TrainError::Io { path: path.display().to_string(), message: e.to_string() }
    }
}
