//! containerd drives `execdriver` as its runc binary (`ctr run --runc-binary`), for a native
//! busybox image and for a wasm module image, both built here (no registry).
//!
//! containerd (Debian's package, installed by the test command) runs with a private config,
//! root and state under a temporary directory, inside a private mount + cgroup namespace:
//! the cgroup filesystems are mounted again there (so the absolute cgroup paths containerd's
//! shim asks for land under this process's own cgroup) and `/run/containerd` (where shims put
//! their sockets and ctr its fifos) is a private tmpfs. `ctr` enters the same namespaces.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use execdriver_tests::cgns::remount_script;
use execdriver_tests::image::oci_image;
use execdriver_tests::{busybox_rootfs, have, is_root, missing};

const NS: &str = "edtest";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A containerd of our own.
struct Containerd {
    dir: tempfile::TempDir,
    child: Child,
}

impl Containerd {
    fn start() -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("edtest-containerd-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let d = dir.path();
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
"#,
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = d.join("containerd.sock").display(),
        );
        std::fs::write(d.join("config.toml"), config).map_err(|e| e.to_string())?;
        let script = format!(
            "{} mkdir -p /run/containerd; mount -t tmpfs none /run/containerd; \
             exec containerd --config {}",
            remount_script(false),
            d.join("config.toml").display()
        );
        let log = std::fs::File::create(d.join("containerd.log")).map_err(|e| e.to_string())?;
        let child = Command::new("unshare")
            .args([
                "--mount",
                "--cgroup",
                "--propagation",
                "private",
                "sh",
                "-c",
            ])
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start containerd: {e}"))?;
        let me = Self { dir, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !me.dir.path().join("containerd.sock").exists() {
            if Instant::now() > deadline {
                return Err(format!("containerd did not start:\n{}", me.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(me)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// `ctr` in containerd's namespaces.
    fn ctr(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .args([
                "--mount",
                "--cgroup",
                "-t",
                &self.child.id().to_string(),
                "ctr",
            ])
            .arg("-a")
            .arg(self.dir.path().join("containerd.sock"))
            .args(["-n", NS])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ctr")
    }

    fn ctr_ok(&self, args: &[&str]) -> String {
        let o = self.ctr(args);
        assert!(
            o.status.success(),
            "ctr {args:?}: {}{}\n--- containerd log (tail)\n{}",
            text(&o.stdout),
            text(&o.stderr),
            self.log_tail()
        );
        text(&o.stdout)
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    fn task_status(&self, id: &str) -> String {
        let out = self.ctr_ok(&["task", "ls"]);
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or("(none)")
            .to_owned()
    }

    fn wait_task_status(&self, id: &str, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let s = self.task_status(id);
            if s == want || Instant::now() > deadline {
                return s;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Every process still in containerd's mount namespace is one it (so we) started:
        // shims, containers, hosting processes.
        let ns = std::fs::read_link(format!("/proc/{}/ns/mnt", self.child.id())).ok();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(ns) = ns {
            for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else {
                    continue;
                };
                if std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
                    .ok()
                    .as_ref()
                    == Some(&ns)
                {
                    let _ = Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                }
            }
        }
    }
}

#[test]
fn containerd_runs_native_and_wasm_containers_through_execdriver() {
    let test = "containerd_runs_native_and_wasm_containers_through_execdriver";
    if !is_root() {
        return missing(test, "needs root");
    }
    for bin in [
        "containerd",
        "ctr",
        "containerd-shim-runc-v2",
        "nsenter",
        "unshare",
        "tar",
    ] {
        if !have(bin) {
            return missing(
                test,
                &format!("{bin} is not installed (apt-get install containerd)"),
            );
        }
    }
    let rootfs = match busybox_rootfs() {
        Ok(r) => r,
        Err(e) => return missing(test, &e),
    };
    let ours = env!("CARGO_BIN_EXE_execdriver");
    let work = tempfile::tempdir().unwrap();

    // A wasm image: the module fixtures at the image's root.
    let wasm_root = work.path().join("wasm-rootfs");
    std::fs::create_dir(&wasm_root).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wasm-driver/tests/fixtures");
    for f in ["hello.wat", "exit.wat", "forever.wat"] {
        std::fs::copy(fixtures.join(f), wasm_root.join(f)).unwrap();
    }
    let busybox = "docker.io/library/edtest-busybox:latest";
    let wasm = "docker.io/library/edtest-wasm:latest";
    let busybox_tar = oci_image(
        work.path(),
        busybox,
        rootfs,
        &["sh"],
        &["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    );
    let wasm_tar = oci_image(work.path(), wasm, &wasm_root, &["/hello.wat"], &[]);

    let ctd = match Containerd::start() {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    ctd.ctr_ok(&["images", "import", busybox_tar.to_str().unwrap()]);
    ctd.ctr_ok(&["images", "import", wasm_tar.to_str().unwrap()]);
    let run = |image: &str, id: &str, args: &[&str]| -> Output {
        let mut v = vec![
            "run",
            "--rm",
            "--snapshotter",
            "native",
            "--runc-binary",
            ours,
            image,
            id,
        ];
        v.extend_from_slice(args);
        ctd.ctr(&v)
    };

    // native: output, exit code, the container's own pid namespace.
    let o = run(
        busybox,
        "ed-native",
        &["sh", "-c", "echo native says hi as pid $$; exit 3"],
    );
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}{}\n{}",
        text(&o.stdout),
        text(&o.stderr),
        ctd.log_tail()
    );
    assert_eq!(text(&o.stdout), "native says hi as pid 1\n");

    // wasm: the image's command, then one with an exit code.
    let o = run(wasm, "ed-wasm", &[]);
    assert!(
        o.status.success(),
        "{}{}\n{}",
        text(&o.stdout),
        text(&o.stderr),
        ctd.log_tail()
    );
    assert_eq!(text(&o.stdout), "hello from wasm\n");
    let o = run(wasm, "ed-wasm-exit", &["/exit.wat", "42"]);
    assert_eq!(o.status.code(), Some(42), "{}", text(&o.stderr));

    // A bad module: containerd reports our error (read from our JSON log).
    let o = run(wasm, "ed-wasm-bad", &["/missing.wat"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("missing.wat"),
        "{}",
        text(&o.stderr)
    );

    // Detached tasks: exec, pause/resume, kill, delete — native and wasm.
    for (image, id, args, exec) in [
        (
            busybox,
            "ed-n-task",
            vec!["sleep", "1000"],
            vec!["sh", "-c", "exit 4"],
        ),
        (
            wasm,
            "ed-w-task",
            vec!["/forever.wat"],
            vec!["/exit.wat", "4"],
        ),
    ] {
        let mut v = vec![
            "run",
            "-d",
            "--snapshotter",
            "native",
            "--runc-binary",
            ours,
            image,
            id,
        ];
        v.extend_from_slice(&args);
        ctd.ctr_ok(&v);
        assert_eq!(ctd.wait_task_status(id, "RUNNING"), "RUNNING", "{id}");
        let mut e = vec!["task", "exec", "--exec-id", "e1", id];
        e.extend_from_slice(&exec);
        let o = ctd.ctr(&e);
        assert_eq!(o.status.code(), Some(4), "{id}: exec: {}", text(&o.stderr));
        ctd.ctr_ok(&["task", "pause", id]);
        assert_eq!(ctd.task_status(id), "PAUSED", "{id}");
        ctd.ctr_ok(&["task", "resume", id]);
        assert_eq!(ctd.task_status(id), "RUNNING", "{id}");
        ctd.ctr_ok(&["task", "kill", "-s", "KILL", id]);
        assert_eq!(ctd.wait_task_status(id, "STOPPED"), "STOPPED", "{id}");
        ctd.ctr_ok(&["task", "delete", id]);
        ctd.ctr_ok(&["container", "delete", id]);
    }
    let left = ctd.ctr_ok(&["containers", "ls", "-q"]);
    assert_eq!(left.trim(), "", "containers left: {left}");
}
