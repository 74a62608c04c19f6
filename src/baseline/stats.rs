//! Probability helpers: every detector turns "how unusual is this" into bits of surprise,
//! `-log2(p)`, using proper distributions rather than fixed thresholds.

use statrs::distribution::{
    Binomial, ContinuousCDF, DiscreteCDF, NegativeBinomial, Normal, Poisson,
};

/// Surprise of an event of probability `p`, in bits, capped at `max_bits` (p = 0 gives the cap).
pub fn bits(p: f64, max_bits: f64) -> f64 {
    if p.is_nan() || p <= 0.0 {
        return max_bits;
    }
    (-p.log2()).clamp(0.0, max_bits)
}

/// Posterior predictive probability that the next trial is a success under a Beta prior:
/// `(successes + a) / (trials + a + b)`.
pub fn beta_predictive(successes: f64, trials: f64, a: f64, b: f64) -> f64 {
    ((successes + a) / (trials + a + b)).clamp(0.0, 1.0)
}

/// P(X >= k) for a count with mean `mean` and variance `mean * dispersion` (dispersion >= 1):
/// negative binomial when overdispersed, Poisson otherwise.
pub fn count_tail(k: u64, mean: f64, dispersion: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    let mean = mean.max(1e-3);
    if dispersion <= 1.0 + 1e-6 {
        return match Poisson::new(mean) {
            Ok(d) => d.sf(k - 1),
            Err(_) => 1.0,
        };
    }
    // Mean m, variance m*D: p = 1/D, r = m / (D - 1).
    let p = 1.0 / dispersion;
    let r = mean / (dispersion - 1.0);
    match NegativeBinomial::new(r, p) {
        Ok(d) => d.sf(k - 1),
        Err(_) => 1.0,
    }
}

/// P(X >= k) for X ~ Binomial(n, p).
pub fn binomial_tail(k: u64, n: u64, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    match Binomial::new(p.clamp(0.0, 1.0), n) {
        Ok(d) => d.sf(k - 1),
        Err(_) => 1.0,
    }
}

/// P(X >= k) for X ~ Poisson(mean).
pub fn poisson_tail(k: u64, mean: f64) -> f64 {
    count_tail(k, mean, 1.0)
}

/// P(Z >= z) for a standard normal.
pub fn normal_tail(z: f64) -> f64 {
    Normal::standard().sf(z)
}

/// Multiplier that halves a weight every `half_life` units after `elapsed` units.
pub fn decay(elapsed: f64, half_life: f64) -> f64 {
    if elapsed <= 0.0 {
        1.0
    } else {
        (-elapsed / half_life * std::f64::consts::LN_2).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn certain_events_carry_no_surprise_and_impossible_ones_the_cap() {
        assert_eq!(bits(1.0, 20.0), 0.0);
        assert_eq!(bits(0.0, 20.0), 20.0);
        assert!((bits(1.0 / 1024.0, 20.0) - 10.0).abs() < 1e-9);
    }

    #[test]
    fn poisson_tail_matches_closed_form() {
        // P(X >= 1 | mean 2) = 1 - e^-2
        assert!((poisson_tail(1, 2.0) - (1.0 - (-2.0f64).exp())).abs() < 1e-9);
    }

    #[test]
    fn overdispersion_makes_spikes_less_surprising() {
        let poisson = count_tail(30, 10.0, 1.0);
        let negbin = count_tail(30, 10.0, 4.0);
        assert!(
            negbin > poisson * 100.0,
            "negbin {negbin} poisson {poisson}"
        );
    }

    proptest! {
        #[test]
        fn count_tail_is_a_probability_and_decreases_in_k(mean in 0.01f64..500.0, disp in 1.0f64..20.0, k in 0u64..2000) {
            let a = count_tail(k, mean, disp);
            let b = count_tail(k + 1, mean, disp);
            prop_assert!((0.0..=1.0).contains(&a));
            prop_assert!(b <= a + 1e-12);
        }

        #[test]
        fn count_tail_increases_with_the_mean(k in 1u64..500, mean in 0.01f64..200.0, disp in 1.0f64..10.0) {
            prop_assert!(count_tail(k, mean * 2.0, disp) + 1e-12 >= count_tail(k, mean, disp));
        }

        #[test]
        fn binomial_tail_is_monotone(n in 1u64..500, p in 0.001f64..0.999, k in 0u64..500) {
            let a = binomial_tail(k, n, p);
            prop_assert!((0.0..=1.0).contains(&a));
            prop_assert!(binomial_tail(k + 1, n, p) <= a + 1e-12);
        }

        #[test]
        fn beta_predictive_shrinks_as_unbroken_history_grows(trials in 0.0f64..1e6, extra in 1.0f64..1e4) {
            let p1 = beta_predictive(0.0, trials, 0.5, 0.5);
            let p2 = beta_predictive(0.0, trials + extra, 0.5, 0.5);
            prop_assert!(p2 < p1);
            prop_assert!(p1 > 0.0 && p1 <= 1.0);
        }

        #[test]
        fn bits_are_within_bounds(p in 0.0f64..=1.0, cap in 1.0f64..64.0) {
            let b = bits(p, cap);
            prop_assert!((0.0..=cap).contains(&b));
        }

        #[test]
        fn decay_halves_at_the_half_life(h in 0.1f64..1000.0) {
            prop_assert!((decay(h, h) - 0.5).abs() < 1e-9);
            prop_assert!((decay(2.0 * h, h) - 0.25).abs() < 1e-9);
        }
    }
}
