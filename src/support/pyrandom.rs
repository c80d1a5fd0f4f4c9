//! Python's `random` module, bit for bit: the NIAH generator's UUIDs and random depths (as the
//! reference implementation draws them), and the seeded head draws of ablation baselines.

/// Python's `random.Random(seed)`: MT19937 seeded by `init_by_array` with the seed's 32-bit words.
pub struct PyRandom(rand_mt::Mt);

impl PyRandom {
    pub fn new(seed: u64) -> Self {
        let key: Vec<u32> = if seed >> 32 == 0 { vec![seed as u32] } else { vec![seed as u32, (seed >> 32) as u32] };
        PyRandom(rand_mt::Mt::new_with_key(key))
    }

    /// `getrandbits(128)`: 32-bit words from least to most significant.
    pub fn getrandbits_128(&mut self) -> u128 {
        (0..4).fold(0u128, |acc, i| acc | (u128::from(self.0.next_u32()) << (32 * i)))
    }

    /// `random()`: 53 random bits from two 32-bit outputs, as CPython does.
    pub fn random(&mut self) -> f64 {
        let a = self.0.next_u32() >> 5;
        let b = self.0.next_u32() >> 6;
        (a as f64 * 67_108_864.0 + b as f64) / 9_007_199_254_740_992.0
    }

    /// `str(uuid.UUID(int=getrandbits(128), version=4))`.
    pub fn uuid4(&mut self) -> String {
        let mut v = self.getrandbits_128();
        v &= !(0xc000u128 << 48);
        v |= 0x8000u128 << 48;
        v &= !(0xf000u128 << 64);
        v |= 4u128 << 76;
        let h = format!("{v:032x}");
        format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
    }
}
