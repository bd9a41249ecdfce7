//! The escape suite: each attack of the security issue performed for real, against the library
//! (the test process is the engine) and the CLI (a throw-away copy of the binary), asserting it
//! fails. Root; a missing prerequisite fails under CI=true.
//!
//! Every attack acts inside containers or on the test's own temporary files: device nodes are
//! made in the test's rootfs copies over a loop device of the test's own, the racing renames
//! happen in the test's own directory.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command as Proc, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use execdriver::oci_spec::runtime::Spec;
use execdriver::{Command, Driver, ExitStatus, Hooks, Pipes};
use execdriver_tests::{busybox_rootfs, is_root, missing, runc_like_spec, unique_id};

/// What every test needs: root, busybox, a C compiler for the payloads.
fn ready(test: &str) -> bool {
    if !is_root() {
        missing(test, "root");
        return false;
    }
    if busybox_rootfs().is_err() {
        missing(test, "busybox-static");
        return false;
    }
    if Proc::new("cc").arg("--version").output().is_err() {
        missing(test, "a C compiler (cc) for the attack payloads");
        return false;
    }
    true
}

/// Builds a freestanding static payload from `tests/fixtures/escape/<name>.c`.
fn payload(name: &str, out: &Path) {
    execdriver_tests::freestanding_program(name, out).unwrap_or_else(|e| panic!("{e}"));
}

/// A private copy of the busybox rootfs in `dir`.
fn rootfs_copy(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    let st = Proc::new("cp")
        .arg("-a")
        .arg(busybox_rootfs().unwrap())
        .arg(&root)
        .status()
        .unwrap();
    assert!(st.success());
    root
}

fn spec_json(spec: &Spec) -> serde_json::Value {
    serde_json::to_value(spec).unwrap()
}

fn edit(spec: Spec, f: impl FnOnce(&mut serde_json::Value)) -> Spec {
    let mut v = spec_json(&spec);
    f(&mut v);
    serde_json::from_value(v).unwrap()
}

fn native() -> Arc<dyn Driver> {
    execdriver_tests::native::driver().expect("native driver")
}

/// The drivers the library-level attacks run against: native, and the `oci` driver over runc
/// and over crun — a container they run must be as safe as a native one (their absence fails
/// under CI=true).
fn library_drivers(test: &str) -> Vec<(String, Arc<dyn Driver>)> {
    let mut all = vec![("native".to_owned(), native())];
    for binary in ["runc", "crun"] {
        match execdriver_tests::oci::driver(binary) {
            Ok(d) => all.push((format!("oci/{binary}"), d)),
            Err(why) => missing(test, &format!("the oci driver over {binary}: {why}")),
        }
    }
    all
}

fn run(
    d: &Arc<dyn Driver>,
    bundle: &Path,
    spec: Spec,
) -> (Result<ExitStatus, String>, String, String) {
    let id = unique_id("esc");
    let cmd = Command::new(id, bundle, spec).unwrap();
    let (pipes, cap) = Pipes::capture().unwrap();
    let r = d.run(&cmd, pipes, &Hooks::new()).map_err(|e| e.to_string());
    let (o, e) = cap.wait_strings();
    (r, o, e)
}

// ---------------------------------------------------------------------------------------------
// 1. The host binary (CVE-2019-5736): `#!/proc/self/exe` + the image's dynamic loader.

/// The `PT_INTERP` of an ELF file.
fn interpreter(binary: &Path) -> PathBuf {
    let b = std::fs::read(binary).unwrap();
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap()) as usize;
    assert_eq!(&b[..4], b"\x7fELF");
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if u32::from_le_bytes(b[ph..ph + 4].try_into().unwrap()) == 3 {
            let (off, size) = (u64_at(ph + 8), u64_at(ph + 32));
            let s = &b[off..off + size];
            let s = s.strip_suffix(b"\0").unwrap_or(s);
            return PathBuf::from(String::from_utf8(s.to_vec()).unwrap());
        }
    }
    panic!(
        "{} has no PT_INTERP (not dynamically linked)",
        binary.display()
    );
}

/// A bundle whose image carries the attack: `/entrypoint.sh` is `#!/proc/self/exe`, and the
/// engine binary's loader path holds the payload.
fn evil_bundle(dir: &Path, engine: &Path, args: &[&str]) -> PathBuf {
    let root = rootfs_copy(dir);
    std::fs::write(root.join("entrypoint.sh"), "#!/proc/self/exe\n").unwrap();
    std::fs::set_permissions(
        root.join("entrypoint.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let interp = interpreter(engine);
    let at = root.join(interp.strip_prefix("/").unwrap());
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    payload("evil_loader", &at);
    let spec = runc_like_spec(&root, args);
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string(&spec_json(&spec)).unwrap(),
    )
    .unwrap();
    dir.to_owned()
}

/// Runs `c` and returns its exit code. A binary copied a moment ago can be "busy" while another
/// test thread's fork still holds the copy's write fd (until that child execs): retry then.
fn status(c: &mut Proc) -> i32 {
    for _ in 0..100 {
        match c.status() {
            Ok(st) => return st.code().unwrap_or(-1),
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{:?}: {e}", c.get_program()),
        }
    }
    panic!("{:?} stayed busy", c.get_program())
}

/// A throw-away copy of the CLI binary and a state root of its own.
struct CliCopy {
    dir: tempfile::TempDir,
    bin: PathBuf,
    original: Vec<u8>,
}

impl CliCopy {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("edtest-escape-cli-")
            .tempdir()
            .unwrap();
        let bin = dir.path().join("execdriver-copy");
        std::fs::copy(env!("CARGO_BIN_EXE_execdriver"), &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let original = std::fs::read(&bin).unwrap();
        Self { dir, bin, original }
    }

    fn cmd(&self, args: &[&str]) -> Proc {
        let mut c = Proc::new(&self.bin);
        c.arg("--root")
            .arg(self.dir.path().join("state"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }

    /// Runs a command; its stderr goes through a file (a detached container holds its stdio).
    fn run(&self, args: &[&str]) -> (i32, String) {
        let path = self.dir.path().join("stderr");
        let code = status(self.cmd(args).stderr(std::fs::File::create(&path).unwrap()));
        (code, std::fs::read_to_string(&path).unwrap_or_default())
    }

    /// Runs a foreground command; returns its code, stdout and stderr (through files).
    fn run_out(&self, args: &[&str]) -> (i32, String, String) {
        let (out, err) = (
            self.dir.path().join("stdout"),
            self.dir.path().join("stderr"),
        );
        let code = status(
            self.cmd(args)
                .stdout(std::fs::File::create(&out).unwrap())
                .stderr(std::fs::File::create(&err).unwrap()),
        );
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        (code, read(&out), read(&err))
    }

    fn status(&self, id: &str) -> String {
        let o = loop {
            match Proc::new(&self.bin)
                .arg("--root")
                .arg(self.dir.path().join("state"))
                .args(["state", id])
                .output()
            {
                Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                r => break r.unwrap(),
            }
        };
        serde_json::from_slice::<serde_json::Value>(&o.stdout)
            .ok()
            .and_then(|v| v["status"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Deletes `id` with the pristine CLI (the copy may be the attacker's by now).
    fn delete(&self, id: &str) {
        let _ = Proc::new(env!("CARGO_BIN_EXE_execdriver"))
            .arg("--root")
            .arg(self.dir.path().join("state"))
            .args(["delete", "--force", id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Deletes `id` when dropped, also when the test fails.
    fn guard<'a>(&'a self, id: &'a str) -> Deleting<'a> {
        Deleting(self, id)
    }

    fn intact(&self) -> bool {
        std::fs::read(&self.bin).is_ok_and(|b| b == self.original)
    }

    /// Waits until the binary changed, or `done` holds, or `limit` passed.
    fn watch(&self, limit: Duration, done: impl Fn() -> bool) {
        let end = Instant::now() + limit;
        while Instant::now() < end && self.intact() && !done() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `spec` run in the foreground through a fresh CLI copy, as bundle `dir`: (code, stdout,
/// stderr). The container is deleted afterwards.
fn cli_run(dir: &Path, spec: &Spec, name: &str) -> (i32, String, String) {
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string(&spec_json(spec)).unwrap(),
    )
    .unwrap();
    let cli = CliCopy::new();
    let id = format!("esc-{name}-{}", std::process::id());
    let _gone = cli.guard(&id);
    cli.run_out(&["run", "--bundle", dir.to_str().unwrap(), &id])
}

struct Deleting<'a>(&'a CliCopy, &'a str);

impl Drop for Deleting<'_> {
    fn drop(&mut self) {
        self.0.delete(self.1);
    }
}

#[test]
fn the_host_binary_survives_a_proc_self_exe_entrypoint_at_create_and_start() {
    let test = "the_host_binary_survives_a_proc_self_exe_entrypoint_at_create_and_start";
    if !ready(test) {
        return;
    }
    let cli = CliCopy::new();
    let bdir = tempfile::Builder::new()
        .prefix("edtest-escape-")
        .tempdir()
        .unwrap();
    let bundle = evil_bundle(bdir.path(), &cli.bin, &["/entrypoint.sh"]);
    let id = format!("esc-detach-{}", std::process::id());
    let _gone = cli.guard(&id);
    // What containerd does: create, then start (here as `run --detach`).
    let (code, err) = cli.run(&["run", "--detach", "--bundle", bundle.to_str().unwrap(), &id]);
    // The payload, had it run as the init, would stay up rewriting the binary once the CLI is
    // gone; the container ends at once when it never runs.
    cli.watch(Duration::from_secs(10), || cli.status(&id) == "stopped");
    assert!(
        cli.intact(),
        "the host binary was overwritten from the image (run --detach: {code}, {err})"
    );
}

#[test]
fn the_host_binary_survives_a_proc_self_exe_exec() {
    let test = "the_host_binary_survives_a_proc_self_exe_exec";
    if !ready(test) {
        return;
    }
    let cli = CliCopy::new();
    let bdir = tempfile::Builder::new()
        .prefix("edtest-escape-")
        .tempdir()
        .unwrap();
    let bundle = evil_bundle(bdir.path(), &cli.bin, &["sleep", "1000"]);
    let id = format!("esc-exec-{}", std::process::id());
    let _gone = cli.guard(&id);
    let (code, err) = cli.run(&["run", "--detach", "--bundle", bundle.to_str().unwrap(), &id]);
    assert_eq!(code, 0, "{err}");
    let (code, err) = cli.run(&["exec", &id, "/entrypoint.sh"]);
    // Had the payload run, its child keeps trying for 10 s after the exec's CLI is gone.
    cli.watch(Duration::from_secs(3), || false);
    assert!(
        cli.intact(),
        "the host binary was overwritten from the image (exec: {code}, {err})"
    );
    assert!(!err.contains("evil loader ran"), "{err}");
}

#[test]
fn an_embedding_engine_never_runs_its_binary_inside_a_container() {
    let test = "an_embedding_engine_never_runs_its_binary_inside_a_container";
    if !ready(test) {
        return;
    }
    let d = native();
    let engine = std::env::current_exe().unwrap();
    let bdir = tempfile::Builder::new()
        .prefix("edtest-escape-")
        .tempdir()
        .unwrap();
    let bundle = evil_bundle(bdir.path(), &engine, &["/entrypoint.sh"]);
    let spec = runc_like_spec(&bundle.join("rootfs"), &["/entrypoint.sh"]);
    let (r, out, err) = run(&d, &bundle, spec.clone());
    assert!(!err.contains("evil loader ran"), "init: {r:?} {out} {err}");
    // The same through exec into a running container, and as a startContainer hook (which
    // runs in the container's namespaces).
    let id = unique_id("esc-lib");
    let running = Command::new(
        id.clone(),
        &bundle,
        runc_like_spec(&bundle.join("rootfs"), &["sleep", "1000"]),
    )
    .unwrap();
    let h = execdriver::spawn(d.clone(), running, Pipes::null(), Hooks::new()).unwrap();
    h.wait_started().expect("started");
    let (pipes, cap) = Pipes::capture().unwrap();
    let st = d.exec(&id, spec.process().as_ref().unwrap(), pipes, &Hooks::new());
    let (_, exec_err) = cap.wait_strings();
    d.terminate(&id).unwrap();
    h.wait().unwrap();
    assert!(
        !exec_err.contains("evil loader ran"),
        "exec: {st:?} {exec_err}"
    );
    let hooked = edit(runc_like_spec(&bundle.join("rootfs"), &["true"]), |v| {
        v["hooks"] = serde_json::json!({"startContainer": [{"path": "/entrypoint.sh"}]});
    });
    let (r, _, err) = run(&d, &bundle, hooked);
    assert!(r.is_err(), "the hook is not a program: {r:?}");
    assert!(!err.contains("evil loader ran"), "hook: {err}");
}

/// The oci driver over a copy of runc and of crun: the image's `#!/proc/self/exe` entrypoint
/// makes the kernel run the runtime binary inside the container (as the init and through
/// exec). The runtime must have made that a sealed copy of itself (CVE-2019-5736); the file on
/// the host stays as it was.
#[test]
fn the_runtime_binary_survives_a_proc_self_exe_entrypoint_under_oci() {
    let test = "the_runtime_binary_survives_a_proc_self_exe_entrypoint_under_oci";
    if !ready(test) {
        return;
    }
    for binary in ["runc", "crun"] {
        let Some(installed) = which(binary) else {
            missing(test, &format!("{binary} is not installed"));
            continue;
        };
        let dir = tempfile::Builder::new()
            .prefix("edtest-escape-oci-")
            .tempdir()
            .unwrap();
        let copy = dir.path().join(binary);
        std::fs::copy(&installed, &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        let original = std::fs::read(&copy).unwrap();
        let d = execdriver_tests::oci::driver_over(&copy, &format!("{binary}-escape"))
            .unwrap_or_else(|e| panic!("oci over a copy of {binary}: {e}"));
        let bundle = evil_bundle(dir.path(), &copy, &["/entrypoint.sh"]);
        let rootfs = bundle.join("rootfs");
        let (r, _, err) = run(&d, &bundle, runc_like_spec(&rootfs, &["/entrypoint.sh"]));
        assert!(
            std::fs::read(&copy).is_ok_and(|b| b == original),
            "{binary}: the host binary was overwritten by the init ({r:?} {err})"
        );
        // Through exec into a running container.
        let id = unique_id("esc-oci");
        let running = Command::new(
            id.clone(),
            &bundle,
            runc_like_spec(&rootfs, &["sleep", "1000"]),
        )
        .unwrap();
        let h = execdriver::spawn(d.clone(), running, Pipes::null(), Hooks::new()).unwrap();
        h.wait_started().expect("started");
        let entry = runc_like_spec(&rootfs, &["/entrypoint.sh"]);
        let st = d.exec(
            &id,
            entry.process().as_ref().unwrap(),
            Pipes::null(),
            &Hooks::new(),
        );
        // Had it worked, the payload's child would keep trying for 10 s.
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end && std::fs::read(&copy).is_ok_and(|b| b == original) {
            std::thread::sleep(Duration::from_millis(50));
        }
        d.terminate(&id).unwrap();
        h.wait().unwrap();
        assert!(
            std::fs::read(&copy).is_ok_and(|b| b == original),
            "{binary}: the host binary was overwritten through exec ({st:?})"
        );
    }
}

fn which(binary: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(binary))
        .find(|p| p.is_file())
}

// ---------------------------------------------------------------------------------------------
// 2. Device nodes shipped in the image.

/// A loop device over a file of the test's own, detached on drop.
struct Loop {
    dev: PathBuf,
    _backing: tempfile::NamedTempFile,
}

impl Loop {
    fn new(test: &str) -> Option<Self> {
        let backing = tempfile::NamedTempFile::new().unwrap();
        backing.as_file().set_len(1 << 20).unwrap();
        let o = Proc::new("losetup")
            .args(["--find", "--show"])
            .arg(backing.path())
            .output();
        match o {
            Ok(o) if o.status.success() => Some(Self {
                dev: PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()),
                _backing: backing,
            }),
            Ok(o) => {
                missing(
                    test,
                    &format!("a loop device: {}", String::from_utf8_lossy(&o.stderr)),
                );
                None
            }
            Err(e) => {
                missing(test, &format!("losetup: {e}"));
                None
            }
        }
    }

    fn numbers(&self) -> (u32, u32) {
        use std::os::unix::fs::MetadataExt;
        let rdev = std::fs::metadata(&self.dev).unwrap().rdev();
        (nix::libc::major(rdev), nix::libc::minor(rdev))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Proc::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

/// `evil/loop` (the loop device) and `evil/kmsg` (c 1:11) in `root`.
fn plant_nodes(root: &Path, lo: &Loop) {
    std::fs::create_dir_all(root.join("evil")).unwrap();
    let (maj, min) = lo.numbers();
    for (name, kind, maj, min) in [("loop", "b", maj, min), ("kmsg", "c", 1, 11)] {
        let st = Proc::new("mknod")
            .arg(root.join("evil").join(name))
            .args([kind, &maj.to_string(), &min.to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }
}

#[test]
fn device_nodes_in_the_image_are_refused_with_or_without_device_rules() {
    let test = "device_nodes_in_the_image_are_refused_with_or_without_device_rules";
    if !ready(test) {
        return;
    }
    let Some(lo) = Loop::new(test) else { return };
    let drivers = library_drivers(test);
    let dir = tempfile::Builder::new()
        .prefix("edtest-escape-")
        .tempdir()
        .unwrap();
    let root = rootfs_copy(dir.path());
    plant_nodes(&root, &lo);
    let script = "dd if=/evil/loop of=/dev/null bs=512 count=1 2>/dev/null && echo READ-LOOP; \
                  echo x | dd of=/evil/loop bs=1 count=1 conv=notrunc 2>/dev/null && echo WROTE-LOOP; \
                  head -c 1 /evil/kmsg >/dev/null 2>&1 && echo READ-KMSG; \
                  cat /dev/null && echo null-ok";
    for (case, resources) in [
        ("no linux.resources", None),
        (
            "resources without devices",
            Some(serde_json::json!({"pids": {"limit": 100}})),
        ),
        (
            "resources with devices",
            Some(
                serde_json::json!({"devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}]}),
            ),
        ),
    ] {
        let spec = edit(
            runc_like_spec(&root, &["sh", "-c", script]),
            |v| match &resources {
                None => {
                    v["linux"].as_object_mut().unwrap().remove("resources");
                }
                Some(r) => v["linux"]["resources"] = r.clone(),
            },
        );
        for (name, d) in &drivers {
            let (r, out, err) = run(d, dir.path(), spec.clone());
            assert!(
                r.as_ref().is_ok_and(ExitStatus::success),
                "{name}, {case}: {r:?} {err}"
            );
            assert!(
                out.contains("null-ok"),
                "{name}, {case}: /dev/null must work: {out}"
            );
            for bad in ["READ-LOOP", "WROTE-LOOP", "READ-KMSG"] {
                assert!(!out.contains(bad), "{name}, {case}: {bad}\n{out}");
            }
        }
        // The same bundle through the CLI.
        let (code, out, err) = cli_run(dir.path(), &spec, "dev");
        assert_eq!(code, 0, "CLI, {case}: {err}");
        assert!(out.contains("null-ok"), "CLI, {case}: {out}");
        for bad in ["READ-LOOP", "WROTE-LOOP", "READ-KMSG"] {
            assert!(!out.contains(bad), "CLI, {case}: {bad}\n{out}");
        }
    }
}

/// A WASI module that opens `evil/loop` and `evil/kmsg` in its root preopen and reads a byte
/// of each; prints `loop=EE,RR kmsg=EE,RR` (WASI errnos of the open and the read, `--` when
/// not reached).
const WASM_PROBE: &str = r#"(module
  (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "evil/loop")
  (data (i32.const 120) "evil/kmsg")
  (data (i32.const 200) "loop=--,-- kmsg=--,--\n")
  (func $digits (param $at i32) (param $v i32)
    (i32.store8 (local.get $at) (i32.add (i32.const 48) (i32.div_u (local.get $v) (i32.const 10))))
    (i32.store8 (i32.add (local.get $at) (i32.const 1)) (i32.add (i32.const 48) (i32.rem_u (local.get $v) (i32.const 10)))))
  (func $try (param $path i32) (param $out i32)
    (local $e i32)
    (local.set $e (call $open (i32.const 3) (i32.const 1) (local.get $path) (i32.const 9)
      (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 300)))
    (call $digits (local.get $out) (local.get $e))
    (if (i32.eqz (local.get $e))
      (then
        (i32.store (i32.const 320) (i32.const 400))
        (i32.store (i32.const 324) (i32.const 1))
        (call $digits (i32.add (local.get $out) (i32.const 3))
          (call $read (i32.load (i32.const 300)) (i32.const 320) (i32.const 1) (i32.const 340))))))
  (func (export "_start")
    (call $try (i32.const 100) (i32.const 205))
    (call $try (i32.const 120) (i32.const 216))
    (i32.store (i32.const 360) (i32.const 200))
    (i32.store (i32.const 364) (i32.const 22))
    (drop (call $write (i32.const 1) (i32.const 360) (i32.const 1) (i32.const 368)))))
"#;

#[test]
fn a_wasm_module_cannot_open_device_nodes_of_its_rootfs() {
    let test = "a_wasm_module_cannot_open_device_nodes_of_its_rootfs";
    if !ready(test) {
        return;
    }
    let Some(lo) = Loop::new(test) else { return };
    let d = execdriver_tests::wasm::driver().expect("wasm driver");
    let dir = tempfile::Builder::new()
        .prefix("edtest-escape-wasm-")
        .tempdir()
        .unwrap();
    let root = dir.path().join("rootfs");
    std::fs::create_dir_all(&root).unwrap();
    plant_nodes(&root, &lo);
    std::fs::write(root.join("probe.wat"), WASM_PROBE).unwrap();
    for read_only in [false, true] {
        let spec = execdriver::parse_spec(
            serde_json::json!({
                "ociVersion": "1.0.2",
                "process": {"cwd": "/", "args": ["/probe.wat"], "user": {"uid": 0, "gid": 0}},
                "root": {"path": root, "readonly": read_only},
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let (r, out, err) = run(&d, dir.path(), spec.clone());
        assert!(r.as_ref().is_ok_and(ExitStatus::success), "{r:?} {err}");
        assert!(out.starts_with("loop="), "{out}");
        // Open refused (not 00) for both nodes: the host's disk and /dev/kmsg stay out of reach.
        assert!(
            !out.contains("loop=00") && !out.contains("kmsg=00"),
            "read_only={read_only}: {out}"
        );
        // Through the CLI (the module runs in its hosting process).
        let (code, out, err) = cli_run(dir.path(), &spec, &format!("wasm-{read_only}"));
        assert_eq!(code, 0, "CLI: {err}");
        assert!(
            out.starts_with("loop=") && !out.contains("loop=00") && !out.contains("kmsg=00"),
            "CLI, read_only={read_only}: {out} {err}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 3. /proc and /sys targets.

#[test]
fn proc_and_sys_as_symlinks_are_refused_with_runcs_wording() {
    let test = "proc_and_sys_as_symlinks_are_refused_with_runcs_wording";
    if !ready(test) {
        return;
    }
    let drivers = library_drivers(test);
    for target in ["proc", "sys"] {
        let dir = tempfile::Builder::new()
            .prefix("edtest-escape-")
            .tempdir()
            .unwrap();
        let root = rootfs_copy(dir.path());
        std::fs::create_dir_all(root.join("vol").join(target)).unwrap();
        std::fs::remove_dir(root.join(target)).unwrap();
        std::os::unix::fs::symlink(format!("vol/{target}"), root.join(target)).unwrap();
        let spec = runc_like_spec(&root, &["true"]);
        for (name, d) in &drivers {
            let (r, out, _) = run(d, dir.path(), spec.clone());
            let e = r.expect_err(&format!(
                "{name}: a symlinked /{target} must be refused ({out})"
            ));
            // crun refuses it in its own words.
            if name != "oci/crun" {
                assert!(
                    e.contains("must be mounted on ordinary directory"),
                    "{name}, /{target}: {e}"
                );
            }
        }
        // The CLI says the same and fails.
        let (code, _, err) = cli_run(dir.path(), &spec, &format!("link-{target}"));
        assert_ne!(code, 0);
        assert!(
            err.contains("must be mounted on ordinary directory"),
            "/{target}: {err}"
        );
    }
}

#[test]
fn a_racing_rename_never_leaves_procfs_unmasked() {
    let test = "a_racing_rename_never_leaves_procfs_unmasked";
    if !ready(test) {
        return;
    }
    let drivers = library_drivers(test);
    // The victim's rootfs lies on a volume another container could write: the racer swaps
    // its /proc with another directory as fast as it can while victims start.
    let dir = tempfile::Builder::new()
        .prefix("edtest-escape-race-")
        .tempdir()
        .unwrap();
    let root = rootfs_copy(dir.path());
    std::fs::create_dir_all(root.join("fakeproc")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let racer = {
        let stop = stop.clone();
        let (a, b) = (root.join("proc"), root.join("fakeproc"));
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            let end = Instant::now() + Duration::from_secs(180);
            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                if nix::fcntl::renameat2(
                    None,
                    &a,
                    None,
                    &b,
                    nix::fcntl::RenameFlags::RENAME_EXCHANGE,
                )
                .is_ok()
                {
                    swaps += 1;
                }
            }
            swaps
        })
    };
    let check = "for d in /proc /fakeproc; do \
                   if [ -e $d/self/status ]; then \
                     [ -s $d/kcore ] && echo UNMASKED-$d; \
                     ( : >> $d/sys/kernel/core_pattern ) 2>/dev/null && echo WRITABLE-$d; \
                     echo procfs-at-$d; \
                   fi; \
                 done; true";
    let (mut ran, mut refused) = (0, 0);
    let mut seen = Vec::new();
    let mut tally = Vec::new();
    for (name, d) in &drivers {
        let (ran_before, refused_before) = (ran, refused);
        let mut caught = 0;
        for _ in 0..60 {
            let (r, out, _) = run(d, dir.path(), runc_like_spec(&root, &["sh", "-c", check]));
            match r {
                Ok(_) => {
                    ran += 1;
                    for bad in out
                        .lines()
                        .filter(|l| l.starts_with("UNMASKED") || l.starts_with("WRITABLE"))
                    {
                        seen.push(format!("{name}: {bad}"));
                    }
                }
                Err(e) => {
                    refused += 1;
                    caught += usize::from(e.contains("refused before start"));
                }
            }
        }
        tally.push(format!(
            "{name}: {} ran, {} refused ({caught} by the oci driver's mount check)",
            ran - ran_before,
            refused - refused_before
        ));
    }
    stop.store(true, Ordering::Relaxed);
    // Refusals are the drivers catching the race (the native driver's checks, the oci
    // driver's check of the binary's mounts before start).
    eprintln!("racing rename: {}", tally.join("; "));
    let swaps = racer.join().unwrap();
    assert!(swaps > 0, "the racer never swapped");
    assert!(
        seen.is_empty(),
        "a victim saw an unmasked procfs: {seen:?} ({ran} ran, {refused} refused)"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Seccomp across ABIs.

#[cfg(target_arch = "x86_64")]
#[test]
fn seccomp_profiles_filter_x32_and_i386_calls_by_their_architectures() {
    let test = "seccomp_profiles_filter_x32_and_i386_calls_by_their_architectures";
    if !ready(test) {
        return;
    }
    let drivers = library_drivers(test);
    let dir = tempfile::Builder::new()
        .prefix("edtest-escape-abi-")
        .tempdir()
        .unwrap();
    let root = rootfs_copy(dir.path());
    payload("abi_probe", &root.join("abi_probe"));
    let profile = |arches: &[&str]| {
        serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": arches,
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        })
    };
    for (name, d) in &drivers {
        let probe = |seccomp: &serde_json::Value, mode: &str| {
            let spec = edit(runc_like_spec(&root, &["/abi_probe", mode]), |v| {
                v["linux"]["seccomp"] = seccomp.clone();
            });
            let (r, out, err) = run(d, dir.path(), spec);
            (
                r.unwrap_or_else(|e| panic!("{name}, {mode}: {e} {err}")),
                out.trim().to_owned(),
            )
        };
        abi_probes(name, probe, &profile);
    }
}

#[cfg(target_arch = "x86_64")]
fn abi_probes(
    name: &str,
    probe: impl Fn(&serde_json::Value, &str) -> (ExitStatus, String),
    profile: &dyn Fn(&[&str]) -> serde_json::Value,
) {
    // Docker's shape: x86_64 with its sub-architectures. Every ABI's mkdir gets the profile's
    // errno — also x32 on a kernel without x32 (which would answer ENOSYS, -38).
    let all = profile(&["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
    for mode in ["native-mkdir", "x32-mkdir", "i386-mkdir"] {
        let (st, out) = probe(&all, mode);
        assert!(st.success(), "{name}, {mode}: {st}");
        assert_eq!(out, "-1", "{name}, {mode}: the profile's EPERM");
    }
    let (st, out) = probe(&all, "i386-getpid");
    assert!(
        st.success() && out.parse::<i64>().is_ok_and(|p| p > 0),
        "{name}: i386 getpid is allowed: {st} {out}"
    );
    // x86_64 alone: calls of the other ABIs are killed, as libseccomp does.
    let native_only = profile(&["SCMP_ARCH_X86_64"]);
    for mode in ["x32-mkdir", "i386-getpid"] {
        let (st, out) = probe(&native_only, mode);
        assert_eq!(
            st.signal,
            Some(nix::libc::SIGSYS),
            "{name}, {mode}: {st} {out}"
        );
    }
    let (st, out) = probe(&native_only, "native-mkdir");
    assert!(st.success() && out == "-1", "{name}: {st} {out}");
}
