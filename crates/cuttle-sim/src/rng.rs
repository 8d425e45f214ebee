//! A small seeded pseudo-random generator (SplitMix64) and the few distributions the
//! workload generator needs. The generator must give the same workload for a seed on every
//! machine, so nothing here calls the platform's `libm` (`ln`, `exp`, `cos` may differ in
//! the last bit between platforms): only IEEE additions, multiplications and divisions,
//! which are exact to the bit everywhere. Never use this for anything but simulation.

/// SplitMix64 (Steele, Lea, Flood 2014): one 64-bit state, passes BigCrush, and is the
/// usual way to seed other generators; plenty for drawing workloads.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), with the 53 bits an `f64` holds.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [low, high).
    pub fn uniform(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }

    /// Uniform integer in [low, high] (inclusive). The modulo bias is below 2^-50 for the
    /// small ranges used here.
    pub fn range_inclusive(&mut self, low: u64, high: u64) -> u64 {
        debug_assert!(low <= high);
        low + self.next_u64() % (high - low + 1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Approximately standard normal: the Irwin–Hall sum of 12 uniforms minus 6. Its tails
    /// stop at ±6, which suits runtimes (no absurd outliers) and needs no `ln`/`cos`.
    pub fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.unit()).sum::<f64>() - 6.0
    }

    /// Log-normal with the given median and shape `sigma`.
    pub fn log_normal(&mut self, median: f64, sigma: f64) -> f64 {
        median * exp(sigma * self.normal())
    }

    /// Picks an index with probability proportional to its weight.
    pub fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.unit() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

/// `e^x` from basic IEEE operations only, so it is bit-identical on every platform: halve
/// `x` until it is small, sum the Taylor series, square back. Accurate to a few ulps for
/// the |x| < 10 used here.
pub fn exp(x: f64) -> f64 {
    let mut y = x;
    let mut halvings = 0;
    while y.abs() > 0.5 {
        y /= 2.0;
        halvings += 1;
    }
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..=20 {
        term *= y / f64::from(k);
        sum += term;
    }
    for _ in 0..halvings {
        sum *= sum;
    }
    sum
}

/// FNV-1a, to derive a stable per-description stream from a description's text.
pub fn fnv1a(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_stream_and_another_seed_does_not() {
        let a: Vec<u64> = {
            let mut r = SplitMix64::new(7);
            (0..5).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = SplitMix64::new(7);
            (0..5).map(|_| r.next_u64()).collect()
        };
        let c: Vec<u64> = {
            let mut r = SplitMix64::new(8);
            (0..5).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
        // The published first output of SplitMix64 seeded with 0.
        assert_eq!(SplitMix64::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn exp_matches_the_platform_closely() {
        for x in [-8.0, -2.5, -0.3, 0.0, 0.1, 1.0, 2.0, 4.7, 9.0] {
            let ours = exp(x);
            let theirs = f64::exp(x);
            assert!(
                ((ours - theirs) / theirs).abs() < 1e-12,
                "exp({x}) = {ours}, expected {theirs}"
            );
        }
    }

    #[test]
    fn distributions_have_the_expected_centre() {
        let mut r = SplitMix64::new(42);
        let n = 20_000;
        let mean_normal = (0..n).map(|_| r.normal()).sum::<f64>() / f64::from(n);
        assert!(mean_normal.abs() < 0.05, "normal mean {mean_normal}");
        let mut draws: Vec<f64> = (0..n).map(|_| r.log_normal(40.0, 0.6)).collect();
        draws.sort_by(f64::total_cmp);
        let median = draws[draws.len() / 2];
        assert!((median - 40.0).abs() < 2.0, "log-normal median {median}");
        let mut counts = [0u32; 3];
        for _ in 0..n {
            counts[r.weighted(&[1.0, 0.0, 3.0])] += 1;
        }
        assert_eq!(counts[1], 0);
        assert!((f64::from(counts[2]) / f64::from(n) - 0.75).abs() < 0.02);
    }
}
