//! tokenwave-live: the codec on live audio.
//!
//! - Sound cards through cpal ([`Microphone`], [`Speaker`]): the device callbacks only move
//!   samples through lock-free rings, resampled to the model's rate in 10 ms pieces.
//! - Streaming between machines: the authenticated packets that carry frames ([`Sealer`],
//!   [`Opener`]), the UDP ends that exchange them ([`SenderLink`], [`ReceiverLink`]), and
//!   what the receiver does with frames that arrive late, twice or not at all
//!   ([`JitterBuffer`]), and the receiver's sessions ([`Receiver`]).

#![deny(missing_docs)]

mod device;
mod error;
mod jitter;
mod link;
mod packet;
mod receiver;
mod window;

pub use device::{DeviceInfo, Latency, Microphone, Speaker, input_devices, output_devices};
pub use error::{Error, Result};
pub use jitter::{JitterBuffer, JitterStats, Playout};
pub use link::{Event, HANDSHAKE_TIMEOUT, LinkStats, ReceiverLink, SendOptions, SenderLink};
pub use packet::{Direction, Key, Message, Opener, Rejection, Sealer, StreamInfo};
pub use receiver::{BufferState, Receiver, ReceiverState};
