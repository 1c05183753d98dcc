//! Matrix products in which each row's result does not depend on how many rows there are,
//! so a frame streamed alone gives the same bits as the same frame in a long piece.
//!
//! Why: gemm computes a one-row product as a vector–matrix product, which sums an inner
//! dimension over 512 in another order than its many-row kernel does. Measured: up to
//! 1.4e-4 difference for one row, none for 2 to 100 rows. Through the encoder that was
//! enough to flip near-ties in the quantizer, so streamed codes differed from offline ones.

use burn::nn::Linear;
use burn::tensor::{Tensor, backend::Backend};

/// `rows` `[m, k]` times `weight` `[k, n]`; a single row is doubled so that gemm takes its
/// many-row path.
pub(crate) fn matmul<B: Backend>(rows: Tensor<B, 2>, weight: Tensor<B, 2>) -> Tensor<B, 2> {
    if rows.dims()[0] != 1 {
        return rows.matmul(weight);
    }
    Tensor::cat(vec![rows.clone(), rows], 0).matmul(weight).narrow(0, 0, 1)
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
        let rows = Tensor::<Flex, 2>::random([9, 700], Distribution::Normal(0.0, 1.0), &device);
        let weight = Tensor::<Flex, 2>::random([700, 300], Distribution::Normal(0.0, 1.0), &device);
        let whole: Vec<f32> = matmul(rows.clone(), weight.clone()).into_data().into_vec().unwrap();
        for row in 0..9 {
            let alone: Vec<f32> =
                matmul(rows.clone().narrow(0, row, 1), weight.clone()).into_data().into_vec().unwrap();
            assert_eq!(alone, whole[row * 300..(row + 1) * 300], "row {row} alone differs");
        }
    }
}
