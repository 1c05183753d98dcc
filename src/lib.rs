//! tokenwave: a streaming neural audio codec.
//!
//! Data flows through the modules in this order:
//! [`audio`] (decode any file to mono samples at the model rate) →
//! [`model`] encoder → residual vector quantizer → [`Codes`] →
//! [`bitstream`] (`.tkw` container) → decoder → [`audio`] (WAV). From 2.5 kbps up,
//! [`lowband`] codes the band below a few hundred hertz as a waveform beside the neural
//! codes, in more columns of the same [`Codes`]; [`Codec::layout_for_kbps`] says how a
//! bitrate is split between them.
//!
//! ```no_run
//! use tokenwave::{Codec, Weights, CpuBackend};
//! let codec = Codec::<CpuBackend>::new(&Weights::embedded()?, Default::default())?;
//! let samples = vec![0.0f32; 16_000];
//! let codes = codec.encode(&samples, 6)?; // 6 stages = 3 kbps
//! let decoded = codec.decode(&codes)?;
//! # Ok::<(), tokenwave::Error>(())
//! ```

pub mod audio;
pub mod bitstream;
pub mod codec;
mod codes;
mod error;
pub mod eval;
pub mod lowband;
pub mod model;
pub mod net;
pub mod tokens;
pub mod train;

pub use codec::{Codec, StreamDecoder, StreamEncoder};
pub use codes::Codes;
pub use error::{Error, Result};
pub use model::{ModelConfig, ModelId, Weights};

/// The default CPU backend (burn's pure-Rust `flex`).
pub type CpuBackend = burn::backend::Flex;

/// The CUDA backend, with the `cuda` feature.
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Cuda;
