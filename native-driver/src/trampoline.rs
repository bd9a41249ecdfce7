//! Host binary protection (the CVE-2019-5736 class).
//!
//! A container's init, and every process exec'd into a container, starts as a copy of the
//! engine: its `/proc/self/exe` is the engine's executable on the host. If such a process
//! exec'd container-controlled content directly, a `#!/proc/self/exe` script would make the
//! kernel run the engine's own binary inside the container, where the image's `ld.so` and
//! `/etc/ld.so.preload` load the attacker's code with an fd of `/proc/self/exe` — the host
//! file, writable once the engine exits.
//!
//! So these processes never exec container content themselves. They first exec the *exec
//! trampoline* (`trampoline/trampoline.c`, a freestanding static program of a few hundred
//! bytes) from a memfd that is sealed against every change (`F_SEAL_WRITE`, `SHRINK`, `GROW`,
//! `EXEC`, `SEAL`) and read-only, with `execveat(fd, "", AT_EMPTY_PATH)`; the trampoline then
//! execs the program. From the trampoline on, `/proc/self/exe` is the sealed memfd: a process
//! that opens it gets a file no write can change, and the engine's file is never reachable.
//! One memfd serves every container of the process (it cannot change, so sharing is safe); it
//! costs one extra `execve` of a static binary per start (see BENCHMARKS.md).

use std::ffi::{CStr, CString};
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

use execdriver_api::DriverError;
use libc::c_char;

use crate::sys;

/// The trampoline program, built by `build.rs`.
static PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/trampoline"));

/// `MFD_EXEC` (Linux 6.3): ask for an executable memfd where `vm.memfd_noexec` would
/// otherwise make it non-executable.
const MFD_EXEC: libc::c_uint = 0x10;

static SEALED: OnceLock<Result<OwnedFd, i32>> = OnceLock::new();

/// The sealed trampoline's fd (close-on-exec, ≥ 3), made once per process.
///
/// # Errors
/// `Sys` when the memfd cannot be created, written or sealed.
pub(crate) fn fd() -> Result<RawFd, DriverError> {
    match SEALED.get_or_init(seal) {
        Ok(fd) => Ok(fd.as_raw_fd()),
        Err(e) => Err(DriverError::sys(
            "seal the exec trampoline in a memfd (host binary protection)",
            *e,
        )),
    }
}

fn seal() -> Result<OwnedFd, i32> {
    let base = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    let fd = match sys::memfd_create(c"execdriver-trampoline", base | MFD_EXEC) {
        Err(libc::EINVAL) => sys::memfd_create(c"execdriver-trampoline", base)?,
        r => r?,
    };
    let fd = crate::sys::spawn::above_stdio(fd).map_err(|e| e.raw_os_error().unwrap_or(0))?;
    let mut file = std::fs::File::from(fd);
    file.write_all(PROGRAM)
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    let fd = OwnedFd::from(file);
    sys::fchmod(fd.as_raw_fd(), 0o555)?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    match sys::fcntl(
        fd.as_raw_fd(),
        libc::F_ADD_SEALS,
        (seals | libc::F_SEAL_EXEC) as libc::c_long,
    ) {
        // F_SEAL_EXEC is Linux 6.3; without it the mode can still not be made writable
        // through a sealed-for-write file.
        Err(libc::EINVAL) => {
            sys::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals as libc::c_long)?;
        }
        r => {
            r?;
        }
    }
    let got = sys::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS, 0)? as libc::c_int;
    if got & seals != seals {
        return Err(libc::EPERM);
    }
    Ok(fd)
}

/// The trampoline's argv for each program path the child may pick: `[report, path, argv…,
/// NULL]`, prepared before `clone` (the child may not allocate).
#[derive(Debug)]
pub(crate) struct TrampolineArgv {
    /// Keeps the report fd's digits alive.
    #[allow(dead_code)]
    report: CString,
    /// One NULL-terminated vector per candidate path, in the candidates' order.
    vectors: Vec<crate::sys::CPtrs>,
}

impl TrampolineArgv {
    /// `report`: the fd the trampoline sends an execve failure on (it is made close-on-exec
    /// before the program's exec), or `None`. `paths` point into strings that outlive this
    /// value; `argv` is the program's NULL-terminated argv.
    pub fn new(report: Option<RawFd>, paths: &[CString], argv: &[*const c_char]) -> Self {
        let report = match report {
            Some(fd) => CString::new(fd.to_string()).unwrap_or_default(),
            None => c"-".to_owned(),
        };
        let vectors = paths
            .iter()
            .map(|p| {
                let mut v = Vec::with_capacity(argv.len() + 2);
                v.push(report.as_ptr());
                v.push(p.as_ptr());
                v.extend_from_slice(argv);
                if v.last().is_none_or(|l| !l.is_null()) {
                    v.push(std::ptr::null());
                }
                crate::sys::CPtrs::from_vec(v)
            })
            .collect();
        Self { report, vectors }
    }

    /// The vector for the candidate at `index`.
    pub fn get(&self, index: usize) -> Option<&[*const c_char]> {
        self.vectors.get(index).map(|v| &**v)
    }
}

/// What a child execs through the trampoline: the sealed fd and the prepared vectors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exec<'a> {
    pub fd: RawFd,
    pub argv: &'a TrampolineArgv,
}

impl Exec<'_> {
    /// Execs the candidate `index` through the trampoline; returns only on failure.
    pub fn exec(&self, index: usize, envp: &[*const c_char]) -> sys::Errno {
        match self.argv.get(index) {
            Some(argv) => sys::fexecve(self.fd, argv, envp),
            None => libc::EINVAL,
        }
    }
}

/// The path in `paths` that `p` is, by address (the child knows which candidate it picked).
pub(crate) fn index_of(paths: &[CString], p: &CStr) -> Option<usize> {
    paths
        .iter()
        .position(|c| std::ptr::eq(c.as_ptr(), p.as_ptr()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::child::{Step, kind};

    #[test]
    fn the_failure_record_matches_the_drivers_message() {
        // trampoline.c writes {TRAMPOLINE_KIND_ERROR, TRAMPOLINE_STEP_EXECVE, errno, 0}.
        let src = include_str!("../trampoline/trampoline.c");
        assert!(src.contains(&format!("#define TRAMPOLINE_KIND_ERROR {}u", kind::ERROR)));
        assert!(src.contains(&format!(
            "#define TRAMPOLINE_STEP_EXECVE {}u",
            Step::Execve as u32
        )));
    }

    #[test]
    fn the_program_is_a_small_static_elf() {
        assert_eq!(&PROGRAM[..4], b"\x7fELF");
        assert!(PROGRAM.len() < 64 * 1024, "{} bytes", PROGRAM.len());
    }

    #[test]
    fn the_memfd_is_sealed_and_read_only() {
        let fd = fd().expect("seal");
        let seals = sys::fcntl(fd, libc::F_GET_SEALS, 0).unwrap() as libc::c_int;
        assert_ne!(seals & libc::F_SEAL_WRITE, 0);
        assert_ne!(seals & libc::F_SEAL_SEAL, 0);
        // Even a writable open of the file refuses to change it.
        let path = format!("/proc/self/fd/{fd}");
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open for writing");
        let err = w.write_all(b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), PROGRAM);
    }

    #[test]
    fn vectors_put_the_report_fd_and_path_first() {
        let paths = [c"/bin/a".to_owned(), c"/usr/bin/a".to_owned()];
        let args = [c"a".to_owned(), c"-x".to_owned()];
        let mut argv: Vec<*const c_char> = args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let t = TrampolineArgv::new(Some(7), &paths, &argv);
        let v = t.get(1).unwrap();
        assert_eq!(v.len(), 5);
        assert_eq!(t.report.as_bytes(), b"7");
        assert_eq!(v[0], t.report.as_ptr());
        assert_eq!(v[1], paths[1].as_ptr());
        assert_eq!(&v[2..4], &argv[..2]);
        assert!(v[4].is_null());
        assert!(t.get(2).is_none());
        let hook = TrampolineArgv::new(None, &paths[..1], &argv);
        assert_eq!(hook.report.as_bytes(), b"-");
        assert_eq!(index_of(&paths, &paths[1]), Some(1));
        assert_eq!(index_of(&paths, c"/usr/bin/a"), None);
    }
}
