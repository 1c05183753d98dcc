//! Model hyper-parameters. Saved inside every weights file so a checkpoint always
//! rebuilds the network it was trained with.

use serde::{Deserialize, Serialize};

/// Every size of the network. The defaults are the shipped 16 kHz speech model
/// (`models/default.safetensors`; a test checks them against it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StoredConfig")]
pub struct ModelConfig {
    /// Sample rate the model works at, in Hz.
    pub sample_rate: u32,
    /// Samples per frame: one latent, one set of codes, per hop. A multiple of 4 (the
    /// encoder's short windows).
    pub hop: usize,
    /// Width of the latent vector the quantizer sees, one per frame.
    pub latent_dim: usize,
    /// Entries per codebook; a power of two so each code fills a whole number of bits.
    pub codebook_size: usize,
    /// Number of residual quantizer stages the model was trained with.
    pub max_stages: usize,
    /// The encoder's ConvNeXt stack over each frame's log spectra.
    pub encoder: ConvNextConfig,
    /// The decoder's ConvNeXt stack before its inverse-STFT head.
    pub decoder: ConvNextConfig,
    /// The decoder's harmonic source, driven by the transmitted pitch ([`crate::pitch`]);
    /// models without one decode from the codes alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harmonic_source: Option<HarmonicSourceConfig>,
}

/// Sizes of the decoder's harmonic source ([`super::harmonic`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HarmonicSourceConfig {
    /// Points of the predicted amplitude envelope, evenly spaced from 0 Hz to the Nyquist
    /// frequency.
    pub bands: usize,
}

/// A causal ConvNeXt stack at frame rate (Vocos-style): never running at the sample rate
/// keeps training and coding cheap.
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
            hop: 320,
            latent_dim: 128,
            codebook_size: 1024,
            max_stages: 12,
            encoder: ConvNextConfig { dim: 256, hidden: 768, blocks: 4, kernel: 7 },
            decoder: ConvNextConfig { dim: 256, hidden: 768, blocks: 10, kernel: 7 },
            harmonic_source: None,
        }
    }
}

impl ModelConfig {
    /// Samples per frame.
    pub fn hop(&self) -> usize {
        self.hop
    }

    /// Frames per second (may be fractional for odd rates).
    pub fn frame_rate(&self) -> f64 {
        f64::from(self.sample_rate) / self.hop as f64
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
        2 * self.hop
    }

    /// Checks that the sizes describe a network we can build; the message names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("sample_rate", self.sample_rate as usize),
            ("latent_dim", self.latent_dim),
            ("max_stages", self.max_stages),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!("{name} must be positive"));
            }
        }
        for (name, stack) in [("encoder", &self.encoder), ("decoder", &self.decoder)] {
            if stack.dim == 0 || stack.hidden == 0 || stack.kernel == 0 {
                return Err(format!("{name}.dim, .hidden and .kernel must be positive"));
            }
        }
        if self.hop == 0 || !self.hop.is_multiple_of(4) || self.hop > 8192 {
            return Err("hop must be a positive multiple of 4 (the encoder's short windows), at most 8192".into());
        }
        if !self.codebook_size.is_power_of_two() || !(2..=65_536).contains(&self.codebook_size) {
            return Err("codebook_size must be a power of two between 2 and 65536".into());
        }
        if self.max_stages > 32 {
            return Err("max_stages must be at most 32".into());
        }
        if let Some(source) = &self.harmonic_source
            && !(2..=1024).contains(&source.bands)
        {
            return Err("harmonic_source.bands must be between 2 and 1024".into());
        }
        Ok(())
    }
}

/// A config as weights files store it: this release's fields, or those of releases up to
/// 0.1 (`strides`, the waveform encoder's sizes, `spectral_encoder`, and the flags of the
/// designs that lost their comparisons, which this release refuses by name).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredConfig {
    sample_rate: u32,
    #[serde(default)]
    hop: Option<usize>,
    #[serde(default)]
    strides: Option<Vec<usize>>,
    latent_dim: usize,
    codebook_size: usize,
    max_stages: usize,
    #[serde(default)]
    encoder: Option<ConvNextConfig>,
    #[serde(default)]
    spectral_encoder: Option<ConvNextConfig>,
    decoder: ConvNextConfig,
    #[serde(default)]
    harmonic_source: Option<HarmonicSourceConfig>,
    // Releases up to 0.1: the waveform encoder's sizes (unused with a spectral encoder).
    #[serde(default)]
    encoder_channels: Option<usize>,
    #[serde(default)]
    residual_dilations: Option<Vec<usize>>,
    // Releases up to 0.1: designs that lost their comparisons (docs/journal/).
    #[serde(default)]
    codebook_dim: usize,
    #[serde(default)]
    transposed_decoder: bool,
    #[serde(default)]
    accumulated_phase: bool,
    #[serde(default)]
    rebuilt_phase: bool,
    #[serde(default)]
    harmonics: usize,
    #[serde(default)]
    voicing_gate: bool,
}

impl TryFrom<StoredConfig> for ModelConfig {
    type Error = String;

    fn try_from(stored: StoredConfig) -> Result<Self, String> {
        let removed = [
            (stored.codebook_dim > 0, "low-dimensional codebooks (codebook_dim)"),
            (stored.transposed_decoder, "the transposed-conv decoder"),
            (stored.accumulated_phase, "accumulated phase"),
            (stored.rebuilt_phase, "rebuilt phase"),
            (stored.harmonics > 0, "a harmonic source with a guessed pitch"),
            (stored.voicing_gate, "the voicing gate"),
        ];
        if let Some((_, design)) = removed.iter().find(|(used, _)| *used) {
            return Err(format!(
                "this model uses {design}, a design that lost its comparison and was removed after tokenwave 0.1; \
                 use tokenwave 0.1 for it"
            ));
        }
        let encoder = match (stored.encoder, stored.spectral_encoder) {
            (Some(stack), None) | (None, Some(stack)) => stack,
            (Some(_), Some(_)) => return Err("give `encoder` or the older `spectral_encoder`, not both".into()),
            (None, None) if stored.encoder_channels.is_some() || stored.residual_dilations.is_some() => {
                return Err("this model uses the waveform encoder, which was removed after tokenwave 0.1 (the \
                            spectral encoder replaced it); use tokenwave 0.1 for it"
                    .into());
            }
            (None, None) => return Err("missing field `encoder`".into()),
        };
        let hop = match (stored.hop, stored.strides) {
            (Some(hop), None) => hop,
            (None, Some(strides)) if !strides.is_empty() && !strides.contains(&0) => {
                strides.iter().try_fold(1usize, |hop, &s| hop.checked_mul(s)).ok_or("strides overflow")?
            }
            (None, Some(_)) => return Err("strides must be a non-empty list of positive integers".into()),
            (Some(_), Some(_)) => return Err("give `hop` or the older `strides`, not both".into()),
            (None, None) => return Err("missing field `hop`".into()),
        };
        Ok(Self {
            sample_rate: stored.sample_rate,
            hop,
            latent_dim: stored.latent_dim,
            codebook_size: stored.codebook_size,
            max_stages: stored.max_stages,
            encoder,
            decoder: stored.decoder,
            harmonic_source: stored.harmonic_source,
        })
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
        let config = ModelConfig { hop: 322, ..Default::default() };
        assert!(config.validate().unwrap_err().contains("hop"));
        let stack = ConvNextConfig { dim: 0, hidden: 128, blocks: 2, kernel: 3 };
        let config = ModelConfig { encoder: stack, ..Default::default() };
        assert!(config.validate().unwrap_err().contains("encoder"));
    }

    #[test]
    fn configs_round_trip_through_json() {
        let config = ModelConfig::default();
        let back: ModelConfig = serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
        assert_eq!(back, config);
    }

    /// The shipped model's stored config, as release 0.1 wrote it.
    const RELEASE_0_1: &str = r#"{"sample_rate":16000,"encoder_channels":8,"strides":[2,4,5,8],"residual_dilations":[1],"latent_dim":128,"codebook_size":1024,"max_stages":12,"decoder":{"dim":256,"hidden":768,"blocks":10,"kernel":7},"spectral_encoder":{"dim":256,"hidden":768,"blocks":4,"kernel":7}}"#;

    #[test]
    fn release_0_1_configs_still_read() {
        let config: ModelConfig = serde_json::from_str(RELEASE_0_1).unwrap();
        assert_eq!(config, ModelConfig::default());
    }

    #[test]
    fn removed_designs_are_refused_by_name() {
        let with = |field: &str| RELEASE_0_1.replacen('{', &format!("{{{field},"), 1);
        for (field, name) in [
            (r#""harmonics":16"#, "harmonic source"),
            (r#""transposed_decoder":true"#, "transposed"),
            (r#""rebuilt_phase":true"#, "rebuilt phase"),
            (r#""codebook_dim":8"#, "codebook_dim"),
        ] {
            let error = serde_json::from_str::<ModelConfig>(&with(field)).unwrap_err().to_string();
            assert!(error.contains(name) && error.contains("0.1"), "{field}: {error}");
        }
        let waveform = RELEASE_0_1.replace(r#","spectral_encoder":{"dim":256,"hidden":768,"blocks":4,"kernel":7}"#, "");
        let error = serde_json::from_str::<ModelConfig>(&waveform).unwrap_err().to_string();
        assert!(error.contains("waveform encoder"), "{error}");
    }
}
