//! Model hyper-parameters. Saved inside every weights file so a checkpoint always
//! rebuilds the network it was trained with.

use serde::{Deserialize, Serialize};

/// Every size of the network. The defaults are the shipped 16 kHz speech model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Sample rate the model works at, in Hz.
    pub sample_rate: u32,
    /// Channels of the first (full-rate) encoder conv; doubled at every downsampling stage.
    pub encoder_channels: usize,
    /// Downsampling factor of each encoder stage; their product is the hop (samples per frame).
    pub strides: Vec<usize>,
    /// Dilations of the residual units run before each downsampling conv.
    pub residual_dilations: Vec<usize>,
    /// Width of the latent vector the quantizer sees, one per frame.
    pub latent_dim: usize,
    /// Entries per codebook; a power of two so each code fills a whole number of bits.
    pub codebook_size: usize,
    /// Number of residual quantizer stages the model was trained with.
    pub max_stages: usize,
    /// 0: codebooks of full latent width, learned by EMA (the shipped design). Otherwise the
    /// width of low-dimensional, L2-normalised codebooks (the other design of the
    /// comparison in models/MODEL_CARD.md; training only so far).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub codebook_dim: usize,
    /// Decode with the encoder mirrored (transposed convolutions) instead of the ConvNeXt
    /// stack: the other design of the decoder comparison; training only so far.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub transposed_decoder: bool,
    /// The frame-rate decoder.
    pub decoder: ConvNextConfig,
    /// The decoder head predicts each frame's phase as a change from the previous frame's
    /// (plus the advance of a steady tone at the bin's frequency) instead of outright, so
    /// steady partials stay coherent from frame to frame ([`crate::model::decoder`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accumulated_phase: bool,
    /// The decoder head predicts magnitudes only, for two synthesis frames per hop (a
    /// quarter window apart), and the phase is rebuilt from them frame by frame
    /// ([`crate::model::phase`]): partials then run on at their own frequencies, which a
    /// predicted phase did not manage (models/MODEL_CARD.md, "The decoder loses the pitch").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rebuilt_phase: bool,
    /// Harmonics of the decoder's oscillator bank, which carries voiced sound at the
    /// predicted pitch ([`crate::model::harmonic`]); 0 for none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub harmonics: usize,
    /// On frames the decoder judges voiced, the inverse-STFT head is silenced below 3 kHz
    /// (fading back in by 4 kHz), so the harmonic source alone carries the voiced low band
    /// and its pitch; on frames judged unvoiced the source is silenced instead. Without the
    /// gate the trained head kept all of that energy and the source stayed silent
    /// (models/MODEL_CARD.md, sessions 11 and 12). Needs `harmonics`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub voicing_gate: bool,
    /// Encode with log-magnitude spectra and a ConvNeXt stack at frame rate
    /// ([`crate::model::spectral`]) instead of the waveform convs; `encoder_channels` and
    /// `residual_dilations` are then unused (`strides` still set the hop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spectral_encoder: Option<ConvNextConfig>,
}

/// A causal ConvNeXt stack at frame rate: the decoder's (before its inverse-FFT head,
/// Vocos-style) and the spectral encoder's. Never running at the sample rate keeps training
/// and coding cheap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvNextConfig {
    /// Channels of the ConvNeXt blocks.
    pub dim: usize,
    /// Hidden width of each block's pointwise MLP.
    pub hidden: usize,
    /// Number of ConvNeXt blocks.
    pub blocks: usize,
    /// Kernel of the causal depthwise convs, in frames.
    pub kernel: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            sample_rate: 16_000,
            encoder_channels: 8,
            strides: vec![2, 4, 5, 8],
            residual_dilations: vec![1],
            latent_dim: 128,
            codebook_size: 1024,
            max_stages: 12,
            codebook_dim: 0,
            transposed_decoder: false,
            decoder: ConvNextConfig { dim: 256, hidden: 768, blocks: 6, kernel: 7 },
            spectral_encoder: None,
            accumulated_phase: false,
            rebuilt_phase: false,
            harmonics: 0,
            voicing_gate: false,
        }
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl ModelConfig {
    /// Samples per frame.
    pub fn hop(&self) -> usize {
        self.strides.iter().product()
    }

    /// Frames per second (may be fractional for odd rates).
    pub fn frame_rate(&self) -> f64 {
        f64::from(self.sample_rate) / self.hop() as f64
    }

    /// Bits that one code takes in the packed stream.
    pub fn bits_per_code(&self) -> u32 {
        self.codebook_size.trailing_zeros()
    }

    /// Bitrate of the raw codes (no container) with `stages` quantizer stages.
    pub fn bitrate(&self, stages: usize) -> f64 {
        self.frame_rate() * (stages as u32 * self.bits_per_code()) as f64
    }

    /// FFT size of the decoder head: two hops, so Hann windows at 50 % overlap sum to one.
    pub fn n_fft(&self) -> usize {
        2 * self.hop()
    }

    /// Checks that the sizes describe a network we can build; the message names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("sample_rate", self.sample_rate as usize),
            ("encoder_channels", self.encoder_channels),
            ("latent_dim", self.latent_dim),
            ("max_stages", self.max_stages),
            ("decoder.dim", self.decoder.dim),
            ("decoder.hidden", self.decoder.hidden),
            ("decoder.kernel", self.decoder.kernel),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!("{name} must be positive"));
            }
        }
        if let Some(stack) = &self.spectral_encoder {
            if stack.dim == 0 || stack.hidden == 0 || stack.kernel == 0 {
                return Err("spectral_encoder.dim, .hidden and .kernel must be positive".into());
            }
            if !self.hop().is_multiple_of(4) {
                return Err("the spectral encoder needs a hop (product of strides) divisible by 4".into());
            }
        }
        if self.strides.is_empty() || self.strides.contains(&0) {
            return Err("strides must be a non-empty list of positive integers".into());
        }
        if self.residual_dilations.contains(&0) {
            return Err("residual_dilations must be positive".into());
        }
        if !self.codebook_size.is_power_of_two() || !(2..=65_536).contains(&self.codebook_size) {
            return Err("codebook_size must be a power of two between 2 and 65536".into());
        }
        if self.codebook_dim >= self.latent_dim {
            return Err("codebook_dim must be 0 (full width) or smaller than latent_dim".into());
        }
        if self.harmonics > 256 {
            return Err("harmonics must be at most 256".into());
        }
        if self.harmonics > 0 && (self.transposed_decoder || self.codebook_dim > 0) {
            return Err(
                "harmonics (a harmonic source) needs the shipped design: no transposed_decoder, codebook_dim 0".into(),
            );
        }
        if self.voicing_gate && self.harmonics == 0 {
            return Err("voicing_gate hands voiced sound to the harmonic source: it needs harmonics > 0".into());
        }
        if self.rebuilt_phase
            && (self.accumulated_phase
                || self.harmonics > 0
                || self.transposed_decoder
                || self.codebook_dim > 0
                || !self.hop().is_multiple_of(2))
        {
            return Err("rebuilt_phase replaces the predicted phase: it needs the shipped design (inverse-STFT \
                 decoder, codebook_dim 0) with an even hop, and no accumulated_phase or harmonics"
                .into());
        }
        if self.max_stages > 32 {
            return Err("max_stages must be at most 32".into());
        }
        if self.hop() > 8192 || self.encoder_channels << self.strides.len() > 8192 {
            return Err("strides or encoder_channels are implausibly large".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_model_is_50_frames_per_second_at_half_a_kbps_per_stage() {
        let config = ModelConfig::default();
        assert_eq!(config.hop(), 320);
        assert_eq!(config.frame_rate(), 50.0);
        assert_eq!(config.bits_per_code(), 10);
        assert_eq!(config.bitrate(1), 500.0);
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn validate_names_the_bad_field() {
        let config = ModelConfig { codebook_size: 1000, ..Default::default() };
        assert!(config.validate().unwrap_err().contains("codebook_size"));
        let config = ModelConfig { strides: vec![], ..Default::default() };
        assert!(config.validate().unwrap_err().contains("strides"));
        let config = ModelConfig { harmonics: 16, transposed_decoder: true, ..Default::default() };
        assert!(config.validate().unwrap_err().contains("harmonics"));
        let config = ModelConfig { voicing_gate: true, ..Default::default() };
        assert!(config.validate().unwrap_err().contains("voicing_gate"));
        let config = ModelConfig { rebuilt_phase: true, accumulated_phase: true, ..Default::default() };
        assert!(config.validate().unwrap_err().contains("rebuilt_phase"));
        let stack = ConvNextConfig { dim: 64, hidden: 128, blocks: 2, kernel: 3 };
        let config = ModelConfig { strides: vec![3, 5], spectral_encoder: Some(stack.clone()), ..Default::default() };
        assert!(config.validate().unwrap_err().contains("divisible by 4"));
        let config = ModelConfig { spectral_encoder: Some(ConvNextConfig { dim: 0, ..stack }), ..Default::default() };
        assert!(config.validate().unwrap_err().contains("spectral_encoder"));
    }

    #[test]
    fn configs_without_a_spectral_encoder_serialize_as_before() {
        let json = serde_json::to_string(&ModelConfig::default()).unwrap();
        assert!(!json.contains("spectral_encoder"), "{json}");
        let stack = ConvNextConfig { dim: 64, hidden: 128, blocks: 2, kernel: 3 };
        let spectral = ModelConfig { spectral_encoder: Some(stack), ..Default::default() };
        let back: ModelConfig = serde_json::from_str(&serde_json::to_string(&spectral).unwrap()).unwrap();
        assert_eq!(back, spectral);
    }
}
