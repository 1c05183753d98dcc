//! Errors of live audio and streaming: devices and the network, beside the codec's own.

/// Everything that can go wrong on a live path, each with a message that says what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The codec refused something (bad codes, a wrong model, a bad argument).
    #[error(transparent)]
    Codec(#[from] tokenwave_core::Error),
    /// An audio device is missing or failed.
    #[error("{0}")]
    Device(String),
    /// A live stream could not be set up or broke off.
    #[error("{0}")]
    Network(String),
    /// A caller asked for something that cannot be done.
    #[error("{0}")]
    InvalidArgument(String),
}

impl Error {
    /// An OS-level failure while `context`, as the codec reports those.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        tokenwave_core::Error::io(context, source).into()
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
