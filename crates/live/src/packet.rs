//! Live packets: every datagram is authenticated and encrypted with XChaCha20-Poly1305
//! under a key both peers share, and numbered so that replays are refused. The layout is
//! in docs/FORMAT.md ("Live packets").

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use super::window::SeenWindow;
use crate::error::{Error, Result};
use tokenwave_core::Codes;
use tokenwave_core::bitstream::pack;
use tokenwave_core::{ModelConfig, ModelId};

/// First byte of every packet.
const MAGIC: u8 = 0x54;
/// Packet format version, in the high nibble of the second byte (2: the hello carries the
/// low band; 3: the low band's third edition, [`tokenwave_core::LowBand::new`]).
const VERSION: u8 = 3;
/// Magic, version/kind, session (8), sequence (4).
const HEADER: usize = 14;
/// Poly1305 tag.
const TAG: usize = 16;

/// A 256-bit key shared by sender and receiver.
#[derive(Clone)]
pub struct Key([u8; 32]);

impl Key {
    /// A fresh random key, from the operating system's generator.
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// The key as the text of a key file: 64 hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A key from the text of a key file: 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self> {
        let text = text.trim();
        let bytes: Option<Vec<u8>> = (0..text.len())
            .step_by(2)
            .map(|i| text.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect();
        match bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()) {
            Some(key) if text.len() == 64 => Ok(Self(key)),
            _ => Err(Error::InvalidArgument(
                "a key file holds 64 hex digits (256 bits), e.g. from `openssl rand -hex 32`".into(),
            )),
        }
    }
}

/// What a stream carries, exchanged in the handshake so a mismatch is caught before audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// Id of the model encoding the stream.
    pub model_id: [u8; 16],
    /// Model sample rate, Hz.
    pub sample_rate: u32,
    /// Samples per frame.
    pub hop: u16,
    /// Neural quantizer stages per frame (a receiver's own: the most it decodes).
    pub stages: u8,
    /// Bits per code.
    pub bits_per_code: u8,
    /// Low-band codes per frame after the stages: 0, or 2 to 8 (a receiver's own: 8, it
    /// decodes every low band).
    pub low_band: u8,
}

const INFO_LEN: usize = 16 + 4 + 2 + 1 + 1 + 1;

impl StreamInfo {
    /// What `model` (with id `model_id`) streams with `stages` quantizer stages and
    /// `low_band` low-band codes per frame.
    pub fn new(model: &ModelConfig, model_id: ModelId, stages: usize, low_band: usize) -> Self {
        Self {
            model_id: model_id.0,
            sample_rate: model.sample_rate,
            hop: model.hop() as u16,
            stages: stages as u8,
            bits_per_code: model.bits_per_code() as u8,
            low_band: low_band as u8,
        }
    }

    /// Codes per frame.
    pub fn codes_per_frame(&self) -> usize {
        usize::from(self.stages) + usize::from(self.low_band)
    }

    /// Whether a receiver streaming `self` (its model, at most `self.stages` stages) can
    /// decode what a sender describes in `theirs`.
    pub fn accepts(&self, theirs: &StreamInfo) -> bool {
        self.model_id == theirs.model_id
            && self.sample_rate == theirs.sample_rate
            && self.hop == theirs.hop
            && self.bits_per_code == theirs.bits_per_code
            && (1..=self.stages).contains(&theirs.stages)
            && (theirs.low_band == 0 || (2..=self.low_band).contains(&theirs.low_band))
    }

    /// One line for error messages.
    pub fn describe(&self) -> String {
        format!(
            "model {} ({} Hz, hop {}, {} stages and {} low-band codes of {} bits)",
            ModelId(self.model_id),
            self.sample_rate,
            self.hop,
            self.stages,
            self.low_band,
            self.bits_per_code
        )
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.model_id);
        out.extend_from_slice(&self.sample_rate.to_le_bytes());
        out.extend_from_slice(&self.hop.to_le_bytes());
        out.push(self.stages);
        out.push(self.bits_per_code);
        out.push(self.low_band);
    }

    fn read(b: &[u8]) -> Option<Self> {
        (b.len() == INFO_LEN).then(|| Self {
            model_id: b[..16].try_into().expect("16 bytes"),
            sample_rate: u32::from_le_bytes(b[16..20].try_into().expect("4 bytes")),
            hop: u16::from_le_bytes([b[20], b[21]]),
            stages: b[22],
            bits_per_code: b[23],
            low_band: b[24],
        })
    }
}

/// The messages peers exchange.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Sender → receiver: what the stream will carry.
    Hello(StreamInfo),
    /// Receiver → sender: accepted; the receiver's own model, same size as the hello.
    Welcome(StreamInfo),
    /// Receiver → sender: refused, with the receiver's model (a mismatch).
    Refuse(StreamInfo),
    /// Frames `first..first + codes.frames()`; more than one when earlier frames are repeated
    /// for redundancy.
    Frames {
        /// Index of the first frame.
        first: u32,
        /// The codes.
        codes: Codes,
    },
    /// The sender stops.
    Bye,
}

impl Message {
    fn kind(&self) -> u8 {
        match self {
            Self::Hello(_) => 1,
            Self::Welcome(_) => 2,
            Self::Refuse(_) => 3,
            Self::Frames { .. } => 4,
            Self::Bye => 5,
        }
    }

    fn body(&self, bits: u32) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Self::Hello(info) | Self::Welcome(info) | Self::Refuse(info) => info.write(&mut out),
            Self::Frames { first, codes } => {
                out.extend_from_slice(&first.to_le_bytes());
                out.push(codes.stages() as u8);
                out.push(codes.frames() as u8);
                pack::pack(codes.as_frame_major(), bits, &mut out);
            }
            Self::Bye => {}
        }
        out
    }

    fn parse(kind: u8, body: &[u8], bits: u32) -> Option<Self> {
        match kind {
            1 => StreamInfo::read(body).map(Self::Hello),
            2 => StreamInfo::read(body).map(Self::Welcome),
            3 => StreamInfo::read(body).map(Self::Refuse),
            4 => {
                let first = u32::from_le_bytes(body.get(..4)?.try_into().ok()?);
                let (stages, frames) = (usize::from(*body.get(4)?), usize::from(*body.get(5)?));
                let count = stages * frames;
                if stages == 0 || body.len() - 6 != pack::packed_len(count, bits) {
                    return None;
                }
                let mut data = Vec::with_capacity(count);
                pack::unpack(&body[6..], bits, count, &mut data);
                Some(Self::Frames { first, codes: Codes::from_frame_major(stages, data).ok()? })
            }
            5 if body.is_empty() => Some(Self::Bye),
            _ => None,
        }
    }
}

/// Which way a packet travels: part of the nonce, so the two directions never share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Sender to receiver.
    Forward,
    /// Receiver to sender.
    Back,
}

fn nonce(session: u64, sequence: u32, direction: Direction) -> XNonce {
    let mut n = [0u8; 24];
    n[..8].copy_from_slice(&session.to_le_bytes());
    n[8..12].copy_from_slice(&sequence.to_le_bytes());
    n[12] = direction as u8;
    XNonce::from(n)
}

/// Seals messages of one session in one direction.
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    session: u64,
    sequence: u32,
    direction: Direction,
    bits: u32,
}

impl Sealer {
    /// Packets of `session` (random per run) travelling `direction`, codes of `bits` bits.
    pub fn new(key: &Key, session: u64, direction: Direction, bits: u32) -> Self {
        Self { cipher: XChaCha20Poly1305::new(&key.0.into()), session, sequence: 0, direction, bits }
    }

    /// The datagram for `message`.
    pub fn seal(&mut self, message: &Message) -> Vec<u8> {
        self.sequence += 1;
        let mut packet = Vec::with_capacity(HEADER + TAG + 64);
        packet.push(MAGIC);
        packet.push(VERSION << 4 | message.kind());
        packet.extend_from_slice(&self.session.to_le_bytes());
        packet.extend_from_slice(&self.sequence.to_le_bytes());
        let body = message.body(self.bits);
        let sealed = self
            .cipher
            .encrypt(&nonce(self.session, self.sequence, self.direction), Payload { msg: &body, aad: &packet })
            .expect("encryption of an in-memory buffer does not fail");
        packet.extend_from_slice(&sealed);
        packet
    }
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not a tokenwave packet, or a body that does not parse.
    Malformed,
    /// A tokenwave packet of another packet version: the two ends run releases that cannot
    /// talk to each other.
    OtherVersion,
    /// The tag does not verify: wrong key or tampered.
    Unauthenticated,
    /// A sequence number seen before (or too old to tell).
    Replayed,
}

/// Opens packets of one direction, refusing forgeries and replays.
pub struct Opener {
    cipher: XChaCha20Poly1305,
    direction: Direction,
    bits: u32,
    /// Per session: the sequence numbers accepted lately.
    windows: std::collections::HashMap<u64, SeenWindow>,
}

impl Opener {
    /// Opens packets travelling `direction` with codes of `bits` bits.
    pub fn new(key: &Key, direction: Direction, bits: u32) -> Self {
        Self { cipher: XChaCha20Poly1305::new(&key.0.into()), direction, bits, windows: Default::default() }
    }

    /// The session and message in `datagram`, if it is authentic and new.
    pub fn open(&mut self, datagram: &[u8]) -> std::result::Result<(u64, Message), Rejection> {
        if datagram.len() < HEADER + TAG || datagram[0] != MAGIC {
            return Err(Rejection::Malformed);
        }
        if datagram[1] >> 4 != VERSION {
            return Err(Rejection::OtherVersion);
        }
        let (header, sealed) = datagram.split_at(HEADER);
        let session = u64::from_le_bytes(header[2..10].try_into().expect("8 bytes"));
        let sequence = u32::from_le_bytes(header[10..14].try_into().expect("4 bytes"));
        let body = self
            .cipher
            .decrypt(&nonce(session, sequence, self.direction), Payload { msg: sealed, aad: header })
            .map_err(|_| Rejection::Unauthenticated)?;
        // Only authentic packets may touch the replay state.
        if !self.windows.entry(session).or_default().mark(u64::from(sequence)) {
            return Err(Rejection::Replayed);
        }
        let message = Message::parse(header[1] & 0x0f, &body, self.bits).ok_or(Rejection::Malformed)?;
        Ok((session, message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> Key {
        Key([byte; 32])
    }

    fn info() -> StreamInfo {
        StreamInfo { model_id: [9; 16], sample_rate: 16_000, hop: 320, stages: 6, bits_per_code: 10, low_band: 0 }
    }

    #[test]
    fn messages_round_trip_and_the_welcome_is_no_bigger_than_the_hello() {
        let mut sealer = Sealer::new(&key(1), 77, Direction::Forward, 10);
        let mut opener = Opener::new(&key(1), Direction::Forward, 10);
        let codes = Codes::from_frame_major(6, (0..12).map(|i| i * 80).collect()).unwrap();
        for message in [Message::Hello(info()), Message::Frames { first: 41, codes }, Message::Bye] {
            let packet = sealer.seal(&message);
            assert_eq!(opener.open(&packet), Ok((77, message)));
        }
        let mut back = Sealer::new(&key(1), 77, Direction::Back, 10);
        let hello = Sealer::new(&key(1), 5, Direction::Forward, 10).seal(&Message::Hello(info()));
        assert!(back.seal(&Message::Welcome(info())).len() <= hello.len());
        assert!(back.seal(&Message::Refuse(info())).len() <= hello.len());
    }

    #[test]
    fn forged_tampered_replayed_and_reflected_packets_are_refused() {
        let mut sealer = Sealer::new(&key(1), 7, Direction::Forward, 10);
        let mut opener = Opener::new(&key(1), Direction::Forward, 10);
        let packet = sealer.seal(&Message::Bye);
        let mut stranger = Sealer::new(&key(2), 7, Direction::Forward, 10);
        assert_eq!(opener.open(&stranger.seal(&Message::Bye)), Err(Rejection::Unauthenticated));
        for i in 0..packet.len() {
            let mut tampered = packet.clone();
            tampered[i] ^= 0x01;
            assert!(opener.open(&tampered).is_err(), "byte {i} flipped and accepted");
        }
        assert!(opener.open(&packet).is_ok());
        assert_eq!(opener.open(&packet), Err(Rejection::Replayed));
        // A packet sent back to its sender does not open there: the direction is in the nonce.
        let mut reflected = Opener::new(&key(1), Direction::Back, 10);
        assert_eq!(reflected.open(&sealer.seal(&Message::Bye)), Err(Rejection::Unauthenticated));
        assert_eq!(opener.open(b"short"), Err(Rejection::Malformed));
        let mut older = sealer.seal(&Message::Bye);
        older[1] = 2 << 4 | (older[1] & 0x0f);
        assert_eq!(opener.open(&older), Err(Rejection::OtherVersion));
    }

    #[test]
    fn reordered_packets_inside_the_window_are_accepted_once() {
        let mut sealer = Sealer::new(&key(1), 7, Direction::Forward, 10);
        let mut opener = Opener::new(&key(1), Direction::Forward, 10);
        let packets: Vec<Vec<u8>> = (0..100).map(|_| sealer.seal(&Message::Bye)).collect();
        assert!(opener.open(&packets[99]).is_ok());
        assert!(opener.open(&packets[50]).is_ok());
        assert_eq!(opener.open(&packets[50]), Err(Rejection::Replayed));
        assert_eq!(opener.open(&packets[10]), Err(Rejection::Replayed), "older than the window");
    }

    #[test]
    fn key_files_hold_64_hex_digits() {
        assert!(Key::from_hex(&"ab".repeat(32)).is_ok());
        assert!(Key::from_hex(&format!("  {}\n", "0f".repeat(32))).is_ok());
        assert!(Key::from_hex("abc").is_err());
        assert!(Key::from_hex(&"zz".repeat(32)).is_err());
    }
}
