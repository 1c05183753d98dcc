//! Fixed-width bit packing, LSB-first: code `i` occupies bits `i*bits .. (i+1)*bits` of the
//! byte string, where bit `n` is bit `n % 8` of byte `n / 8`.
//!
//! A plain 64-bit accumulator; measured against bitvec in `benches/packing.rs`.

/// Bytes needed for `count` codes of `bits` bits.
pub fn packed_len(count: usize, bits: u32) -> usize {
    (count * bits as usize).div_ceil(8)
}

/// Appends `codes`, each `bits` wide (1..=16), to `out`. Bits above `bits` must be zero.
pub fn pack(codes: &[u16], bits: u32, out: &mut Vec<u8>) {
    debug_assert!((1..=16).contains(&bits));
    out.reserve(packed_len(codes.len(), bits));
    let mut acc: u64 = 0;
    let mut filled = 0u32;
    for &code in codes {
        acc |= u64::from(code) << filled;
        filled += bits;
        if filled >= 32 {
            out.extend_from_slice(&(acc as u32).to_le_bytes());
            acc >>= 32;
            filled -= 32;
        }
    }
    while filled > 0 {
        out.push(acc as u8);
        acc >>= 8;
        filled = filled.saturating_sub(8);
    }
}

/// Reads `count` codes of `bits` bits from `bytes`, which must hold at least
/// [`packed_len`]`(count, bits)` bytes.
pub fn unpack(bytes: &[u8], bits: u32, count: usize, out: &mut Vec<u16>) {
    debug_assert!((1..=16).contains(&bits));
    debug_assert!(bytes.len() >= packed_len(count, bits));
    out.reserve(count);
    let mask = (1u64 << bits) - 1;
    let mut acc: u64 = 0;
    let mut filled = 0u32;
    let mut words = bytes.chunks_exact(4);
    let mut rest = words.remainder().iter();
    for _ in 0..count {
        if filled < bits {
            match words.next() {
                Some(w) => {
                    acc |= u64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]])) << filled;
                    filled += 32;
                }
                None => {
                    while filled < bits {
                        acc |= u64::from(*rest.next().expect("length checked by caller")) << filled;
                        filled += 8;
                    }
                }
            }
        }
        out.push((acc & mask) as u16);
        acc >>= bits;
        filled -= bits;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lsb_first_layout() {
        let mut out = Vec::new();
        pack(&[0b1, 0b10, 0b11], 2, &mut out);
        assert_eq!(out, vec![0b11_10_01]);
        let mut out = Vec::new();
        pack(&[0x3ff, 0], 10, &mut out);
        assert_eq!(out, vec![0xff, 0x03, 0x00]);
    }

    proptest! {
        #[test]
        fn roundtrip(bits in 1u32..=16, raw in proptest::collection::vec(any::<u16>(), 0..300)) {
            let codes: Vec<u16> = raw.iter().map(|c| if bits == 16 { *c } else { c & ((1 << bits) - 1) }).collect();
            let mut bytes = Vec::new();
            pack(&codes, bits, &mut bytes);
            prop_assert_eq!(bytes.len(), packed_len(codes.len(), bits));
            let mut back = Vec::new();
            unpack(&bytes, bits, codes.len(), &mut back);
            prop_assert_eq!(back, codes);
        }
    }
}
