//! tokenwave-core: a streaming neural speech codec.
//!
//! Data flows through the crate in this order: [`audio`] (any file to mono samples at the
//! model rate) → the model's encoder → residual vector quantizer → [`Codes`] → [`bitstream`]
//! (the `.tkw` container) → the model's decoder → [`audio`] (WAV). From 2.5 kbps up,
//! [`lowband`] codes the band below a few hundred hertz as a waveform beside the neural
//! codes, in more columns of the same [`Codes`]; [`Codec::layout_for_kbps`] says how a
//! bitrate is split between them ([`FrameLayout`]). [`tokens`] writes and reads codes for
//! speech-LM pipelines.
//!
//! Whole signals:
//!
//! ```no_run
//! use tokenwave_core::{Codec, CpuBackend, Weights};
//! let codec = Codec::<CpuBackend>::new(&Weights::embedded()?, Default::default())?;
//! let layout = codec.layout_for_kbps(3.0, None)?; // 3 kbps, split as the rate ladder says
//! let samples = vec![0.0f32; 16_000]; // one second at the model rate
//! let codes = codec.encode(&samples, layout)?;
//! let decoded = codec.decode(&codes, layout)?;
//! # Ok::<(), tokenwave_core::Error>(())
//! ```
//!
//! Streams, a frame at a time, with the same output as the whole-signal calls:
//! [`Codec::stream_encoder`] and [`Codec::stream_decoder`]. Files: [`TkwWriter`] and
//! [`TkwReader`]. The network itself ([`model`]) and the shared signal processing
//! ([`dsp`]) are public for the trainer and the evaluation crates; [`pitch`] tracks and
//! quantizes F0 per frame.

#![deny(missing_docs)]

pub mod audio;
pub mod batch;
pub mod bitstream;
mod codec;
mod codes;
pub mod dsp;
mod error;
pub mod lm;
pub mod lowband;
pub mod model;
pub mod pitch;
pub mod tokens;

pub use bitstream::{Chunk, Header, TkwReader, TkwWriter};
pub use codec::{Codec, FrameLayout, StreamDecoder, StreamEncoder};
pub use codes::Codes;
pub use error::{Error, Result};
pub use lowband::LowBand;
pub use model::{ModelConfig, ModelId, Weights};

/// The default CPU backend (burn's pure-Rust `flex`).
pub type CpuBackend = burn::backend::Flex;

/// The CUDA backend, with the `cuda` feature.
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Cuda;
