//! Live streaming between machines: what the receiver does with frames that arrive over an
//! unreliable network. Knows nothing of sockets or audio devices.

mod jitter;

pub use jitter::{JitterBuffer, JitterStats, Playout};
