//! Discrete codes: what the quantizer emits and the decoder takes.

use crate::error::{Error, Result};

/// Codes for a run of frames, stored frame-major: all stages of frame 0, then frame 1, ...
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Codes {
    stages: usize,
    data: Vec<u16>,
}

impl Codes {
    /// Codes from frame-major data; `data.len()` must be a multiple of `stages`.
    pub fn from_frame_major(stages: usize, data: Vec<u16>) -> Result<Self> {
        if stages == 0 && !data.is_empty() {
            return Err(Error::InvalidArgument("codes with zero stages cannot hold data".into()));
        }
        if stages > 0 && !data.len().is_multiple_of(stages) {
            return Err(Error::InvalidArgument(format!(
                "{} codes do not split into frames of {stages} stages",
                data.len()
            )));
        }
        Ok(Self { stages, data })
    }

    /// No frames yet, with `stages` codes per frame.
    pub fn empty(stages: usize) -> Self {
        Self { stages, data: Vec::new() }
    }

    /// Codes per frame.
    pub fn stages(&self) -> usize {
        self.stages
    }

    /// Number of frames.
    pub fn frames(&self) -> usize {
        self.data.len().checked_div(self.stages).unwrap_or(0)
    }

    /// True when there are no frames.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// All codes, frame-major.
    pub fn as_frame_major(&self) -> &[u16] {
        &self.data
    }

    /// The codes of one frame, one per stage.
    pub fn frame(&self, index: usize) -> &[u16] {
        &self.data[index * self.stages..(index + 1) * self.stages]
    }

    /// Appends the frames of `other`, which must have as many stages.
    pub fn extend(&mut self, other: &Codes) -> Result<()> {
        if other.is_empty() {
            return Ok(());
        }
        if self.is_empty() && self.stages != other.stages {
            self.stages = other.stages;
        }
        if other.stages != self.stages {
            return Err(Error::InvalidArgument(format!(
                "cannot join codes with {} and {} stages",
                self.stages, other.stages
            )));
        }
        self.data.extend_from_slice(&other.data);
        Ok(())
    }

    /// Frames `start..start + count` as new codes.
    pub fn slice_frames(&self, start: usize, count: usize) -> Codes {
        Codes { stages: self.stages, data: self.data[start * self.stages..(start + count) * self.stages].to_vec() }
    }

    /// The first `stages` stages of every frame (a lower bitrate from the same stream).
    pub fn truncate_stages(&self, stages: usize) -> Codes {
        let keep = stages.min(self.stages);
        let data = self.data.chunks_exact(self.stages.max(1)).flat_map(|f| f[..keep].iter().copied()).collect();
        Codes { stages: keep, data }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_stage_truncation() {
        let codes = Codes::from_frame_major(3, vec![1, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(codes.frames(), 2);
        assert_eq!(codes.frame(1), &[4, 5, 6]);
        assert_eq!(codes.truncate_stages(2).as_frame_major(), &[1, 2, 4, 5]);
        assert!(Codes::from_frame_major(4, vec![1, 2, 3]).is_err());
    }
}
