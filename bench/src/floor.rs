//! The bare floor of a native container start, in Rust: `clone` with the container's
//! namespaces, a private mount tree, the rootfs bound and `pivot_root`ed into, `/proc` mounted,
//! `exec` of the program, `wait`. No cgroups, no state, no checks — what any runtime has to
//! do at least. The child only makes raw system calls on data prepared before `clone`.
#![allow(unsafe_code)]

use std::ffi::{CString, c_char, c_int, c_void};
use std::path::Path;
use std::time::{Duration, Instant};

struct Args {
    rootfs: CString,
    slash: CString,
    dot: CString,
    proc_src: CString,
    proc_dst: CString,
    proc_type: CString,
    program: CString,
    argv: [*const c_char; 2],
    envp: [*const c_char; 1],
}

extern "C" fn child(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `Args` the parent passed to clone; it outlives the child's use of
    // it (the parent waits for the child, and the child execs or exits).
    let a = unsafe { &*(arg as *const Args) };
    let null = std::ptr::null::<c_void>();
    // SAFETY: every pointer is a NUL-terminated string prepared before clone, or null where
    // the system call allows it; only raw system calls follow (no allocation, no locks).
    unsafe {
        if libc::mount(
            std::ptr::null(),
            a.slash.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            null,
        ) != 0
            || libc::mount(
                a.rootfs.as_ptr(),
                a.rootfs.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                null,
            ) != 0
            || libc::chdir(a.rootfs.as_ptr()) != 0
            || libc::syscall(libc::SYS_pivot_root, a.dot.as_ptr(), a.dot.as_ptr()) != 0
            || libc::umount2(a.dot.as_ptr(), libc::MNT_DETACH) != 0
            || libc::mount(
                a.proc_src.as_ptr(),
                a.proc_dst.as_ptr(),
                a.proc_type.as_ptr(),
                0,
                null,
            ) != 0
            || libc::chdir(a.slash.as_ptr()) != 0
        {
            libc::_exit(126);
        }
        libc::execve(a.program.as_ptr(), a.argv.as_ptr(), a.envp.as_ptr());
        libc::_exit(127)
    }
}

/// One floor run of `program` in `rootfs`; `net` adds a network namespace. Returns the time
/// from clone to the reaped exit.
pub fn run(rootfs: &Path, program: &str, net: bool) -> Result<Duration, String> {
    let c = |s: &str| CString::new(s).map_err(|e| e.to_string());
    let mut a = Box::new(Args {
        rootfs: c(rootfs.to_str().ok_or("rootfs path")?)?,
        slash: c("/")?,
        dot: c(".")?,
        proc_src: c("proc")?,
        proc_dst: c("/proc")?,
        proc_type: c("proc")?,
        program: c(program)?,
        argv: [std::ptr::null(); 2],
        envp: [std::ptr::null()],
    });
    a.argv[0] = a.program.as_ptr();
    let mut stack = vec![0u8; 64 * 1024];
    let mut flags =
        libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    if net {
        flags |= libc::CLONE_NEWNET;
    }
    let t = Instant::now();
    // SAFETY: the stack is ours and outlives the child (we wait for it before returning), it
    // grows down so we pass its top (16-byte aligned); `a` stays alive until after waitpid.
    let pid = unsafe {
        let top = stack.as_mut_ptr().add(stack.len()) as usize & !15;
        libc::clone(
            child,
            top as *mut c_void,
            flags | libc::SIGCHLD,
            &mut *a as *mut Args as *mut c_void,
        )
    };
    if pid < 0 {
        return Err(format!("clone: {}", std::io::Error::last_os_error()));
    }
    let mut status = 0;
    // SAFETY: waiting for the child we just cloned, with a valid status pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    let elapsed = t.elapsed();
    drop(stack);
    drop(a);
    if r != pid {
        return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("the floor's child failed (status {status:#x})"));
    }
    Ok(elapsed)
}
