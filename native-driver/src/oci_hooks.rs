//! OCI hooks (`spec.hooks`): external programs run at the lifecycle points of the OCI runtime
//! spec, with the container's state JSON on stdin. They run in addition to the in-process
//! callback lists.
//!
//! | hook | when | where |
//! |---|---|---|
//! | `prestart` (deprecated), `createRuntime` | namespaces exist, before `pivot_root` | the engine's namespaces |
//! | `createContainer` | after `createRuntime`, before `pivot_root` | the container's namespaces |
//! | `startContainer` | after the pre_start callbacks, before the program execs | the container's namespaces |
//! | `poststart` | after the program started | the engine's namespaces |
//! | `poststop` | after the container is gone | the engine's namespaces |
//!
//! A failing (non-zero, timed out, not startable) hook of the first four fails the start: the
//! container is torn down and the `poststop` hooks run. `poststart` and `poststop` failures are
//! logged and change nothing.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use execdriver_api::oci_spec::runtime::{Hook, Spec};
use execdriver_api::{ContainerId, DriverError, HookStage};

use crate::plan::paths::{cpath, cstring};
use crate::sys;
use crate::trampoline::{self, Exec, TrampolineArgv};

/// Where a hook that runs in the container's namespaces runs: the namespaces of the init
/// behind `pidfd` (`flags`), and `cwd` in its mount namespace — the rootfs before `pivot_root`
/// (`createContainer`, as runc), `None` for the namespace's root after it (`startContainer`).
#[derive(Clone, Copy)]
pub(crate) struct InContainer<'a> {
    pub pidfd: &'a OwnedFd,
    pub flags: libc::c_int,
    pub cwd: Option<&'a std::ffi::CStr>,
    /// The container's seccomp filter, loaded before the hook execs (`startContainer` hooks:
    /// runc runs them from its init after the filter is in place).
    pub seccomp: Option<&'a crate::seccomp::SeccompPlan>,
}

/// One hook, ready to run.
#[derive(Debug)]
pub(crate) struct OciHook {
    /// `hooks.createRuntime[0]`, for messages.
    name: String,
    path: PathBuf,
    /// Keeps the strings `tramp` points into alive.
    #[allow(dead_code)]
    cpath: CString,
    args: Vec<String>,
    env: Vec<(String, String)>,
    #[allow(dead_code)]
    c_args: Vec<CString>,
    #[allow(dead_code)]
    argv: crate::sys::CPtrs,
    #[allow(dead_code)]
    c_env: Vec<CString>,
    envp: crate::sys::CPtrs,
    tramp: TrampolineArgv,
    timeout: Option<Duration>,
}

/// Every hook of a spec.
#[derive(Debug, Default)]
pub(crate) struct OciHooks {
    pub prestart: Vec<OciHook>,
    pub create_runtime: Vec<OciHook>,
    pub create_container: Vec<OciHook>,
    pub start_container: Vec<OciHook>,
    pub poststart: Vec<OciHook>,
    pub poststop: Vec<OciHook>,
}

/// The OCI state document given to hooks.
pub(crate) struct OciState<'a> {
    pub id: &'a ContainerId,
    pub status: &'static str,
    pub pid: Option<i32>,
    pub bundle: &'a std::path::Path,
    pub annotations: &'a BTreeMap<String, String>,
}

impl OciState<'_> {
    pub fn json(&self) -> String {
        let mut v = serde_json::json!({
            "ociVersion": "1.0.2",
            "id": self.id,
            "status": self.status,
            "bundle": self.bundle,
            "annotations": self.annotations,
        });
        if let Some(pid) = self.pid {
            v["pid"] = pid.into();
        }
        v.to_string()
    }
}

impl OciHooks {
    /// Validates `spec.hooks`: absolute paths, `KEY=VALUE` env, positive timeouts.
    pub fn from_spec(spec: &Spec) -> Result<Self, DriverError> {
        let Some(h) = spec.hooks().as_ref() else {
            return Ok(Self::default());
        };
        let list = |v: &Option<Vec<Hook>>, name: &str| -> Result<Vec<OciHook>, DriverError> {
            v.iter()
                .flatten()
                .enumerate()
                .map(|(i, hook)| OciHook::new(hook, format!("hooks.{name}[{i}]")))
                .collect()
        };
        #[allow(deprecated)]
        let prestart = list(h.prestart(), "prestart")?;
        Ok(Self {
            prestart,
            create_runtime: list(h.create_runtime(), "createRuntime")?,
            create_container: list(h.create_container(), "createContainer")?,
            start_container: list(h.start_container(), "startContainer")?,
            poststart: list(h.poststart(), "poststart")?,
            poststop: list(h.poststop(), "poststop")?,
        })
    }

    /// Whether hooks must run before `pivot_root` (the init stops there for them).
    pub fn before_pivot(&self) -> bool {
        !(self.prestart.is_empty()
            && self.create_runtime.is_empty()
            && self.create_container.is_empty())
    }
}

impl OciHook {
    fn new(hook: &Hook, name: String) -> Result<Self, DriverError> {
        let path = hook.path().clone();
        if !path.is_absolute() {
            return Err(DriverError::invalid_spec(
                format!("{name}.path"),
                format!("{} is not an absolute path", path.display()),
            ));
        }
        let args = hook
            .args()
            .clone()
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| vec![path.display().to_string()]);
        let mut env = Vec::new();
        for (i, kv) in hook.env().iter().flatten().enumerate() {
            match kv.split_once('=') {
                Some((k, v)) if !k.is_empty() => env.push((k.to_owned(), v.to_owned())),
                _ => {
                    return Err(DriverError::invalid_spec(
                        format!("{name}.env[{i}]"),
                        format!("{kv:?} is not KEY=VALUE"),
                    ));
                }
            }
        }
        let timeout = match hook.timeout() {
            None => None,
            Some(t) if t > 0 => Some(Duration::from_secs(t as u64)),
            Some(t) => {
                return Err(DriverError::invalid_spec(
                    format!("{name}.timeout"),
                    format!("{t} is not a positive number of seconds"),
                ));
            }
        };
        let c_args = args
            .iter()
            .map(|a| cstring(a, &format!("{name}.args")))
            .collect::<Result<Vec<_>, _>>()?;
        let c_env = hook
            .env()
            .iter()
            .flatten()
            .map(|e| cstring(e, &format!("{name}.env")))
            .collect::<Result<Vec<_>, _>>()?;
        let argv = crate::sys::CPtrs::to(&c_args);
        let envp = crate::sys::CPtrs::to(&c_env);
        let cpath = cpath(&path, &format!("{name}.path"))?;
        // In the container's namespaces the hook is exec'd through the sealed trampoline (its
        // binary may be container content); the vectors point into `cpath` and `c_args`.
        let tramp = TrampolineArgv::new(None, std::slice::from_ref(&cpath), &argv);
        Ok(Self {
            cpath,
            tramp,
            name,
            path,
            args,
            env,
            c_args,
            argv,
            c_env,
            envp,
            timeout,
        })
    }

    /// Runs the hook with `state` on stdin: in the engine's namespaces, or (`ns`: a pidfd of the
    /// container's init and the namespace flags to join) in the container's.
    ///
    /// Nothing here blocks on the hook: its stdin is fed and (in the engine's namespaces) its
    /// stderr drained without blocking while its exit and the timeout are watched, so a hook
    /// that never reads a large state or writes more than a pipe's worth neither hangs the
    /// caller nor outlives its timeout.
    pub fn run(&self, state: &str, ns: Option<InContainer<'_>>) -> Result<(), String> {
        let (r, w) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
        let mut feed = Feed::new(w, state.as_bytes())?;
        match ns {
            None => {
                let mut cmd = std::process::Command::new(&self.path);
                cmd.arg0(&self.args[0])
                    .args(&self.args[1..])
                    .env_clear()
                    .envs(self.env.iter().map(|(k, v)| (k, v)))
                    .stdin(Stdio::from(OwnedFd::from(r)))
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped());
                let mut child = cmd
                    .spawn()
                    .map_err(|e| format!("{}: {e}", self.path.display()))?;
                // Our copy of the stdin's read end goes with the command.
                drop(cmd);
                let mut stderr = Drain::new(child.stderr.take());
                let deadline = self.timeout.map(|t| Instant::now() + t);
                loop {
                    feed.pump();
                    stderr.pump();
                    match child.try_wait() {
                        Ok(Some(st)) => {
                            stderr.pump();
                            if st.success() {
                                return Ok(());
                            }
                            let err = stderr.first_line();
                            return Err(if err.is_empty() {
                                format!("{st}")
                            } else {
                                format!("{st}: {err}")
                            });
                        }
                        Ok(None) => {}
                        Err(e) => return Err(format!("wait: {e}")),
                    }
                    if deadline.is_some_and(|d| Instant::now() > d) {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(format!(
                            "timed out after {}s",
                            self.timeout.map_or(0, |t| t.as_secs())
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            Some(InContainer {
                pidfd,
                flags,
                cwd,
                seccomp,
            }) => {
                let exec = Exec {
                    fd: trampoline::fd().map_err(|e| e.to_string())?,
                    argv: &self.tramp,
                };
                // The helper reports a failed setns here (an errno); a hook that exits 126 by
                // itself writes nothing.
                let (report_r, report_w) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
                let helper = sys::spawn_in_namespaces(
                    pidfd.as_raw_fd(),
                    flags,
                    cwd,
                    exec,
                    &self.envp,
                    r.as_raw_fd(),
                    report_w.as_raw_fd(),
                    seccomp,
                )
                .map_err(|e| {
                    format!(
                        "start in the container's namespaces: {}",
                        std::io::Error::from_raw_os_error(e)
                    )
                })?;
                drop(r);
                drop(report_w);
                let timeout = self.timeout.unwrap_or(Duration::from_secs(3600));
                let deadline = Instant::now() + timeout;
                let exited = loop {
                    feed.pump();
                    match sys::poll_in(helper.as_raw_fd(), 2) {
                        Ok(true) => break true,
                        Ok(false) | Err(libc::EINTR) => {}
                        Err(_) => break false,
                    }
                    if Instant::now() > deadline {
                        let _ = sys::pidfd_send_signal(helper.as_raw_fd(), libc::SIGKILL);
                        break false;
                    }
                };
                drop(feed);
                let status = sys::waitid_pidfd(helper.as_raw_fd(), false);
                let join_failed = || {
                    let mut b = [0u8; 4];
                    let mut f = std::fs::File::from(OwnedFd::from(report_r));
                    matches!(f.read(&mut b), Ok(4)).then(|| i32::from_ne_bytes(b))
                };
                match (exited, status) {
                    (false, _) => Err(format!("timed out after {}s", timeout.as_secs())),
                    (true, Ok((libc::CLD_EXITED, 0))) => Ok(()),
                    (true, Ok((libc::CLD_EXITED, 126))) => match join_failed() {
                        Some(e) => Err(format!(
                            "could not join the container's namespaces: {}",
                            std::io::Error::from_raw_os_error(e)
                        )),
                        None => Err("exit status: 126".into()),
                    },
                    (true, Ok((libc::CLD_EXITED, 127))) => {
                        Err(format!("{} could not be executed", self.path.display()))
                    }
                    (true, Ok((_, code))) => Err(format!("exit status: {code}")),
                    (true, Err(e)) => {
                        Err(format!("wait: {}", std::io::Error::from_raw_os_error(e)))
                    }
                }
            }
        }
    }

    /// Runs a list; the first failure is an error of the pre_start stage naming the hook.
    pub fn run_all(
        list: &[Self],
        state: &str,
        ns: Option<InContainer<'_>>,
    ) -> Result<(), DriverError> {
        for (index, h) in list.iter().enumerate() {
            if let Err(why) = h.run(state, ns) {
                // Returned, not logged: the caller reports it.
                tracing::debug!(hook = %h.name, %why, "OCI hook failed");
                return Err(DriverError::Hook {
                    stage: HookStage::PreStart,
                    index,
                    source: format!("OCI {} ({}): {why}", h.name, h.path.display()).into(),
                });
            }
        }
        Ok(())
    }

    /// Runs a list whose failures only get logged (poststart, poststop).
    pub fn run_logged(list: &[Self], state: &str) {
        for h in list {
            if let Err(why) = h.run(state, None) {
                tracing::warn!(hook = %h.name, path = %h.path.display(), %why, "OCI hook failed");
            }
        }
    }
}

/// A hook's stdin, written without blocking as the hook reads it; closed once all of it is
/// written (or the hook closed its end).
struct Feed<'a> {
    w: Option<std::io::PipeWriter>,
    data: &'a [u8],
    at: usize,
}

impl<'a> Feed<'a> {
    fn new(w: std::io::PipeWriter, data: &'a [u8]) -> Result<Self, String> {
        sys::fcntl(
            w.as_raw_fd(),
            libc::F_SETFL,
            libc::O_NONBLOCK as libc::c_long,
        )
        .map_err(|e| format!("pipe: {}", std::io::Error::from_raw_os_error(e)))?;
        Ok(Self {
            w: Some(w),
            data,
            at: 0,
        })
    }

    fn pump(&mut self) {
        while let Some(w) = self.w.as_mut() {
            if self.at == self.data.len() {
                self.w = None;
                break;
            }
            match w.write(&self.data[self.at..]) {
                Ok(n) => self.at += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // EPIPE: the hook is done with its stdin.
                Err(_) => self.w = None,
            }
        }
    }
}

/// A hook's stderr, read without blocking; the first 4 KiB are kept for the error message.
struct Drain {
    r: Option<std::process::ChildStderr>,
    kept: Vec<u8>,
}

impl Drain {
    const KEEP: usize = 4096;

    fn new(r: Option<std::process::ChildStderr>) -> Self {
        let r = r.filter(|r| {
            sys::fcntl(
                r.as_raw_fd(),
                libc::F_SETFL,
                libc::O_NONBLOCK as libc::c_long,
            )
            .is_ok()
        });
        Self {
            r,
            kept: Vec::new(),
        }
    }

    fn pump(&mut self) {
        let mut buf = [0u8; 8192];
        while let Some(r) = self.r.as_mut() {
            match r.read(&mut buf) {
                Ok(0) => self.r = None,
                Ok(n) => {
                    let room = Self::KEEP.saturating_sub(self.kept.len());
                    self.kept.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }

    fn first_line(&self) -> String {
        String::from_utf8_lossy(&self.kept)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(hooks: &str) -> Spec {
        execdriver_api::parse_spec(
            format!(r#"{{"ociVersion":"1.0.2","hooks":{hooks}}}"#).as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn hooks_are_validated() {
        for (hooks, want) in [
            (
                r#"{"createRuntime":[{"path":"rel"}]}"#,
                "hooks.createRuntime[0].path: rel is not an absolute path",
            ),
            (
                r#"{"poststop":[{"path":"/bin/true","env":["NOEQ"]}]}"#,
                "hooks.poststop[0].env[0]",
            ),
            (
                r#"{"prestart":[{"path":"/bin/true","timeout":0}]}"#,
                "hooks.prestart[0].timeout",
            ),
        ] {
            let e = OciHooks::from_spec(&spec(hooks)).unwrap_err().to_string();
            assert!(e.contains(want), "{hooks}: {e}");
        }
        let ok =
            OciHooks::from_spec(&spec(r#"{"createContainer":[{"path":"/bin/true"}]}"#)).unwrap();
        assert!(ok.before_pivot());
        assert!(
            !OciHooks::from_spec(&spec(r#"{"poststart":[{"path":"/bin/true"}]}"#))
                .unwrap()
                .before_pivot()
        );
    }

    #[test]
    fn host_hooks_get_the_state_and_their_exit_status_counts() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("state");
        let h = OciHooks::from_spec(&spec(&format!(
            r#"{{"poststart":[{{"path":"/bin/sh","args":["sh","-c","cat > {}; echo $GREETING >> {}"],"env":["GREETING=hello"]}}],
               "poststop":[{{"path":"/bin/sh","args":["sh","-c","echo nope >&2; exit 3"]}}],
               "prestart":[{{"path":"/bin/sh","args":["sh","-c","sleep 5"],"timeout":1}}]}}"#,
            out.display(),
            out.display()
        )))
        .unwrap();
        let id = ContainerId::new("h").unwrap();
        let ann = BTreeMap::new();
        let state = OciState {
            id: &id,
            status: "running",
            pid: Some(42),
            bundle: std::path::Path::new("/b"),
            annotations: &ann,
        }
        .json();
        h.poststart[0].run(&state, None).unwrap();
        let written = std::fs::read_to_string(&out).unwrap();
        let (json, greeting) = written.split_once('\n').unwrap_or((&written, ""));
        let v: serde_json::Value = serde_json::from_str(json.trim_end_matches("hello"))
            .unwrap_or_else(|_| serde_json::from_str(json).unwrap());
        assert_eq!(v["id"], "h");
        assert_eq!(v["pid"], 42);
        assert_eq!(v["status"], "running");
        assert!(written.contains("hello"), "{written:?} {greeting:?}");
        let e = h.poststop[0].run(&state, None).unwrap_err();
        assert!(e.contains("exit status: 3") && e.contains("nope"), "{e}");
        let e = h.prestart[0].run(&state, None).unwrap_err();
        assert!(e.contains("timed out after 1s"), "{e}");
    }
}
