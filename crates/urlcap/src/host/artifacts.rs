//! urlcap's on-disk cache of compiled host-supplied components (`urlcap run`'s guest, `urlcap
//! serve`'s routes, an embedder's): never of components a guest hands to `sandbox.run`.
//!
//! An entry is the uncompressed output of `Component::serialize`, named by the SHA-256 of the
//! engine's compile settings (wasmtime's version and every setting that changes the code) and
//! the component's exact bytes, so a collision would need one in SHA-256. A cached run maps
//! the file (`Component::deserialize_file`): no copy and no decompression, where wasmtime's
//! own cache decompresses (zstd) and copies its artifact on every run.
//!
//! Entries are written to a temporary file in the cache directory and renamed into place, so
//! a reader sees a whole entry or none, and concurrent writers of one entry are harmless. An
//! entry that does not load (another wasmtime, other settings, a torn file) is compiled again
//! and replaced. No cache error stops a run: without a usable directory the component is
//! compiled in memory, as without a cache. The directory holds at most [`DEFAULT_CAP`] bytes:
//! a write that would pass the cap first removes the least recently used entries (by mtime,
//! which a load updates).
//!
//! The directory is trusted as wasmtime's own cache is: whoever can write it can make urlcap
//! run native code of their choosing (SECURITY.md). urlcap creates it `0700`.

use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};
use wasmtime::component::Component;
use wasmtime::Engine;

/// Most bytes the cache directory holds (entries and unfinished writes).
pub(super) const DEFAULT_CAP: u64 = 2 << 30;

/// How an entry's file name ends.
const ENTRY_SUFFIX: &str = ".cwasm";

/// How a file being written starts its name.
const TEMP_PREFIX: &str = ".tmp-";

/// An unfinished write older than this is left over from a process that died, and removed.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// The cache: a directory and the most bytes it may hold.
#[derive(Debug)]
pub(super) struct ArtifactCache {
    dir: PathBuf,
    cap: u64,
}

impl ArtifactCache {
    /// `$XDG_CACHE_HOME/urlcap/components`, else `$HOME/.cache/urlcap/components` (absolute
    /// paths only, as the XDG spec says), else no cache.
    pub(super) fn from_env() -> Option<ArtifactCache> {
        absolute_env("XDG_CACHE_HOME")
            .map(ArtifactCache::under)
            .or_else(ArtifactCache::home_default)
    }

    /// Where the cache is when `XDG_CACHE_HOME` is not set: a directory a guest must not be
    /// given even while this run's cache is elsewhere, since a later run may use it.
    fn home_default() -> Option<ArtifactCache> {
        absolute_env("HOME").map(|home| ArtifactCache::under(home.join(".cache")))
    }

    /// The cache in the cache home `base` (`$XDG_CACHE_HOME` or `$HOME/.cache`).
    fn under(base: PathBuf) -> ArtifactCache {
        ArtifactCache::new(base.join("urlcap/components"), DEFAULT_CAP)
    }

    /// A cache in `dir` holding at most `cap` bytes.
    pub(super) fn new(dir: PathBuf, cap: u64) -> ArtifactCache {
        ArtifactCache { dir, cap }
    }

    /// The component `wasm` compiled by `engine`: loaded from its entry, or compiled (and
    /// the entry written, when it can be). Only a compile error is an error.
    pub(super) fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
    ) -> wasmtime::Result<Component> {
        let path = self.entry_path(engine, wasm);
        if self.private_dirs() {
            if let Some(component) = load(engine, &path) {
                return Ok(component);
            }
        }
        let component = Component::new(engine, wasm)?;
        if let Ok(artifact) = component.serialize() {
            // A failed write (read-only or full disk) leaves the run as without a cache.
            let _ = self.store(&path, &artifact);
        }
        Ok(component)
    }

    /// Whether the cache directory and its parent are real directories (not symbolic links)
    /// of this user that no one else may write: `DirBuilder`'s `0700` applies only to what it
    /// creates, and a directory planted by another user, or shared, would let them put code
    /// here that urlcap runs.
    fn private_dirs(&self) -> bool {
        let private_dir = |dir: &Path| {
            fs::symlink_metadata(dir).is_ok_and(|meta| meta.is_dir() && private(&meta))
        };
        private_dir(&self.dir) && self.dir.parent().is_some_and(private_dir)
    }

    /// Whether a guest given `host_dir` (a preopen, read-write) could write the cache: the
    /// one contains the other, compared as the kernel resolves them (the cache's missing tail
    /// appended to its deepest existing ancestor). What it writes there would run as urlcap's
    /// own native code on a later run, so such a preopen is refused. Fails closed: a cache
    /// path that cannot be resolved for any reason but a missing part (a dangling symbolic
    /// link, no permission) counts as reachable.
    pub(super) fn reachable_through(&self, host_dir: &Path) -> bool {
        let Ok(host_dir) = fs::canonicalize(host_dir) else {
            // wasmtime cannot open it either; the preopen fails there.
            return false;
        };
        let mut existing = self.dir.as_path();
        let mut tail = Vec::new();
        let cache = loop {
            match fs::canonicalize(existing) {
                Ok(real) => {
                    break tail
                        .iter()
                        .rev()
                        .fold(real, |p: PathBuf, part| p.join(part));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(_) => return true,
            }
            // Missing: but a dangling symbolic link is not, and is not climbed past.
            if fs::symlink_metadata(existing).is_ok() {
                return true;
            }
            match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    tail.push(name.to_owned());
                    existing = parent;
                }
                _ => return true,
            }
        };
        cache.starts_with(&host_dir) || host_dir.starts_with(&cache)
    }

    /// Whether a guest given `host_dir` could write `active` (this run's cache, if any) or the
    /// default cache under `$HOME` a later run may use ([`ArtifactCache::reachable_through`]);
    /// each directory is looked at once, also when they are the same.
    pub(super) fn any_reachable_through(active: Option<&ArtifactCache>, host_dir: &Path) -> bool {
        let home = ArtifactCache::home_default()
            .filter(|home| active.is_none_or(|active| active.dir != home.dir));
        active
            .into_iter()
            .chain(home.as_ref())
            .any(|cache| cache.reachable_through(host_dir))
    }

    /// Where the entry of `wasm` compiled by `engine` lives.
    fn entry_path(&self, engine: &Engine, wasm: &[u8]) -> PathBuf {
        self.dir
            .join(format!("{}{ENTRY_SUFFIX}", hex(&key(engine, wasm))))
    }

    /// Write `artifact` as the entry at `path`: to a temporary file, synced, then renamed,
    /// after removing least recently used entries to stay under the cap.
    fn store(&self, path: &Path, artifact: &[u8]) -> std::io::Result<()> {
        let size = artifact.len() as u64;
        if size > self.cap {
            return Ok(());
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        if !self.private_dirs() {
            // Planted or shared: never write code where another user could replace it.
            return Ok(());
        }
        self.make_room(size)?;
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let temp = self.dir.join(format!(
            "{TEMP_PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)?;
            file.write_all(artifact)?;
            // Durable before it has its name: after a crash an entry is whole or absent.
            file.sync_data()?;
            fs::rename(&temp, path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written
    }

    /// Remove least recently used entries (and unfinished writes left by dead processes)
    /// until `incoming` more bytes fit under the cap.
    fn make_room(&self, incoming: u64) -> std::io::Result<()> {
        let now = SystemTime::now();
        // (last used, bytes, path, another process's unfinished write)
        let mut files: Vec<(SystemTime, u64, PathBuf, bool)> = Vec::new();
        for item in fs::read_dir(&self.dir)? {
            let Ok(item) = item else { continue };
            let Ok(meta) = item.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let name = item.file_name();
            let name = name.to_string_lossy();
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let temp = name.starts_with(TEMP_PREFIX);
            if temp {
                let age = now.duration_since(modified).unwrap_or_default();
                if age > STALE_TEMP && fs::remove_file(item.path()).is_ok() {
                    continue;
                }
            } else if !name.ends_with(ENTRY_SUFFIX) {
                continue;
            }
            files.push((modified, meta.len(), item.path(), temp));
        }
        let mut total: u64 = files.iter().map(|f| f.1).sum::<u64>() + incoming;
        files.sort();
        for (_, len, path, temp) in files {
            if total <= self.cap {
                break;
            }
            if temp {
                // Another process's write in progress: counted, not removed.
                continue;
            }
            if fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
        Ok(())
    }
}

/// The path in environment variable `name`, if it is set to an absolute one (as the XDG spec
/// asks of its variables).
fn absolute_env(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

/// Load the entry at `path`, marking it used; `None` when there is none or it does not load
/// (written by another wasmtime or under other settings, or torn).
fn load(engine: &Engine, path: &Path) -> Option<Component> {
    // Only a plain file of this user's that no one else may write, and with no other name
    // (a hard link from elsewhere could be written through).
    let plain_and_private = fs::symlink_metadata(path).is_ok_and(|meta| {
        use std::os::unix::fs::MetadataExt;
        meta.is_file() && private(&meta) && meta.nlink() == 1
    });
    if !plain_and_private {
        return None;
    }
    // The one load of compiled code from disk.
    // SAFETY: the cache directory is trusted as the compiler is (SECURITY.md): its entries
    // are this program's own `Component::serialize` output, named by the SHA-256 of the
    // engine's settings and the component's bytes, written whole and renamed into place, and
    // never changed in place (so the mapping stays valid). `deserialize_file` checks the
    // wasmtime version and settings it was made with, and the file's layout.
    #[allow(unsafe_code)]
    let component = unsafe { Component::deserialize_file(engine, path) }.ok()?;
    // Most recently used: eviction keeps it longest.
    // Setting a time needs ownership, not write access.
    if let Ok(file) = fs::File::open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
    Some(component)
}

/// Whether `meta` belongs to this process's user and no one else may write it.
fn private(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    let me = unsafe { libc::geteuid() };
    meta.uid() == me && meta.mode() & 0o022 == 0
}

/// The SHA-256 of the engine's compile settings and `wasm`.
fn key(engine: &Engine, wasm: &[u8]) -> [u8; 32] {
    use std::hash::Hash;
    let mut hasher = Sha256Hasher(Sha256::new());
    hasher.0.update(b"urlcap component artifact 1\0");
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.0.update((wasm.len() as u64).to_le_bytes());
    hasher.0.update(wasm);
    hasher.0.finalize().into()
}

/// Feeds what a `Hash` writes into SHA-256.
struct Sha256Hasher(Sha256);

impl std::hash::Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        // Never asked for: the key is the whole digest.
        0
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty component with a custom section named `tag`, so each tag's bytes differ.
    fn component(tag: u8) -> Vec<u8> {
        vec![0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00, 0, 2, 1, tag]
    }

    fn engine() -> Engine {
        Engine::new(&super::super::engine::compile_config(false)).unwrap()
    }

    fn entries(dir: &Path) -> Vec<(PathBuf, u64)> {
        let mut all: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path(), e.metadata().unwrap().len())
            })
            .collect();
        all.sort();
        all
    }

    fn age(path: &Path, by: Duration) {
        let file = fs::OpenOptions::new().write(true).open(path).unwrap();
        file.set_modified(SystemTime::now() - by).unwrap();
    }

    /// The cache keeps its directory under its cap, removing the least recently used
    /// entries: one that was loaded since stays, one that was not goes.
    #[test]
    fn eviction_keeps_the_directory_under_its_cap_removing_the_least_recently_used() {
        let engine = engine();
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("components");
        let (a, b, c) = (component(1), component(2), component(3));
        // Find an entry's size, then allow two entries and a half.
        let probe = ArtifactCache::new(temp.path().join("probe"), u64::MAX);
        probe.load_or_compile(&engine, &a).unwrap();
        let one = entries(&temp.path().join("probe"))[0].1;
        let cache = ArtifactCache::new(dir.clone(), one * 5 / 2);
        cache.load_or_compile(&engine, &a).unwrap();
        cache.load_or_compile(&engine, &b).unwrap();
        assert_eq!(entries(&dir).len(), 2);
        let (path_a, path_b) = (cache.entry_path(&engine, &a), cache.entry_path(&engine, &b));
        age(&path_a, Duration::from_secs(600));
        age(&path_b, Duration::from_secs(300));
        // Loading `a` makes it the most recently used; `c` then needs the room `b` takes.
        cache.load_or_compile(&engine, &a).unwrap();
        cache.load_or_compile(&engine, &c).unwrap();
        let left = entries(&dir);
        let total: u64 = left.iter().map(|e| e.1).sum();
        assert!(total <= one * 5 / 2, "{left:?}");
        assert!(path_a.exists() && !path_b.exists(), "{left:?}");
        assert!(cache.entry_path(&engine, &c).exists());
        // An entry bigger than the whole cap is not written, and evicts nothing.
        let small = ArtifactCache::new(dir.clone(), one - 1);
        small.load_or_compile(&engine, &component(4)).unwrap();
        assert_eq!(entries(&dir), left);
    }

    /// The directory is made 0700, entries are keyed by the exact bytes, and a torn entry is
    /// compiled again and replaced.
    #[test]
    fn entries_are_private_keyed_by_the_bytes_and_a_torn_one_is_replaced() {
        use std::os::unix::fs::PermissionsExt;
        let engine = engine();
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("a/components");
        let cache = ArtifactCache::new(dir.clone(), DEFAULT_CAP);
        let (a, b) = (component(1), component(2));
        cache.load_or_compile(&engine, &a).unwrap();
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert_ne!(cache.entry_path(&engine, &a), cache.entry_path(&engine, &b));
        let path = cache.entry_path(&engine, &a);
        let whole = fs::read(&path).unwrap();
        fs::write(&path, &whole[..whole.len() / 2]).unwrap();
        assert!(load(&engine, &path).is_none(), "a torn entry loaded");
        cache.load_or_compile(&engine, &a).unwrap();
        assert_eq!(fs::read(&path).unwrap(), whole);
        assert!(load(&engine, &path).is_some());
        // No temporary file is left behind.
        assert_eq!(entries(&dir).len(), 1);
    }

    /// A directory or entry another user could write is never loaded from or written to:
    /// a cache directory (or its parent) writable by others or a symbolic link, an entry
    /// writable by others or with a second name.
    #[test]
    fn entries_are_loaded_only_from_private_directories_and_files() {
        use std::os::unix::fs::PermissionsExt;
        let engine = engine();
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("urlcap/components");
        let cache = ArtifactCache::new(dir.clone(), DEFAULT_CAP);
        let a = component(3);
        cache.load_or_compile(&engine, &a).unwrap();
        let path = cache.entry_path(&engine, &a);
        assert!(cache.private_dirs() && load(&engine, &path).is_some());
        let chmod = |p: &Path, mode| fs::set_permissions(p, fs::Permissions::from_mode(mode));
        for shared in [&dir, dir.parent().unwrap()] {
            chmod(shared, 0o777).unwrap();
            assert!(!cache.private_dirs(), "{shared:?} writable by others");
            chmod(shared, 0o700).unwrap();
        }
        chmod(&path, 0o666).unwrap();
        assert!(
            load(&engine, &path).is_none(),
            "an entry writable by others loaded"
        );
        chmod(&path, 0o600).unwrap();
        let second = temp.path().join("second-name");
        fs::hard_link(&path, &second).unwrap();
        assert!(
            load(&engine, &path).is_none(),
            "an entry with a second name loaded"
        );
        fs::remove_file(&second).unwrap();
        assert!(load(&engine, &path).is_some());
        // A symbolic link in the entry's place, or for the directory, is not followed.
        let elsewhere = temp.path().join("elsewhere");
        fs::rename(&dir, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &dir).unwrap();
        assert!(!cache.private_dirs(), "a symbolic link for the directory");
    }

    /// A preopen that contains the cache, or lies inside it, can reach it; one beside it
    /// cannot, whether or not the cache exists yet.
    #[test]
    fn a_directory_containing_or_inside_the_cache_reaches_it() {
        let temp = tempfile::tempdir().unwrap();
        let base = temp.path().join("home");
        fs::create_dir_all(base.join("elsewhere")).unwrap();
        let cache = ArtifactCache::new(base.join(".cache/urlcap/components"), DEFAULT_CAP);
        assert!(cache.reachable_through(&base), "before the cache exists");
        assert!(!cache.reachable_through(&base.join("elsewhere")));
        fs::create_dir_all(base.join(".cache/urlcap/components/inner")).unwrap();
        assert!(cache.reachable_through(&base.join(".cache")));
        assert!(cache.reachable_through(&base.join(".cache/urlcap/components/inner")));
        assert!(!cache.reachable_through(&base.join("elsewhere")));
        assert!(!cache.reachable_through(&base.join("missing")));
        // A cache behind a dangling link cannot be placed: every preopen counts as reaching it.
        let linked = base.join("linked");
        std::os::unix::fs::symlink(temp.path().join("gone"), &linked).unwrap();
        let behind = ArtifactCache::new(linked.join("urlcap/components"), DEFAULT_CAP);
        assert!(behind.reachable_through(&base.join("elsewhere")));
    }

    /// Another engine's settings make another key: an entry is never loaded by an engine
    /// whose code it does not match.
    #[test]
    fn the_key_covers_the_engine_settings() {
        let mut other = super::super::engine::compile_config(false);
        other.epoch_interruption(false);
        let other = Engine::new(&other).unwrap();
        let cache = ArtifactCache::new(PathBuf::from("/nonexistent"), DEFAULT_CAP);
        let a = component(1);
        assert_ne!(
            cache.entry_path(&engine(), &a),
            cache.entry_path(&other, &a)
        );
    }
}
