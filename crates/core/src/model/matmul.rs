//! Matrix products in which each row's result does not depend on how many rows there are,
//! so a frame streamed alone gives the same bits as the same frame in a long piece.
//!
//! Why: gemm computes a one-row product as a vector–matrix product, which sums an inner
//! dimension over 512 in one run, while its many-row kernel sums it in blocks of at most
//! 512 and then adds the blocks. Measured: up to 1.4e-4 apart for one row, none for 2 to
//! 100 rows, none for inner dimensions of 512 or less. Through the encoder that was enough
//! to flip near-ties in the quantizer, so streamed codes differed from offline ones.
//! Summing blocks of 512 ourselves makes both paths agree at no cost to the one-row path
//! (doubling a lone row instead measured 2x slower streaming).

use burn::nn::Linear;
use burn::tensor::{Tensor, backend::Backend};

/// Longest inner dimension that gemm sums the same way for one row as for many.
const BLOCK: usize = 512;

/// `rows` `[m, k]` times `weight` `[k, n]`, as a sum of products over blocks of at most
/// [`BLOCK`] of the inner dimension.
pub(crate) fn matmul<B: Backend>(rows: Tensor<B, 2>, weight: Tensor<B, 2>) -> Tensor<B, 2> {
    let inner = weight.dims()[0];
    if inner <= BLOCK {
        return rows.matmul(weight);
    }
    let mut blocks = (0..inner).step_by(BLOCK).map(|start| {
        let len = BLOCK.min(inner - start);
        rows.clone().narrow(1, start, len).matmul(weight.clone().narrow(0, start, len))
    });
    let first = blocks.next().expect("inner dimension over BLOCK");
    blocks.fold(first, |sum, block| sum + block)
}

/// `layer` applied to `input` `[batch, time, d_input]` through [`matmul`].
pub(crate) fn linear<B: Backend>(layer: &Linear<B>, input: Tensor<B, 3>) -> Tensor<B, 3> {
    let [batch, time, width] = input.dims();
    let weight = layer.weight.val();
    let outputs = weight.dims()[1];
    let mut out = matmul(input.reshape([batch * time, width]), weight);
    if let Some(bias) = &layer.bias {
        out = out + bias.val().unsqueeze::<2>();
    }
    out.reshape([batch, time, outputs])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::Distribution;

    #[test]
    fn one_row_gives_the_bits_it_gives_among_many() {
        let device = Default::default();
        for (inner, outputs) in [(700, 300), (645, 256), (768, 256), (1100, 64), (512, 642)] {
            let rows = Tensor::<Flex, 2>::random([70, inner], Distribution::Normal(0.0, 1.0), &device);
            let weight = Tensor::<Flex, 2>::random([inner, outputs], Distribution::Normal(0.0, 1.0), &device);
            let whole: Vec<f32> = matmul(rows.clone(), weight.clone()).into_data().into_vec().unwrap();
            for row in [0, 1, 17, 69] {
                let alone: Vec<f32> =
                    matmul(rows.clone().narrow(0, row, 1), weight.clone()).into_data().into_vec().unwrap();
                assert_eq!(alone, whole[row * outputs..(row + 1) * outputs], "{inner}x{outputs}: row {row} differs");
            }
        }
    }
}
