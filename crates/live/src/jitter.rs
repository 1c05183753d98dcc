//! The receiver's jitter buffer: frames arrive out of order, late, twice or not at all; the
//! speaker wants one every 20 ms. Frames are held until their turn, late and duplicate ones
//! are dropped, missing ones concealed, and the depth follows the measured jitter so that
//! latency stays as low as the network allows — and never above a bound.

use std::collections::BTreeMap;

use super::window::SeenWindow;

/// What to play for one frame period.
#[derive(Debug, Clone, PartialEq)]
pub enum Playout {
    /// The frame as sent.
    Frame(Vec<u16>),
    /// A lost frame: the last good frame's codes again, to be played at `gain` (fading out
    /// over consecutive losses).
    Concealed {
        /// Codes to decode.
        codes: Vec<u16>,
        /// Output gain, 0..1.
        gain: f32,
    },
    /// Nothing to play yet (filling up), or a loss too long to conceal.
    Silence,
}

/// Counters for the status line and the tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Frames accepted into the buffer.
    pub received: u64,
    /// Frames that came after their turn, dropped.
    pub late: u64,
    /// Frames seen before (redundant copies, duplicates), dropped.
    pub duplicate: u64,
    /// Frame periods filled by concealment.
    pub concealed: u64,
    /// Frames dropped to bring the delay back down after a burst.
    pub trimmed: u64,
    /// Real frames played.
    pub played: u64,
    /// Time the played frames spent in the buffer, summed, in microseconds.
    pub waited_micros: u64,
}

impl std::ops::Add for JitterStats {
    type Output = Self;

    /// The counters of two buffers together (e.g. of successive sessions).
    fn add(self, other: Self) -> Self {
        Self {
            received: self.received + other.received,
            late: self.late + other.late,
            duplicate: self.duplicate + other.duplicate,
            concealed: self.concealed + other.concealed,
            trimmed: self.trimmed + other.trimmed,
            played: self.played + other.played,
            waited_micros: self.waited_micros + other.waited_micros,
        }
    }
}

/// Consecutive lost frames concealed by repetition before falling silent (60 ms).
const MAX_CONCEALED: u32 = 3;
/// Gain of each further concealed frame relative to the previous one.
const CONCEAL_FADE: f32 = 0.6;

/// A jitter buffer for frames of a fixed duration.
#[derive(Debug)]
pub struct JitterBuffer {
    /// Waiting frames: codes and arrival time.
    frames: BTreeMap<u64, (Vec<u16>, f64)>,
    /// The next frame index to play; `None` until playout starts.
    next: Option<u64>,
    frame_seconds: f64,
    /// RFC 3550-style interarrival jitter estimate, seconds.
    jitter: f64,
    /// Transit time (arrival − send time) of the previous packet.
    last_transit: Option<f64>,
    min_depth: usize,
    max_depth: usize,
    last_good: Option<Vec<u16>>,
    lost_run: u32,
    stats: JitterStats,
    /// Frame indices inserted lately.
    seen: SeenWindow,
    /// When the first frame arrived.
    first_arrival: Option<f64>,
}

impl JitterBuffer {
    /// A buffer for frames of `frame_seconds`, holding between `min_depth` and `max_depth`
    /// frames (the upper bound caps the latency it can add).
    pub fn new(frame_seconds: f64, min_depth: usize, max_depth: usize) -> Self {
        Self {
            frames: BTreeMap::new(),
            next: None,
            frame_seconds,
            jitter: 0.0,
            last_transit: None,
            min_depth: min_depth.max(1),
            max_depth: max_depth.max(min_depth.max(1)),
            last_good: None,
            lost_run: 0,
            stats: JitterStats::default(),
            seen: SeenWindow::default(),
            first_arrival: None,
        }
    }

    /// Depth the buffer aims for now, in frames: enough to cover about twice the measured
    /// jitter, within the bounds.
    pub fn target_depth(&self) -> usize {
        // The small offset keeps rounding noise in a zero jitter from costing a whole frame.
        let frames = (2.0 * self.jitter / self.frame_seconds - 1e-6).ceil().max(0.0) as usize + self.min_depth;
        frames.clamp(self.min_depth, self.max_depth)
    }

    /// Frames held.
    pub fn depth(&self) -> usize {
        self.frames.len()
    }

    /// The counters.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Measured jitter, seconds.
    pub fn jitter_seconds(&self) -> f64 {
        self.jitter
    }

    /// Takes frame `index` (its codes) that arrived at `arrival` seconds on the receiver's
    /// clock; frame `index` was sent at `index * frame_seconds` on the sender's.
    pub fn insert(&mut self, index: u64, codes: Vec<u16>, arrival: f64) {
        // Frames further back than the window count as seen.
        if !self.seen.mark(index) {
            self.stats.duplicate += 1;
            return;
        }
        if self.next.is_some_and(|next| index < next) {
            self.stats.late += 1;
            return;
        }
        let transit = arrival - index as f64 * self.frame_seconds;
        if let Some(last) = self.last_transit {
            self.jitter += ((transit - last).abs() - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
        self.first_arrival.get_or_insert(arrival);
        self.frames.insert(index, (codes, arrival));
        self.stats.received += 1;
    }

    /// What to play for the next frame period, at `now` on the clock of
    /// [`insert`](Self::insert)'s arrival times. Playout starts half a frame after the first
    /// frame arrived, so that the next one, due a frame later, has half a frame of slack.
    pub fn pop(&mut self, now: f64) -> Playout {
        let next = match self.next {
            Some(next) => next,
            None => {
                let settled = self.first_arrival.is_some_and(|t| now - t >= self.frame_seconds / 2.0);
                if self.frames.len() < self.target_depth() || !settled {
                    return Playout::Silence;
                }
                *self.frames.keys().next().expect("not empty")
            }
        };
        // After a burst the buffer may hold more than it needs: skip ahead to bound latency.
        let mut next = next;
        while self.frames.len() > self.target_depth() + 2 {
            let first = *self.frames.keys().next().expect("not empty");
            self.frames.remove(&first);
            self.stats.trimmed += 1;
            next = next.max(first + 1);
        }
        self.frames.retain(|&i, _| i >= next);
        // After a long gap (an outage) play on from the first frame there is instead of
        // concealing frames that are long gone.
        if let Some(&first) = self.frames.keys().next()
            && first - next > u64::from(MAX_CONCEALED)
        {
            next = first;
        }
        match self.frames.remove(&next) {
            Some((codes, arrival)) => {
                self.stats.waited_micros += ((now - arrival).max(0.0) * 1e6) as u64;
                self.next = Some(next + 1);
                self.lost_run = 0;
                self.stats.played += 1;
                self.last_good = Some(codes.clone());
                Playout::Frame(codes)
            }
            None => {
                // Nothing newer has arrived either: the frame is late rather than lost, so
                // wait for it. The delay grows by a frame, which is how the buffer deepens
                // when the network gets shakier; trimming bounds it.
                self.next = Some(if self.frames.is_empty() { next } else { next + 1 });
                self.lost_run += 1;
                match &self.last_good {
                    Some(codes) if self.lost_run <= MAX_CONCEALED => {
                        self.stats.concealed += 1;
                        Playout::Concealed { codes: codes.clone(), gain: CONCEAL_FADE.powi(self.lost_run as i32) }
                    }
                    _ => {
                        self.stats.concealed += 1;
                        Playout::Silence
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: f64 = 0.02;

    fn codes(i: u64) -> Vec<u16> {
        vec![i as u16, 7]
    }

    #[test]
    fn reorders_and_drops_late_and_duplicate_frames() {
        let mut buffer = JitterBuffer::new(FRAME, 1, 10);
        buffer.insert(1, codes(1), 0.04);
        buffer.insert(0, codes(0), 0.021);
        buffer.insert(1, codes(1), 0.032);
        assert_eq!(buffer.pop(9.0), Playout::Frame(codes(0)));
        assert_eq!(buffer.pop(9.0), Playout::Frame(codes(1)));
        buffer.insert(0, codes(0), 0.05);
        buffer.insert(3, codes(3), 0.07);
        assert!(matches!(buffer.pop(9.0), Playout::Concealed { .. }), "frame 2 missing, 3 waiting: 2 is lost");
        assert_eq!(buffer.pop(9.0), Playout::Frame(codes(3)));
        buffer.insert(2, codes(2), 0.09);
        let stats = buffer.stats();
        assert_eq!((stats.duplicate, stats.late, stats.played), (2, 1, 3));
    }

    #[test]
    fn conceals_short_losses_fading_and_falls_silent_on_long_ones() {
        let mut buffer = JitterBuffer::new(FRAME, 1, 10);
        buffer.insert(0, codes(0), 0.0);
        assert_eq!(buffer.pop(9.0), Playout::Frame(codes(0)));
        let gains: Vec<f32> = (0..4)
            .map(|_| match buffer.pop(9.0) {
                Playout::Concealed { codes: c, gain } => {
                    assert_eq!(c, codes(0));
                    gain
                }
                _ => 0.0,
            })
            .collect();
        assert!(gains[0] > gains[1] && gains[1] > gains[2] && gains[2] > 0.0 && gains[3] == 0.0, "{gains:?}");
        buffer.insert(5, codes(5), 0.1);
        assert_eq!(buffer.pop(9.0), Playout::Frame(codes(5)));
    }

    #[test]
    fn a_late_frame_is_waited_for_and_a_lost_one_skipped() {
        let mut buffer = JitterBuffer::new(FRAME, 1, 10);
        buffer.insert(0, codes(0), 0.0);
        assert_eq!(buffer.pop(0.005), Playout::Silence, "playout starts half a frame after the first arrival");
        assert_eq!(buffer.pop(0.011), Playout::Frame(codes(0)));
        assert!(matches!(buffer.pop(9.0), Playout::Concealed { .. }), "frame 1 is not there yet");
        buffer.insert(1, codes(1), 0.045);
        assert_eq!(buffer.pop(9.0), Playout::Frame(codes(1)), "frame 1 came late and is still played");
        buffer.insert(3, codes(3), 0.07);
        assert!(matches!(buffer.pop(9.0), Playout::Concealed { .. }), "frame 2 is lost: frame 3 came first");
        assert_eq!(buffer.pop(9.0), Playout::Frame(codes(3)));
        assert_eq!(buffer.stats().late, 0);
    }

    #[test]
    fn depth_follows_jitter_within_bounds() {
        let mut steady = JitterBuffer::new(FRAME, 1, 8);
        let mut shaky = JitterBuffer::new(FRAME, 1, 8);
        for i in 0..200u64 {
            steady.insert(i, codes(i), i as f64 * FRAME + 0.05);
            let wobble = if i % 2 == 0 { 0.0 } else { 0.045 };
            shaky.insert(i, codes(i), i as f64 * FRAME + 0.05 + wobble);
        }
        assert_eq!(steady.target_depth(), 1);
        assert!(shaky.target_depth() >= 4, "{}", shaky.target_depth());
        let mut huge = JitterBuffer::new(FRAME, 1, 3);
        for i in 0..200u64 {
            huge.insert(i, codes(i), i as f64 * FRAME + if i % 2 == 0 { 0.0 } else { 0.5 });
        }
        assert_eq!(huge.target_depth(), 3);
    }

    #[test]
    fn a_burst_is_trimmed_so_latency_stays_bounded() {
        let mut buffer = JitterBuffer::new(FRAME, 2, 4);
        for i in 0..40u64 {
            buffer.insert(i, codes(i), 1.0);
        }
        let first = buffer.pop(9.0);
        assert!(matches!(first, Playout::Frame(_)));
        assert!(buffer.depth() <= buffer.target_depth() + 2, "{} frames held", buffer.depth());
        assert!(buffer.stats().trimmed > 0);
    }
}
