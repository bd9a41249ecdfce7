//! What to run ([`Command`]) and where its standard streams go ([`Pipes`]).

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use oci_spec::runtime::{Process, Spec};

use crate::error::{DriverError, Result};
use crate::id::ContainerId;

/// The largest `config.json` accepted (a spec is a few kB; this stops a runaway file).
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// One container to run: its id, its OCI bundle directory and the bundle's runtime spec.
#[derive(Debug, Clone)]
pub struct Command {
    /// The container id.
    pub id: ContainerId,
    /// The bundle directory; a relative `spec.root.path` is resolved against it.
    pub bundle: PathBuf,
    /// The OCI runtime spec.
    pub spec: Spec,
}

impl Command {
    /// A command from parts. The bundle path is made absolute against the current directory.
    ///
    /// # Errors
    /// [`DriverError::Io`] when the current directory can't be read.
    pub fn new(id: ContainerId, bundle: impl Into<PathBuf>, spec: Spec) -> Result<Self> {
        let bundle = absolute(bundle.into())?;
        Ok(Self { id, bundle, spec })
    }

    /// Loads `<bundle>/config.json`.
    ///
    /// # Errors
    /// [`DriverError::InvalidSpec`] naming `config.json` and, for a malformed document, the JSON
    /// path of the offending field (`process.user.uid: invalid type: string "x", expected u32`).
    pub fn from_bundle(id: ContainerId, bundle: impl Into<PathBuf>) -> Result<Self> {
        let bundle = absolute(bundle.into())?;
        let spec = load_spec(&bundle.join("config.json"))?;
        Ok(Self { id, bundle, spec })
    }

    /// The spec's process.
    ///
    /// # Errors
    /// [`DriverError::InvalidSpec`] for `process` when the spec has none.
    pub fn process(&self) -> Result<&Process> {
        self.spec
            .process()
            .as_ref()
            .ok_or_else(|| DriverError::invalid_spec("process", "missing"))
    }

    /// The rootfs directory: `spec.root.path` resolved against the bundle (not canonicalized).
    ///
    /// # Errors
    /// [`DriverError::InvalidSpec`] for `root` or `root.path` when missing or empty.
    pub fn rootfs(&self) -> Result<PathBuf> {
        let root = self
            .spec
            .root()
            .as_ref()
            .ok_or_else(|| DriverError::invalid_spec("root", "missing"))?;
        let path = root.path();
        if path.as_os_str().is_empty() {
            return Err(DriverError::invalid_spec("root.path", "must not be empty"));
        }
        Ok(self.bundle.join(path))
    }

    /// For drivers that exec processes: [`DriverError::CantHandle`] when `process.args[0]` is
    /// a WebAssembly program ([`is_wasm_entrypoint`](Self::is_wasm_entrypoint)), for their
    /// [`can_handle`](crate::Driver::can_handle).
    ///
    /// # Errors
    /// As said, naming `driver`.
    pub fn refuse_wasm_entrypoint(&self, driver: &str) -> Result<()> {
        if self.is_wasm_entrypoint() {
            return Err(DriverError::cant_handle(
                driver,
                "process.args[0] is a WebAssembly program (the wasm driver runs it)",
            ));
        }
        Ok(())
    }

    /// Whether `process.args[0]` names a WebAssembly program: a `.wasm`/`.wat` path, a
    /// `#func` entry, or a file in the rootfs that starts with `\0asm`. A bare name (looked up
    /// in `PATH` by a process driver) is never one. What drivers' [`can_handle`] answers by.
    ///
    /// [`can_handle`]: crate::Driver::can_handle
    pub fn is_wasm_entrypoint(&self) -> bool {
        let Some(arg0) = self
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.args().as_ref())
            .and_then(|a| a.first())
        else {
            return false;
        };
        let path = arg0.split('#').next().unwrap_or(arg0);
        // `#func` with no path can only be meant for wasm (which then says what is missing).
        if path.ends_with(".wasm")
            || path.ends_with(".wat")
            || (path.is_empty() && arg0.contains('#'))
        {
            return true;
        }
        if !path.contains('/') {
            return false;
        }
        // The image is not trusted: only a regular file inside the rootfs is opened (a
        // symlink to a host device or a FIFO would have effects, or block).
        let Ok(rootfs) = self
            .rootfs()
            .and_then(|r| r.canonicalize().map_err(|e| DriverError::io("rootfs", e)))
        else {
            return false;
        };
        let Ok(file) = rootfs.join(path.trim_start_matches('/')).canonicalize() else {
            return false;
        };
        if !file.starts_with(&rootfs) || !fs::metadata(&file).is_ok_and(|m| m.is_file()) {
            return false;
        }
        let mut magic = [0u8; 4];
        fs::File::open(&file)
            .and_then(|mut f| f.read_exact(&mut magic))
            .is_ok_and(|()| &magic == b"\0asm")
    }
}

fn absolute(p: PathBuf) -> Result<PathBuf> {
    if p.as_os_str().is_empty() {
        return Err(DriverError::invalid_spec("bundle", "must not be empty"));
    }
    std::path::absolute(&p)
        .map_err(|e| DriverError::io(format!("bundle {}: resolve path", p.display()), e))
}

/// Parses an OCI runtime spec file, with errors that name the JSON path of the offending field.
///
/// # Errors
/// [`DriverError::InvalidSpec`] for a missing, oversized or malformed file.
pub fn load_spec(path: &Path) -> Result<Spec> {
    let shown = path.display();
    let meta = fs::metadata(path).map_err(|e| {
        DriverError::invalid_spec("config.json", format!("can't read {shown}: {e}"))
    })?;
    if !meta.is_file() {
        return Err(DriverError::invalid_spec(
            "config.json",
            format!("{shown} is not a regular file"),
        ));
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(DriverError::invalid_spec(
            "config.json",
            format!("{shown} is larger than {MAX_CONFIG_BYTES} bytes"),
        ));
    }
    let text = fs::read(path).map_err(|e| {
        DriverError::invalid_spec("config.json", format!("can't read {shown}: {e}"))
    })?;
    parse_spec(&text)
}

/// Parses an OCI runtime spec from JSON bytes.
///
/// # Errors
/// [`DriverError::InvalidSpec`] naming the JSON path of the offending field.
pub fn parse_spec(json: &[u8]) -> Result<Spec> {
    // serde would accept a JSON array as a struct; a spec is an object.
    let first = json.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b == b'[') {
        return Err(DriverError::invalid_spec(
            "config.json",
            "must be a JSON object, not an array",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(json);
    let spec = serde_path_to_error::deserialize::<_, Spec>(&mut *de).map_err(|err| {
        let path = err.path().to_string();
        let field = if path == "." || path == "?" || path.is_empty() {
            "config.json".to_owned()
        } else {
            path
        };
        DriverError::invalid_spec(field, err.into_inner().to_string())
    })?;
    // Nothing but whitespace may follow the document.
    de.end()
        .map_err(|e| DriverError::invalid_spec("config.json", e.to_string()))?;
    if !spec.version().starts_with("1.") {
        return Err(DriverError::invalid_spec(
            "ociVersion",
            format!("{:?} is not a 1.x runtime-spec version", spec.version()),
        ));
    }
    Ok(spec)
}

/// Where one standard stream of a container process goes.
#[derive(Debug, Default)]
pub enum Stdio {
    /// `/dev/null`.
    #[default]
    Null,
    /// The engine's own stream.
    Inherit,
    /// This file descriptor (a pipe end, a file, a socket); the driver takes ownership.
    #[cfg(unix)]
    Fd(std::os::fd::OwnedFd),
}

impl Stdio {
    /// Another handle on the same stream (the fd duplicated), for a driver that gives one
    /// stream to several instances.
    ///
    /// # Errors
    /// When the descriptor can't be duplicated (`EMFILE`).
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(match self {
            Self::Null => Self::Null,
            Self::Inherit => Self::Inherit,
            #[cfg(unix)]
            Self::Fd(fd) => Self::Fd(fd.try_clone()?),
        })
    }
}

#[cfg(unix)]
impl From<std::os::fd::OwnedFd> for Stdio {
    fn from(fd: std::os::fd::OwnedFd) -> Self {
        Self::Fd(fd)
    }
}

#[cfg(unix)]
impl From<fs::File> for Stdio {
    fn from(f: fs::File) -> Self {
        Self::Fd(f.into())
    }
}

#[cfg(unix)]
impl From<io::PipeReader> for Stdio {
    fn from(p: io::PipeReader) -> Self {
        Self::Fd(p.into())
    }
}

#[cfg(unix)]
impl From<io::PipeWriter> for Stdio {
    fn from(p: io::PipeWriter) -> Self {
        Self::Fd(p.into())
    }
}

/// The three standard streams of a container process, and any more fds it is given.
#[derive(Debug, Default)]
pub struct Pipes {
    /// Standard input.
    pub stdin: Stdio,
    /// Standard output.
    pub stdout: Stdio,
    /// Standard error.
    pub stderr: Stdio,
    /// More fds the process gets as 3, 4, … in this order, open across its `execve` (runc's
    /// `--preserve-fds`). A driver that can't pass fds refuses a non-empty list with
    /// `Unsupported` naming `pipes.extra`.
    #[cfg(unix)]
    pub extra: Vec<std::os::fd::OwnedFd>,
}

impl Pipes {
    /// All three to `/dev/null`.
    pub fn null() -> Self {
        Self::default()
    }

    /// All three inherited from the engine.
    pub fn inherit() -> Self {
        Self {
            stdin: Stdio::Inherit,
            stdout: Stdio::Inherit,
            stderr: Stdio::Inherit,
            ..Self::default()
        }
    }

    /// Refuses `extra` fds for a driver that can't pass them.
    ///
    /// # Errors
    /// `Unsupported` naming `pipes.extra` when there are any.
    pub fn refuse_extra(&self, driver: &str) -> Result<()> {
        #[cfg(unix)]
        if !self.extra.is_empty() {
            return Err(DriverError::unsupported("pipes.extra", driver));
        }
        let _ = driver;
        Ok(())
    }

    /// Stdin from `/dev/null`, stdout and stderr collected in memory by two reader threads.
    ///
    /// # Errors
    /// When a pipe or thread can't be created.
    #[cfg(unix)]
    pub fn capture() -> io::Result<(Self, Captured)> {
        let (out_r, out_w) = io::pipe()?;
        let (err_r, err_w) = io::pipe()?;
        let pipes = Self {
            stdin: Stdio::Null,
            stdout: out_w.into(),
            stderr: err_w.into(),
            extra: Vec::new(),
        };
        let captured = Captured {
            stdout: collect("stdout", out_r)?,
            stderr: collect("stderr", err_r)?,
        };
        Ok((pipes, captured))
    }
}

#[cfg(unix)]
fn collect(name: &str, mut r: io::PipeReader) -> io::Result<JoinHandle<Vec<u8>>> {
    std::thread::Builder::new()
        .name(format!("execdriver-capture-{name}"))
        .spawn(move || {
            let mut buf = Vec::new();
            // A read error ends the capture with what was read so far.
            let _ = r.read_to_end(&mut buf);
            buf
        })
}

/// The output collected by [`Pipes::capture`].
#[derive(Debug)]
pub struct Captured {
    stdout: JoinHandle<Vec<u8>>,
    stderr: JoinHandle<Vec<u8>>,
}

impl Captured {
    /// Waits until every writer closed its end (the container and anything it forked exited)
    /// and returns `(stdout, stderr)`.
    pub fn wait(self) -> (Vec<u8>, Vec<u8>) {
        let out = self.stdout.join().unwrap_or_default();
        let err = self.stderr.join().unwrap_or_default();
        (out, err)
    }

    /// Like [`wait`](Self::wait), lossily decoded as UTF-8.
    pub fn wait_strings(self) -> (String, String) {
        let (o, e) = self.wait();
        (
            String::from_utf8_lossy(&o).into_owned(),
            String::from_utf8_lossy(&e).into_owned(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(dir: &Path, arg0: &str) -> Command {
        fs::create_dir_all(dir.join("rootfs")).unwrap();
        let spec = serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": [arg0], "cwd": "/", "user": {"uid": 0, "gid": 0}},
        });
        let spec = parse_spec(spec.to_string().as_bytes()).unwrap();
        Command::new(ContainerId::new("c").unwrap(), dir, spec).unwrap()
    }

    #[test]
    fn wasm_entrypoints_by_extension_entry_and_magic() {
        let d = tempfile::tempdir().unwrap();
        let is = |arg0: &str| command(d.path(), arg0).is_wasm_entrypoint();
        assert!(is("/app.wasm"));
        assert!(is("/app.wat#run"));
        assert!(is("#_start"));
        assert!(!is("sh"));
        fs::write(d.path().join("rootfs/app"), b"\0asm\x01\0\0\0").unwrap();
        assert!(is("/app"));
        // A bare name is a PATH lookup, even when a file of that name is a module.
        assert!(!is("app"));
        fs::write(d.path().join("rootfs/elf"), b"\x7fELF").unwrap();
        assert!(!is("/elf"));
        assert!(!is("/missing"));
        #[cfg(unix)]
        {
            // A link out of the rootfs is not followed, even to a module.
            let outside = tempfile::tempdir().unwrap();
            fs::write(outside.path().join("m"), b"\0asm\x01\0\0\0").unwrap();
            std::os::unix::fs::symlink(outside.path().join("m"), d.path().join("rootfs/out"))
                .unwrap();
            assert!(!is("/out"));
            std::os::unix::fs::symlink("app", d.path().join("rootfs/inside")).unwrap();
            assert!(is("/inside"));
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_cloned_stdio_is_the_same_stream_on_another_fd() {
        use std::io::{Read, Write};
        use std::os::fd::AsRawFd;
        assert!(matches!(Stdio::Null.try_clone(), Ok(Stdio::Null)));
        assert!(matches!(Stdio::Inherit.try_clone(), Ok(Stdio::Inherit)));
        let (mut r, w) = io::pipe().unwrap();
        let a = Stdio::from(w);
        let b = a.try_clone().unwrap();
        let (Stdio::Fd(a), Stdio::Fd(b)) = (a, b) else {
            panic!("not fds")
        };
        assert_ne!(a.as_raw_fd(), b.as_raw_fd());
        fs::File::from(a).write_all(b"x").unwrap();
        fs::File::from(b).write_all(b"y").unwrap();
        let mut got = String::new();
        r.read_to_string(&mut got).unwrap();
        assert_eq!(got, "xy");
    }

    #[test]
    fn malformed_specs_name_the_field() {
        let cases: &[(&str, &str)] = &[
            ("not json", "invalid spec: config.json: expected ident"),
            (
                "{ not json",
                "invalid spec: config.json: key must be a string",
            ),
            (
                "{\"ociVersion\": 5}",
                "invalid spec: ociVersion: invalid type",
            ),
            (
                r#"{"ociVersion":"1.0.2","process":{"cwd":"/","args":["a"],"user":{"uid":"x","gid":0}}}"#,
                "invalid spec: process.user.uid: invalid type: string",
            ),
            (
                r#"{"ociVersion":"1.0.2","process":{"cwd":"/","args":"sh"}}"#,
                "invalid spec: process.args: invalid type: string",
            ),
            ("[]", "invalid spec: config.json: must be a JSON object"),
            ("{}", "invalid spec: ociVersion: \"\" is not a 1.x"),
            (
                r#"{"ociVersion": "2.0"}"#,
                "invalid spec: ociVersion: \"2.0\"",
            ),
            // Found by the bad-input corpus: what follows the document used to be ignored.
            (
                r#"{"ociVersion":"1.0.2"} trailing"#,
                "invalid spec: config.json: trailing characters",
            ),
        ];
        for (json, want) in cases {
            let got = parse_spec(json.as_bytes()).unwrap_err().to_string();
            assert!(got.starts_with(want), "{json}\n got: {got}\nwant: {want}");
        }
    }

    #[test]
    fn from_bundle_reports_missing_config() {
        let dir = tempfile::tempdir().unwrap();
        let id = ContainerId::new("x").unwrap();
        let err = Command::from_bundle(id.clone(), dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid spec: config.json: can't read"),
            "{err}"
        );
        fs::create_dir(dir.path().join("config.json")).unwrap();
        let err = Command::from_bundle(id, dir.path()).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn rootfs_and_process_are_required() {
        let id = ContainerId::new("x").unwrap();
        let mut spec = Spec::default();
        spec.set_root(None).set_process(None);
        let cmd = Command::new(id, "/b", spec).unwrap();
        assert_eq!(
            cmd.rootfs().unwrap_err().to_string(),
            "invalid spec: root: missing"
        );
        assert_eq!(
            cmd.process().unwrap_err().to_string(),
            "invalid spec: process: missing"
        );
    }

    #[test]
    fn relative_root_is_resolved_against_the_bundle() {
        let id = ContainerId::new("x").unwrap();
        let cmd = Command::new(id, "/b", Spec::default()).unwrap();
        assert_eq!(cmd.rootfs().unwrap(), PathBuf::from("/b/rootfs"));
    }

    #[cfg(unix)]
    #[test]
    fn capture_collects_both_streams() {
        use std::io::Write;
        let (pipes, captured) = Pipes::capture().unwrap();
        let Stdio::Fd(out) = pipes.stdout else {
            panic!()
        };
        let Stdio::Fd(err) = pipes.stderr else {
            panic!()
        };
        fs::File::from(out).write_all(b"hello").unwrap();
        fs::File::from(err).write_all(b"oops").unwrap();
        assert_eq!(captured.wait_strings(), ("hello".into(), "oops".into()));
    }
}

/// The spec parser never panics and always names where a problem is.
#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn arbitrary_bytes_parse_or_fail_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            if let Err(e) = parse_spec(&bytes) {
                prop_assert!(e.to_string().starts_with("invalid spec: "), "{e}");
            }
        }

        #[test]
        fn json_with_random_fields_parses_or_names_the_field(
            fields in prop::collection::btree_map(
                prop::sample::select(vec!["ociVersion", "process", "root", "hostname", "mounts", "linux", "hooks", "annotations"]),
                prop_oneof![
                    Just(serde_json::json!(null)),
                    Just(serde_json::json!("1.0.2")),
                    Just(serde_json::json!(5)),
                    Just(serde_json::json!([])),
                    Just(serde_json::json!({})),
                    Just(serde_json::json!({"path": "rootfs"})),
                    Just(serde_json::json!({"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}})),
                ],
                0..8,
            )
        ) {
            let v: serde_json::Map<String, serde_json::Value> =
                fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            let text = serde_json::Value::Object(v).to_string();
            if let Err(e) = parse_spec(text.as_bytes()) {
                let msg = e.to_string();
                prop_assert!(msg.starts_with("invalid spec: "), "{msg}");
            }
        }
    }
}
