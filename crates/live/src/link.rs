//! The two ends of a live stream over UDP (tokio): the sender's handshake and frame
//! packets, the receiver's answers and the counters of what it refused.
//!
//! UDP because a late frame is a lost frame: the jitter buffer conceals a loss at once,
//! while TCP or WebSocket would stall every later frame behind a retransmission
//! (head-of-line blocking) and turn one lost packet into a burst of late ones.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout_at};

use super::packet::{Direction, Key, Message, Opener, Rejection, Sealer, StreamInfo};
use crate::error::{Error, Result};
use tokenwave_core::Codes;

/// How long a sender waits for the receiver's answer before giving up.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// A hello unanswered for this long is sent again (it or its answer may have been lost).
const HELLO_RETRY: Duration = Duration::from_millis(200);
/// Copies of the closing bye: the receiver also ends a silent session, this is the fast path.
const BYE_COPIES: usize = 3;
/// Largest datagram either side reads; packets are far smaller.
const MAX_DATAGRAM: usize = 2048;

/// How a sender lays frames into packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendOptions {
    /// New frames per packet: more saves header bytes, each one adds a frame of latency.
    pub frames_per_packet: usize,
    /// Frames of the previous packet(s) repeated in each packet, so that a single lost
    /// packet costs nothing.
    pub redundant_frames: usize,
}

impl Default for SendOptions {
    fn default() -> Self {
        Self { frames_per_packet: 1, redundant_frames: 1 }
    }
}

/// The sending end: connected to one receiver after a successful handshake.
pub struct SenderLink {
    socket: UdpSocket,
    sealer: Sealer,
    options: SendOptions,
    /// Codes per frame: the stages, then the low band's.
    codes_per_frame: usize,
    /// Frames sent most recently, kept for redundancy: (index, codes).
    recent: VecDeque<(u32, Vec<u16>)>,
    /// Frames waiting to fill a packet.
    pending: Vec<Vec<u16>>,
    next_frame: u32,
    packets: u64,
    bytes: u64,
}

impl SenderLink {
    /// Connects to the receiver at `to` and agrees on the stream `info` within
    /// [`HANDSHAKE_TIMEOUT`]; fails when the receiver refuses (another model) or never answers
    /// (not running, blocked, or holding another key — it stays silent to strangers).
    pub async fn connect(to: SocketAddr, key: &Key, info: StreamInfo, options: SendOptions) -> Result<Self> {
        if options.frames_per_packet == 0 || options.frames_per_packet + options.redundant_frames > 255 {
            return Err(Error::InvalidArgument("frames per packet must be 1..=255 counting redundant ones".into()));
        }
        let local: SocketAddr = if to.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
        let socket = UdpSocket::bind(local).await.map_err(|e| Error::io("cannot open a UDP socket", e))?;
        socket.connect(to).await.map_err(|e| Error::io(format!("cannot reach {to}"), e))?;
        let session = rand::random::<u64>();
        let bits = u32::from(info.bits_per_code);
        let mut sealer = Sealer::new(key, session, Direction::Forward, bits);
        let mut opener = Opener::new(key, Direction::Back, bits);
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        let mut buffer = vec![0u8; MAX_DATAGRAM];
        let mut ignored = 0u64;
        'hello: loop {
            let hello = sealer.seal(&Message::Hello(info.clone()));
            // A refused datagram (nobody listening yet) reads as an error on some systems:
            // keep trying until the deadline like any other silence.
            let _ = socket.send(&hello).await;
            let retry = (Instant::now() + HELLO_RETRY).min(deadline);
            loop {
                let received = match timeout_at(retry, socket.recv(&mut buffer)).await {
                    Err(_) if Instant::now() >= deadline => break 'hello,
                    Err(_) => continue 'hello,
                    Ok(Err(_)) => continue,
                    Ok(Ok(n)) => n,
                };
                match opener.open(&buffer[..received]) {
                    Ok((s, Message::Welcome(_))) if s == session => {
                        return Ok(Self {
                            socket,
                            sealer,
                            options,
                            codes_per_frame: info.codes_per_frame(),
                            recent: VecDeque::new(),
                            pending: Vec::new(),
                            next_frame: 0,
                            packets: 1,
                            bytes: hello.len() as u64,
                        });
                    }
                    Ok((s, Message::Refuse(theirs))) if s == session => {
                        return Err(Error::Network(format!(
                            "the receiver at {to} refused the stream: it runs {}, this sender runs {}; both ends need the same model (--model)",
                            theirs.describe(),
                            info.describe()
                        )));
                    }
                    _ => ignored += 1,
                }
            }
        }
        Err(Error::Network(format!(
            "no answer from {to} within {} s{}: is `tokenwave receive` running there, reachable over UDP, and using the same key file and tokenwave release?",
            HANDSHAKE_TIMEOUT.as_secs(),
            if ignored > 0 { format!(" ({ignored} unusable replies ignored)") } else { String::new() }
        )))
    }

    /// Sends `codes` (any number of frames, in order), a packet per
    /// [`SendOptions::frames_per_packet`] frames.
    pub async fn send(&mut self, codes: &Codes) -> Result<()> {
        if codes.stages() != self.codes_per_frame {
            return Err(Error::InvalidArgument(format!(
                "the stream was agreed with {} codes per frame, got {}",
                self.codes_per_frame,
                codes.stages()
            )));
        }
        for f in 0..codes.frames() {
            self.pending.push(codes.frame(f).to_vec());
            if self.pending.len() == self.options.frames_per_packet {
                self.send_pending().await?;
            }
        }
        Ok(())
    }

    async fn send_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let first = self.next_frame - self.recent.len() as u32;
        let mut data: Vec<u16> = self.recent.iter().flat_map(|(_, c)| c.iter().copied()).collect();
        for frame in self.pending.drain(..) {
            data.extend_from_slice(&frame);
            self.recent.push_back((self.next_frame, frame));
            self.next_frame += 1;
        }
        while self.recent.len() > self.options.redundant_frames {
            self.recent.pop_front();
        }
        let codes = Codes::from_frame_major(self.codes_per_frame, data)?;
        let packet = self.sealer.seal(&Message::Frames { first, codes });
        self.socket.send(&packet).await.map_err(|e| Error::io("cannot send a packet", e))?;
        self.packets += 1;
        self.bytes += packet.len() as u64;
        Ok(())
    }

    /// Sends what is left and tells the receiver the stream is over.
    pub async fn finish(&mut self) -> Result<()> {
        self.send_pending().await?;
        for _ in 0..BYE_COPIES {
            let bye = self.sealer.seal(&Message::Bye);
            self.socket.send(&bye).await.map_err(|e| Error::io("cannot send a packet", e))?;
            self.packets += 1;
            self.bytes += bye.len() as u64;
        }
        Ok(())
    }

    /// Frames handed to [`Self::send`] so far.
    pub fn frames_sent(&self) -> u64 {
        u64::from(self.next_frame) + self.pending.len() as u64
    }

    /// Packets and bytes (UDP payload) sent, handshake included.
    pub fn traffic(&self) -> (u64, u64) {
        (self.packets, self.bytes)
    }
}

/// What arrived at the receiver.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A sender with our key and model began a stream (a new session replaces the old).
    Started {
        /// Random id of the sender's run.
        session: u64,
        /// Where it sends from.
        peer: SocketAddr,
        /// What it streams.
        info: StreamInfo,
    },
    /// Frames `first..first + codes.frames()` of the current session.
    Frames {
        /// Index of the first frame.
        first: u32,
        /// Their codes.
        codes: Codes,
    },
    /// The sender said it is done.
    Ended,
    /// A datagram was dropped (see [`ReceiverLink::stats`] for the tally).
    Dropped(Rejection),
    /// An authentic packet of a session that is not the current one was ignored.
    Stale,
}

/// Datagrams the receiver dropped, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Authentic packets accepted.
    pub accepted: u64,
    /// Bytes of accepted packets.
    pub accepted_bytes: u64,
    /// Not tokenwave packets, or bodies that do not parse.
    pub malformed: u64,
    /// Tokenwave packets of another packet version (another release at the other end).
    pub other_version: u64,
    /// Wrong key or tampered: the tag did not verify.
    pub unauthenticated: u64,
    /// Authentic but seen before.
    pub replayed: u64,
    /// Authentic packets of a session that is not the current one.
    pub stale: u64,
}

/// The receiving end: answers hellos, hands frames of the current session to the caller
/// and drops everything else without a word.
pub struct ReceiverLink {
    socket: UdpSocket,
    key: Key,
    info: StreamInfo,
    opener: Opener,
    session: Option<(u64, Sealer)>,
    stats: LinkStats,
    buffer: Vec<u8>,
}

impl ReceiverLink {
    /// Listens on `addr` for senders that hold `key` and stream what `info` describes.
    pub async fn bind(addr: SocketAddr, key: &Key, info: StreamInfo) -> Result<Self> {
        let socket = UdpSocket::bind(addr).await.map_err(|e| Error::io(format!("cannot listen on {addr}"), e))?;
        let opener = Opener::new(key, Direction::Forward, u32::from(info.bits_per_code));
        Ok(Self {
            socket,
            key: key.clone(),
            info,
            opener,
            session: None,
            stats: LinkStats::default(),
            buffer: vec![0; MAX_DATAGRAM],
        })
    }

    /// The address it listens on (the port the system chose for port 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.socket.local_addr().map_err(|e| Error::io("cannot read the socket address", e))
    }

    /// The counters.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// The next event. Cancel-safe. A sender with another model is refused (it is told so)
    /// and reported as an error.
    pub async fn next(&mut self) -> Result<Event> {
        loop {
            let (n, peer) = self
                .socket
                .recv_from(&mut self.buffer)
                .await
                .map_err(|e| Error::io("cannot receive from the socket", e))?;
            let (session, message) = match self.opener.open(&self.buffer[..n]) {
                Ok(opened) => opened,
                Err(rejection) => {
                    match rejection {
                        Rejection::Malformed => self.stats.malformed += 1,
                        Rejection::OtherVersion => self.stats.other_version += 1,
                        Rejection::Unauthenticated => self.stats.unauthenticated += 1,
                        Rejection::Replayed => self.stats.replayed += 1,
                    }
                    return Ok(Event::Dropped(rejection));
                }
            };
            let current = self.session.as_ref().map(|(s, _)| *s);
            if !matches!(message, Message::Hello(_)) && current != Some(session) {
                self.stats.stale += 1;
                return Ok(Event::Stale);
            }
            self.stats.accepted += 1;
            self.stats.accepted_bytes += n as u64;
            match message {
                Message::Hello(theirs) => {
                    let bits = u32::from(self.info.bits_per_code);
                    if !self.info.accepts(&theirs) {
                        let mut sealer = Sealer::new(&self.key, session, Direction::Back, bits);
                        let refuse = sealer.seal(&Message::Refuse(self.info.clone()));
                        let _ = self.socket.send_to(&refuse, peer).await;
                        return Err(Error::Network(format!(
                            "refused a sender at {peer}: it runs {}, this receiver runs {}; both ends need the same model (--model)",
                            theirs.describe(),
                            self.info.describe()
                        )));
                    }
                    let new = current != Some(session);
                    if new {
                        self.session = Some((session, Sealer::new(&self.key, session, Direction::Back, bits)));
                    }
                    let (_, sealer) = self.session.as_mut().expect("just set");
                    let welcome = sealer.seal(&Message::Welcome(self.info.clone()));
                    let _ = self.socket.send_to(&welcome, peer).await;
                    if new {
                        return Ok(Event::Started { session, peer, info: theirs });
                    }
                }
                Message::Frames { first, codes } => return Ok(Event::Frames { first, codes }),
                Message::Bye => {
                    self.session = None;
                    return Ok(Event::Ended);
                }
                // Answers travel the other way; an authentic one here is a reflection.
                Message::Welcome(_) | Message::Refuse(_) => {
                    self.stats.malformed += 1;
                    return Ok(Event::Dropped(Rejection::Malformed));
                }
            }
        }
    }
}
