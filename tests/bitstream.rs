//! The .tkw container: round trips and every kind of damage a reader must catch.

use std::io::Cursor;

use tokenwave::Codes;
use tokenwave::Error;
use tokenwave::bitstream::{Chunk, Header, TkwReader, TkwWriter, container};

fn header(stages: u8) -> Header {
    Header {
        version: container::VERSION,
        model_id: [7; 16],
        sample_rate: 16_000,
        hop: 320,
        stages,
        low_band: 0,
        bits_per_code: 10,
        source_rate: 44_100,
        original_samples: None,
    }
}

/// A stream of `frames` frames with codes that use every bit.
fn stream(frames: usize, stages: u8) -> (Vec<u8>, Codes) {
    let data: Vec<u16> = (0..frames * stages as usize).map(|i| (i * 37 % 1024) as u16).collect();
    let codes = Codes::from_frame_major(stages as usize, data).unwrap();
    let mut writer = TkwWriter::new(Vec::new(), header(stages)).unwrap();
    writer.write(&codes).unwrap();
    let samples = frames as u64 * 320 - 100;
    (writer.finish(samples).unwrap(), codes)
}

fn read_all(bytes: &[u8]) -> Result<(Codes, u64), Error> {
    let mut reader = TkwReader::open(Cursor::new(bytes))?;
    let mut codes = Codes::empty(reader.header().stages as usize);
    while let Some(chunk) = reader.next_chunk()? {
        match chunk {
            Chunk::Codes(c) => codes.extend(&c)?,
            Chunk::Damaged { .. } => unreachable!("not skipping"),
        }
    }
    Ok((codes, reader.total_samples().unwrap()))
}

#[test]
fn roundtrip_many_chunks() {
    let (bytes, codes) = stream(1234, 6);
    let (back, samples) = read_all(&bytes).unwrap();
    assert_eq!(back, codes);
    assert_eq!(samples, 1234 * 320 - 100);
    let chunks = 1234usize.div_ceil(container::CHUNK_FRAMES);
    let payload = 1234 * 6 * 10 / 8;
    assert_eq!(bytes.len(), container::HEADER_LEN + chunks * container::CHUNK_OVERHEAD + payload + 20);
}

#[test]
fn wrong_magic() {
    let (mut bytes, _) = stream(10, 2);
    bytes[0] = b'X';
    let err = read_all(&bytes).unwrap_err().to_string();
    assert!(err.contains("not a tokenwave .tkw file"), "{err}");
}

#[test]
fn unknown_version() {
    let (mut bytes, _) = stream(10, 2);
    bytes[4] = 9;
    let err = read_all(&bytes).unwrap_err().to_string();
    assert!(err.contains("unknown container version 9"), "{err}");
}

#[test]
fn damaged_header() {
    let (mut bytes, _) = stream(10, 2);
    bytes[30] ^= 0x10;
    let err = read_all(&bytes).unwrap_err().to_string();
    assert!(err.contains("header is damaged"), "{err}");
}

#[test]
fn flipped_bit_names_the_chunk() {
    let (mut bytes, _) = stream(600, 4);
    // Second chunk's payload starts after the header and the first chunk.
    let first = container::CHUNK_OVERHEAD + 250 * 4 * 10 / 8;
    bytes[container::HEADER_LEN + first + 8 + 5] ^= 0x04;
    match read_all(&bytes).unwrap_err() {
        Error::DamagedChunk { index, offset, .. } => {
            assert_eq!(index, 1);
            assert_eq!(offset as usize, container::HEADER_LEN + first);
        }
        other => panic!("expected a damaged chunk, got {other}"),
    }
}

#[test]
fn skip_damaged_goes_on() {
    let (mut bytes, codes) = stream(600, 4);
    bytes[container::HEADER_LEN + 20] ^= 0xff;
    let mut reader = TkwReader::open(Cursor::new(&bytes)).unwrap().skip_damaged(true);
    let mut good = 0;
    let mut lost = 0;
    while let Some(chunk) = reader.next_chunk().unwrap() {
        match chunk {
            Chunk::Codes(c) => good += c.frames(),
            Chunk::Damaged { frames, .. } => lost += frames as usize,
        }
    }
    assert_eq!((good, lost), (codes.frames() - 250, 250));
}

#[test]
fn truncated_chunk() {
    let (bytes, _) = stream(300, 3);
    for cut in [container::HEADER_LEN + 3, container::HEADER_LEN + 100, bytes.len() - 1, bytes.len() - 20] {
        let err = read_all(&bytes[..cut]).unwrap_err().to_string();
        assert!(err.contains("truncated"), "cut at {cut}: {err}");
    }
    let err = read_all(&bytes[..20]).unwrap_err().to_string();
    assert!(err.contains("too short"), "{err}");
}

#[test]
fn absurd_lengths_are_refused_before_allocating() {
    let (mut bytes, _) = stream(10, 2);
    let at = container::HEADER_LEN;
    bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    bytes[at + 4..at + 8].copy_from_slice(&u32::MAX.to_le_bytes());
    let err = read_all(&bytes).unwrap_err().to_string();
    assert!(err.contains("length fields are corrupt"), "{err}");
}

#[test]
fn end_chunk_must_match_the_frames() {
    let codes = Codes::from_frame_major(1, vec![1, 2, 3]).unwrap();
    let mut writer = TkwWriter::new(Vec::new(), header(1)).unwrap();
    writer.write(&codes).unwrap();
    let bytes = writer.finish(5_000).unwrap();
    let err = read_all(&bytes).unwrap_err().to_string();
    assert!(err.contains("end chunk says 5000 samples"), "{err}");
}
