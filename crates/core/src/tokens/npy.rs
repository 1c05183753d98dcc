//! numpy `.npy` token files (npyz). The array carries no metadata of its own, so it travels
//! in a `.npy.json` file beside it; a bare array from numpy is accepted too.

use std::io::Write;

use npyz::{DType, Order, TypeChar, WriterBuilder};

use super::{RawTokens, TokenMeta, Tokens};
use crate::error::{Error, Result};

pub fn write(tokens: &Tokens, out: &mut dyn Write) -> Result<()> {
    let (shape, values) = tokens.to_array();
    let shape: Vec<u64> = shape.iter().map(|&n| n as u64).collect();
    let io = |e| Error::io("cannot write the tokens", e);
    let mut writer = npyz::WriteOptions::new().default_dtype().shape(&shape).writer(out).begin_nd().map_err(io)?;
    writer.extend(values).map_err(io)?;
    writer.finish().map_err(io)
}

pub fn read(bytes: &[u8], meta: Option<TokenMeta>) -> Result<RawTokens> {
    let invalid = |e: std::io::Error| Error::Tokens(format!("not a valid .npy file: {e}"));
    let file = npyz::NpyFile::new(bytes).map_err(invalid)?;
    let DType::Plain(type_str) = file.dtype() else {
        return Err(Error::Tokens("the .npy array is a structured array; tokens must be plain integers".into()));
    };
    let width = type_str.size_field();
    if !matches!(type_str.type_char(), TypeChar::Int | TypeChar::Uint) || !matches!(width, 1 | 2 | 4 | 8) {
        return Err(Error::Tokens(format!(
            "the .npy array has dtype {type_str}; tokens must be integers (int16 as exported)"
        )));
    }
    let shape: Vec<usize> = file.shape().iter().map(|&n| n as usize).collect();
    let count = shape.iter().try_fold(1usize, |acc, &n| acc.checked_mul(n));
    let payload = bytes.len().saturating_sub(header_len(bytes));
    if count.and_then(|c| c.checked_mul(width as usize)).is_none_or(|need| need > payload) {
        return Err(Error::Tokens(format!(
            "the .npy header declares shape {shape:?} but the file holds only {payload} bytes of data"
        )));
    }
    let fortran = file.order() == Order::Fortran;
    let values: Vec<i64> = match (type_str.type_char(), width) {
        (TypeChar::Int, 1) => file.into_vec::<i8>().map(widen),
        (TypeChar::Int, 2) => file.into_vec::<i16>().map(widen),
        (TypeChar::Int, 4) => file.into_vec::<i32>().map(widen),
        (TypeChar::Int, _) => file.into_vec::<i64>(),
        (_, 1) => file.into_vec::<u8>().map(widen),
        (_, 2) => file.into_vec::<u16>().map(widen),
        (_, 4) => file.into_vec::<u32>().map(widen),
        (_, _) => file.into_vec::<u64>().map(|v| v.into_iter().map(|x| i64::try_from(x).unwrap_or(i64::MAX)).collect()),
    }
    .map_err(invalid)?;
    let values = if fortran && shape.len() == 2 { transpose(&values, shape[1], shape[0]) } else { values };
    Ok(RawTokens { meta, shape, values, frames_first: false })
}

fn widen<T: Into<i64>>(values: Vec<T>) -> Vec<i64> {
    values.into_iter().map(Into::into).collect()
}

/// Bytes before the data: magic and version (8), the length field (2 bytes in version 1,
/// 4 later), then the header text.
fn header_len(bytes: &[u8]) -> usize {
    match bytes.get(6) {
        Some(1) => 10 + bytes.get(8..10).map_or(0, |b| usize::from(u16::from_le_bytes([b[0], b[1]]))),
        _ => 12 + bytes.get(8..12).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize),
    }
}

/// Row-major copy of a column-major `rows × columns` array.
fn transpose(values: &[i64], rows: usize, columns: usize) -> Vec<i64> {
    let mut out = vec![0; values.len()];
    for r in 0..rows {
        for c in 0..columns {
            out[c * rows + r] = values[r * columns + c];
        }
    }
    out
}
