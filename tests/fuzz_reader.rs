//! Property-based fuzzing of the .tkw reader: mutated and random streams must give `Ok` or
//! a clean `Err`, never a panic or a runaway allocation. `PROPTEST_CASES=1000000` for a long run.

use std::io::Cursor;

use proptest::prelude::*;
use tokenwave::Codes;
use tokenwave::bitstream::{Header, TkwReader, TkwWriter, container};

fn valid_stream(frames: usize, stages: u8, bits: u8) -> Vec<u8> {
    let header = Header {
        version: container::VERSION,
        model_id: [1; 16],
        sample_rate: 16_000,
        hop: 320,
        stages,
        low_band: 0,
        bits_per_code: bits,
        source_rate: 16_000,
        original_samples: Some(frames as u64 * 320),
    };
    let mask = (1u32 << bits) - 1;
    let data = (0..frames * stages as usize).map(|i| ((i as u32).wrapping_mul(2_654_435_761) & mask) as u16).collect();
    let mut writer = TkwWriter::new(Vec::new(), header).unwrap();
    writer.write(&Codes::from_frame_major(stages as usize, data).unwrap()).unwrap();
    writer.finish(frames as u64 * 320).unwrap()
}

/// Cases per property: 2000 in the test suite, `PROPTEST_CASES` for a long fuzzing run.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
}

fn drain(bytes: &[u8], skip: bool) {
    if let Ok(reader) = TkwReader::open(Cursor::new(bytes)) {
        let mut reader = reader.skip_damaged(skip);
        while let Ok(Some(_)) = reader.next_chunk() {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn mutated_streams_never_panic(
        frames in 1usize..700,
        stages in 1u8..=12,
        bits in 1u8..=16,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
        skip in any::<bool>(),
    ) {
        let mut bytes = valid_stream(frames, stages, bits);
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let len = cut.index(bytes.len() + 1);
        drain(&bytes[..len], skip);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        drain(&bytes, true);
        let mut with_magic = b"TKW1\x01".to_vec();
        with_magic.extend_from_slice(&bytes);
        drain(&with_magic, false);
    }
}
