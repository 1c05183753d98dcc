//! The codec's error type: every failure a user can cause is one of these, never a panic.

use std::path::PathBuf;

/// Everything that can go wrong in the codec, each with a message that says what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An OS-level read or write failed.
    #[error("{context}")]
    Io {
        /// What we were doing.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An input audio file could not be read or decoded.
    #[error("{path}: {reason}")]
    Audio {
        /// The file (or `-` for stdin).
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A `.tkw` stream is malformed or damaged.
    #[error("not a valid .tkw stream: {0}")]
    Format(String),
    /// A chunk failed its CRC or length checks.
    #[error("chunk {index} (byte offset {offset}) is damaged: {reason}")]
    DamagedChunk {
        /// Zero-based chunk number.
        index: u64,
        /// Byte offset of the chunk in the stream.
        offset: u64,
        /// What failed.
        reason: String,
    },
    /// The stream was made by a different model than the one loaded.
    #[error(
        "the stream was encoded with model {stream}, but the loaded model is {loaded}; decode with the same model (--model PATH)"
    )]
    ModelMismatch {
        /// Model id found in the stream.
        stream: String,
        /// Model id of the loaded model.
        loaded: String,
    },
    /// A token file (npy, safetensors, jsonl) is malformed or does not fit the model.
    #[error("tokens: {0}")]
    Tokens(String),
    /// A weights file is unusable.
    #[error("model weights: {0}")]
    Weights(String),
    /// A caller asked for something the model cannot do.
    #[error("{0}")]
    InvalidArgument(String),
    /// The user interrupted the job.
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    /// An [`Error::Io`] with a short description of what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { context: context.into(), source }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
