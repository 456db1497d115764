//! Deterministic pseudo-random numbers. Every row gets its own SplitMix64 stream, derived from the generator's
//! seed and the row's index, so row `i` is the same however the rows are batched or which format they go to.

/// The 64-bit golden-ratio increment of SplitMix64.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function: a bijective mix of 64 bits.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A SplitMix64 generator.
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    state: u64,
}

impl Rng {
    /// The stream of row `row` within the stream family `stream`.
    pub(crate) fn for_row(stream: u64, row: u64) -> Self {
        Self {
            state: mix(stream ^ mix(row.wrapping_add(GOLDEN))),
        }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix(self.state)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..n` (`n > 0`), without modulo bias worth speaking of.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform integer in `lo..=hi`.
    pub(crate) fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    /// Uniform in `[lo, hi)`.
    pub(crate) fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// Draws items in proportion to fixed weights in constant time (Vose's alias method): one random number picks a
/// slot and decides between the slot's item and its alias.
#[derive(Debug, Clone)]
pub(crate) struct Weighted<T> {
    items: Vec<T>,
    /// Chance of keeping the slot's own item, scaled to `u32::MAX + 1`.
    keep: Vec<u64>,
    alias: Vec<u32>,
}

impl<T: Copy> Weighted<T> {
    /// A table from `(item, weight)` pairs; items with a weight of zero or less are never drawn.
    pub(crate) fn new(pairs: impl IntoIterator<Item = (T, f64)>) -> Self {
        let (items, weights): (Vec<T>, Vec<f64>) =
            pairs.into_iter().filter(|(_, w)| *w > 0.0).unzip();
        assert!(
            !items.is_empty(),
            "a weighted table needs at least one positive weight"
        );
        let n = items.len();
        let total: f64 = weights.iter().sum();
        let mut scaled: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| scaled[i] < 1.0);
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            alias[s] = l as u32;
            scaled[l] -= 1.0 - scaled[s];
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // What is left is 1.0 up to rounding: always keep.
        for i in small.into_iter().chain(large) {
            scaled[i] = 1.0;
        }
        let keep = scaled
            .iter()
            .map(|p| (p.clamp(0.0, 1.0) * 4_294_967_296.0) as u64)
            .collect();
        Self { items, keep, alias }
    }

    pub(crate) fn sample(&self, rng: &mut Rng) -> T {
        let u = rng.next_u64();
        let slot = (((u >> 32) * self.items.len() as u64) >> 32) as usize;
        let i = if (u & 0xFFFF_FFFF) < self.keep[slot] {
            slot
        } else {
            self.alias[slot] as usize
        };
        self.items[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4).map(|_| Rng::for_row(7, 1).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(Rng::for_row(7, 1).next_u64(), Rng::for_row(7, 2).next_u64());
        assert_ne!(Rng::for_row(7, 1).next_u64(), Rng::for_row(8, 1).next_u64());
    }

    #[test]
    fn draws_stay_in_their_ranges() {
        let mut rng = Rng::for_row(1, 1);
        for _ in 0..10_000 {
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
            assert!(rng.below(3) < 3);
            assert!((5..=9).contains(&rng.int(5, 9)));
        }
    }

    #[test]
    fn weighted_draws_follow_their_weights() {
        let table = Weighted::new([('a', 1.0), ('b', 0.0), ('c', 3.0), ('d', 0.5), ('e', 5.5)]);
        let mut rng = Rng::for_row(3, 3);
        let mut counts = [0u32; 5];
        for _ in 0..100_000 {
            counts[(table.sample(&mut rng) as u8 - b'a') as usize] += 1;
        }
        assert_eq!(counts[1], 0);
        for (i, expected) in [(0, 0.1), (2, 0.3), (3, 0.05), (4, 0.55)] {
            let share = f64::from(counts[i]) / 100_000.0;
            assert!((share - expected).abs() < 0.01, "{counts:?}");
        }
        let single = Weighted::new([(7, 2.0)]);
        assert_eq!(single.sample(&mut rng), 7);
    }
}
