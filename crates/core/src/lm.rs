//! What a language model trained on the codes needs to know about them: the grid's shape,
//! what each row is, the id range each row gets in a flat sequence, and the special tokens
//! placed after the audio vocabulary. `tokenwave tokens info --json` prints it and the Python
//! package's `codec_info()` returns it, in the shape of the `codec_info.json` that the
//! codec-bpe project reads (docs/TOKENS.md).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::codec::FrameLayout;
use crate::model::{ModelConfig, ModelId};

/// Special tokens after the audio vocabulary, in this order.
const SPECIAL_TOKENS: [&str; 3] = ["pad", "bos", "eos"];

/// The codes' conventions for one model and frame layout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CodecInfo {
    /// Always "tokenwave".
    pub codec_type: &'static str,
    /// Hex id of the model: codes decode only with the model that made them.
    pub codec_model: String,
    /// Audio sample rate, Hz.
    pub sampling_rate: u32,
    /// Frames (columns of the grid) per second.
    pub framerate: f64,
    /// Samples per frame.
    pub hop: usize,
    /// Rows of the grid: codes per frame.
    pub num_codebooks: usize,
    /// Values a code takes: `0..codebook_size`.
    pub codebook_size: usize,
    /// What each row holds, first row first: "neural" for a quantizer stage (coarsest
    /// first), "low_band" for a digit of the low-band waveform layer, "pitch" for the
    /// frame's pitch code (0 unvoiced, 1 to 255 a log-F0 level; its range is a row's like
    /// the others').
    pub rows: Vec<&'static str>,
    /// Added to row `k`'s codes in a flat sequence, so every row has its own id range.
    pub offsets: Vec<usize>,
    /// Ids of the special tokens, after every row's range.
    pub special_tokens: BTreeMap<&'static str, usize>,
    /// Audio ids and special tokens together.
    pub vocab_size: usize,
    /// The value a delay pattern fills its empty cells with (one past the codebook, as
    /// MusicGen's per-codebook vocabularies have it).
    pub delay_pad: usize,
}

impl CodecInfo {
    /// The conventions of codes made by the model `id` with `config`, laid out as `layout`.
    pub fn new(config: &ModelConfig, id: ModelId, layout: FrameLayout) -> Self {
        let rows: Vec<&'static str> = std::iter::repeat_n("neural", layout.stages)
            .chain(std::iter::repeat_n("low_band", layout.low_band_digits()))
            .chain(layout.pitch.then_some("pitch"))
            .collect();
        let size = config.codebook_size;
        let audio = rows.len() * size;
        Self {
            codec_type: "tokenwave",
            codec_model: id.to_string(),
            sampling_rate: config.sample_rate,
            framerate: config.frame_rate(),
            hop: config.hop(),
            num_codebooks: rows.len(),
            codebook_size: size,
            offsets: (0..rows.len()).map(|k| k * size).collect(),
            special_tokens: SPECIAL_TOKENS.iter().enumerate().map(|(i, &name)| (name, audio + i)).collect(),
            vocab_size: audio + SPECIAL_TOKENS.len(),
            delay_pad: size,
            rows,
        }
    }

    /// As one JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("plain fields serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lowband::LowBand;

    #[test]
    fn rows_offsets_and_specials_follow_the_layout() {
        let config = ModelConfig::default();
        let low_band = LowBand::new(3, config.bits_per_code(), config.hop(), config.sample_rate).unwrap();
        let info = CodecInfo::new(
            &config,
            ModelId([1; 16]),
            FrameLayout { stages: 2, low_band: Some(low_band), pitch: false },
        );
        assert_eq!(info.rows, ["neural", "neural", "low_band", "low_band", "low_band"]);
        assert_eq!(info.offsets, [0, 1024, 2048, 3072, 4096]);
        assert_eq!(info.vocab_size, 5 * 1024 + 3);
        let json = info.to_json();
        assert_eq!(json["special_tokens"]["eos"], 5 * 1024 + 2);
        assert_eq!(json["num_codebooks"], 5);
        assert_eq!(json["framerate"], 50.0);
    }
}
