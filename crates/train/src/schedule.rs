//! What changes from step to step: the learning rate and the number of quantizer stages.

use rand::RngExt;
use rand::rngs::StdRng;

/// Linear warmup of the learning rate, in steps.
const WARMUP_STEPS: u64 = 500;

/// How many quantizer stages a step trains with: all of them on half the steps, so the
/// full rate is always learned, and on the rest any count from 1 (quantizer dropout: every
/// prefix of the codes must decode). With a focus, half of that rest trains the focus
/// count: 27 % of steps instead of 4 % for one of twelve.
pub fn draw_stages(rng: &mut StdRng, max_stages: usize, focus: Option<usize>) -> usize {
    if rng.random::<f32>() < 0.5 {
        return max_stages;
    }
    match focus {
        Some(stages) if rng.random::<f32>() < 0.5 => stages,
        _ => rng.random_range(1..=max_stages),
    }
}

/// Linear warmup to `peak`, then cosine decay to a tenth of it at step `total`.
pub fn learning_rate(peak: f64, step: u64, total: u64) -> f64 {
    if step < WARMUP_STEPS {
        return peak * (step + 1) as f64 / WARMUP_STEPS as f64;
    }
    let progress = ((step - WARMUP_STEPS) as f64 / (total.saturating_sub(WARMUP_STEPS).max(1)) as f64).min(1.0);
    peak * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_focus_trains_its_stage_count_on_a_quarter_more_of_the_steps() {
        let share = |focus: Option<usize>, stages: usize| {
            let mut rng = StdRng::seed_from_u64(1);
            let draws = 40_000;
            (0..draws).filter(|_| draw_stages(&mut rng, 12, focus) == stages).count() as f64 / draws as f64
        };
        let (full, five) = (share(None, 12), share(None, 5));
        assert!((full - (0.5 + 0.5 / 12.0)).abs() < 0.01, "full depth on {full} of steps");
        assert!((five - 0.5 / 12.0).abs() < 0.005, "5 stages on {five} of steps");
        let (full, five, six) = (share(Some(5), 12), share(Some(5), 5), share(Some(5), 6));
        assert!((full - (0.5 + 0.25 / 12.0)).abs() < 0.01, "full depth on {full} of steps with a focus");
        assert!((five - (0.25 + 0.25 / 12.0)).abs() < 0.01, "the focus on {five} of steps");
        assert!((six - 0.25 / 12.0).abs() < 0.005, "6 stages on {six} of steps with a focus on 5");
    }

    #[test]
    fn the_rate_warms_up_then_decays_to_a_tenth() {
        assert!((learning_rate(1.0, 0, 10_000) - 1.0 / 500.0).abs() < 1e-12);
        assert!((learning_rate(1.0, 499, 10_000) - 1.0).abs() < 1e-12);
        assert!((learning_rate(1.0, 500, 10_000) - 1.0).abs() < 1e-12);
        assert!((learning_rate(1.0, 10_000, 10_000) - 0.1).abs() < 1e-12);
        assert!((learning_rate(1.0, 20_000, 10_000) - 0.1).abs() < 1e-12);
    }
}
