//! Errors of an evaluation: the codec's, a comparison codec's tool, or the file system.

/// What can stop an evaluation, each with a message that says what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The codec refused something, or a clip cannot be read or scored.
    #[error(transparent)]
    Codec(#[from] tokenwave_core::Error),
    /// A comparison codec's program is missing or failed.
    #[error("{0}")]
    Tool(String),
    /// A spectrogram picture could not be drawn or written.
    #[error("{0}")]
    Plot(String),
    /// A scratch or output file could not be written or read.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// An [`Error::Io`] with a short description of what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { context: context.into(), source }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
