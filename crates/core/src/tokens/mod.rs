//! Token files for machine-learning pipelines: codes as integer arrays in numpy `.npy`,
//! `.safetensors` or JSON Lines, with the metadata needed to turn them back into audio.
//!
//! Two layouts (docs/TOKENS.md has the details):
//! - [`Layout::Stages`]: a 2-D int16 array `[stages, frames]`; row `s` holds the codes of
//!   quantizer stage `s` (0 = coarsest) for every frame.
//! - [`Layout::Flat`]: one int16 sequence, frame-major (all stages of frame 0, then frame
//!   1, ...), where stage `s` is offset by `s * codebook_size` so that every stage has its
//!   own id range — the vocabulary a language model sees is `stages * codebook_size`.
//!
//! Codes of a model that uses pitch ([`TokenMeta::pitch`]) have one more row (stages
//! layout) or one more token per frame (flat, offset by `stages * codebook_size`): the
//! frame's pitch code, 0 for unvoiced and 1 to 255 for a log-F0 level ([`crate::pitch`]).
//!
//! Everything read is validated against the model that will decode it; errors name the
//! frame and stage of the offending value.

mod jsonl;
mod npy;
mod tensors;

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use jsonl::JsonlFrames;

use crate::codes::Codes;
use crate::error::{Error, Result};
use crate::model::{ModelConfig, ModelId};

/// Version of the token metadata; bumped on incompatible changes.
pub const TOKENS_VERSION: u32 = 1;

/// How codes are arranged in the array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `[stages, frames]`, raw codes `0..codebook_size`.
    #[default]
    Stages,
    /// `[frames * stages]`, frame-major, stage `s` offset by `s * codebook_size`.
    Flat,
}

/// A token file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFormat {
    /// numpy `.npy`, metadata in a `.npy.json` file beside it.
    Npy,
    /// `.safetensors`, metadata in the file's `__metadata__`.
    Safetensors,
    /// `.jsonl`: a metadata line, then one JSON array of codes per frame.
    Jsonl,
}

impl TokenFormat {
    /// The format a file name implies, from its extension.
    pub fn from_path(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "npy" => Some(Self::Npy),
            "safetensors" => Some(Self::Safetensors),
            "jsonl" => Some(Self::Jsonl),
            _ => None,
        }
    }

    /// The usual file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Npy => "npy",
            Self::Safetensors => "safetensors",
            Self::Jsonl => "jsonl",
        }
    }
}

/// What a token file says about its codes: enough to check them against a model and to
/// render them at the right length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenMeta {
    /// [`TOKENS_VERSION`] of the writer.
    pub version: u32,
    /// Hex id of the model that made the codes.
    pub model_id: String,
    /// Audio sample rate of the model, Hz.
    pub sample_rate: u32,
    /// Frames per second.
    pub frame_rate: f64,
    /// Samples per frame.
    pub hop: usize,
    /// Neural codes per frame.
    pub stages: usize,
    /// Whether each frame also has a pitch code, after its neural codes (older files: no).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pitch: bool,
    /// Entries per codebook.
    pub codebook_size: usize,
    /// Array layout.
    pub layout: Layout,
    /// Audio length in samples at `sample_rate`, when known: decoding trims to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<u64>,
}

impl TokenMeta {
    /// Metadata for codes of `stages` neural stages (and a pitch code per frame with
    /// `pitch`) made by the model `id` with `config`.
    pub fn new(
        config: &ModelConfig,
        id: ModelId,
        (stages, pitch): (usize, bool),
        layout: Layout,
        samples: Option<u64>,
    ) -> Self {
        Self {
            version: TOKENS_VERSION,
            model_id: id.to_string(),
            sample_rate: config.sample_rate,
            frame_rate: config.frame_rate(),
            hop: config.hop(),
            stages,
            pitch,
            codebook_size: config.codebook_size,
            layout,
            samples,
        }
    }

    /// Codes per frame: the neural stages, and the pitch code if there is one.
    pub fn rows(&self) -> usize {
        self.stages + usize::from(self.pitch)
    }

    /// Checks that a model with `config` and `id` can decode these codes.
    pub fn check(&self, config: &ModelConfig, id: ModelId) -> Result<()> {
        if self.version != TOKENS_VERSION {
            return Err(Error::Tokens(format!(
                "token metadata version {} is not supported (this tokenwave reads version {TOKENS_VERSION})",
                self.version
            )));
        }
        if self.model_id != id.to_string() {
            return Err(Error::ModelMismatch { stream: self.model_id.clone(), loaded: id.to_string() });
        }
        if self.sample_rate != config.sample_rate
            || self.hop != config.hop()
            || self.codebook_size != config.codebook_size
        {
            return Err(Error::Tokens(format!(
                "the tokens are for {} Hz, hop {}, {} codes per codebook, but the model has {} Hz, hop {}, {}",
                self.sample_rate,
                self.hop,
                self.codebook_size,
                config.sample_rate,
                config.hop(),
                config.codebook_size
            )));
        }
        check_stage_count(self.stages, config)
    }
}

fn check_stage_count(stages: usize, config: &ModelConfig) -> Result<()> {
    if stages == 0 || stages > config.max_stages {
        return Err(Error::Tokens(format!(
            "the tokens have {stages} stages per frame; the model has 1 to {}",
            config.max_stages
        )));
    }
    Ok(())
}

/// Codes with the metadata that travels with them.
#[derive(Debug, Clone, PartialEq)]
pub struct Tokens {
    /// Describes the codes.
    pub meta: TokenMeta,
    /// The codes, frame-major.
    pub codes: Codes,
}

/// A token file as read, before it is checked against a model.
#[derive(Debug, Clone)]
pub struct RawTokens {
    /// `None` for a bare array (a `.npy` written by numpy without a metadata file).
    meta: Option<TokenMeta>,
    /// Array shape: `[stages, frames]` or `[frames * stages]`; jsonl reads as `[frames, stages]`.
    shape: Vec<usize>,
    /// Values in the array's row-major order.
    values: Vec<i64>,
    /// True when the array is `[frames, stages]` (jsonl) rather than `[stages, frames]`.
    frames_first: bool,
}

impl RawTokens {
    /// The metadata, if the file had any.
    pub fn meta(&self) -> Option<&TokenMeta> {
        self.meta.as_ref()
    }

    /// Validates every value against the model (`config`, `id`) and returns the codes.
    /// Without metadata the layout follows from the shape: 2-D is `[stages, frames]`, 1-D flat.
    pub fn into_tokens(self, config: &ModelConfig, id: ModelId) -> Result<Tokens> {
        if let Some(meta) = &self.meta {
            meta.check(config, id)?;
        }
        let layout = match (&self.meta, self.shape.len()) {
            (Some(meta), _) => meta.layout,
            (None, 2) => Layout::Stages,
            (None, 1) => Layout::Flat,
            (None, n) => {
                return Err(Error::Tokens(format!(
                    "a token array has 2 dimensions [stages, frames] or 1 (flat layout), not {n}"
                )));
            }
        };
        let size = config.codebook_size;
        let pitch = self.meta.as_ref().is_some_and(|m| m.pitch);
        let (rows, data) = match layout {
            Layout::Stages => {
                let [first, second] = self.shape[..] else {
                    return Err(Error::Tokens(format!(
                        "the stages layout needs a 2-D array [stages, frames], not shape {:?}",
                        self.shape
                    )));
                };
                let (rows, frames) = if self.frames_first { (second, first) } else { (first, second) };
                let columns = Columns::new(rows, pitch, config)?;
                let mut data = Vec::with_capacity(rows * frames);
                for frame in 0..frames {
                    for row in 0..rows {
                        let index = if self.frames_first { frame * rows + row } else { row * frames + frame };
                        data.push(columns.check(self.values[index], row, frame, false)?);
                    }
                }
                (rows, data)
            }
            Layout::Flat => {
                let rows = match (&self.meta, self.frames_first) {
                    (Some(meta), _) => meta.rows(),
                    (None, true) => self.shape[1],
                    (None, false) => infer_flat_stages(&self.values, size),
                };
                let columns = Columns::new(rows, pitch, config)?;
                if !self.values.len().is_multiple_of(rows) {
                    return Err(Error::Tokens(format!(
                        "{} flat tokens do not split into frames of {rows} codes",
                        self.values.len()
                    )));
                }
                let data = self
                    .values
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| columns.check(v, i % rows, i / rows, true))
                    .collect::<Result<Vec<u16>>>()?;
                (rows, data)
            }
        };
        let stages = rows - usize::from(pitch);
        if let Some(meta) = &self.meta
            && meta.stages != stages
        {
            return Err(Error::Tokens(format!(
                "the metadata says {} stages{} but the array holds {rows} codes per frame",
                meta.stages,
                if pitch { " and pitch" } else { "" }
            )));
        }
        let codes = Codes::from_frame_major(rows, data)?;
        let meta = self.meta.unwrap_or_else(|| TokenMeta::new(config, id, (stages, false), layout, None));
        Ok(Tokens { meta, codes })
    }
}

/// The value ranges of a frame's codes: `stages` neural codes of `codebook_size` values,
/// then, with `pitch`, a pitch code of 256.
struct Columns {
    stages: usize,
    pitch: bool,
    codebook_size: usize,
}

impl Columns {
    /// The columns of frames of `rows` codes; checks the stage count against the model.
    fn new(rows: usize, pitch: bool, config: &ModelConfig) -> Result<Self> {
        let stages = rows.saturating_sub(usize::from(pitch));
        check_stage_count(stages, config)?;
        Ok(Self { stages, pitch, codebook_size: config.codebook_size })
    }

    /// `value` of code `row` of `frame` as a code (in the flat layout, less its row's
    /// offset), or an error naming where it sits.
    fn check(&self, value: i64, row: usize, frame: usize, flat: bool) -> Result<u16> {
        let is_pitch = self.pitch && row == self.stages;
        let size = if is_pitch { 1 << crate::codec::PITCH_BITS } else { self.codebook_size };
        let offset = if flat { (row * self.codebook_size) as i64 } else { 0 };
        let code = value - offset;
        if !(0..size as i64).contains(&code) {
            let what = if is_pitch { "pitch".to_string() } else { format!("stage {row}") };
            return Err(Error::Tokens(format!(
                "frame {frame}, {what}: value {value} is outside {offset}..={} ({size} codes)",
                offset + size as i64 - 1
            )));
        }
        Ok(code as u16)
    }
}

/// Stages of a flat sequence without metadata: the first frame counts up through the stage
/// id ranges, so the first token back in stage 0's range starts frame 1.
fn infer_flat_stages(values: &[i64], codebook_size: usize) -> usize {
    let size = codebook_size as i64;
    values.iter().skip(1).position(|&v| (0..size).contains(&v)).map_or(values.len(), |p| p + 1).max(1)
}

impl Tokens {
    /// The codes as int16 values in `layout` order, with the array shape.
    fn to_array(&self) -> (Vec<usize>, Vec<i16>) {
        let stages = self.codes.stages();
        let frames = self.codes.frames();
        let data = self.codes.as_frame_major();
        match self.meta.layout {
            Layout::Stages => {
                let mut out = vec![0i16; stages * frames];
                for (i, &code) in data.iter().enumerate() {
                    out[(i % stages) * frames + i / stages] = code as i16;
                }
                (vec![stages, frames], out)
            }
            Layout::Flat => {
                let size = self.meta.codebook_size;
                let out =
                    data.iter().enumerate().map(|(i, &c)| ((i % stages) * size + usize::from(c)) as i16).collect();
                (vec![stages * frames], out)
            }
        }
    }

    /// Writes the tokens in `format`. For `.npy` the metadata goes to [`npy_metadata_path`];
    /// callers that need the pair to appear atomically write that file first.
    pub fn write(&self, format: TokenFormat, out: &mut dyn std::io::Write) -> Result<()> {
        match format {
            TokenFormat::Npy => npy::write(self, out),
            TokenFormat::Safetensors => tensors::write(self, out),
            TokenFormat::Jsonl => jsonl::write(self, out),
        }
    }

    /// The metadata as pretty JSON (the `.npy.json` file).
    pub fn meta_json(&self) -> String {
        serde_json::to_string_pretty(&self.meta).expect("metadata serializes")
    }
}

/// Reads a whole token file from `bytes`; `npy_meta` is the text of the `.npy.json` file
/// next to a `.npy`, if there is one.
pub fn read(format: TokenFormat, bytes: &[u8], npy_meta: Option<&str>) -> Result<RawTokens> {
    match format {
        TokenFormat::Npy => {
            let meta = npy_meta
                .map(|text| {
                    serde_json::from_str(text)
                        .map_err(|e| Error::Tokens(format!("the .npy.json metadata file is not valid: {e}")))
                })
                .transpose()?;
            npy::read(bytes, meta)
        }
        TokenFormat::Safetensors => tensors::read(bytes),
        TokenFormat::Jsonl => jsonl::read(bytes),
    }
}

/// Where the metadata of a `.npy` token file lives: `codes.npy` → `codes.npy.json`.
pub fn npy_metadata_path(npy: &Path) -> std::path::PathBuf {
    let mut name = npy.as_os_str().to_owned();
    name.push(".json");
    name.into()
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Stages => "stages",
            Self::Flat => "flat",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(layout: Layout) -> Tokens {
        let config = ModelConfig::default();
        let codes = Codes::from_frame_major(3, vec![1, 2, 3, 4, 5, 1023, 0, 7, 9]).unwrap();
        Tokens { meta: TokenMeta::new(&config, ModelId([7; 16]), (3, false), layout, Some(960)), codes }
    }

    #[test]
    fn every_format_and_layout_round_trips() {
        let config = ModelConfig::default();
        for layout in [Layout::Stages, Layout::Flat] {
            for format in [TokenFormat::Npy, TokenFormat::Safetensors, TokenFormat::Jsonl] {
                let tokens = sample(layout);
                let mut bytes = Vec::new();
                tokens.write(format, &mut bytes).unwrap();
                let meta = tokens.meta_json();
                let back = read(format, &bytes, Some(&meta)).unwrap().into_tokens(&config, ModelId([7; 16])).unwrap();
                assert_eq!(back, tokens, "{format:?} {layout:?}");
            }
        }
    }

    #[test]
    fn a_pitch_row_round_trips_and_is_range_checked() {
        let config = ModelConfig::default();
        let id = ModelId([7; 16]);
        // Two stages and a pitch code per frame.
        let codes = Codes::from_frame_major(3, vec![1, 2, 0, 4, 1023, 255, 7, 8, 128]).unwrap();
        for layout in [Layout::Stages, Layout::Flat] {
            let tokens = Tokens { meta: TokenMeta::new(&config, id, (2, true), layout, None), codes: codes.clone() };
            for format in [TokenFormat::Npy, TokenFormat::Safetensors, TokenFormat::Jsonl] {
                let mut bytes = Vec::new();
                tokens.write(format, &mut bytes).unwrap();
                let back = read(format, &bytes, Some(&tokens.meta_json())).unwrap().into_tokens(&config, id).unwrap();
                assert_eq!(back, tokens, "{format:?} {layout:?}");
            }
        }
        let flat = Tokens { meta: TokenMeta::new(&config, id, (2, true), Layout::Flat, None), codes };
        assert_eq!(flat.to_array().1[..3], [1, 1026, 2048], "the pitch row is offset past the stages");
        let meta = Some(TokenMeta::new(&config, id, (2, true), Layout::Stages, None));
        let raw = RawTokens { meta, shape: vec![3, 2], values: vec![1, 2, 3, 4, 5, 256], frames_first: false };
        let err = raw.into_tokens(&config, id).unwrap_err().to_string();
        assert!(err.contains("frame 1, pitch") && err.contains("256"), "{err}");
    }

    #[test]
    fn layouts_are_as_documented() {
        let (shape, values) = sample(Layout::Stages).to_array();
        assert_eq!(shape, [3, 3]);
        assert_eq!(values, [1, 4, 0, 2, 5, 7, 3, 1023, 9]);
        let (shape, values) = sample(Layout::Flat).to_array();
        assert_eq!(shape, [9]);
        assert_eq!(values, [1, 1026, 2051, 4, 1029, 3071, 0, 1031, 2057]);
    }

    #[test]
    fn bare_arrays_infer_their_layout_and_stages() {
        let config = ModelConfig::default();
        let id = ModelId([7; 16]);
        let flat = RawTokens { meta: None, shape: vec![4], values: vec![5, 1030, 7, 1024], frames_first: false };
        let tokens = flat.into_tokens(&config, id).unwrap();
        assert_eq!(tokens.codes.as_frame_major(), &[5, 6, 7, 0]);
    }

    #[test]
    fn bad_values_name_their_position() {
        let config = ModelConfig::default();
        let id = ModelId([7; 16]);
        let raw = RawTokens { meta: None, shape: vec![2, 3], values: vec![0, 1, 2, 3, 1024, 5], frames_first: false };
        let err = raw.into_tokens(&config, id).unwrap_err().to_string();
        assert!(err.contains("frame 1, stage 1") && err.contains("1024"), "{err}");
        let raw = RawTokens { meta: None, shape: vec![13, 1], values: vec![0; 13], frames_first: false };
        let err = raw.into_tokens(&config, id).unwrap_err().to_string();
        assert!(err.contains("13 stages"), "{err}");
        let flat = RawTokens { meta: None, shape: vec![4], values: vec![5, 1030, 7, -1], frames_first: false };
        let err = flat.into_tokens(&config, id).unwrap_err().to_string();
        assert!(err.contains("frame 1, stage 1"), "{err}");
    }

    #[test]
    fn a_different_model_is_refused() {
        let tokens = sample(Layout::Stages);
        let mut bytes = Vec::new();
        tokens.write(TokenFormat::Safetensors, &mut bytes).unwrap();
        let err = read(TokenFormat::Safetensors, &bytes, None)
            .unwrap()
            .into_tokens(&ModelConfig::default(), ModelId([8; 16]))
            .unwrap_err();
        assert!(matches!(err, Error::ModelMismatch { .. }));
    }
}
