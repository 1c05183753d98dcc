//! Which of the recent numbers have been seen: the receiver's replay check on packet
//! sequence numbers and its duplicate check on frame indices are the same sliding bitmap.

/// Numbers this far or further below the highest one seen count as seen (too old to tell).
const WINDOW: u64 = 64;

/// The highest number seen and a bitmap of the [`WINDOW`] numbers below it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SeenWindow {
    highest: u64,
    /// Bit `k` set: `highest - k` was seen.
    seen: u64,
}

impl SeenWindow {
    /// Remembers `n`; false when it was seen before or is too old to tell.
    pub(crate) fn mark(&mut self, n: u64) -> bool {
        if n > self.highest {
            let shift = n - self.highest;
            self.seen = if shift >= WINDOW { 1 } else { self.seen << shift | 1 };
            self.highest = n;
            return true;
        }
        let age = self.highest - n;
        if age >= WINDOW || self.seen & (1 << age) != 0 {
            return false;
        }
        self.seen |= 1 << age;
        true
    }
}
