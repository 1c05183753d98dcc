//! Property-based fuzzing of the token file readers (npy, safetensors, jsonl): mutated and
//! truncated valid files must give `Ok` or a clean `Err`, never a panic or a runaway
//! allocation. `PROPTEST_CASES=1000000` for a long run.

use proptest::prelude::*;
use tokenwave::tokens::{self, JsonlFrames, Layout, TokenFormat, TokenMeta, Tokens};
use tokenwave::{Codes, ModelConfig, ModelId};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
}

fn valid(format: TokenFormat, layout: Layout, frames: usize, stages: usize) -> (Vec<u8>, String) {
    let config = ModelConfig::default();
    let data = (0..frames * stages).map(|i| ((i * 2_654_435_761) % 1024) as u16).collect();
    let codes = Codes::from_frame_major(stages, data).unwrap();
    let tokens = Tokens { meta: TokenMeta::new(&config, ModelId([3; 16]), stages, layout, None), codes };
    let mut bytes = Vec::new();
    tokens.write(format, &mut bytes).unwrap();
    (bytes, tokens.meta_json())
}

fn read_all(format: TokenFormat, bytes: &[u8], meta: &str) {
    let config = ModelConfig::default();
    if let Ok(raw) = tokens::read(format, bytes, Some(meta)) {
        let _ = raw.into_tokens(&config, ModelId([3; 16]));
    }
    if let Ok(raw) = tokens::read(format, bytes, None) {
        let _ = raw.into_tokens(&config, ModelId([3; 16]));
    }
    if format == TokenFormat::Jsonl
        && let Ok(mut frames) = JsonlFrames::new(bytes, &config, ModelId([3; 16]))
    {
        while let Ok(Some(_)) = frames.next_frame() {}
    }
}

const FORMATS: [TokenFormat; 3] = [TokenFormat::Npy, TokenFormat::Safetensors, TokenFormat::Jsonl];

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn mutated_token_files_never_panic(
        format in 0usize..3,
        flat in any::<bool>(),
        frames in 1usize..60,
        stages in 1usize..=12,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
        meta_edit in proptest::option::of((any::<prop::sample::Index>(), any::<char>())),
    ) {
        let format = FORMATS[format];
        let layout = if flat { Layout::Flat } else { Layout::Stages };
        let (mut bytes, mut meta) = valid(format, layout, frames, stages);
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if let Some((at, c)) = meta_edit {
            let mut chars: Vec<char> = meta.chars().collect();
            let i = at.index(chars.len());
            chars[i] = c;
            meta = chars.into_iter().collect();
        }
        let len = cut.index(bytes.len() + 1);
        read_all(format, &bytes[..len], &meta);
    }

    #[test]
    fn random_bytes_never_panic(format in 0usize..3, bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        read_all(FORMATS[format], &bytes, "{}");
    }
}
