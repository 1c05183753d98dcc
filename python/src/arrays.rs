//! numpy arrays to the core's types and back, checked with the command line's messages.

use numpy::ndarray::{Array1, Array2, Array3, IxDyn};
use numpy::{
    AllowTypeChange, IntoPyArray, PyArray1, PyArray2, PyArray3, PyArrayDescrMethods, PyArrayDyn, PyArrayLike,
    PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use tokenwave_core::{Codes, Error, Result};

/// Mono audio as one row per item, from `[samples]` or `[batch, samples]`: anything numpy
/// turns into float32 (a list, a torch tensor, any `__array__`).
pub fn audio_rows(audio: &Bound<'_, PyAny>) -> PyResult<Vec<Vec<f32>>> {
    let array: PyArrayLike<'_, f32, IxDyn, AllowTypeChange> = audio.extract()?;
    let view = array.as_array();
    match view.shape() {
        [_] => Ok(vec![view.iter().copied().collect()]),
        [_, _] => Ok(view.outer_iter().map(|row| row.iter().copied().collect()).collect()),
        shape => Err(PyValueError::new_err(format!(
            "audio must be [samples] or [batch, samples], not an array of shape {shape:?}"
        ))),
    }
}

/// One signal's samples from `[samples]`.
pub fn audio_piece(audio: &Bound<'_, PyAny>) -> PyResult<Vec<f32>> {
    let array: PyArrayLike<'_, f32, IxDyn, AllowTypeChange> = audio.extract()?;
    let view = array.as_array();
    match view.shape() {
        [_] => Ok(view.iter().copied().collect()),
        shape => Err(PyValueError::new_err(format!("audio must be [samples], not an array of shape {shape:?}"))),
    }
}

/// Fails on the first sample that is not a finite number, counting from `first`.
pub fn check_finite(samples: &[f32], first: u64) -> Result<()> {
    match samples.iter().position(|s| !s.is_finite()) {
        Some(i) => Err(Error::InvalidArgument(format!("sample {} is not a finite number", first + i as u64))),
        None => Ok(()),
    }
}

/// A grid of codes as given: `[batch, codebooks, frames]`, or `[codebooks, frames]` for one
/// item; values not yet checked.
pub struct CodeGrid {
    pub items: usize,
    pub rows: usize,
    pub frames: usize,
    /// Row-major `[items][rows][frames]`.
    values: Vec<i64>,
}

impl CodeGrid {
    /// Reads any integer array of two or three dimensions.
    pub fn from_py(codes: &Bound<'_, PyAny>) -> PyResult<Self> {
        let py = codes.py();
        let array = py.import("numpy")?.call_method1("asarray", (codes,))?.cast_into::<PyUntypedArray>()?;
        let dtype = array.dtype();
        if !matches!(dtype.kind(), b'i' | b'u') {
            return Err(PyValueError::new_err(format!("codes must be an integer array, not {dtype}")));
        }
        let array = array.call_method1("astype", ("int64",))?.cast_into::<PyArrayDyn<i64>>()?;
        let readonly = array.readonly();
        let view = readonly.as_array();
        let (items, rows, frames) = match *view.shape() {
            [rows, frames] => (1, rows, frames),
            [items, rows, frames] => (items, rows, frames),
            ref shape => {
                return Err(PyValueError::new_err(format!(
                    "codes must be [codebooks, frames] or [batch, codebooks, frames], not an array of shape {shape:?}"
                )));
            }
        };
        Ok(Self { items, rows, frames, values: view.iter().copied().collect() })
    }

    /// Item `item` as codes, every value checked against `codebook_size`; a bad one is an
    /// error naming its frame (counted from `first_frame`) and row, as the decoder's own
    /// check does.
    pub fn item(&self, item: usize, codebook_size: usize, first_frame: u64) -> Result<Codes> {
        let (rows, frames) = (self.rows, self.frames);
        if rows == 0 {
            return Err(Error::InvalidArgument("codes must have at least one codebook row".into()));
        }
        let grid = &self.values[item * rows * frames..(item + 1) * rows * frames];
        let mut data = Vec::with_capacity(grid.len());
        for frame in 0..frames {
            for row in 0..rows {
                let code = grid[row * frames + frame];
                match u16::try_from(code) {
                    Ok(code) if usize::from(code) < codebook_size => data.push(code),
                    _ => {
                        return Err(Error::InvalidArgument(format!(
                            "code {code} at frame {}, stage {row} is out of range (codebook size {codebook_size})",
                            first_frame + frame as u64
                        )));
                    }
                }
            }
        }
        Codes::from_frame_major(rows, data)
    }
}

/// `[codebooks, frames]` int64 from frame-major codes.
pub fn codes_2d<'py>(py: Python<'py>, codes: &Codes) -> Bound<'py, PyArray2<i64>> {
    let (rows, frames) = (codes.stages(), codes.frames());
    Array2::from_shape_fn((rows, frames), |(row, frame)| i64::from(codes.frame(frame)[row])).into_pyarray(py)
}

/// `[batch, codebooks, frames]` int64; every item has `rows` rows and as many frames.
pub fn codes_3d<'py>(py: Python<'py>, items: &[Codes], rows: usize) -> Bound<'py, PyArray3<i64>> {
    let frames = items.first().map_or(0, Codes::frames);
    Array3::from_shape_fn((items.len(), rows, frames), |(item, row, frame)| i64::from(items[item].frame(frame)[row]))
        .into_pyarray(py)
}

/// `[samples]` float32.
pub fn audio_1d<'py>(py: Python<'py>, samples: Vec<f32>) -> Bound<'py, PyArray1<f32>> {
    Array1::from(samples).into_pyarray(py)
}

/// `[batch, samples]` float32 from rows of one length.
pub fn audio_2d<'py>(py: Python<'py>, rows: Vec<Vec<f32>>) -> Bound<'py, PyArray2<f32>> {
    let (items, length) = (rows.len(), rows.first().map_or(0, Vec::len));
    let flat: Vec<f32> = rows.into_iter().flatten().collect();
    Array2::from_shape_vec((items, length), flat).expect("rows of one length").into_pyarray(py)
}
