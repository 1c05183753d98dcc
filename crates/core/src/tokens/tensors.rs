//! `.safetensors` token files: one int16 tensor named `codes`, metadata as JSON under the
//! `tokenwave.tokens` key of the file's `__metadata__`.

use std::collections::HashMap;
use std::io::Write;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::{RawTokens, TokenMeta, Tokens};
use crate::error::{Error, Result};

/// Name of the tensor holding the codes.
const TENSOR: &str = "codes";
/// Metadata key holding the [`TokenMeta`] JSON.
const META_KEY: &str = "tokenwave.tokens";

pub fn write(tokens: &Tokens, out: &mut dyn Write) -> Result<()> {
    let (shape, values) = tokens.to_array();
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = TensorView::new(Dtype::I16, shape, &bytes).expect("shape matches the data");
    let meta = HashMap::from([(META_KEY.to_string(), serde_json::to_string(&tokens.meta).expect("serializes"))]);
    let file = safetensors::serialize([(TENSOR, view)], Some(meta))
        .map_err(|e| Error::Tokens(format!("cannot build the safetensors file: {e}")))?;
    out.write_all(&file).map_err(|e| Error::io("cannot write the tokens", e))
}

pub fn read(bytes: &[u8]) -> Result<RawTokens> {
    let invalid = |e: safetensors::SafeTensorError| Error::Tokens(format!("not a valid safetensors file: {e}"));
    let tensors = SafeTensors::deserialize(bytes).map_err(invalid)?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(invalid)?;
    let meta = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(META_KEY))
        .map(|json| {
            serde_json::from_str::<TokenMeta>(json)
                .map_err(|e| Error::Tokens(format!("the {META_KEY} metadata is not valid: {e}")))
        })
        .transpose()?;
    let view = tensors.tensor(TENSOR).map_err(|_| {
        Error::Tokens(format!("the file has no tensor named \"{TENSOR}\" (it has: {})", tensors.names().join(", ")))
    })?;
    let data = view.data();
    let values: Vec<i64> = match view.dtype() {
        Dtype::I8 => data.iter().map(|&b| i64::from(b as i8)).collect(),
        Dtype::U8 => data.iter().map(|&b| i64::from(b)).collect(),
        Dtype::I16 => data.chunks_exact(2).map(|c| i64::from(i16::from_le_bytes([c[0], c[1]]))).collect(),
        Dtype::U16 => data.chunks_exact(2).map(|c| i64::from(u16::from_le_bytes([c[0], c[1]]))).collect(),
        Dtype::I32 => data.chunks_exact(4).map(|c| i64::from(i32::from_le_bytes(c.try_into().unwrap()))).collect(),
        Dtype::U32 => data.chunks_exact(4).map(|c| i64::from(u32::from_le_bytes(c.try_into().unwrap()))).collect(),
        Dtype::I64 => data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect(),
        Dtype::U64 => data
            .chunks_exact(8)
            .map(|c| i64::try_from(u64::from_le_bytes(c.try_into().unwrap())).unwrap_or(i64::MAX))
            .collect(),
        other => {
            return Err(Error::Tokens(format!(
                "tensor \"{TENSOR}\" has dtype {other:?}; tokens must be integers (int16 as exported)"
            )));
        }
    };
    Ok(RawTokens { meta, shape: view.shape().to_vec(), values, frames_first: false })
}
