//! CPython's `random` module, as far as suite expansion uses it: `random.seed(int)` and
//! `random.randint(a, b)`.
//!
//! teuthology picks `$` alternatives and nested subsets with Python's Mersenne Twister,
//! seeded with `--seed`. To give the same jobs for the same seed, this reproduces the
//! generator bit for bit: MT19937 seeded by `init_by_array` with the seed's 32-bit words,
//! and `randint` drawing `getrandbits(k)` until the value falls below the range, as
//! CPython 3 does.

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// A Mersenne Twister that draws the same numbers as CPython's `random.Random`.
#[derive(Clone)]
pub struct PyRandom {
    state: [u32; N],
    index: usize,
}

impl std::fmt::Debug for PyRandom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyRandom")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl PyRandom {
    /// `random.seed(seed)` for a non-negative integer seed.
    pub fn new(seed: u64) -> Self {
        let mut key = Vec::with_capacity(2);
        let mut rest = seed;
        while rest > 0 {
            key.push(rest as u32);
            rest >>= 32;
        }
        if key.is_empty() {
            key.push(0);
        }
        let mut random = Self {
            state: [0; N],
            index: N,
        };
        random.init_by_array(&key);
        random
    }

    fn init_genrand(&mut self, seed: u32) {
        self.state[0] = seed;
        for i in 1..N {
            let previous = self.state[i - 1];
            self.state[i] = 1_812_433_253u32
                .wrapping_mul(previous ^ (previous >> 30))
                .wrapping_add(i as u32);
        }
        self.index = N;
    }

    fn init_by_array(&mut self, key: &[u32]) {
        self.init_genrand(19_650_218);
        let mt = &mut self.state;
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..N.max(key.len()) {
            let previous = mt[i - 1];
            mt[i] = (mt[i] ^ (previous ^ (previous >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let previous = mt[i - 1];
            mt[i] = (mt[i] ^ (previous ^ (previous >> 30)).wrapping_mul(1_566_083_941))
                .wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
        }
        mt[0] = 0x8000_0000;
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            let mt = &mut self.state;
            for k in 0..N {
                let y = (mt[k] & UPPER_MASK) | (mt[(k + 1) % N] & LOWER_MASK);
                let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
                mt[k] = mt[(k + M) % N] ^ (y >> 1) ^ mag;
            }
            self.index = 0;
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// `random.getrandbits(k)` for `k` up to 64: the low word is drawn first, and the
    /// last word keeps only its high bits.
    pub fn getrandbits(&mut self, k: u32) -> u64 {
        assert!(k <= 64, "getrandbits is implemented up to 64 bits");
        if k == 0 {
            return 0;
        }
        if k <= 32 {
            return u64::from(self.next_u32() >> (32 - k));
        }
        let low = u64::from(self.next_u32());
        let high = u64::from(self.next_u32() >> (64 - k));
        low | (high << 32)
    }

    /// `random._randbelow(n)`: a uniform integer in `0..n`, for `n >= 1`.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0) has no value to return");
        let bits = 64 - n.leading_zeros();
        loop {
            let r = self.getrandbits(bits);
            if r < n {
                return r;
            }
        }
    }

    /// `random.randint(low, high)`, both ends included.
    pub fn randint(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high, "randint({low}, {high}) is an empty range");
        low + self.below(high - low + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values printed by CPython 3.11 for `random.seed(s)` then
    /// `[randint(0, 9) for _ in range(10)]`, `[getrandbits(32) for _ in range(3)]`,
    /// `[getrandbits(40) for _ in range(2)]`, and `[randint(0, 0)] * 3, randint(0, 2),
    /// randint(0, 1000)`, each after a fresh seed.
    #[test]
    fn draws_what_cpython_draws() {
        type Case = (u64, [u64; 10], [u64; 3], [u64; 2], [u64; 5]);
        let cases: &[Case] = &[
            (
                0,
                [6, 6, 0, 4, 8, 7, 6, 4, 7, 5],
                [3626764237, 1654615998, 3255389356],
                [463385069186, 283641720628],
                [0, 0, 0, 1, 988],
            ),
            (
                7,
                [5, 2, 6, 0, 1, 8, 1, 5, 9, 0],
                [1390851128, 4071050724, 647892279],
                [714660325134, 77516799952],
                [0, 0, 0, 2, 49],
            ),
            (
                9999,
                [1, 2, 1, 2, 3, 4, 3, 9, 9, 4],
                [3585257280, 533280010, 677013082],
                [84842012264, 868146395174],
                [0, 0, 0, 0, 809],
            ),
            (
                1099511627781,
                [8, 8, 4, 0, 8, 0, 2, 1, 2, 3],
                [2166296868, 2220160828, 1153647273],
                [1020758241026, 579938387080],
                [0, 0, 0, 0, 81],
            ),
        ];
        for (seed, ints, words, wide, small) in cases {
            let mut random = PyRandom::new(*seed);
            let drawn: Vec<u64> = (0..10).map(|_| random.randint(0, 9)).collect();
            assert_eq!(drawn, ints, "randint, seed {seed}");
            let mut random = PyRandom::new(*seed);
            let drawn: Vec<u64> = (0..3).map(|_| random.getrandbits(32)).collect();
            assert_eq!(drawn, words, "getrandbits(32), seed {seed}");
            let drawn: Vec<u64> = (0..2).map(|_| random.getrandbits(40)).collect();
            assert_eq!(drawn, wide, "getrandbits(40), seed {seed}");
            let mut random = PyRandom::new(*seed);
            let mut drawn: Vec<u64> = (0..3).map(|_| random.randint(0, 0)).collect();
            drawn.push(random.randint(0, 2));
            drawn.push(random.randint(0, 1000));
            assert_eq!(drawn, small, "small ranges, seed {seed}");
        }
    }
}
