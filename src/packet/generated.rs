//! Generated strings for the tests that check a fast path against the
//! definition it replaces. A fixed seed gives the same strings every run.

/// A xorshift generator of numbers and strings.
pub(crate) struct Generated(u64);

impl Generated {
    pub(crate) fn new(seed: u64) -> Generated {
        // Xorshift never leaves zero.
        Generated(seed | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A string of up to `max_len` characters drawn from `alphabet`.
    pub(crate) fn string(&mut self, alphabet: &[char], max_len: usize) -> String {
        let len = self.next_u64() as usize % (max_len + 1);
        (0..len)
            .map(|_| alphabet[self.next_u64() as usize % alphabet.len()])
            .collect()
    }
}
