//! JSON Lines token files: an optional first line with the metadata object, then one JSON
//! array of codes per frame. A generator can write it a frame at a time and
//! [`JsonlFrames`] renders it as the lines arrive.

use std::io::{BufRead, Write};

use super::{Columns, Layout, RawTokens, TokenMeta, Tokens};
use crate::error::{Error, Result};
use crate::model::{ModelConfig, ModelId};

pub fn write(tokens: &Tokens, out: &mut dyn Write) -> Result<()> {
    let io = |e| Error::io("cannot write the tokens", e);
    let stages = tokens.codes.stages();
    let offset = |stage: usize| if tokens.meta.layout == Layout::Flat { stage * tokens.meta.codebook_size } else { 0 };
    writeln!(out, "{}", serde_json::to_string(&tokens.meta).expect("serializes")).map_err(io)?;
    for frame in tokens.codes.as_frame_major().chunks_exact(stages.max(1)) {
        let values: Vec<usize> = frame.iter().enumerate().map(|(s, &c)| usize::from(c) + offset(s)).collect();
        writeln!(out, "{}", serde_json::to_string(&values).expect("serializes")).map_err(io)?;
    }
    Ok(())
}

/// One line: the metadata object or a frame's array.
enum Line {
    Meta(TokenMeta),
    Frame(Vec<i64>),
}

fn parse_line(text: &str, number: usize) -> Result<Line> {
    let bad = |what: String| Error::Tokens(format!("line {number}: {what}"));
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text).map(Line::Meta).map_err(|e| bad(format!("invalid token metadata: {e}")));
    }
    serde_json::from_str(text)
        .map(Line::Frame)
        .map_err(|e| bad(format!("expected a JSON array of integer codes for one frame ({e})")))
}

pub fn read(bytes: &[u8]) -> Result<RawTokens> {
    let mut frames = Frames::new(bytes)?;
    let mut values = Vec::new();
    let mut count = 0;
    while let Some(frame) = frames.next_raw()? {
        values.extend(frame);
        count += 1;
    }
    let stages = frames.stages.unwrap_or(frames.meta.as_ref().map_or(0, |m| m.rows()));
    Ok(RawTokens { meta: frames.meta, shape: vec![count, stages], values, frames_first: true })
}

/// Parses lines into frames of equal length.
struct Frames<R> {
    reader: R,
    meta: Option<TokenMeta>,
    pending: Option<Vec<i64>>,
    line: usize,
    stages: Option<usize>,
}

impl<R: BufRead> Frames<R> {
    fn new(reader: R) -> Result<Self> {
        let mut frames = Self { reader, meta: None, pending: None, line: 0, stages: None };
        match frames.next_line()? {
            Some(Line::Meta(meta)) => frames.meta = Some(meta),
            Some(Line::Frame(values)) => frames.pending = Some(frames.check_length(values)?),
            None => {}
        }
        Ok(frames)
    }

    fn next_line(&mut self) -> Result<Option<Line>> {
        let mut text = String::new();
        loop {
            text.clear();
            self.line += 1;
            let read = self
                .reader
                .read_line(&mut text)
                .map_err(|e| Error::io(format!("cannot read line {} of the tokens", self.line), e))?;
            if read == 0 {
                return Ok(None);
            }
            if !text.trim().is_empty() {
                return parse_line(&text, self.line).map(Some);
            }
        }
    }

    fn check_length(&mut self, values: Vec<i64>) -> Result<Vec<i64>> {
        let expected = *self.stages.get_or_insert(self.meta.as_ref().map_or(values.len(), |m| m.rows()));
        if values.len() != expected {
            return Err(Error::Tokens(format!(
                "line {}: a frame of {} codes; every frame must have {expected}",
                self.line,
                values.len()
            )));
        }
        Ok(values)
    }

    fn next_raw(&mut self) -> Result<Option<Vec<i64>>> {
        if let Some(values) = self.pending.take() {
            return Ok(Some(values));
        }
        match self.next_line()? {
            None => Ok(None),
            Some(Line::Frame(values)) => self.check_length(values).map(Some),
            Some(Line::Meta(_)) => {
                Err(Error::Tokens(format!("line {}: metadata is allowed only on the first line", self.line)))
            }
        }
    }
}

/// Frames of a JSON Lines token stream, validated one by one as they are read — for
/// rendering tokens while a model is still generating them.
pub struct JsonlFrames<R> {
    frames: Frames<R>,
    layout: Layout,
    index: usize,
    config: ModelConfig,
}

impl<R: BufRead> JsonlFrames<R> {
    /// Reads the first line and checks the metadata (if any) against the model.
    pub fn new(reader: R, config: &ModelConfig, id: ModelId) -> Result<Self> {
        let frames = Frames::new(reader)?;
        if let Some(meta) = &frames.meta {
            meta.check(config, id)?;
        }
        let layout = frames.meta.as_ref().map_or(Layout::Stages, |m| m.layout);
        Ok(Self { frames, layout, index: 0, config: config.clone() })
    }

    /// The metadata line, if the stream had one.
    pub fn meta(&self) -> Option<&TokenMeta> {
        self.frames.meta.as_ref()
    }

    /// The next frame's codes, or `None` at the end of the stream.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u16>>> {
        let Some(values) = self.frames.next_raw()? else { return Ok(None) };
        let pitch = self.frames.meta.as_ref().is_some_and(|m| m.pitch);
        let columns = Columns::new(values.len(), pitch, &self.config)?;
        let frame = self.index;
        self.index += 1;
        let flat = self.layout == Layout::Flat;
        values
            .iter()
            .enumerate()
            .map(|(row, &v)| columns.check(v, row, frame, flat))
            .collect::<Result<Vec<u16>>>()
            .map(Some)
    }
}
