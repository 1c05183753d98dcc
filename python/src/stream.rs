//! `tokenwave.StreamEncoder` and `tokenwave.StreamDecoder`: a frame at a time, with the same
//! output as the whole-signal calls, so a server can play audio while an LM generates tokens.

use numpy::{PyArray1, PyArray2};
use pyo3::prelude::*;
use tokenwave_core::audio::Resampler;
use tokenwave_core::{Codes, CpuBackend, Result};

use crate::OrRaise;
use crate::arrays::{CodeGrid, audio_1d, audio_piece, check_finite, codes_2d};
use crate::codec::Codec;

/// Audio in, in pieces of any size; codes out for every frame the pieces complete.
#[pyclass(module = "tokenwave")]
pub struct StreamEncoder {
    encoder: tokenwave_core::StreamEncoder<CpuBackend>,
    resampler: Resampler,
    rates: (u32, u32),
    samples_in: u64,
}

impl StreamEncoder {
    pub(crate) fn new(codec: &Codec, rate: u32) -> Result<Self> {
        let model_rate = codec.codec.config().sample_rate;
        Ok(Self {
            encoder: codec.codec.stream_encoder(codec.layout)?,
            resampler: Resampler::new(rate, model_rate)?,
            rates: (rate, model_rate),
            samples_in: 0,
        })
    }
}

#[pymethods]
impl StreamEncoder {
    /// Adds audio [T] (float32 at the encoder's rate); returns codes [K, n] of the n frames
    /// it completes (n may be 0).
    fn push<'py>(&mut self, py: Python<'py>, pcm: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray2<i64>>> {
        let samples = audio_piece(pcm)?;
        check_finite(&samples, self.samples_in).or_raise()?;
        self.samples_in += samples.len() as u64;
        let codes = py.detach(|| self.encoder.push(&self.resampler.process(&samples))).or_raise()?;
        Ok(codes_2d(py, &codes))
    }

    /// Ends the stream: encodes the last partial frame (padded with silence) and returns
    /// its codes [K, n]. The encoder then starts a new stream.
    fn flush<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<i64>>> {
        let codes = py
            .detach(|| {
                let mut codes = self.encoder.push(&self.resampler.finish())?;
                codes.extend(&self.encoder.flush())?;
                self.resampler = Resampler::new(self.rates.0, self.rates.1)?;
                Ok::<_, tokenwave_core::Error>(codes)
            })
            .or_raise()?;
        self.samples_in = 0;
        Ok(codes_2d(py, &codes))
    }

    /// Rows of codes per frame.
    #[getter]
    fn num_codebooks(&self) -> usize {
        self.encoder.codes_per_frame()
    }
}

/// Codes in, a few frames at a time; audio at the model rate out.
#[pyclass(module = "tokenwave")]
pub struct StreamDecoder {
    /// Made at the first push, whose rows give the stages.
    decoder: Option<tokenwave_core::StreamDecoder<CpuBackend>>,
    /// The codec's layout, to check what comes in.
    codec: Codec,
    frames_in: u64,
}

impl StreamDecoder {
    pub(crate) fn new(codec: &Codec) -> Self {
        Self { decoder: None, codec: codec.clone(), frames_in: 0 }
    }
}

#[pymethods]
impl StreamDecoder {
    /// Decodes the next frames, codes [K, n] (or [1, K, n]); returns their audio [n * hop]
    /// (float32; with the low band, the first frame's hop comes with the second frame).
    fn push<'py>(&mut self, py: Python<'py>, codes: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let grid = CodeGrid::from_py(codes)?;
        let codec = &self.codec;
        if grid.items != 1 {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "push takes the codes of one stream, [codebooks, frames], not a batch of {}",
                grid.items
            )));
        }
        codec.check_rows(grid.rows).or_raise()?;
        let codes: Codes = grid.item(0, codec.codec.config().codebook_size, self.frames_in).or_raise()?;
        let decoder = match &mut self.decoder {
            Some(decoder) => decoder,
            None => self.decoder.insert(codec.codec.stream_decoder(codec.layout_for_rows(grid.rows)).or_raise()?),
        };
        self.frames_in += codes.frames() as u64;
        let samples = py.detach(|| decoder.push(&codes)).or_raise()?;
        Ok(audio_1d(py, samples))
    }
}
