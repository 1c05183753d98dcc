//! Weights files: safetensors with the [`ModelConfig`] as JSON in the metadata, so a file
//! alone is enough to rebuild the network. Also the model id that streams carry.

use std::fmt;
use std::path::Path;

use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::backend::Backend;
use safetensors::SafeTensors;
use sha2::{Digest, Sha256};

use super::{Model, ModelConfig};
use crate::error::{Error, Result};

/// Metadata key that holds the model config as JSON.
const CONFIG_KEY: &str = "tokenwave.config";

/// The default model, embedded in the binary unless built without the `embedded-model`
/// feature (a slim binary for machines that are handed their weights, such as a GPU trainer).
#[cfg(feature = "embedded-model")]
static EMBEDDED: &[u8] = include_bytes!("../../../../models/default.safetensors");

/// First 16 bytes of a SHA-256 over the stored config text and every tensor: identifies a
/// model in streams. Hashing the text as stored (not a re-serialisation) keeps a model's id
/// when a later release reads its config into other fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModelId(pub [u8; 16]);

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// A validated weights file, not yet turned into a network.
#[derive(Debug, Clone)]
pub struct Weights {
    config: ModelConfig,
    id: ModelId,
    bytes: Vec<u8>,
}

impl Weights {
    /// The model shipped inside the binary.
    pub fn embedded() -> Result<Self> {
        #[cfg(feature = "embedded-model")]
        return Self::from_bytes(EMBEDDED.to_vec());
        #[cfg(not(feature = "embedded-model"))]
        Err(Error::Weights(
            "this build has no embedded model (built without the `embedded-model` feature): pass --model FILE".into(),
        ))
    }

    /// Reads and validates a weights file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(format!("cannot read model {}", path.display()), e))?;
        Self::from_bytes(bytes).map_err(|e| Error::Weights(format!("{}: {e}", path.display())))
    }

    /// Validates safetensors bytes written by [`save`].
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        let tensors =
            SafeTensors::deserialize(&bytes).map_err(|e| Error::Weights(format!("not a safetensors file ({e})")))?;
        let (_, metadata) =
            SafeTensors::read_metadata(&bytes).map_err(|e| Error::Weights(format!("not a safetensors file ({e})")))?;
        let json = metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get(CONFIG_KEY))
            .ok_or_else(|| Error::Weights(format!("no `{CONFIG_KEY}` metadata: not a tokenwave model")))?;
        let config: ModelConfig =
            serde_json::from_str(json).map_err(|e| Error::Weights(format!("bad model config: {e}")))?;
        config.validate().map_err(|e| Error::Weights(format!("bad model config: {e}")))?;
        let id = model_id(json, &tensors);
        Ok(Self { config, id, bytes })
    }

    /// The network's sizes.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The id that streams made with this model carry.
    pub fn id(&self) -> ModelId {
        self.id
    }

    /// Builds the network on `device` and loads every tensor; a missing or misshapen tensor
    /// is an error.
    pub fn build<B: Backend>(&self, device: &B::Device) -> Result<Model<B>> {
        let mut model = Model::new(&self.config, device);
        // Weights written before release 0.2 nest the encoder's tensors one level deeper.
        let mut store = SafetensorsStore::from_bytes(Some(self.bytes.clone()))
            .with_key_remapping(r"^encoder\.spectral\.", "encoder.");
        let applied = model.load_from(&mut store).map_err(|e| Error::Weights(format!("cannot load tensors: {e}")))?;
        if !applied.missing.is_empty() || !applied.errors.is_empty() {
            return Err(Error::Weights(format!(
                "weights do not fit the config: missing {:?}, errors {:?}",
                applied.missing.iter().map(|(p, _)| p).collect::<Vec<_>>(),
                applied.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            )));
        }
        Ok(model)
    }
}

/// Writes `model` and `config` to a safetensors file at `path` (replacing it).
pub fn save<B: Backend>(model: &Model<B>, config: &ModelConfig, path: &Path) -> Result<()> {
    let json = serde_json::to_string(config).expect("config serializes");
    let mut store = SafetensorsStore::from_file(path).overwrite(true).metadata(CONFIG_KEY, json);
    model
        .clone()
        .no_grad()
        .save_into(&mut store)
        .map_err(|e| Error::Weights(format!("cannot save {}: {e}", path.display())))
}

fn model_id(stored_config: &str, tensors: &SafeTensors<'_>) -> ModelId {
    let mut hash = Sha256::new();
    hash.update(stored_config);
    let mut names = tensors.names();
    names.sort_unstable();
    for name in names {
        let view = tensors.tensor(name).expect("name listed by the file");
        hash.update(name.as_bytes());
        hash.update(format!("{:?}{:?}", view.dtype(), view.shape()));
        hash.update(view.data());
    }
    let digest = hash.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    ModelId(id)
}

#[cfg(all(test, feature = "embedded-model"))]
mod tests {
    use super::*;
    use crate::CpuBackend;

    #[test]
    fn the_default_config_is_the_shipped_models() {
        let weights = Weights::embedded().unwrap();
        assert_eq!(weights.config(), &ModelConfig::default());
        assert_eq!(weights.id().to_string(), "2bb7f219a33210af4de756606ef845c0", "the shipped model's id changed");
        weights.build::<CpuBackend>(&Default::default()).unwrap();
    }

    #[test]
    fn weights_saved_by_this_release_load_again_with_their_id() {
        let device = Default::default();
        let model = Weights::embedded().unwrap().build::<CpuBackend>(&device).unwrap();
        let path = std::env::temp_dir().join(format!("tokenwave-resave-{}.safetensors", std::process::id()));
        save(&model, &ModelConfig::default(), &path).unwrap();
        let again = Weights::from_file(&path);
        std::fs::remove_file(&path).unwrap();
        let again = again.unwrap();
        assert_eq!(again.config(), &ModelConfig::default());
        let rebuilt = again.build::<CpuBackend>(&device).unwrap();
        let codebooks = |m: &Model<CpuBackend>| m.rvq.codebooks.val().into_data();
        codebooks(&rebuilt).assert_eq(&codebooks(&model), true);
    }
}
