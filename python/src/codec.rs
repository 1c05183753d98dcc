//! `tokenwave.Codec`: a loaded model at one bitrate, for arrays, batches, files and streams.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use numpy::{PyArray2, PyArray3};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tokenwave_core::audio::{AudioSource, Resampler, WavSink};
use tokenwave_core::lm::CodecInfo;
use tokenwave_core::{Chunk, Codes, CpuBackend, Error, FrameLayout, ModelId, Result, TkwReader, TkwWriter, Weights};

use crate::arrays::{CodeGrid, audio_2d, audio_rows, codes_2d, codes_3d};
use crate::stream::{StreamDecoder, StreamEncoder};
use crate::{OrRaise, py_error};

/// The model, its sample rate and one frame layout (how many codes per frame and what they
/// are). Encoding and decoding release the GIL; batches run on `jobs` threads.
#[pyclass(module = "tokenwave", frozen)]
#[derive(Clone)]
pub struct Codec {
    pub(crate) codec: tokenwave_core::Codec<CpuBackend>,
    pub(crate) layout: FrameLayout,
}

#[pymethods]
impl Codec {
    /// Loads `model` (a .safetensors path; None: the embedded model) at `kbps` of codes.
    /// `low_band=0` (the default) gives the neural codes only, as `tokenwave tokens export`
    /// does; `None` splits the rate between neural stages and the low band as
    /// `tokenwave encode --kbps` does; `N` gives N of the codes to the low band.
    #[new]
    #[pyo3(signature = (model=None, kbps=3.0, device="cpu", low_band=Some(0)))]
    fn new(py: Python<'_>, model: Option<PathBuf>, kbps: f64, device: &str, low_band: Option<usize>) -> PyResult<Self> {
        match device {
            "cpu" => {}
            "cuda" => {
                return Err(PyValueError::new_err("this tokenwave was built without CUDA support; use device=\"cpu\""));
            }
            other => return Err(PyValueError::new_err(format!("device must be \"cpu\" or \"cuda\", not {other:?}"))),
        }
        py.detach(|| {
            let weights = match &model {
                Some(path) => Weights::from_file(path)?,
                None => Weights::embedded()?,
            };
            let codec = tokenwave_core::Codec::new(&weights, Default::default())?;
            // Neural codes only count stages, as `tokens export --kbps` does.
            let layout = match low_band {
                Some(0) => codec.layout(codec.stages_for_kbps(kbps)?, 0)?,
                other => codec.layout_for_kbps(kbps, other)?,
            };
            Ok(Self { codec, layout })
        })
        .or_raise()
    }

    /// Audio sample rate of the model, Hz: what `decode` returns.
    #[getter]
    fn sample_rate(&self) -> u32 {
        self.codec.config().sample_rate
    }

    /// Frames (columns of codes) per second.
    #[getter]
    fn frame_rate(&self) -> f64 {
        self.codec.config().frame_rate()
    }

    /// Samples per frame at `sample_rate`.
    #[getter]
    fn hop(&self) -> usize {
        self.codec.config().hop()
    }

    /// Values a code takes: 0 to codebook_size - 1.
    #[getter]
    fn codebook_size(&self) -> usize {
        self.codec.config().codebook_size
    }

    /// Rows of codes per frame (K of [B, K, F]).
    #[getter]
    fn num_codebooks(&self) -> usize {
        self.layout.codes_per_frame()
    }

    /// Bitrate of the codes, kbps.
    #[getter]
    fn kbps(&self) -> f64 {
        self.codec.config().bitrate(self.layout.codes_per_frame()) / 1000.0
    }

    /// Hex id of the model; codes decode only with the model that made them.
    #[getter]
    fn model_id(&self) -> String {
        self.codec.model_id().to_string()
    }

    /// The frame layout: {"stages": neural stages, "low_band": low-band codes, "pitch":
    /// whether the last row is the pitch code, "rows": what each row of codes holds}.
    #[getter]
    fn layout<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let info = self.info();
        let layout = PyDict::new(py);
        layout.set_item("stages", self.layout.stages)?;
        layout.set_item("low_band", self.layout.low_band_digits())?;
        layout.set_item("pitch", self.layout.pitch)?;
        layout.set_item("rows", info.rows)?;
        Ok(layout)
    }

    /// What an LM trainer needs to know about the codes, as the dict codec-bpe reads from a
    /// codec_info.json (docs/TOKENS.md): rates, rows, offsets, special tokens.
    fn codec_info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let text = self.info().to_json().to_string();
        py.import("json")?.call_method1("loads", (text,))
    }

    /// Codes [B, K, F] (int64) of audio [T] or [B, T] at `sample_rate` Hz (resampled to the
    /// model's rate first). F = ceil(T / hop) frames, one more with the low band.
    #[pyo3(signature = (audio, sample_rate, jobs=None))]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        audio: &Bound<'py, PyAny>,
        sample_rate: i64,
        jobs: Option<usize>,
    ) -> PyResult<Bound<'py, PyArray3<i64>>> {
        let rows = audio_rows(audio)?;
        let rate = self.source_rate(sample_rate).or_raise()?;
        let jobs = jobs_for(jobs, rows.len())?;
        let items = py.detach(|| in_batch(&rows, jobs, |row| self.encode_signal(row, rate)))?;
        Ok(codes_3d(py, &items, self.layout.codes_per_frame()))
    }

    /// Audio [B, T] (float32, at `sample_rate`) of codes [B, K, F] or [K, F]: T = F * hop,
    /// one hop less with the low band.
    #[pyo3(signature = (codes, jobs=None))]
    fn decode<'py>(
        &self,
        py: Python<'py>,
        codes: &Bound<'py, PyAny>,
        jobs: Option<usize>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let grid = CodeGrid::from_py(codes)?;
        self.check_rows(grid.rows).or_raise()?;
        let items: Vec<usize> = (0..grid.items).collect();
        let jobs = jobs_for(jobs, items.len())?;
        let size = self.codec.config().codebook_size;
        let audio = py.detach(|| {
            in_batch(&items, jobs, |&item| {
                self.codec.decode(&grid.item(item, size, 0)?, self.layout_for_rows(grid.rows))
            })
        })?;
        Ok(audio_2d(py, audio))
    }

    /// Codes [K, F] of an audio file (WAV, FLAC, MP3, Ogg Vorbis; any rate and channels),
    /// the same as `tokenwave tokens export` writes.
    fn encode_file<'py>(&self, py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyArray2<i64>>> {
        let codes = py.detach(|| self.encode_path(&path)).or_raise()?;
        Ok(codes_2d(py, &codes))
    }

    /// Codes [K, F] of every file in `paths`, `jobs` files at a time: the worker pool of
    /// `tokenwave tokens batch`.
    #[pyo3(signature = (paths, jobs=None))]
    fn encode_files<'py>(
        &self,
        py: Python<'py>,
        paths: Vec<PathBuf>,
        jobs: Option<usize>,
    ) -> PyResult<Vec<Bound<'py, PyArray2<i64>>>> {
        let jobs = jobs_for(jobs, paths.len())?;
        let items = py.detach(|| in_batch(&paths, jobs, |path| self.encode_path(path)))?;
        Ok(items.iter().map(|codes| codes_2d(py, codes)).collect())
    }

    /// Decodes codes [K, F] (or [1, K, F]) into a 16-bit WAV file at `sample_rate` Hz
    /// (default: the model's).
    #[pyo3(signature = (codes, path, sample_rate=None))]
    fn decode_to_file(
        &self,
        py: Python<'_>,
        codes: &Bound<'_, PyAny>,
        path: PathBuf,
        sample_rate: Option<i64>,
    ) -> PyResult<()> {
        let codes = self.one_item(codes)?;
        let model_rate = self.codec.config().sample_rate;
        let rate = sample_rate.map_or(Ok(model_rate), |rate| self.source_rate(rate)).or_raise()?;
        py.detach(|| {
            let samples = self.codec.decode(&codes, self.layout_for_rows(codes.stages()))?;
            let mut resampler = Resampler::new(model_rate, rate)?;
            let mut wav = WavSink::new(BufWriter::new(create(&path)?), rate)?;
            wav.write(&resampler.process(&samples))?;
            wav.write(&resampler.finish())?;
            wav.finish()
        })
        .or_raise()
    }

    /// Codes [K, F] of a .tkw file made with this model and this Codec's low band.
    fn read_tkw<'py>(&self, py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyArray2<i64>>> {
        let codes = py.detach(|| self.read_stream(&path)).or_raise()?;
        Ok(codes_2d(py, &codes))
    }

    /// Writes codes [K, F] (or [1, K, F]) as a .tkw file that `tokenwave decode` reads;
    /// `samples`: the audio's length at the model rate, if shorter than the codes decode to.
    #[pyo3(signature = (codes, path, samples=None))]
    fn write_tkw(&self, py: Python<'_>, codes: &Bound<'_, PyAny>, path: PathBuf, samples: Option<u64>) -> PyResult<()> {
        let codes = self.one_item(codes)?;
        py.detach(|| self.write_stream(&codes, &path, samples)).or_raise()
    }

    /// A streaming encoder for audio at `sample_rate` Hz (default: the model's).
    #[pyo3(signature = (sample_rate=None))]
    fn stream_encoder(&self, sample_rate: Option<i64>) -> PyResult<StreamEncoder> {
        let rate = sample_rate.map_or(Ok(self.codec.config().sample_rate), |rate| self.source_rate(rate)).or_raise()?;
        StreamEncoder::new(self, rate).or_raise()
    }

    /// A streaming decoder: codes in, audio at the model rate out.
    fn stream_decoder(&self) -> StreamDecoder {
        StreamDecoder::new(self)
    }

    fn __repr__(&self) -> String {
        format!(
            "tokenwave.Codec(model {}, {} kbps: {}, {} Hz, {} frames/s)",
            self.codec.model_id(),
            self.kbps(),
            self.layout,
            self.sample_rate(),
            self.frame_rate()
        )
    }
}

impl Codec {
    fn info(&self) -> CodecInfo {
        CodecInfo::new(self.codec.config(), self.codec.model_id(), self.layout)
    }

    /// `rate` as a rate the resampler takes.
    pub(crate) fn source_rate(&self, rate: i64) -> Result<u32> {
        u32::try_from(rate).ok().filter(|&rate| rate > 0).ok_or_else(|| {
            Error::InvalidArgument(format!("cannot resample from {rate} Hz to {} Hz", self.codec.config().sample_rate))
        })
    }

    /// The layout of codes with `rows` rows per frame: this Codec's, with as many neural
    /// stages as the rows leave after the low band and the pitch ([`Self::check_rows`]).
    pub(crate) fn layout_for_rows(&self, rows: usize) -> FrameLayout {
        let side = self.layout.low_band_digits() + usize::from(self.layout.pitch);
        FrameLayout { stages: rows.saturating_sub(side), ..self.layout }
    }

    /// Checks that codes with `rows` rows per frame fit this Codec's layout: with a low band
    /// exactly its rows, else 1 to the model's stages (fewer stages: a lower bitrate), and
    /// the pitch row last if the model uses one.
    pub(crate) fn check_rows(&self, rows: usize) -> Result<()> {
        if self.layout.low_band.is_some() && rows != self.layout.codes_per_frame() {
            return Err(Error::InvalidArgument(format!(
                "codes have {rows} rows per frame, but this Codec's layout is {} ({} rows)",
                self.layout,
                self.layout.codes_per_frame()
            )));
        }
        self.codec.check_stages(self.layout_for_rows(rows).stages)
    }

    /// The single item of a `[K, F]` or `[1, K, F]` grid, checked.
    fn one_item(&self, codes: &Bound<'_, PyAny>) -> PyResult<Codes> {
        let grid = CodeGrid::from_py(codes)?;
        if grid.items != 1 {
            return Err(PyValueError::new_err(format!(
                "this takes the codes of one signal, [codebooks, frames], not a batch of {}",
                grid.items
            )));
        }
        self.check_rows(grid.rows).or_raise()?;
        grid.item(0, self.codec.config().codebook_size, 0).or_raise()
    }

    /// Codes of samples at `rate` Hz, resampled to the model's rate.
    pub(crate) fn encode_signal(&self, samples: &[f32], rate: u32) -> Result<Codes> {
        if samples.is_empty() {
            return Err(Error::InvalidArgument("the input contains no audio samples".into()));
        }
        crate::arrays::check_finite(samples, 0)?;
        let model_rate = self.codec.config().sample_rate;
        if rate == model_rate {
            return self.codec.encode(samples, self.layout);
        }
        let mut resampler = Resampler::new(rate, model_rate)?;
        let mut resampled = resampler.process(samples);
        resampled.extend(resampler.finish());
        self.codec.encode(&resampled, self.layout)
    }

    fn encode_path(&self, path: &Path) -> Result<Codes> {
        let model_rate = self.codec.config().sample_rate;
        let mut source = AudioSource::open(path, model_rate)?;
        let mut samples = Vec::new();
        while let Some(piece) = source.next_chunk()? {
            samples.extend(piece);
        }
        self.encode_signal(&samples, model_rate)
    }

    fn read_stream(&self, path: &Path) -> Result<Codes> {
        let file = File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
        let mut reader = TkwReader::open(BufReader::new(file))?;
        let header = reader.header().clone();
        if header.model_id != self.codec.model_id().0 {
            return Err(Error::ModelMismatch {
                stream: ModelId(header.model_id).to_string(),
                loaded: self.codec.model_id().to_string(),
            });
        }
        let config = self.codec.config();
        if header.hop as usize != config.hop() || header.sample_rate != config.sample_rate {
            return Err(Error::Format("the stream's frame layout does not match the model's".into()));
        }
        if self.codec.layout_of(&header)?.low_band != self.layout.low_band {
            return Err(Error::InvalidArgument(format!(
                "{} has {} stages and {} low-band codes per frame; this Codec reads {}: make one with low_band={}",
                path.display(),
                header.stages,
                header.low_band,
                self.layout,
                header.low_band
            )));
        }
        let mut codes = Codes::empty(header.codes_per_frame());
        while let Some(chunk) = reader.next_chunk()? {
            match chunk {
                Chunk::Codes(piece) => codes.extend(&piece)?,
                Chunk::Damaged { error, .. } => return Err(Error::Format(error)),
            }
        }
        Ok(codes)
    }

    fn write_stream(&self, codes: &Codes, path: &Path, samples: Option<u64>) -> Result<()> {
        let hop = self.codec.config().hop() as u64;
        let extra = u64::from(self.layout.low_band.is_some());
        let decodes_to = (codes.frames() as u64).saturating_sub(extra) * hop;
        let samples = samples.unwrap_or(decodes_to);
        if samples > decodes_to {
            return Err(Error::InvalidArgument(format!(
                "samples={samples} is more than the {decodes_to} samples these codes decode to"
            )));
        }
        let layout = self.layout_for_rows(codes.stages());
        let header = self.codec.tkw_header(layout, self.codec.config().sample_rate, Some(samples));
        let mut writer = TkwWriter::new(BufWriter::new(create(path)?), header)?;
        writer.write(codes)?;
        writer.finish(samples)?;
        Ok(())
    }
}

fn create(path: &Path) -> Result<File> {
    File::create(path).map_err(|e| Error::io(format!("cannot create {}", path.display()), e))
}

/// Threads for a batch of `items`: `jobs`, or one per core.
fn jobs_for(jobs: Option<usize>, items: usize) -> PyResult<usize> {
    match jobs {
        Some(0) => Err(PyValueError::new_err("jobs must be at least 1")),
        Some(jobs) => Ok(jobs),
        None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get()).min(items.max(1))),
    }
}

/// `work` on every item on the core's worker pool, results in order; the first item that
/// fails fails the call, its position named when there are several.
fn in_batch<T: Sync, R: Send>(items: &[T], jobs: usize, work: impl Fn(&T) -> Result<R> + Sync) -> PyResult<Vec<R>> {
    let mut results: Vec<Option<Result<R>>> = (0..items.len()).map(|_| None).collect();
    tokenwave_core::batch::for_each(items, jobs, || false, work, |index, result| results[index] = Some(result));
    let several = items.len() > 1;
    results
        .into_iter()
        .enumerate()
        .map(|(index, result)| match result {
            Some(Ok(value)) => Ok(value),
            Some(Err(error)) if several => Err(crate::py_error_in(error, &format!("item {index}: "))),
            Some(Err(error)) => Err(py_error(error)),
            None => Err(PyValueError::new_err(format!("item {index} was not processed"))),
        })
        .collect()
}
