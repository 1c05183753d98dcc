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
}

impl Error {
    /// An OS-level failure while `context`, as the codec reports those.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        tokenwave_core::Error::io(context, source).into()
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
