//! Bit packing throughput: our 64-bit accumulator packer against bitvec, 10-bit codes.

use bitvec::field::BitField;
use bitvec::prelude::{BitVec, Lsb0};
use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use tokenwave_core::bitstream::pack::{pack, unpack};

const CODES: usize = 1 << 20;
const BITS: usize = 10;

fn codes() -> Vec<u16> {
    (0..CODES).map(|i| (i * 2_654_435_761 % 1024) as u16).collect()
}

fn bitvec_pack(codes: &[u16]) -> Vec<u8> {
    let mut bits: BitVec<u8, Lsb0> = BitVec::with_capacity(codes.len() * BITS);
    for &code in codes {
        let at = bits.len();
        bits.resize(at + BITS, false);
        bits[at..].store_le(code);
    }
    bits.into_vec()
}

fn bitvec_unpack(bytes: &[u8], count: usize) -> Vec<u16> {
    let bits = bitvec::slice::BitSlice::<u8, Lsb0>::from_slice(bytes);
    bits.chunks_exact(BITS).take(count).map(|c| c.load_le::<u16>()).collect()
}

fn packing(c: &mut Criterion) {
    let codes = codes();
    let mut packed = Vec::new();
    pack(&codes, BITS as u32, &mut packed);
    assert_eq!(bitvec_pack(&codes), packed, "both packers write the same bytes");
    assert_eq!(bitvec_unpack(&packed, CODES), codes);

    let mut group = c.benchmark_group("pack_10bit");
    group.throughput(Throughput::Elements(CODES as u64));
    group.bench_function("u64_writer", |b| {
        b.iter(|| {
            let mut out = Vec::new();
            pack(black_box(&codes), BITS as u32, &mut out);
            out
        })
    });
    group.bench_function("bitvec", |b| b.iter(|| bitvec_pack(black_box(&codes))));
    group.finish();

    let mut group = c.benchmark_group("unpack_10bit");
    group.throughput(Throughput::Elements(CODES as u64));
    group.bench_function("u64_reader", |b| {
        b.iter(|| {
            let mut out = Vec::new();
            unpack(black_box(&packed), BITS as u32, CODES, &mut out);
            out
        })
    });
    group.bench_function("bitvec", |b| b.iter(|| bitvec_unpack(black_box(&packed), CODES)));
    group.finish();
}

criterion_group!(benches, packing);
criterion_main!(benches);
