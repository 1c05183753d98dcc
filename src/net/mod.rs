//! Live streaming between machines: the authenticated packets that carry frames
//! ([`Sealer`], [`Opener`]), the UDP ends that exchange them ([`SenderLink`],
//! [`ReceiverLink`]), and what the receiver does with frames that arrive late, twice or not
//! at all ([`JitterBuffer`]). Knows nothing of audio devices.

mod jitter;
mod link;
mod packet;
mod window;

pub use jitter::{JitterBuffer, JitterStats, Playout};
pub use link::{Event, HANDSHAKE_TIMEOUT, LinkStats, ReceiverLink, SendOptions, SenderLink};
pub use packet::{Direction, Key, Message, Opener, Rejection, Sealer, StreamInfo};
