//! The `.tkw` file: a fixed header, then CRC-protected chunks of packed codes, then an end
//! chunk with the exact sample count. Byte layout: docs/FORMAT.md.

use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};

use super::pack::{pack, packed_len, unpack};
use crate::codes::Codes;
use crate::error::{Error, Result};

/// First four bytes of every `.tkw` stream.
pub const MAGIC: [u8; 4] = *b"TKW1";
/// The newest container version, written for streams with a pitch layer: version 4 adds the
/// pitch flag and one pitch byte per frame after each chunk's packed codes. Streams without
/// pitch are written as version 3, which older releases read. Versions 1 to 3 differ only
/// in the low band's edition ([`crate::lowband`]): version 2's band starts at 75 Hz,
/// version 3's gain takes fewer levels and its shape one pulse more.
pub const VERSION: u8 = 4;
/// Header flag (byte 44): each frame ends with a pitch code (version 4 on).
const FLAG_PITCH: u8 = 1;
/// Header size in bytes.
pub const HEADER_LEN: usize = 52;
/// Frames per chunk the writer emits (5 s at 50 frames/s).
pub const CHUNK_FRAMES: usize = 250;
/// Largest chunk a reader accepts; anything bigger is damage, not data.
pub const MAX_CHUNK_FRAMES: u32 = 1 << 16;
/// Bytes around each chunk's payload: frame count, payload length, CRC32.
pub const CHUNK_OVERHEAD: usize = 12;
/// `original_samples` value meaning "not known when the header was written; see the end chunk".
const UNKNOWN_LENGTH: u64 = u64::MAX;

/// What a stream says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Container version: [`VERSION`] for streams this code writes, 1 or 2 for older ones.
    pub version: u8,
    /// Id of the model that made the codes.
    pub model_id: [u8; 16],
    /// Sample rate of the model, Hz.
    pub sample_rate: u32,
    /// Samples per frame.
    pub hop: u32,
    /// Neural quantizer stages per frame.
    pub stages: u8,
    /// Low-band codes per frame after the stages (0: none; see [`crate::lowband`]).
    pub low_band: u8,
    /// Whether each frame ends with a pitch code, stored as one byte ([`crate::pitch`]).
    pub pitch: bool,
    /// Bits per code.
    pub bits_per_code: u8,
    /// Sample rate of the original input, Hz (informational).
    pub source_rate: u32,
    /// Samples at the model rate, when known up front (the end chunk always has it).
    pub original_samples: Option<u64>,
}

impl Header {
    /// The 52 header bytes, CRC included.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4] = self.version;
        b[5] = self.low_band;
        b[6] = self.stages;
        b[7] = self.bits_per_code;
        b[8..24].copy_from_slice(&self.model_id);
        b[24..28].copy_from_slice(&self.sample_rate.to_le_bytes());
        b[28..32].copy_from_slice(&self.hop.to_le_bytes());
        b[32..36].copy_from_slice(&self.source_rate.to_le_bytes());
        b[36..44].copy_from_slice(&self.original_samples.unwrap_or(UNKNOWN_LENGTH).to_le_bytes());
        b[44] = if self.pitch { FLAG_PITCH } else { 0 };
        let crc = crc32fast::hash(&b[..48]);
        b[48..52].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses and checks header bytes.
    pub fn from_bytes(b: &[u8; HEADER_LEN]) -> Result<Self> {
        if b[0..4] != MAGIC {
            return Err(Error::Format("wrong magic bytes: this is not a tokenwave .tkw file".into()));
        }
        if !(1..=VERSION).contains(&b[4]) {
            return Err(Error::Format(format!(
                "unknown container version {} (this tokenwave reads versions 1 to {VERSION}); upgrade tokenwave",
                b[4]
            )));
        }
        let crc = u32::from_le_bytes(b[48..52].try_into().expect("4 bytes"));
        if crc != crc32fast::hash(&b[..48]) {
            return Err(Error::Format("the header is damaged (CRC mismatch)".into()));
        }
        let known_flags = if b[4] >= 4 { FLAG_PITCH } else { 0 };
        if b[44] & !known_flags != 0 || b[45..48] != [0; 3] {
            return Err(Error::Format("the header uses flags this version does not know; upgrade tokenwave".into()));
        }
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let original = u64::from_le_bytes(b[36..44].try_into().expect("8 bytes"));
        let header = Header {
            version: b[4],
            model_id: b[8..24].try_into().expect("16 bytes"),
            stages: b[6],
            low_band: b[5],
            pitch: b[44] & FLAG_PITCH != 0,
            bits_per_code: b[7],
            sample_rate: u32_at(24),
            hop: u32_at(28),
            source_rate: u32_at(32),
            original_samples: (original != UNKNOWN_LENGTH).then_some(original),
        };
        header.check()?;
        Ok(header)
    }

    fn check(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::Format(format!("implausible header: {what}")));
        if !(1..=32).contains(&self.stages) {
            return bad(&format!("{} stages", self.stages));
        }
        if self.low_band != 0 && !(2..=8).contains(&self.low_band) {
            return bad(&format!("{} low-band codes per frame", self.low_band));
        }
        if !(1..=16).contains(&self.bits_per_code) {
            return bad(&format!("{} bits per code", self.bits_per_code));
        }
        if !(1..=768_000).contains(&self.sample_rate) || !(1..=768_000).contains(&self.source_rate) {
            return bad("sample rate");
        }
        if !(1..=65_536).contains(&self.hop) {
            return bad(&format!("hop of {} samples", self.hop));
        }
        Ok(())
    }

    /// Codes per frame: the stages, then the low band's, then the pitch code.
    pub fn codes_per_frame(&self) -> usize {
        self.packed_per_frame() + usize::from(self.pitch)
    }

    /// Codes per frame packed at `bits_per_code` (all but the pitch byte).
    fn packed_per_frame(&self) -> usize {
        usize::from(self.stages) + usize::from(self.low_band)
    }

    /// Bytes of one chunk payload holding `frames` frames.
    pub fn payload_len(&self, frames: usize) -> usize {
        packed_len(frames * self.packed_per_frame(), u32::from(self.bits_per_code)) + frames * usize::from(self.pitch)
    }
}

/// Writes a `.tkw` stream: header first, then chunks as frames arrive.
pub struct TkwWriter<W: Write> {
    out: W,
    header: Header,
    pending: Vec<u16>,
    scratch: Vec<u8>,
}

impl<W: Write> TkwWriter<W> {
    /// Writes the header and returns a writer for the chunks.
    pub fn new(mut out: W, header: Header) -> Result<Self> {
        header.check()?;
        out.write_all(&header.to_bytes()).map_err(|e| Error::io("cannot write .tkw header", e))?;
        Ok(Self { out, header, pending: Vec::new(), scratch: Vec::new() })
    }

    /// Adds frames; whole chunks are written as they fill.
    pub fn write(&mut self, codes: &Codes) -> Result<()> {
        if !codes.is_empty() && codes.stages() != self.header.codes_per_frame() {
            return Err(Error::InvalidArgument(format!(
                "codes have {} per frame, the stream {}",
                codes.stages(),
                self.header.codes_per_frame()
            )));
        }
        self.pending.extend_from_slice(codes.as_frame_major());
        let chunk_codes = CHUNK_FRAMES * self.header.codes_per_frame();
        while self.pending.len() >= chunk_codes {
            let rest = self.pending.split_off(chunk_codes);
            let chunk = std::mem::replace(&mut self.pending, rest);
            self.write_chunk(&chunk)?;
        }
        Ok(())
    }

    /// Writes the last partial chunk and the end chunk; returns the output.
    pub fn finish(mut self, total_samples: u64) -> Result<W> {
        if !self.pending.is_empty() {
            let chunk = std::mem::take(&mut self.pending);
            self.write_chunk(&chunk)?;
        }
        self.emit(0, &total_samples.to_le_bytes())?;
        self.out.flush().map_err(|e| Error::io("cannot write .tkw", e))?;
        Ok(self.out)
    }

    fn write_chunk(&mut self, codes: &[u16]) -> Result<()> {
        let per_frame = self.header.codes_per_frame();
        let frames = codes.len() / per_frame;
        let mut payload = std::mem::take(&mut self.scratch);
        payload.clear();
        let bits = u32::from(self.header.bits_per_code);
        if self.header.pitch {
            let packed: Vec<u16> =
                codes.chunks_exact(per_frame).flat_map(|frame| frame[..per_frame - 1].iter().copied()).collect();
            pack(&packed, bits, &mut payload);
            payload.extend(codes.chunks_exact(per_frame).map(|frame| frame[per_frame - 1] as u8));
        } else {
            pack(codes, bits, &mut payload);
        }
        self.emit(frames as u32, &payload)?;
        self.scratch = payload;
        Ok(())
    }

    fn emit(&mut self, frames: u32, payload: &[u8]) -> Result<()> {
        let mut head = [0u8; 8];
        head[..4].copy_from_slice(&frames.to_le_bytes());
        head[4..].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head);
        crc.update(payload);
        let write = |out: &mut W| -> std::io::Result<()> {
            out.write_all(&head)?;
            out.write_all(payload)?;
            out.write_all(&crc.finalize().to_le_bytes())
        };
        write(&mut self.out).map_err(|e| Error::io("cannot write .tkw", e))
    }
}

/// Rewrites the header of a finished seekable stream, e.g. to record the length once known.
pub fn rewrite_header<W: Write + Seek>(out: &mut W, header: &Header) -> Result<()> {
    let io = |e| Error::io("cannot update .tkw header", e);
    out.seek(SeekFrom::Start(0)).map_err(io)?;
    out.write_all(&header.to_bytes()).map_err(io)?;
    out.seek(SeekFrom::End(0)).map_err(io)?;
    Ok(())
}

/// One unit read from a stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Chunk {
    /// Frames of codes.
    Codes(Codes),
    /// A chunk that failed its CRC but whose lengths were consistent, so reading can go on
    /// (only when damaged chunks are skipped).
    Damaged {
        /// Frames the chunk claimed to hold.
        frames: u32,
        /// Why it was rejected.
        error: String,
    },
}

/// Reads a `.tkw` stream chunk by chunk, checking every length before allocating.
pub struct TkwReader<R: Read> {
    input: R,
    header: Header,
    skip_damaged: bool,
    index: u64,
    offset: u64,
    frames: u64,
    total_samples: Option<u64>,
}

impl<R: Read> TkwReader<R> {
    /// Reads and checks the header.
    pub fn open(mut input: R) -> Result<Self> {
        let mut bytes = [0u8; HEADER_LEN];
        read_exact_or(&mut input, &mut bytes, || {
            Error::Format(format!("too short for a .tkw header ({HEADER_LEN} bytes)"))
        })?;
        let header = Header::from_bytes(&bytes)?;
        Ok(Self {
            input,
            header,
            skip_damaged: false,
            index: 0,
            offset: HEADER_LEN as u64,
            frames: 0,
            total_samples: None,
        })
    }

    /// Report damaged chunks as [`Chunk::Damaged`] and go on, instead of failing.
    pub fn skip_damaged(mut self, skip: bool) -> Self {
        self.skip_damaged = skip;
        self
    }

    /// The stream's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Exact length in samples at the model rate, known once the end chunk has been read.
    pub fn total_samples(&self) -> Option<u64> {
        self.total_samples
    }

    /// Frames read so far (damaged ones included).
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Bytes read so far.
    pub fn bytes(&self) -> u64 {
        self.offset
    }

    /// The next chunk, or `None` after the end chunk.
    pub fn next_chunk(&mut self) -> Result<Option<Chunk>> {
        if self.total_samples.is_some() {
            return Ok(None);
        }
        let (index, offset) = (self.index, self.offset);
        let damaged = |reason: String| Error::DamagedChunk { index, offset, reason };
        let mut head = [0u8; 8];
        read_exact_or(&mut self.input, &mut head, || {
            damaged("the stream ends here without an end chunk: it is truncated".into())
        })?;
        let frames = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
        let payload_len = u32::from_le_bytes(head[4..].try_into().expect("4 bytes")) as usize;
        let expected = if frames == 0 { 8 } else { self.header.payload_len(frames as usize) };
        if frames > MAX_CHUNK_FRAMES || payload_len != expected {
            return Err(damaged(format!(
                "declares {frames} frames in {payload_len} bytes (expected {expected}); its length fields are corrupt"
            )));
        }
        let mut payload = vec![0u8; payload_len + 4];
        read_exact_or(&mut self.input, &mut payload, || damaged("truncated inside the chunk".into()))?;
        self.index += 1;
        self.offset += (CHUNK_OVERHEAD + payload_len) as u64;
        let (payload, crc) = payload.split_at(payload_len);
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&head);
        hasher.update(payload);
        if hasher.finalize() != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            let reason = "CRC mismatch: the data is corrupt".to_string();
            if self.skip_damaged && frames > 0 {
                self.frames += u64::from(frames);
                return Ok(Some(Chunk::Damaged { frames, error: damaged(reason).to_string() }));
            }
            return Err(damaged(reason));
        }
        if frames == 0 {
            let total = u64::from_le_bytes(payload.try_into().expect("8 bytes"));
            self.check_total(total).map_err(damaged)?;
            self.total_samples = Some(total);
            return Ok(None);
        }
        let (per_frame, packed) = (self.header.codes_per_frame(), self.header.packed_per_frame());
        let frames_len = frames as usize;
        let mut codes = Vec::new();
        unpack(payload, u32::from(self.header.bits_per_code), frames_len * packed, &mut codes);
        if self.header.pitch {
            let pitch = &payload[payload.len() - frames_len..];
            codes = codes
                .chunks_exact(packed)
                .zip(pitch)
                .flat_map(|(frame, &p)| frame.iter().copied().chain([u16::from(p)]))
                .collect();
        }
        self.frames += u64::from(frames);
        Ok(Some(Chunk::Codes(Codes::from_frame_major(per_frame, codes).expect("whole frames"))))
    }

    fn check_total(&self, total: u64) -> std::result::Result<(), String> {
        let hop = u64::from(self.header.hop);
        // The low band's encoder adds a frame that decodes to no samples of its own.
        let frames = self.frames.saturating_sub(u64::from(self.header.low_band != 0));
        let capacity = frames * hop;
        if total > capacity || capacity - total >= hop {
            return Err(format!("end chunk says {total} samples but the stream holds {} frames", self.frames));
        }
        if let Some(declared) = self.header.original_samples
            && declared != total
        {
            return Err(format!("end chunk says {total} samples but the header says {declared}"));
        }
        Ok(())
    }
}

/// `read_exact`, mapping a short read to `short()` and other failures to I/O errors.
fn read_exact_or<R: Read>(input: &mut R, buf: &mut [u8], short: impl FnOnce() -> Error) -> Result<()> {
    input.read_exact(buf).map_err(|e| match e.kind() {
        ErrorKind::UnexpectedEof => short(),
        _ => Error::io("cannot read .tkw", e),
    })
}
