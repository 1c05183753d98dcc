//! Live streaming between machines: what the receiver does with frames that arrive over an
//! unreliable network, and the authenticated packets that carry them. Knows nothing of
//! sockets or audio devices.

mod jitter;
mod packet;

pub use jitter::{JitterBuffer, JitterStats, Playout};
pub use packet::{Direction, Key, Message, Opener, Rejection, Sealer, StreamInfo};
