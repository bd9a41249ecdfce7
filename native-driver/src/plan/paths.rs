//! Container paths, checked in the parent and resolved in the child inside the rootfs.

use std::ffi::CString;
use std::path::{Component, Path};

use execdriver_api::DriverError;

/// A path inside the container, pre-split so that the child can resolve it component by
/// component with `openat2(RESOLVE_IN_ROOT)` (symlinks can't lead out of the rootfs) and create
/// missing components, without allocating.
#[derive(Debug, Clone)]
pub(crate) struct InRootPath {
    /// The path relative to the rootfs, for messages ("/proc").
    pub display: String,
    /// Each prefix relative to the rootfs: "a", "a/b", "a/b/c". Empty for the root itself.
    pub prefixes: Vec<CString>,
    /// The last component of each prefix: "a", "b", "c".
    pub names: Vec<CString>,
}

impl InRootPath {
    /// Checks an absolute container path: no `..`, no NUL. `field` names it in errors.
    pub fn parse(path: &Path, field: &str) -> Result<Self, DriverError> {
        if !path.is_absolute() {
            return Err(DriverError::invalid_spec(
                field,
                format!("{} is not an absolute path", path.display()),
            ));
        }
        let mut prefixes = Vec::new();
        let mut names = Vec::new();
        let mut acc = String::new();
        for comp in path.components() {
            match comp {
                Component::RootDir | Component::CurDir => {}
                Component::ParentDir => {
                    return Err(DriverError::invalid_spec(
                        field,
                        format!(
                            "{} contains '..', which could leave the rootfs",
                            path.display()
                        ),
                    ));
                }
                Component::Prefix(_) => {
                    return Err(DriverError::invalid_spec(field, "has a path prefix"));
                }
                Component::Normal(name) => {
                    let name = name.to_str().ok_or_else(|| {
                        DriverError::invalid_spec(field, format!("{} is not UTF-8", path.display()))
                    })?;
                    if !acc.is_empty() {
                        acc.push('/');
                    }
                    acc.push_str(name);
                    prefixes.push(cstring(&acc, field)?);
                    names.push(cstring(name, field)?);
                }
            }
        }
        Ok(Self {
            display: format!("/{acc}"),
            prefixes,
            names,
        })
    }

    /// True for the rootfs itself.
    pub fn is_root(&self) -> bool {
        self.prefixes.is_empty()
    }

    /// This path joined with one more component.
    pub fn join(&self, name: &str, field: &str) -> Result<Self, DriverError> {
        Self::parse(&Path::new(&self.display).join(name), field)
    }
}

/// A C string from Rust text; a NUL inside is an error naming `field`.
pub(crate) fn cstring(s: &str, field: &str) -> Result<CString, DriverError> {
    CString::new(s).map_err(|_| DriverError::invalid_spec(field, "contains a NUL byte"))
}

/// A C string from a path.
pub(crate) fn cpath(p: &Path, field: &str) -> Result<CString, DriverError> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| DriverError::invalid_spec(field, "contains a NUL byte"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_normalises() {
        let p = InRootPath::parse(Path::new("/sys/fs//cgroup/./x"), "f").unwrap();
        assert_eq!(p.display, "/sys/fs/cgroup/x");
        let prefixes: Vec<_> = p.prefixes.iter().map(|c| c.to_str().unwrap()).collect();
        assert_eq!(
            prefixes,
            ["sys", "sys/fs", "sys/fs/cgroup", "sys/fs/cgroup/x"]
        );
        let names: Vec<_> = p.names.iter().map(|c| c.to_str().unwrap()).collect();
        assert_eq!(names, ["sys", "fs", "cgroup", "x"]);
        assert!(InRootPath::parse(Path::new("/"), "f").unwrap().is_root());
    }

    #[test]
    fn rejects_escapes_and_relative_paths() {
        for (p, want) in [
            ("/../etc", "contains '..'"),
            ("/a/../../b", "contains '..'"),
            ("proc", "not an absolute path"),
            ("", "not an absolute path"),
        ] {
            let err = InRootPath::parse(Path::new(p), "mounts[3].destination").unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.starts_with("invalid spec: mounts[3].destination: "),
                "{msg}"
            );
            assert!(msg.contains(want), "{p}: {msg}");
        }
    }
}
