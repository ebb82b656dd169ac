//! Errors of the model layer: bad architecture strings, shape mismatches, bad checkpoints.

use sgdlab_linalg::text::one_line;
use std::path::PathBuf;

/// Everything that can go wrong with an input given to sgdlab-nn. Each message is one line that
/// names the offending thing (the architecture string, the tensor, the file).
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    /// An architecture string or table that does not parse.
    #[error("architecture '{}': {}", one_line(spec), one_line(message))]
    Arch { spec: String, message: String },
    /// Inputs, targets or parameters whose shape does not fit the model.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A per-example quantity of a model whose examples are coupled (batch norm on batch
    /// statistics), naming the layer.
    #[error("{0}")]
    Coupled(String),
    /// Targets that do not fit the loss (label out of range, wrong kind).
    #[error("targets: {0}")]
    Targets(String),
    /// A checkpoint that cannot be read or does not fit the model.
    #[error("{path}: {}", one_line(message))]
    Checkpoint { path: PathBuf, message: String },
    /// A `print(model)` text file that does not describe a supported architecture.
    #[error("{path}: {message}")]
    ArchFile { path: PathBuf, message: String },
    /// An I/O error on a named file. (The field is not a `source`: the message already says it,
    /// and a chained error would print it twice.)
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    /// A computation or file that would need more memory than there is.
    #[error(transparent)]
    Memory(#[from] sgdlab_linalg::memory::MemoryError),
}

pub type Result<T, E = NnError> = std::result::Result<T, E>;
