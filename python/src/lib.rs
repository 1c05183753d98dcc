//! The native half of the `tokenwave` Python package: the codec of `tokenwave-core` with
//! numpy arrays in and out. Work on arrays runs with the GIL released, batches on the core's
//! worker pool ([`tokenwave_core::batch`]). Every failure a caller can cause comes back as a
//! `ValueError` or `OSError` with the message the command line prints, never as a panic.

mod arrays;
mod codec;
mod stream;

use pyo3::exceptions::{PyFileNotFoundError, PyKeyboardInterrupt, PyOSError, PyValueError};
use pyo3::prelude::*;
use tokenwave_core::Error;

/// The codec's error as the Python exception a caller expects: files that cannot be opened
/// or read are `OSError` (`FileNotFoundError` when missing), everything else about the
/// input is `ValueError`.
pub(crate) fn py_error(error: Error) -> PyErr {
    py_error_in(error, "")
}

/// [`py_error`] with `prefix` before the message (which batch item failed).
pub(crate) fn py_error_in(error: Error, prefix: &str) -> PyErr {
    // The message with its causes, as the command line prints it after "tokenwave: error: ".
    let mut message = format!("{prefix}{error}");
    let mut cause = std::error::Error::source(&error);
    while let Some(inner) = cause {
        message.push_str(&format!(": {inner}"));
        cause = inner.source();
    }
    match &error {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(message)
        }
        Error::Io { .. } | Error::Audio { .. } => PyOSError::new_err(message),
        Error::Interrupted => PyKeyboardInterrupt::new_err(message),
        _ => PyValueError::new_err(message),
    }
}

/// `Result` of the core, raised as [`py_error`].
pub(crate) trait OrRaise<T> {
    fn or_raise(self) -> PyResult<T>;
}

impl<T> OrRaise<T> for tokenwave_core::Result<T> {
    fn or_raise(self) -> PyResult<T> {
        self.map_err(py_error)
    }
}

/// tokenwave: a streaming neural speech codec (numpy in and out).
#[pymodule]
fn _tokenwave(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<codec::Codec>()?;
    module.add_class::<stream::StreamEncoder>()?;
    module.add_class::<stream::StreamDecoder>()?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // The LM helpers' default codebook size (the default model's).
    module.add("CODEBOOK_SIZE", tokenwave_core::ModelConfig::default().codebook_size)?;
    Ok(())
}
