//! The answer cache: one entry per wire question (name, type), expiring
//! on the event loop's clock, bounded in entries.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::DnsRecord;
use super::config::CacheOptions;

/// A wire question: the name in lower case without the trailing dot, and
/// the record type's number.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct QuestionKey {
    pub(crate) name: String,
    pub(crate) qtype: u16,
}

/// What one question's answer said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Cached {
    /// Records of the type asked (after CNAMEs in the answer were followed).
    Records(Vec<DnsRecord>),
    /// The name is an alias whose target the answer did not resolve.
    Alias(String),
    /// NXDOMAIN (`nxdomain`) or no data.
    Negative { nxdomain: bool },
}

struct Entry {
    expires: Instant,
    seq: u64,
    answer: Cached,
}

/// Entries by question, and their insertion order for evicting the
/// oldest one in amortised O(1).
pub(crate) struct Cache {
    options: CacheOptions,
    entries: HashMap<QuestionKey, Entry>,
    /// (key, seq) in insertion order; items whose seq no longer matches
    /// the entry are stale and skipped.
    order: VecDeque<(QuestionKey, u64)>,
    seq: u64,
    /// Expired entries are swept when the cache is full, at most once a
    /// second, so a full cache of long-lived entries costs O(1) per insert.
    next_sweep: Option<Instant>,
}

impl Cache {
    pub(crate) fn new(options: CacheOptions) -> Cache {
        Cache {
            options,
            entries: HashMap::new(),
            order: VecDeque::new(),
            seq: 0,
            next_sweep: None,
        }
    }

    pub(crate) fn options(&self) -> &CacheOptions {
        &self.options
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The answer to a question, unless it is absent or expired.
    pub(crate) fn get(&mut self, key: &QuestionKey, now: Instant) -> Option<Cached> {
        let entry = self.entries.get(key)?;
        if entry.expires <= now {
            self.entries.remove(key);
            return None;
        }
        Some(entry.answer.clone())
    }

    /// Keeps an answer for `ttl` (nothing for a zero TTL or a disabled
    /// cache).
    pub(crate) fn insert(&mut self, key: QuestionKey, answer: Cached, ttl: Duration, now: Instant) {
        let max = self.options.max_entries;
        if max == 0 || ttl.is_zero() {
            return;
        }
        if !self.entries.contains_key(&key) && self.entries.len() >= max {
            self.make_room(now);
        }
        self.seq += 1;
        let seq = self.seq;
        self.order.push_back((key.clone(), seq));
        let expires = now.checked_add(ttl).unwrap_or(now);
        self.entries.insert(
            key,
            Entry {
                expires,
                seq,
                answer,
            },
        );
        if self.order.len() > 2 * max + 16 {
            let entries = &self.entries;
            self.order
                .retain(|(k, s)| entries.get(k).is_some_and(|e| e.seq == *s));
        }
    }

    fn make_room(&mut self, now: Instant) {
        if self.next_sweep.is_none_or(|t| now >= t) {
            self.entries.retain(|_, e| e.expires > now);
            self.next_sweep = Some(now + Duration::from_secs(1));
        }
        while self.entries.len() >= self.options.max_entries {
            let Some((key, seq)) = self.order.pop_front() else {
                break;
            };
            if self.entries.get(&key).is_some_and(|e| e.seq == seq) {
                self.entries.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: &str) -> QuestionKey {
        QuestionKey {
            name: n.into(),
            qtype: 1,
        }
    }

    fn cache(max: usize) -> Cache {
        Cache::new(CacheOptions {
            max_entries: max,
            ..CacheOptions::default()
        })
    }

    #[test]
    fn entries_expire_on_the_given_clock() {
        let mut c = cache(8);
        let t0 = Instant::now();
        c.insert(
            key("a"),
            Cached::Alias("b".into()),
            Duration::from_secs(10),
            t0,
        );
        assert!(c.get(&key("a"), t0 + Duration::from_secs(9)).is_some());
        assert!(c.get(&key("a"), t0 + Duration::from_secs(10)).is_none());
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn a_full_cache_drops_expired_entries_first_then_the_oldest() {
        let mut c = cache(3);
        let t0 = Instant::now();
        let long = Duration::from_secs(100);
        c.insert(key("old"), Cached::Negative { nxdomain: true }, long, t0);
        c.insert(
            key("short"),
            Cached::Negative { nxdomain: true },
            Duration::from_secs(1),
            t0,
        );
        c.insert(key("mid"), Cached::Negative { nxdomain: true }, long, t0);
        let t1 = t0 + Duration::from_secs(2);
        c.insert(key("new"), Cached::Negative { nxdomain: false }, long, t1);
        assert!(
            c.get(&key("old"), t1).is_some(),
            "the expired one went first"
        );
        c.insert(key("newer"), Cached::Negative { nxdomain: false }, long, t1);
        assert!(c.get(&key("old"), t1).is_none(), "then the oldest");
        assert_eq!(c.len(), 3);
        // Re-inserting a key refreshes it: "mid" is now the newest.
        c.insert(key("mid"), Cached::Negative { nxdomain: false }, long, t1);
        c.insert(key("x"), Cached::Negative { nxdomain: false }, long, t1);
        assert!(c.get(&key("new"), t1).is_none());
        assert!(c.get(&key("mid"), t1).is_some());
        assert!(c.order.len() <= 2 * 3 + 16);
    }

    #[test]
    fn zero_ttl_and_a_disabled_cache_keep_nothing() {
        let t0 = Instant::now();
        let mut c = cache(0);
        c.insert(
            key("a"),
            Cached::Alias("b".into()),
            Duration::from_secs(5),
            t0,
        );
        assert_eq!(c.len(), 0);
        let mut c = cache(4);
        c.insert(key("a"), Cached::Alias("b".into()), Duration::ZERO, t0);
        assert_eq!(c.len(), 0);
    }
}
