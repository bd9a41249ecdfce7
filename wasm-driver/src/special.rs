//! Modules open regular files, directories and symlinks to them — never the image's FIFOs,
//! sockets or device nodes.
//!
//! The rootfs is opened by the engine, usually root and without a seccomp filter, so whatever
//! node an image ships is opened with the engine's rights: a device node would be the host's
//! disk or `/dev/kmsg` (the nodev view in `nodev` already makes the kernel refuse those), a
//! FIFO blocks the instance's thread in `open` where neither kill nor pause can reach it, and
//! a socket file is a host socket. wasmtime-wasi has no hook in its open path, so both WASI
//! entry points that open by path — preview 1's `path_open` and preview 2's and WASI 0.3's
//! `descriptor.open-at` — are shadowed in the linkers by a guard that looks at the node first
//! (`stat` without opening it) and refuses the special ones with `EACCES` / `access`, logged;
//! the open itself then runs as wasmtime-wasi does it, and what it opened is checked again, so
//! a node swapped in between is closed and refused too. The one thing the second look cannot
//! undo is an `open` that blocks on a FIFO swapped in by *another* process (a host process or
//! another container sharing a volume) between the two looks; a module alone can't race it —
//! WASI has no `mkfifo` and the instance is single-threaded.

use wasmtime::component::Resource;
use wasmtime::{Caller, Extern, Linker};
use wasmtime_wasi::filesystem::WasiFilesystemView as _;
use wasmtime_wasi::p1::types as p1t;
use wasmtime_wasi::p1::wasi_snapshot_preview1::{self as p1, WasiSnapshotPreview1 as _};
use wasmtime_wasi::p2::bindings::filesystem::types::{
    Descriptor, DescriptorFlags, DescriptorType, ErrorCode, HostDescriptor as _, OpenFlags,
    PathFlags,
};
use wiggle::{GuestMemory, GuestPtr};

use crate::engine::{CompCtx, CoreCtx};

/// WASI preview 1's `errno::acces`.
const P1_EACCES: i32 = 2;

/// The interface wasmtime-wasi 48 defines `wasi:filesystem/types` as.
const P2_TYPES: &str = "wasi:filesystem/types@0.2.12";

fn refused(kind: &str, path: &str, stage: &str) {
    tracing::warn!(
        path,
        kind,
        stage,
        "wasm module refused an open of a special file (only regular files, directories and symlinks open)"
    );
}

fn p1_special(t: p1t::Filetype) -> Option<&'static str> {
    match t {
        p1t::Filetype::Directory | p1t::Filetype::RegularFile | p1t::Filetype::SymbolicLink => None,
        p1t::Filetype::BlockDevice => Some("block device"),
        p1t::Filetype::CharacterDevice => Some("character device"),
        p1t::Filetype::SocketDgram | p1t::Filetype::SocketStream => Some("socket"),
        // wasmtime-wasi reports FIFOs (and anything else it can't name) as unknown.
        p1t::Filetype::Unknown => Some("fifo or other special file"),
    }
}

fn p2_special(t: DescriptorType) -> Option<&'static str> {
    match t {
        DescriptorType::Directory | DescriptorType::RegularFile | DescriptorType::SymbolicLink => {
            None
        }
        DescriptorType::BlockDevice => Some("block device"),
        DescriptorType::CharacterDevice => Some("character device"),
        DescriptorType::Socket => Some("socket"),
        DescriptorType::Fifo => Some("fifo"),
        DescriptorType::Unknown => Some("unknown special file"),
    }
}

/// Shadows preview 1's `path_open` in `linker` (after wasmtime-wasi's functions are in it).
pub(crate) fn guard_p1(linker: &mut Linker<CoreCtx>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let r = linker
        .func_wrap_async(
            "wasi_snapshot_preview1",
            "path_open",
            |mut caller: Caller<'_, CoreCtx>,
             (dirfd, dirflags, path, path_len, oflags, base, inheriting, fdflags, out): (
                i32,
                i32,
                i32,
                i32,
                i32,
                i64,
                i64,
                i32,
                i32,
            )| {
                Box::new(async move {
                    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
                        return Err(wasmtime::Error::msg("missing required memory export"));
                    };
                    let (bytes, ctx) = memory.data_and_store_mut(&mut caller);
                    let mut mem = GuestMemory::Unshared(bytes);
                    let wasi = &mut ctx.wasi;
                    let name = GuestPtr::<str>::new((path as u32, path_len as u32));
                    // First look: what the path names now, without opening it. Bad arguments and
                    // missing paths fall through to the real call, which reports them.
                    if let Ok(flags) = p1t::Lookupflags::try_from(dirflags)
                        && let Ok(st) = wasi
                            .path_filestat_get(&mut mem, p1t::Fd::from(dirfd as u32), flags, name)
                            .await
                        && let Some(kind) = p1_special(st.filetype)
                    {
                        refused(kind, &mem_string(&mem, path, path_len), "before open");
                        return Ok(P1_EACCES);
                    }
                    let errno = p1::path_open(
                        &mut *wasi, &mut mem, dirfd, dirflags, path, path_len, oflags, base,
                        inheriting, fdflags, out,
                    )
                    .await?;
                    if errno != 0 {
                        return Ok(errno);
                    }
                    // Second look, at what was opened.
                    let Ok(fd) = mem.read(GuestPtr::<p1t::Fd>::new(out as u32)) else {
                        return Ok(errno);
                    };
                    if let Ok(st) = wasi.fd_filestat_get(&mut mem, fd).await
                        && let Some(kind) = p1_special(st.filetype)
                    {
                        let _ = wasi.fd_close(&mut mem, fd).await;
                        refused(kind, &mem_string(&mem, path, path_len), "after open");
                        return Ok(P1_EACCES);
                    }
                    Ok(errno)
                })
            },
        )
        .map(|_| ());
    linker.allow_shadowing(false);
    r
}

/// The guest's path argument, for the log line.
fn mem_string(mem: &GuestMemory<'_>, at: i32, len: i32) -> String {
    let bytes: &[u8] = match mem {
        GuestMemory::Unshared(b) => b,
        GuestMemory::Shared(_) => &[],
    };
    let (start, len) = (at as u32 as usize, len as u32 as usize);
    match bytes.get(start..start.saturating_add(len)) {
        Some(b) => String::from_utf8_lossy(b).into_owned(),
        None => "<out of bounds>".to_owned(),
    }
}

type OpenAtArgs = (
    Resource<Descriptor>,
    PathFlags,
    String,
    OpenFlags,
    DescriptorFlags,
);

/// Shadows preview 2's `[method]descriptor.open-at` in `linker` (after wasmtime-wasi's).
pub(crate) fn guard_p2(linker: &mut wasmtime::component::Linker<CompCtx>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let r = linker.instance(P2_TYPES).and_then(|mut types| {
        types.func_wrap_async(
            "[method]descriptor.open-at",
            |mut store, (dir, path_flags, path, oflags, flags): OpenAtArgs| {
                Box::new(async move {
                    let mut fs = store.data_mut().filesystem();
                    let borrow = || Resource::<Descriptor>::new_borrow(dir.rep());
                    if let Ok(st) = fs.stat_at(borrow(), path_flags, path.clone()).await
                        && let Some(kind) = p2_special(st.type_)
                    {
                        refused(kind, &path, "before open");
                        return Ok((Err(ErrorCode::Access),));
                    }
                    let opened = match fs
                        .open_at(borrow(), path_flags, path.clone(), oflags, flags)
                        .await
                    {
                        Ok(fd) => fd,
                        Err(e) => return Ok((Err(e.downcast()?),)),
                    };
                    let again = Resource::<Descriptor>::new_borrow(opened.rep());
                    match fs.get_type(again).await {
                        Ok(t) => match p2_special(t) {
                            Some(kind) => {
                                fs.table.delete(opened)?;
                                refused(kind, &path, "after open");
                                Ok((Err(ErrorCode::Access),))
                            }
                            None => Ok((Ok(opened),)),
                        },
                        Err(_) => Ok((Ok(opened),)),
                    }
                })
            },
        )
    });
    linker.allow_shadowing(false);
    r
}

/// The interface wasmtime-wasi 48 defines WASI 0.3's `wasi:filesystem/types` as.
const P3_TYPES: &str = "wasi:filesystem/types@0.3.0";

mod p3t {
    pub(super) use wasmtime_wasi::p3::bindings::filesystem::types::{
        Descriptor, DescriptorFlags, DescriptorType, ErrorCode, HostDescriptorWithStore, OpenFlags,
        PathFlags,
    };
}

fn p3_special(t: &p3t::DescriptorType) -> Option<&'static str> {
    use p3t::DescriptorType as T;
    match t {
        T::Directory | T::RegularFile | T::SymbolicLink => None,
        T::BlockDevice => Some("block device"),
        T::CharacterDevice => Some("character device"),
        T::Socket => Some("socket"),
        T::Fifo => Some("fifo"),
        T::Other(_) => Some("unknown special file"),
    }
}

type P3OpenAtArgs = (
    Resource<p3t::Descriptor>,
    p3t::PathFlags,
    String,
    p3t::OpenFlags,
    p3t::DescriptorFlags,
);

fn p3_filesystem(c: &mut CompCtx) -> wasmtime_wasi::filesystem::WasiFilesystemCtxView<'_> {
    c.filesystem()
}

/// Shadows WASI 0.3's `[method]descriptor.open-at` in `linker` (after wasmtime-wasi's), as
/// [`guard_p2`] does for preview 2: a special node is refused before and after the open.
pub(crate) fn guard_p3(linker: &mut wasmtime::component::Linker<CompCtx>) -> wasmtime::Result<()> {
    use wasmtime_wasi::filesystem::WasiFilesystem;
    type Fs = WasiFilesystem;
    linker.allow_shadowing(true);
    let r = linker.instance(P3_TYPES).and_then(|mut types| {
        types.func_wrap_concurrent(
            "[method]descriptor.open-at",
            |store, (dir, path_flags, path, oflags, flags): P3OpenAtArgs| {
                Box::pin(async move {
                    let fs = store.with_getter::<Fs>(p3_filesystem);
                    let borrow = || Resource::<p3t::Descriptor>::new_borrow(dir.rep());
                    if let Ok(st) = <Fs as p3t::HostDescriptorWithStore<CompCtx>>::stat_at(
                        &fs,
                        borrow(),
                        path_flags,
                        path.clone(),
                    )
                    .await
                        && let Some(kind) = p3_special(&st.type_)
                    {
                        refused(kind, &path, "before open");
                        return Ok((Err(p3t::ErrorCode::Access),));
                    }
                    let opened = match <Fs as p3t::HostDescriptorWithStore<CompCtx>>::open_at(
                        &fs,
                        borrow(),
                        path_flags,
                        path.clone(),
                        oflags,
                        flags,
                    )
                    .await
                    {
                        Ok(fd) => fd,
                        Err(e) => return Ok((Err(e.downcast()?),)),
                    };
                    let again = Resource::<p3t::Descriptor>::new_borrow(opened.rep());
                    match <Fs as p3t::HostDescriptorWithStore<CompCtx>>::get_type(&fs, again).await
                    {
                        Ok(t) => match p3_special(&t) {
                            Some(kind) => {
                                store.with(|mut s| s.get().table.delete(opened))?;
                                refused(kind, &path, "after open");
                                Ok((Err(p3t::ErrorCode::Access),))
                            }
                            None => Ok((Ok(opened),)),
                        },
                        Err(_) => Ok((Ok(opened),)),
                    }
                })
            },
        )
    });
    linker.allow_shadowing(false);
    r
}
