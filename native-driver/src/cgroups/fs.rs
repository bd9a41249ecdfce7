//! The cgroup filesystem seam: the real one, and an in-memory fake for unit tests.

use std::io;
use std::path::{Path, PathBuf};

/// File operations on a cgroup filesystem. Injected so that the v1 and v2 logic runs against
/// fixture directories on any host.
pub(crate) trait CgroupFs: Send + Sync {
    fn read(&self, path: &Path) -> io::Result<String>;
    fn write(&self, path: &Path, data: &str) -> io::Result<()>;
    /// Creates one directory; `AlreadyExists` when it is there.
    fn mkdir(&self, path: &Path) -> io::Result<()>;
    /// Removes one cgroup directory (its control files go with it).
    fn rmdir(&self, path: &Path) -> io::Result<()>;
    fn exists(&self, path: &Path) -> bool;
    /// Child directories (child cgroups).
    fn subdirs(&self, path: &Path) -> io::Result<Vec<PathBuf>>;
    /// Marks a directory as created by execdriver (an xattr on cgroupfs).
    fn mark(&self, path: &Path) -> io::Result<()>;
    /// Whether [`mark`](Self::mark) was set on the directory.
    fn is_marked(&self, path: &Path) -> bool;
    /// Marks a container's cgroup as shared: a second container joined it.
    fn mark_shared(&self, path: &Path) -> io::Result<()>;
    /// Whether [`mark_shared`](Self::mark_shared) was set on the directory.
    fn is_shared(&self, path: &Path) -> bool;
    /// Loads `program` as a cgroup v2 device filter and attaches it to the directory.
    fn attach_device_filter(
        &self,
        dir: &Path,
        program: &[super::devices_bpf::Insn],
    ) -> io::Result<()>;
}

/// The real cgroup filesystem.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RealFs;

const MARK: &std::ffi::CStr = c"trusted.execdriver";
const SHARED: &std::ffi::CStr = c"trusted.execdriver.shared";

impl CgroupFs for RealFs {
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn write(&self, path: &Path, data: &str) -> io::Result<()> {
        // cgroupfs wants one write(2) per value; open without truncating or creating.
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        f.write_all(data.as_bytes())
    }

    fn mkdir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }

    fn rmdir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn subdirs(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(path)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                out.push(e.path());
            }
        }
        Ok(out)
    }

    fn mark(&self, path: &Path) -> io::Result<()> {
        let p = crate::plan::paths::cpath(path, "cgroup").map_err(io::Error::other)?;
        crate::sys::setxattr(&p, MARK, b"1").map_err(io::Error::from_raw_os_error)
    }

    fn is_marked(&self, path: &Path) -> bool {
        crate::plan::paths::cpath(path, "cgroup").is_ok_and(|p| crate::sys::has_xattr(&p, MARK))
    }

    fn mark_shared(&self, path: &Path) -> io::Result<()> {
        let p = crate::plan::paths::cpath(path, "cgroup").map_err(io::Error::other)?;
        crate::sys::setxattr(&p, SHARED, b"1").map_err(io::Error::from_raw_os_error)
    }

    fn is_shared(&self, path: &Path) -> bool {
        crate::plan::paths::cpath(path, "cgroup").is_ok_and(|p| crate::sys::has_xattr(&p, SHARED))
    }

    fn attach_device_filter(
        &self,
        dir: &Path,
        program: &[super::devices_bpf::Insn],
    ) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let insns: Vec<[u8; 8]> = program.iter().map(|i| i.to_bytes()).collect();
        let prog =
            crate::sys::bpf_load_device_program(&insns).map_err(io::Error::from_raw_os_error)?;
        let cg = std::fs::File::open(dir)?;
        // The attachment holds the program; our fds can close.
        crate::sys::bpf_attach_device_program(cg.as_raw_fd(), prog.as_raw_fd())
            .map_err(io::Error::from_raw_os_error)
    }
}

/// An in-memory cgroupfs for tests: a real temporary directory whose `rmdir` removes the
/// control files too, and whose marks live in memory.
#[cfg(test)]
pub(crate) mod fake {
    use std::collections::HashSet;
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    pub(crate) struct FakeFs {
        pub marks: Mutex<HashSet<PathBuf>>,
        pub shared: Mutex<HashSet<PathBuf>>,
        pub writes: Mutex<Vec<(PathBuf, String)>>,
        pub filters: Mutex<Vec<(PathBuf, usize)>>,
        /// (file name, errno): the next write to such a file fails with errno, once.
        pub fail_once: Mutex<Vec<(String, i32)>>,
    }

    impl CgroupFs for FakeFs {
        fn read(&self, path: &Path) -> io::Result<String> {
            std::fs::read_to_string(path)
        }

        fn write(&self, path: &Path, data: &str) -> io::Result<()> {
            if !path.parent().is_some_and(Path::exists) {
                return Err(io::Error::from_raw_os_error(libc::ENOENT));
            }
            {
                let mut fail = self.fail_once.lock().unwrap();
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if let Some(i) = fail.iter().position(|(f, _)| f == name) {
                    let (_, errno) = fail.remove(i);
                    return Err(io::Error::from_raw_os_error(errno));
                }
            }
            self.writes
                .lock()
                .unwrap()
                .push((path.to_owned(), data.to_owned()));
            std::fs::write(path, data)
        }

        fn mkdir(&self, path: &Path) -> io::Result<()> {
            std::fs::create_dir(path)?;
            // A new cgroup comes with its control files.
            std::fs::write(path.join("cgroup.procs"), "")?;
            Ok(())
        }

        fn rmdir(&self, path: &Path) -> io::Result<()> {
            if !self.subdirs(path)?.is_empty() {
                return Err(io::Error::from_raw_os_error(libc::EBUSY));
            }
            let procs = std::fs::read_to_string(path.join("cgroup.procs")).unwrap_or_default();
            if !procs.trim().is_empty() {
                return Err(io::Error::from_raw_os_error(libc::EBUSY));
            }
            std::fs::remove_dir_all(path)
        }

        fn exists(&self, path: &Path) -> bool {
            path.exists()
        }

        fn subdirs(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
            RealFs.subdirs(path)
        }

        fn mark(&self, path: &Path) -> io::Result<()> {
            self.marks.lock().unwrap().insert(path.to_owned());
            Ok(())
        }

        fn is_marked(&self, path: &Path) -> bool {
            self.marks.lock().unwrap().contains(path)
        }

        fn mark_shared(&self, path: &Path) -> io::Result<()> {
            self.shared.lock().unwrap().insert(path.to_owned());
            Ok(())
        }

        fn is_shared(&self, path: &Path) -> bool {
            self.shared.lock().unwrap().contains(path)
        }

        fn attach_device_filter(
            &self,
            dir: &Path,
            program: &[crate::cgroups::devices_bpf::Insn],
        ) -> io::Result<()> {
            self.filters
                .lock()
                .unwrap()
                .push((dir.to_owned(), program.len()));
            Ok(())
        }
    }
}
