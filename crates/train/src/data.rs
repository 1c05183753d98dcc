//! Training audio: found on disk, decoded once to the model rate into a cache, split into
//! training and validation by file, and served as random, level-augmented crops by a
//! background thread.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;

use tokenwave_core::audio::{AudioSource, find_audio_files};
use tokenwave_core::pitch;
use tokenwave_core::{Error, Result};

/// Share of files (in percent) held out for validation.
const VALIDATION_PERCENT: u32 = 4;
/// Files never trained on: the sources of the clips in `samples/`, which tests and README use.
const ALWAYS_HELD_OUT: [&str; 4] = ["sch-v-setkani.ogg", "lod-v-golf.ogg", "win-v-nehrajem.ogg", "transience.ogg"];
/// Crops quieter than this RMS are mostly silence and are drawn again.
const MIN_CROP_RMS: f32 = 0.003;
const CACHE_MAGIC: &[u8; 8] = b"TWCORP01";

/// Audio of many files at the model rate, concatenated; each file keeps its own range.
pub struct Corpus {
    samples: Vec<i16>,
    files: Vec<Range<usize>>,
}

impl Corpus {
    /// Hours of audio.
    pub fn hours(&self, rate: u32) -> f64 {
        self.samples.len() as f64 / f64::from(rate) / 3600.0
    }

    /// Number of files.
    pub fn files(&self) -> usize {
        self.files.len()
    }

    /// Loads the training and validation corpora from `cache`, or builds them from every
    /// audio file under `dirs` and writes the cache.
    pub fn load_or_build(dirs: &[PathBuf], cache: &Path, rate: u32) -> Result<(Corpus, Corpus)> {
        let (train_path, val_path) = (cache.join("train.corpus"), cache.join("validation.corpus"));
        if train_path.exists() && val_path.exists() {
            return Ok((Self::read(&train_path)?, Self::read(&val_path)?));
        }
        let mut paths = Vec::new();
        for dir in dirs {
            paths.extend(find_audio_files(dir)?);
        }
        if paths.is_empty() {
            return Err(Error::InvalidArgument("no audio files (wav, flac, ogg, mp3) found under --data".into()));
        }
        paths.sort();
        let (val_paths, train_paths): (Vec<_>, Vec<_>) = paths.into_iter().partition(|p| is_validation(p));
        let build = |paths: &[PathBuf]| -> Corpus {
            let decoded: Vec<Vec<i16>> = paths.par_iter().filter_map(|p| decode(p, rate).ok()).collect();
            let mut corpus = Corpus { samples: Vec::new(), files: Vec::new() };
            for file in decoded.into_iter().filter(|f| !f.is_empty()) {
                let start = corpus.samples.len();
                corpus.samples.extend(file);
                corpus.files.push(start..corpus.samples.len());
            }
            corpus
        };
        let (train, val) = (build(&train_paths), build(&val_paths));
        std::fs::create_dir_all(cache).map_err(|e| Error::io(format!("cannot create {}", cache.display()), e))?;
        train.write(&train_path)?;
        val.write(&val_path)?;
        Ok((train, val))
    }

    fn write(&self, path: &Path) -> Result<()> {
        let io = |e| Error::io(format!("cannot write {}", path.display()), e);
        let temp = path.with_extension("partial");
        let mut out = BufWriter::new(File::create(&temp).map_err(io)?);
        out.write_all(CACHE_MAGIC).map_err(io)?;
        out.write_all(&(self.files.len() as u64).to_le_bytes()).map_err(io)?;
        for range in &self.files {
            out.write_all(&(range.start as u64).to_le_bytes()).map_err(io)?;
            out.write_all(&(range.end as u64).to_le_bytes()).map_err(io)?;
        }
        out.write_all(&(self.samples.len() as u64).to_le_bytes()).map_err(io)?;
        for s in &self.samples {
            out.write_all(&s.to_le_bytes()).map_err(io)?;
        }
        out.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)?;
        std::fs::rename(&temp, path).map_err(io)
    }

    fn read(path: &Path) -> Result<Corpus> {
        let io = |e| Error::io(format!("cannot read {}", path.display()), e);
        let mut input = BufReader::new(File::open(path).map_err(io)?);
        let mut magic = [0u8; 8];
        input.read_exact(&mut magic).map_err(io)?;
        if &magic != CACHE_MAGIC {
            return Err(Error::InvalidArgument(format!("{} is not a corpus cache; delete it", path.display())));
        }
        let mut word = || -> Result<u64> {
            let mut b = [0u8; 8];
            input.read_exact(&mut b).map_err(io)?;
            Ok(u64::from_le_bytes(b))
        };
        let count = word()? as usize;
        let files = (0..count).map(|_| Ok(word()? as usize..word()? as usize)).collect::<Result<Vec<_>>>()?;
        let len = word()? as usize;
        let mut bytes = vec![0u8; len * 2];
        input.read_exact(&mut bytes).map_err(io)?;
        let samples = bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
        Ok(Corpus { samples, files })
    }

    /// A random crop of `len` samples, levelled to a random loudness in `level_db`
    /// (dBFS RMS, peak kept below full scale).
    fn crop(&self, rng: &mut StdRng, len: usize, level_db: Range<f32>) -> Vec<f32> {
        let mut best = Vec::new();
        for _ in 0..8 {
            let at = rng.random_range(0..self.samples.len());
            let file = &self.files[self.files.partition_point(|r| r.end <= at)];
            let start = if file.len() > len { rng.random_range(file.start..file.end - len) } else { file.start };
            let end = (start + len).min(file.end);
            let mut crop: Vec<f32> = self.samples[start..end].iter().map(|&s| f32::from(s) / 32768.0).collect();
            crop.resize(len, 0.0);
            let rms = (crop.iter().map(|s| s * s).sum::<f32>() / len as f32).sqrt();
            best = crop;
            if rms >= MIN_CROP_RMS {
                let target = 10f32.powf(rng.random_range(level_db.clone()) / 20.0);
                let peak = best.iter().fold(0f32, |m, s| m.max(s.abs()));
                let gain = (target / rms).min(0.99 / peak);
                best.iter_mut().for_each(|s| *s *= gain);
                break;
            }
        }
        best
    }

    /// A batch of crops, fully determined by `seed` and `index`.
    pub fn batch(&self, seed: u64, index: u64, batch: usize, len: usize) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        (0..batch).flat_map(|_| self.crop(&mut rng, len, -32.0..-14.0)).collect()
    }
}

/// True for files the trainer holds out for validation (a fixed hash of the path, plus
/// the sources of `samples/`): `tokenwave eval --split validation` measures on these.
pub fn is_validation(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    ALWAYS_HELD_OUT.contains(&name) || crc32fast::hash(path.to_string_lossy().as_bytes()) % 100 < VALIDATION_PERCENT
}

fn decode(path: &Path, rate: u32) -> Result<Vec<i16>> {
    let mut source = AudioSource::open(path, rate)?;
    let mut samples = Vec::new();
    while let Some(piece) = source.next_chunk()? {
        samples.extend(piece.iter().map(|s| (s.clamp(-1.0, 1.0) * 32767.0) as i16));
    }
    Ok(samples)
}

/// A batch of crops, with each frame's transmitted F0 when the model decodes with it.
pub struct Batch {
    /// `[crops * len]` samples.
    pub samples: Vec<f32>,
    /// `[crops * frames]` F0 in Hz as the decoder receives it (0: unvoiced), crop-major.
    pub f0: Option<Vec<f32>>,
}

/// The pitch an encoder sends for each crop of `len` samples in `samples`, as its decoder
/// reads it ([`tokenwave_core::pitch`]): what the harmonic source trains on.
pub fn transmitted_f0(samples: &[f32], len: usize, sample_rate: u32, hop: usize) -> Vec<f32> {
    samples
        .chunks_exact(len)
        .flat_map(|crop| pitch::codes(crop, sample_rate, hop).into_iter().map(pitch::decoded_f0))
        .collect()
}

/// Batches made ahead of time on their own thread, starting at batch `first`.
pub struct Loader {
    batches: Receiver<Batch>,
    _worker: JoinHandle<()>,
}

impl Loader {
    /// Starts a thread that makes batches `first, first + 1, ...` from `corpus`, with their
    /// pitch when `pitch` gives the model's `(sample_rate, hop)`.
    pub fn start(
        corpus: std::sync::Arc<Corpus>,
        seed: u64,
        first: u64,
        [batch, len]: [usize; 2],
        pitch: Option<(u32, usize)>,
    ) -> Self {
        let (send, batches): (SyncSender<Batch>, _) = sync_channel(4);
        let worker = std::thread::spawn(move || {
            for index in first.. {
                let samples = corpus.batch(seed, index, batch, len);
                let f0 = pitch.map(|(rate, hop)| transmitted_f0(&samples, len, rate, hop));
                if send.send(Batch { samples, f0 }).is_err() {
                    break;
                }
            }
        });
        Self { batches, _worker: worker }
    }

    /// The next batch.
    pub fn next(&self) -> Batch {
        self.batches.recv().expect("the loader thread runs until dropped")
    }
}
