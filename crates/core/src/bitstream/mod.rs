//! Bits on the wire: packing codes and the `.tkw` container. Knows nothing of the model.

pub mod container;
pub mod pack;

pub use container::{Chunk, Header, TkwReader, TkwWriter};
