//! The one error type of the data crate.

use sgdlab_linalg::text::one_line;
use std::path::{Path, PathBuf};

/// Everything that can go wrong while reading, generating, transforming or naming a dataset.
///
/// Display is always one line and names what it is about: the file (and the byte offset where one
/// applies), the dataset spec, or the dataset and split. Nothing in this crate panics on bad input.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read at all.
    #[error("{}: cannot read: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        error: std::io::Error,
    },
    /// The file's bytes are not what its format says (bad magic number, truncated, out-of-range
    /// label, ...). `offset` is the byte offset of the problem in the file (for gzip files: in the
    /// decompressed stream, as the message says).
    #[error("{}: byte {offset}: {}", path.display(), one_line(message))]
    Format {
        /// The file.
        path: PathBuf,
        /// Byte offset of the problem.
        offset: u64,
        /// What is wrong.
        message: String,
    },
    /// A problem with a file as a whole (e.g. two files disagree on the number of examples).
    #[error("{}: {}", path.display(), one_line(message))]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A dataset spec string that cannot be parsed or names impossible values.
    #[error("dataset spec `{}`: {}", one_line(spec), one_line(message))]
    Spec {
        /// The full spec string as given.
        spec: String,
        /// What is wrong (for unknown keys: the list of allowed keys).
        message: String,
    },
    /// A request that the dataset cannot satisfy (unknown split, transform needing classes on a
    /// regression set, mismatched shapes, ...).
    #[error("dataset `{}`: {}", one_line(dataset), one_line(message))]
    Invalid {
        /// The dataset's name (its spec string) or the thing being built.
        dataset: String,
        /// What is wrong.
        message: String,
    },
    /// Generating or loading the dataset would need more memory than there is (the message
    /// states the estimate and the limit).
    #[error(transparent)]
    Memory(#[from] sgdlab_linalg::memory::MemoryError),
}

impl DataError {
    pub(crate) fn io(path: &Path, error: std::io::Error) -> Self {
        DataError::Io { path: path.to_path_buf(), error }
    }

    pub(crate) fn format(path: &Path, offset: u64, message: impl Into<String>) -> Self {
        DataError::Format { path: path.to_path_buf(), offset, message: message.into() }
    }

    pub(crate) fn file(path: &Path, message: impl Into<String>) -> Self {
        DataError::File { path: path.to_path_buf(), message: message.into() }
    }

    pub(crate) fn spec(spec: &str, message: impl Into<String>) -> Self {
        DataError::Spec { spec: spec.to_string(), message: message.into() }
    }

    pub(crate) fn invalid(dataset: &str, message: impl Into<String>) -> Self {
        DataError::Invalid { dataset: dataset.to_string(), message: message.into() }
    }
}
