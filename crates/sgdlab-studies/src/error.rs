//! Study errors: one line naming the file, key or run at fault.

#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    #[error("{0}")]
    Spec(String),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error(transparent)]
    Train(#[from] sgdlab_train::TrainError),
    #[error("{0}")]
    Verdict(String),
}

impl StudyError {
    pub(crate) fn io(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        StudyError::Io { path: path.display().to_string(), message: e.to_string() }
    }
}
