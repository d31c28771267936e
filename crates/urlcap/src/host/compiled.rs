//! Linked components by content, kept so that running the same bytes again skips the compile,
//! and bounded so that a guest spawning ever new components cannot grow the host without end:
//! at most so many entries and so many bytes (of component and of the compiled code made of
//! it), the least recently used evicted.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A bounded map from component bytes to what was made of them (their linked command).
pub(crate) struct CompiledCache<C> {
    entries: Mutex<Vec<Entry<C>>>,
    max_entries: usize,
    max_bytes: usize,
    /// A use counter, for least-recently-used eviction.
    uses: AtomicU64,
}

struct Entry<C> {
    hash: u64,
    bytes: Arc<[u8]>,
    command: C,
    /// Bytes the entry keeps: the component's and its compiled code's.
    kept: usize,
    last_used: u64,
}

impl<C: Clone> CompiledCache<C> {
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> CompiledCache<C> {
        CompiledCache {
            entries: Mutex::new(Vec::new()),
            max_entries,
            max_bytes,
            uses: AtomicU64::new(0),
        }
    }

    /// The command linked from exactly these bytes, if kept. A fast hash narrows the search;
    /// the bytes themselves decide, so no collision can run one component's code for another's.
    pub(crate) fn get(&self, wasm: &[u8]) -> Option<C> {
        let hash = hash(wasm);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries
            .iter_mut()
            .find(|e| e.hash == hash && e.bytes[..] == *wasm)?;
        entry.last_used = self.uses.fetch_add(1, Ordering::Relaxed);
        Some(entry.command.clone())
    }

    /// Keep `command` for `wasm`, whose compiled code takes `code` bytes, evicting the least
    /// recently used entries past the bounds. An entry larger than the whole byte bound is not
    /// kept.
    pub(crate) fn insert(&self, wasm: Arc<[u8]>, command: C, code: usize) {
        let kept = wasm.len().saturating_add(code);
        if kept > self.max_bytes || self.max_entries == 0 {
            return;
        }
        let hash = hash(&wasm);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.iter().any(|e| e.hash == hash && e.bytes == wasm) {
            return;
        }
        entries.push(Entry {
            hash,
            bytes: wasm,
            command,
            kept,
            last_used: self.uses.fetch_add(1, Ordering::Relaxed),
        });
        let mut bytes: usize = entries.iter().map(|e| e.kept).sum();
        while entries.len() > self.max_entries || bytes > self.max_bytes {
            let oldest = (0..entries.len())
                .min_by_key(|&i| entries[i].last_used)
                .expect("not empty while over a bound");
            bytes -= entries.swap_remove(oldest).kept;
        }
    }

    /// Entries and bytes (of component and compiled code) kept now.
    pub(crate) fn size(&self) -> (usize, usize) {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        (entries.len(), entries.iter().map(|e| e.kept).sum())
    }
}

/// Bytes of a component the bucket hash reads: all of a small one; of a larger one its length,
/// its first and last [`SAMPLE`] bytes and [`SAMPLE`] more spread evenly between them. It
/// only picks where to look, so it need not read everything: a 13 MB component is hashed in
/// microseconds instead of milliseconds, and two components that share the sampled bytes are
/// still told apart by the exact comparison (which a fast hash over all the bytes, not being
/// collision-resistant, needed just the same).
const SAMPLE: usize = 16 << 10;

fn hash(wasm: &[u8]) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    if wasm.len() <= 3 * SAMPLE {
        wasm.hash(&mut h);
        return h.finish();
    }
    wasm.len().hash(&mut h);
    h.write(&wasm[..SAMPLE]);
    h.write(&wasm[wasm.len() - SAMPLE..]);
    const PIECES: usize = 64;
    let piece = SAMPLE / PIECES;
    let stride = (wasm.len() - 2 * SAMPLE) / PIECES;
    for k in 0..PIECES {
        let at = SAMPLE + k * stride;
        h.write(&wasm[at..at + piece]);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Large components are bucketed by a sample of their bytes; two that differ only where the
    /// sample does not read share a bucket and are still told apart by their bytes.
    #[test]
    fn components_the_sampled_hash_confuses_are_told_apart_by_their_bytes() {
        let a: Arc<[u8]> = vec![7u8; 1 << 20].into();
        let mut b = vec![7u8; 1 << 20];
        b[SAMPLE + 1000] = 8; // between the first two sampled pieces past the head
        let b: Arc<[u8]> = b.into();
        assert_eq!(hash(&a), hash(&b), "the test needs bytes the sample skips");
        let cache = CompiledCache::new(4, 10 << 20);
        cache.insert(a.clone(), "a", 0);
        assert_eq!(cache.get(&b), None);
        cache.insert(b.clone(), "b", 0);
        assert_eq!((cache.get(&a), cache.get(&b)), (Some("a"), Some("b")));
        let mut c = a.to_vec();
        c[1 << 19] ^= 1;
        assert_eq!(
            cache.get(&c),
            None,
            "one byte anywhere makes another component"
        );
    }

    /// Values stored under many keys: the bounds hold, the least recently used goes first,
    /// and a key is found only by its exact bytes.
    #[test]
    fn the_cache_stays_within_its_bounds_and_evicts_the_least_recently_used() {
        let command = "linked";
        let cache = CompiledCache::new(4, 10_000);
        let key = |i: u8, len: usize| -> Arc<[u8]> { vec![i; len].into() };
        for i in 0..10u8 {
            cache.insert(key(i, 100), command, 0);
            if i >= 1 {
                assert!(cache.get(&key(1, 100)).is_some(), "1 is used every time");
            }
            let (entries, bytes) = cache.size();
            assert!(entries <= 4 && bytes <= 10_000, "{entries} {bytes}");
        }
        assert!(cache.get(&key(1, 100)).is_some());
        assert!(cache.get(&key(0, 100)).is_none(), "evicted first");
        assert!(cache.get(&key(9, 100)).is_some());
        assert!(
            cache.get(&key(9, 99)).is_none(),
            "only the exact bytes match"
        );
        cache.insert(key(20, 6_000), command, 0);
        cache.insert(key(21, 6_000), command, 0);
        assert!(cache.size().1 <= 10_000, "{:?}", cache.size());
        cache.insert(key(22, 20_000), command, 0);
        assert!(
            cache.get(&key(22, 20_000)).is_none(),
            "larger than the whole bound"
        );
        cache.insert(key(23, 100), command, 9_950);
        assert!(
            cache.get(&key(23, 100)).is_none(),
            "its compiled code counts: larger than the whole bound"
        );
        cache.insert(key(24, 100), command, 5_000);
        cache.insert(key(25, 100), command, 5_000);
        assert!(cache.size().1 <= 10_000, "{:?}", cache.size());
        assert!(cache.get(&key(24, 100)).is_none(), "evicted for its code");
    }
}
