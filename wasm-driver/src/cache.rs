//! Loading modules: format detection, the in-memory cache (file metadata → content hash →
//! compiled and linked module) and the optional on-disk cache of precompiled artifacts.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use execdriver_api::DriverError;
use wasmtime::component::Component;
use wasmtime::{InstancePre, Module};
use wasmtime_wasi::p2::bindings::CommandPre;

use crate::NAME;
use crate::engine::{CompCtx, CoreCtx, Runtime};

/// The largest module accepted.
const MAX_MODULE_BYTES: u64 = 512 << 20;
/// Compiled modules kept in memory; past this the cache starts over.
const MAX_CACHED: usize = 512;

/// A compiled module, linked against the driver's WASI linker and ready to instantiate.
pub(crate) enum Compiled {
    Core {
        module: Module,
        pre: InstancePre<CoreCtx>,
    },
    Component {
        pre: ComponentPre,
    },
}

/// A command component of either WASI: 0.2 (`wasi:cli/run@0.2.x`) or 0.3
/// (`wasi:cli/run@0.3.0`, run concurrently); or an HTTP component
/// (`wasi:http/incoming-handler@0.2.x`, an instance per request).
pub(crate) enum ComponentPre {
    P2(CommandPre<CompCtx>),
    P3(wasmtime_wasi::p3::bindings::CommandPre<CompCtx>),
    Proxy(wasmtime_wasi_http::p2::bindings::ProxyPre<CompCtx>),
}

impl Compiled {
    /// Whether this is an HTTP component (it serves rather than runs).
    pub fn serves_http(&self) -> bool {
        matches!(
            self,
            Self::Component {
                pre: ComponentPre::Proxy(_)
            }
        )
    }
}

/// Cache counters, for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Loads answered from memory (no compilation, no file read when the file is unchanged).
    pub memory_hits: u64,
    /// Loads answered from the on-disk cache of precompiled artifacts.
    pub disk_hits: u64,
    /// Loads that compiled the module.
    pub compiles: u64,
}

type Hash = [u8; 32];

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct MetaKey {
    path: PathBuf,
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_ns: i64,
}

pub(crate) struct ModuleCache {
    by_meta: Mutex<HashMap<MetaKey, Hash>>,
    by_hash: Mutex<HashMap<Hash, Arc<Compiled>>>,
    disk_dir: Option<PathBuf>,
    disk_max_bytes: u64,
    disk: OnceLock<Option<DiskCache>>,
    memory_hits: AtomicU64,
    disk_hits: AtomicU64,
    compiles: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn cant(reason: String) -> DriverError {
    DriverError::cant_handle(NAME, reason)
}

/// What a module file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Core,
    Component,
}

/// Detects the format: binary module (`\0asm` version 1), binary component (`\0asm` layer 1),
/// or WebAssembly text (returned as binary).
pub(crate) fn detect<'a>(
    bytes: &'a [u8],
    shown: &str,
) -> Result<(Kind, std::borrow::Cow<'a, [u8]>), DriverError> {
    let binary = |b: &[u8]| -> Option<Kind> {
        if b.len() < 8 || &b[..4] != b"\0asm" {
            return None;
        }
        match b[4..8] {
            [1, 0, 0, 0] => Some(Kind::Core),
            [_, _, 1, 0] => Some(Kind::Component),
            _ => None,
        }
    };
    if bytes.starts_with(b"\0asm") {
        return match binary(bytes) {
            Some(k) => Ok((k, bytes.into())),
            None => Err(cant(format!(
                "{shown}: an unsupported WebAssembly binary version"
            ))),
        };
    }
    let looks_textual = bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'(' || *b == b';');
    if !looks_textual {
        return Err(cant(format!(
            "{shown} is not a WebAssembly module, component or .wat text"
        )));
    }
    let bin = wat::parse_bytes(bytes).map_err(|e| {
        let msg = e.to_string().lines().next().unwrap_or_default().to_owned();
        cant(format!("{shown}: invalid WebAssembly text: {msg}"))
    })?;
    match binary(&bin) {
        Some(k) => Ok((k, bin.into_owned().into())),
        None => Err(cant(format!(
            "{shown}: the text does not describe a module or component"
        ))),
    }
}

impl ModuleCache {
    /// A cache; with `disk_dir`, precompiled modules are also kept there, at most
    /// `disk_max_bytes` of them (least recently used go first).
    pub fn new(disk_dir: Option<PathBuf>, disk_max_bytes: u64) -> Self {
        Self {
            disk_max_bytes,
            by_meta: Mutex::new(HashMap::new()),
            by_hash: Mutex::new(HashMap::new()),
            disk_dir,
            disk: OnceLock::new(),
            memory_hits: AtomicU64::new(0),
            disk_hits: AtomicU64::new(0),
            compiles: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            memory_hits: self.memory_hits.load(Ordering::Relaxed),
            disk_hits: self.disk_hits.load(Ordering::Relaxed),
            compiles: self.compiles.load(Ordering::Relaxed),
        }
    }

    /// The compiled module at `path` (`shown` names it in errors).
    pub fn load(
        &self,
        rt: &Runtime,
        path: &Path,
        shown: &str,
    ) -> Result<Arc<Compiled>, DriverError> {
        let meta = fs::metadata(path).map_err(|e| cant(format!("{shown}: {e}")))?;
        if !meta.is_file() {
            return Err(cant(format!("{shown} is not a regular file")));
        }
        if meta.len() > MAX_MODULE_BYTES {
            return Err(cant(format!(
                "{shown} is larger than {MAX_MODULE_BYTES} bytes"
            )));
        }
        let key = MetaKey {
            path: path.to_owned(),
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: meta.mtime(),
            mtime_ns: meta.mtime_nsec(),
        };
        // One lock at a time here: the guard of a let-chain's first test lives through the
        // second, and holding `by_meta` while taking `by_hash` deadlocked against the insert
        // below (which takes `by_hash`, then `by_meta`).
        let known = lock(&self.by_meta).get(&key).copied();
        if let Some(hash) = known
            && let Some(c) = lock(&self.by_hash).get(&hash).cloned()
        {
            self.memory_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(c);
        }
        let bytes = fs::read(path).map_err(|e| cant(format!("{shown}: {e}")))?;
        let hash: Hash = *blake3::hash(&bytes).as_bytes();
        let cached = lock(&self.by_hash).get(&hash).cloned();
        if let Some(c) = cached {
            self.memory_hits.fetch_add(1, Ordering::Relaxed);
            lock(&self.by_meta).insert(key, hash);
            return Ok(c);
        }
        let (kind, binary) = detect(&bytes, shown)?;
        let disk = self.disk.get_or_init(|| {
            self.disk_dir
                .as_deref()
                .and_then(|d| DiskCache::open(d, rt, self.disk_max_bytes))
        });
        let compiled = match disk.as_ref().and_then(|d| d.load(rt, &hash, kind)) {
            Some(c) => {
                self.disk_hits.fetch_add(1, Ordering::Relaxed);
                c
            }
            None => {
                self.compiles.fetch_add(1, Ordering::Relaxed);
                let c = compile(rt, kind, &binary, shown)?;
                if let Some(d) = disk {
                    d.store(&hash, kind, &c);
                }
                c
            }
        };
        let compiled = Arc::new(link(rt, compiled, shown)?);
        // Lock order: `by_hash`, then `by_meta` (never the other way round).
        let mut by_hash = lock(&self.by_hash);
        if by_hash.len() >= MAX_CACHED {
            by_hash.clear();
            lock(&self.by_meta).clear();
        }
        by_hash.insert(hash, compiled.clone());
        lock(&self.by_meta).insert(key, hash);
        Ok(compiled)
    }
}

/// A compiled, not yet linked, module or component.
enum Unlinked {
    Core(Module),
    Component(Component),
}

fn compile(rt: &Runtime, kind: Kind, binary: &[u8], shown: &str) -> Result<Unlinked, DriverError> {
    let first_line = |e: wasmtime::Error| {
        format!("{e:#}")
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    match kind {
        Kind::Core => Module::new(&rt.engine, binary)
            .map(Unlinked::Core)
            .map_err(|e| cant(format!("{shown}: invalid module: {}", first_line(e)))),
        Kind::Component => Component::new(&rt.engine, binary)
            .map(Unlinked::Component)
            .map_err(|e| cant(format!("{shown}: invalid component: {}", first_line(e)))),
    }
}

fn link(rt: &Runtime, u: Unlinked, shown: &str) -> Result<Compiled, DriverError> {
    match u {
        Unlinked::Core(module) => {
            let pre = rt
                .core_linker
                .instantiate_pre(&module)
                .map_err(|e| cant(format!("{shown}: {e}")))?;
            Ok(Compiled::Core { module, pre })
        }
        Unlinked::Component(component) => {
            let pre = rt
                .comp_linker
                .instantiate_pre(&component)
                .map_err(|e| cant(format!("{shown}: {e}")))?;
            let pre = match CommandPre::new(pre.clone()) {
                Ok(p2) => ComponentPre::P2(p2),
                Err(e2) => match wasmtime_wasi::p3::bindings::CommandPre::new(pre.clone()) {
                    Ok(p3) => ComponentPre::P3(p3),
                    Err(e3) => match wasmtime_wasi_http::p2::bindings::ProxyPre::new(pre) {
                        Ok(proxy) => ComponentPre::Proxy(proxy),
                        Err(eh) => {
                            return Err(cant(format!(
                                "{shown}: neither a WASI command component nor an HTTP one (no \
                                 wasi:cli/run@0.2 export: {e2}; no wasi:cli/run@0.3.0 export: \
                                 {e3}; no wasi:http/incoming-handler@0.2 export: {eh})"
                            )));
                        }
                    },
                },
            };
            Ok(Compiled::Component { pre })
        }
    }
}

/// Precompiled artifacts on disk: `<dir>/<content hash>-<engine hash>.<kind>.cwasm`, each a
/// magic, the BLAKE3 of the payload, and wasmtime's serialized module. An entry whose hash does
/// not match, or that wasmtime refuses (another version, CPU or configuration), is compiled
/// again and replaced.
struct DiskCache {
    dir: PathBuf,
    engine: String,
    max_bytes: u64,
}

/// A temporary file of a writer that died mid-write is removed after this long (a live writer
/// renames its file within moments).
const ABANDONED_TMP: Duration = Duration::from_secs(600);

/// Keeps the artifacts (`*.cwasm`) in `dir` at or under `max_bytes` in total, removing the
/// least recently used first (oldest modification time: a load refreshes it), and removes
/// abandoned temporary files. Other files are left alone. Returns the bytes kept.
fn prune(dir: &Path, max_bytes: u64) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let now = SystemTime::now();
    let mut artifacts = Vec::new();
    let mut total = 0u64;
    for e in entries.flatten() {
        // Not following symlinks: only regular files count and are removed.
        let Ok(meta) = e.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let name = e.file_name();
        let name = name.to_string_lossy();
        let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let ext = name.rsplit('.').next().unwrap_or_default();
        if ext.starts_with("tmp") && ext[3..].bytes().all(|b| b.is_ascii_digit()) {
            if now
                .duration_since(mtime)
                .is_ok_and(|age| age > ABANDONED_TMP)
            {
                let _ = fs::remove_file(e.path());
            }
        } else if ext == "cwasm" {
            total += meta.len();
            artifacts.push((mtime, meta.len(), e.path()));
        }
    }
    artifacts.sort_by_key(|(mtime, ..)| *mtime);
    for (_, len, path) in artifacts {
        if total <= max_bytes {
            break;
        }
        if fs::remove_file(&path).is_ok() {
            tracing::debug!(path = %path.display(), "wasm cache over its size limit: removed");
            total -= len;
        }
    }
    total
}

const MAGIC: &[u8; 8] = b"EDCWASM1";

impl DiskCache {
    /// Opens (or creates, mode 0700) the directory; `None`, with a warning, when it can't be
    /// trusted: it must belong to this user and not be writable by group or others.
    fn open(dir: &Path, rt: &Runtime, max_bytes: u64) -> Option<Self> {
        if let Err(e) = fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
        {
            tracing::warn!(dir = %dir.display(), err = %e, "wasm cache directory unusable; compiling instead");
            return None;
        }
        let meta = fs::metadata(dir).ok()?;
        let me = nix::unistd::geteuid().as_raw();
        if meta.uid() != me || meta.mode() & 0o022 != 0 {
            tracing::warn!(
                dir = %dir.display(),
                "wasm cache directory is not private to this user (owner {}, mode {:o}); not loading precompiled code from it",
                meta.uid(),
                meta.mode() & 0o7777
            );
            return None;
        }
        use std::hash::{Hash as _, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        rt.engine.precompile_compatibility_hash().hash(&mut h);
        Some(Self {
            dir: dir.to_owned(),
            engine: format!("{:016x}", h.finish()),
            max_bytes,
        })
    }

    fn path(&self, hash: &Hash, kind: Kind) -> PathBuf {
        let k = match kind {
            Kind::Core => "core",
            Kind::Component => "component",
        };
        self.dir.join(format!(
            "{}-{}.{k}.cwasm",
            blake3::Hash::from(*hash).to_hex(),
            self.engine
        ))
    }

    fn load(&self, rt: &Runtime, hash: &Hash, kind: Kind) -> Option<Unlinked> {
        let path = self.path(hash, kind);
        let bytes = fs::read(&path).ok()?;
        let verified = bytes.len() > 40
            && &bytes[..8] == MAGIC
            && bytes[8..40] == *blake3::hash(&bytes[40..]).as_bytes();
        if !verified {
            tracing::warn!(path = %path.display(), "corrupt precompiled module; compiling again");
            return None;
        }
        let payload = &bytes[40..];
        let loaded = deserialize(rt, kind, payload);
        match &loaded {
            // Recently used: the last to go when the cache is pruned.
            Ok(_) => {
                let _ = fs::File::options()
                    .append(true)
                    .open(&path)
                    .and_then(|f| f.set_modified(SystemTime::now()));
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), err = %e, "stale precompiled module; compiling again");
            }
        }
        loaded.ok()
    }

    fn store(&self, hash: &Hash, kind: Kind, u: &Unlinked) {
        let payload = match u {
            Unlinked::Core(m) => m.serialize(),
            Unlinked::Component(c) => c.serialize(),
        };
        let Ok(payload) = payload else { return };
        let path = self.path(hash, kind);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(MAGIC)?;
            f.write_all(blake3::hash(&payload).as_bytes())?;
            f.write_all(&payload)?;
            f.sync_data()?;
            fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            tracing::warn!(path = %path.display(), err = %e, "could not write the wasm cache");
        }
        prune(&self.dir, self.max_bytes);
    }
}

/// Loads wasmtime's serialized code.
#[allow(unsafe_code)]
fn deserialize(rt: &Runtime, kind: Kind, payload: &[u8]) -> wasmtime::Result<Unlinked> {
    // SAFETY: wasmtime requires the bytes to come from its own `serialize`, since they are
    // mapped as executable code. They do: the entry sits in a directory private to this user
    // (checked in `DiskCache::open`), was written by `DiskCache::store`, and its BLAKE3 matches
    // the payload (checked by the caller), so a truncated or corrupted file never gets here;
    // wasmtime itself then rejects artifacts of another version, CPU or configuration.
    unsafe {
        match kind {
            Kind::Core => Module::deserialize(&rt.engine, payload).map(Unlinked::Core),
            Kind::Component => Component::deserialize(&rt.engine, payload).map(Unlinked::Component),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, len: usize, age_secs: u64) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, vec![0u8; len]).unwrap();
        let f = fs::File::options().append(true).open(&p).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(age_secs))
            .unwrap();
        p
    }

    #[test]
    fn prune_removes_the_least_recently_used_artifacts_and_abandoned_tmp_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let oldest = file(d, "a-e.core.cwasm", 1000, 500);
        let old = file(d, "b-e.core.cwasm", 1000, 400);
        let mid = file(d, "c-e.component.cwasm", 1000, 300);
        let new = file(d, "d-e.core.cwasm", 1000, 10);
        let abandoned = file(d, "e-e.core.tmp123", 5000, 3600);
        let writing = file(d, "f-e.core.tmp456", 5000, 1);
        let other = file(d, "notes.txt", 9000, 9000);
        std::os::unix::fs::symlink(&other, d.join("g-e.core.cwasm")).unwrap();

        // Under the limit: only the abandoned temporary file goes.
        assert_eq!(prune(d, 10_000), 4000);
        assert!(!abandoned.exists() && writing.exists());
        assert!(oldest.exists() && old.exists() && mid.exists() && new.exists());

        // Over it: oldest first, until it fits.
        assert_eq!(prune(d, 2500), 2000);
        assert!(!oldest.exists() && !old.exists());
        assert!(mid.exists() && new.exists());
        // Files that are not artifacts, and symlinks, are never touched.
        assert!(writing.exists() && other.exists());
        assert!(d.join("g-e.core.cwasm").symlink_metadata().is_ok());

        // A limit below one artifact empties the cache of artifacts.
        assert_eq!(prune(d, 10), 0);
        assert!(!mid.exists() && !new.exists());
    }

    #[test]
    fn formats_are_detected() {
        assert_eq!(detect(b"\0asm\x01\0\0\0", "m").unwrap().0, Kind::Core);
        assert_eq!(
            detect(b"\0asm\x0d\0\x01\0", "c").unwrap().0,
            Kind::Component
        );
        assert_eq!(detect(b"  (module)", "t").unwrap().0, Kind::Core);
        assert_eq!(
            detect(b";; c\n(component)", "t").unwrap().0,
            Kind::Component
        );
        for (bytes, want) in [
            (&b"\x7fELF\x02\x01\x01"[..], "x is not a WebAssembly module"),
            (
                &b"\0asm\x02\0\0\0"[..],
                "unsupported WebAssembly binary version",
            ),
            (&b"\0asm"[..], "unsupported WebAssembly binary version"),
            (&b"(module (func (result i32)))"[..], ""),
            (
                &b"(module (func $f (bogus)))"[..],
                "invalid WebAssembly text",
            ),
            (&b""[..], "not a WebAssembly module"),
        ] {
            match detect(bytes, "x") {
                Ok(_) => assert!(want.is_empty(), "{bytes:?} accepted"),
                Err(e) => {
                    let e = e.to_string();
                    assert!(!want.is_empty() && e.contains(want), "{bytes:?}: {e}");
                    assert!(
                        e.starts_with("the wasm driver can't handle this container: x"),
                        "{e}"
                    );
                }
            }
        }
    }
}
