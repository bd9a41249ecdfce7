//! The `wasm` driver: [`Driver`] over in-process wasmtime instances.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use execdriver_api::oci_spec::runtime::{LinuxResources, Process};
use execdriver_api::{
    Capabilities, Command, ContainerId, CpuStats, Created, Driver, DriverError, Exit, ExitStatus,
    HttpStats, Info, MemoryStats, Operation, PidsStats, Pipes, ResourceStats, Result, Signal,
    Status,
};

use crate::cache::{CacheStats, Compiled, ModuleCache};
use crate::control::{Control, Shared};
use crate::engine::Runtime;
use crate::http::Instances;
use crate::instance::{self, Preopen, Ready, Setup};
use crate::options::WasmOptions;
use crate::{NAME, entry};

/// The `wasm` driver. Create it with [`crate::factory`] (by name, through a registry) or
/// [`WasmDriver::new`].
pub struct WasmDriver {
    options: WasmOptions,
    runtime: OnceLock<std::result::Result<Arc<Runtime>, String>>,
    modules: ModuleCache,
    /// Containers from `create` until `delete`.
    table: Mutex<HashMap<ContainerId, Arc<Container>>>,
}

struct Container {
    bundle: PathBuf,
    rootfs: PathBuf,
    created: SystemTime,
    annotations: std::collections::BTreeMap<String, String>,
    shared: Arc<Shared>,
    init: Arc<Control>,
    /// Its instances (the init first) and how many may exist at once
    /// (`linux.resources.pids.limit`).
    instances: Arc<Instances>,
    preopens: Vec<Preopen>,
    /// The address an HTTP component's server is bound to.
    http_address: OnceLock<std::net::SocketAddr>,
    started: AtomicBool,
    stopped: AtomicBool,
    /// The init's exit.
    exit: Exit,
    /// The instantiated init until `start`.
    pending: Mutex<Option<Ready>>,
    /// Instances made by `exec_create`, by exec id, until `exec_delete`.
    execs: Mutex<HashMap<String, ExecInstance>>,
}

/// An instance `exec_create` made.
struct ExecInstance {
    control: Arc<Control>,
    exit: Exit,
    /// Instantiated, until `exec_start`.
    pending: Option<Ready>,
}

impl Container {
    fn status(&self) -> Status {
        if self.stopped.load(Ordering::SeqCst) {
            Status::Stopped
        } else if self.shared.paused.load(Ordering::SeqCst) {
            Status::Paused
        } else if self.started.load(Ordering::SeqCst) {
            Status::Running
        } else {
            Status::Created
        }
    }
}

/// A process, resolved against a container's rootfs and ready to instantiate.
struct Planned {
    compiled: Arc<Compiled>,
    setup: Setup,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl std::fmt::Debug for WasmDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmDriver")
            .field("options", &self.options)
            .finish()
    }
}

impl WasmDriver {
    /// A driver with `options`. The engine is built on first use.
    pub fn new(options: WasmOptions) -> Self {
        Self {
            modules: ModuleCache::new(
                options.cache_dir.clone(),
                options.cache_max_mib.saturating_mul(1 << 20),
            ),
            options,
            runtime: OnceLock::new(),
            table: Mutex::new(HashMap::new()),
        }
    }

    /// How module loads were answered so far.
    pub fn cache_stats(&self) -> CacheStats {
        self.modules.stats()
    }

    fn runtime(&self) -> Result<&Arc<Runtime>> {
        self.runtime
            .get_or_init(|| Runtime::new(&self.options).map(Arc::new))
            .as_ref()
            .map_err(|e| DriverError::Internal {
                context: "wasm runtime".into(),
                message: e.clone(),
            })
    }

    fn get(&self, id: &ContainerId) -> Result<Arc<Container>> {
        lock(&self.table)
            .get(id)
            .cloned()
            .ok_or_else(|| DriverError::not_found(id))
    }

    fn running(&self, id: &ContainerId, op: &str) -> Result<Arc<Container>> {
        let c = self.get(id)?;
        match c.status() {
            Status::Running => Ok(c),
            Status::Stopped => Err(DriverError::NotRunning {
                id: id.to_string(),
                status: Status::Stopped,
            }),
            status => Err(DriverError::InvalidState {
                id: id.to_string(),
                op: op.into(),
                status,
            }),
        }
    }

    /// Resolves and loads the module of `process` inside `rootfs`.
    fn plan(
        &self,
        rootfs: &Path,
        process: &Process,
        preopens: Vec<Preopen>,
        http: Option<std::net::SocketAddr>,
    ) -> Result<Planned> {
        let args = process.args().as_deref().unwrap_or(&[]);
        let Some(arg0) = args.first() else {
            return Err(DriverError::invalid_spec(
                "process.args",
                "must not be empty",
            ));
        };
        if process.terminal() == Some(true) {
            return Err(DriverError::unsupported("process.terminal", NAME));
        }
        let e = entry::parse(arg0)?;
        let cwd = process.cwd();
        if !cwd.is_absolute() {
            return Err(DriverError::invalid_spec(
                "process.cwd",
                format!("{} is not an absolute path", cwd.display()),
            ));
        }
        let inside = if e.path.starts_with('/') {
            PathBuf::from(&e.path)
        } else {
            cwd.join(&e.path)
        };
        let host = rootfs.join(inside.strip_prefix("/").unwrap_or(&inside));
        let host = host.canonicalize().map_err(|err| {
            DriverError::invalid_spec(
                "process.args[0]",
                format!("module {} in the rootfs: {err}", e.path),
            )
        })?;
        if !host.starts_with(rootfs) {
            return Err(DriverError::invalid_spec(
                "process.args[0]",
                format!("module {} resolves outside the rootfs", e.path),
            ));
        }
        let rt = self.runtime()?;
        let compiled = self.modules.load(rt, &host, &e.path)?;
        match (&*compiled, &e.func) {
            (Compiled::Core { module, .. }, func) => {
                let name = func.as_deref().unwrap_or("_start");
                match module.get_export(name) {
                    Some(wasmtime::ExternType::Func(f)) => {
                        let results: Vec<_> = f.results().collect();
                        let ok_results = results.is_empty()
                            || (results.len() == 1 && matches!(results[0], wasmtime::ValType::I32));
                        if f.params().len() != 0 || !ok_results {
                            return Err(DriverError::invalid_spec(
                                "process.args[0]",
                                format!(
                                    "{name} in {} must take no parameters and return nothing or an i32",
                                    e.path
                                ),
                            ));
                        }
                    }
                    _ => {
                        return Err(DriverError::invalid_spec(
                            "process.args[0]",
                            format!("{} exports no function {name:?}", e.path),
                        ));
                    }
                }
            }
            (Compiled::Component { .. }, Some(f)) => {
                return Err(DriverError::cant_handle(
                    NAME,
                    format!(
                        "{}#{f}: a component runs its wasi:cli/run export; '#func' is for core modules",
                        e.path
                    ),
                ));
            }
            (Compiled::Component { .. }, None) => {}
        }
        let mut env = Vec::new();
        for (i, kv) in process.env().iter().flatten().enumerate() {
            match kv.split_once('=') {
                Some((k, v)) if !k.is_empty() => env.push((k.to_owned(), v.to_owned())),
                _ => {
                    return Err(DriverError::invalid_spec(
                        format!("process.env[{i}]"),
                        format!("{kv:?} is not KEY=VALUE"),
                    ));
                }
            }
        }
        Ok(Planned {
            compiled,
            setup: Setup {
                args: args.to_vec(),
                env,
                preopens,
                func: e.func,
                http,
            },
        })
    }

    /// Instantiates `planned` for `control` on this thread (its entry not called): the
    /// instance, or the status of one that died while instantiating (killed, or out of
    /// memory in its start function).
    fn instantiate(
        &self,
        c: &Arc<Container>,
        control: &Arc<Control>,
        planned: Planned,
        pipes: Pipes,
    ) -> Result<std::result::Result<Ready, ExitStatus>> {
        let rt = self.runtime()?;
        rt.io().block_on(async {
            let _tick = rt.ticking();
            control.bind_thread();
            // The instance leaves this (the caller's) thread when instantiated.
            let _leave = Unbind(control);
            let ready = tokio::select! {
                biased;
                sig = control.killed() => return Ok(Err(ExitStatus::signaled(sig))),
                r = instance::instantiate(rt, &planned.compiled, planned.setup, pipes, control, &c.instances) => r,
            };
            match ready {
                Ok(r) => Ok(Ok(r)),
                Err(e) => match early_death(&e, control) {
                    Some(st) => Ok(Err(st)),
                    None => Err(match e.downcast::<DriverError>() {
                        Ok(e) => e,
                        Err(e) => DriverError::cant_handle(NAME, format!("instantiate: {e:#}")),
                    }),
                },
            }
        })
    }

    /// Runs an instantiated instance as a task of the shared runtime (see
    /// [`Runtime::tasks`]); `done` gets its status when it ends, and runs in the task.
    fn launch<D>(
        &self,
        c: &Arc<Container>,
        control: &Arc<Control>,
        ready: Ready,
        done: impl FnOnce(ExitStatus) -> D + Send + 'static,
    ) -> Result<()>
    where
        D: std::future::Future<Output = ()> + Send + 'static,
    {
        let rt = self.runtime()?.clone();
        let tasks = rt.tasks().map_err(|e| DriverError::Internal {
            context: format!("container {}: start", c.shared.id),
            message: e,
        })?;
        let control = control.clone();
        let id = c.shared.id.clone();
        tasks.spawn(async move {
            let serves = matches!(ready, Ready::Http { .. });
            let status = {
                let _tick = rt.ticking();
                // A server decides itself what a kill means (SIGTERM: a graceful stop).
                let run = async {
                    tokio::select! {
                        biased;
                        sig = control.killed(), if !serves => {
                            if control.oom_killed.load(Ordering::SeqCst) {
                                ExitStatus::signaled(9).with_oom_killed(true)
                            } else {
                                ExitStatus::signaled(sig)
                            }
                        }
                        st = instance::call(ready, &control, id.as_str()) => st,
                    }
                };
                crate::control::bound(&control, run).await
            };
            let oom = status.oom_killed || control.oom_killed.load(Ordering::SeqCst);
            done(status.with_oom_killed(oom)).await;
        });
        Ok(())
    }

    fn remove(&self, id: &ContainerId) {
        lock(&self.table).remove(id);
    }
}

/// Unbinds the instance from the thread when dropped (see [`Control::unbind_thread`]).
struct Unbind<'a>(&'a Control);

impl Drop for Unbind<'_> {
    fn drop(&mut self) {
        self.0.unbind_thread();
    }
}

/// The init of `c` stopped: unstarted exec'd instances are dropped (their exit is SIGKILL),
/// started ones asked to die. Whether any still run.
fn stop_container(c: &Container) -> bool {
    c.stopped.store(true, Ordering::SeqCst);
    *lock(&c.pending) = None;
    for e in lock(&c.execs).values_mut() {
        if e.pending.take().is_some() {
            c.instances.remove(&e.control);
            e.exit.set(ExitStatus::signaled(9));
        }
    }
    let others: Vec<_> = c
        .instances
        .lock()
        .iter()
        .filter(|i| !Arc::ptr_eq(i, &c.init))
        .cloned()
        .collect();
    for i in &others {
        i.request_kill(9);
    }
    !others.is_empty()
}

/// The init of `c` ended with `status` (in its task): the container stops, every exec'd
/// instance with it (started ones are killed and awaited, for at most 10 s), then the exit is
/// set.
async fn end_container(c: Arc<Container>, status: ExitStatus) {
    if stop_container(&c) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while c.instances.lock().len() > 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    c.exit.set(status);
}

/// The init of `c` ended before it was started (killed while it instantiated, or its start
/// failed): nothing else can run in it yet.
fn end_unstarted(c: &Container, status: ExitStatus) {
    stop_container(c);
    c.exit.set(status);
}

/// An instantiation that failed because the instance was killed or ran out of memory (in its
/// start function) is a death, not an error.
fn early_death(e: &wasmtime::Error, control: &Control) -> Option<ExitStatus> {
    let dead = e.downcast_ref::<crate::control::Killed>().is_some()
        || e.downcast_ref::<crate::control::OomKilled>().is_some()
        || control.killed_by().is_some()
        || control.oom_killed.load(Ordering::SeqCst);
    dead.then(|| instance::exit_status(Err(wasmtime::Error::msg(e.to_string())), control, ""))
}

fn memory_limit(r: Option<&LinuxResources>) -> Result<Option<u64>> {
    match r.and_then(|r| r.memory().as_ref()).and_then(|m| m.limit()) {
        None | Some(-1) => Ok(None),
        Some(l) if l > 0 => Ok(Some(l as u64)),
        Some(l) => Err(DriverError::invalid_spec(
            "linux.resources.memory.limit",
            format!("{l} is not a limit (bytes > 0, or -1)"),
        )),
    }
}

/// Resources a wasm container can't honour: refused rather than ignored.
fn check_resources(r: &LinuxResources) -> Result<()> {
    let unsupported = |f: &str| {
        Err(DriverError::unsupported(
            format!("linux.resources.{f}"),
            NAME,
        ))
    };
    if r.block_io().is_some() {
        return unsupported("blockIO");
    }
    if r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()) {
        return unsupported("hugepageLimits");
    }
    if r.network().is_some() {
        return unsupported("network");
    }
    if r.rdma().as_ref().is_some_and(|m| !m.is_empty()) {
        return unsupported("rdma");
    }
    if r.unified().as_ref().is_some_and(|m| !m.is_empty()) {
        return unsupported("unified");
    }
    if let Some(c) = r.cpu() {
        if let Some(q) = c.quota()
            && q != -1
            && q < 1000
        {
            return Err(DriverError::invalid_spec(
                "linux.resources.cpu.quota",
                format!("{q} is below 1000 µs"),
            ));
        }
        if let Some(p) = c.period()
            && !(1000..=1_000_000).contains(&p)
        {
            return Err(DriverError::invalid_spec(
                "linux.resources.cpu.period",
                format!("{p} is outside 1000..=1000000 µs"),
            ));
        }
    }
    Ok(())
}

fn preopens(cmd: &Command, rootfs: &Path) -> Result<Vec<Preopen>> {
    let read_only = cmd
        .spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false);
    let mut out = vec![Preopen::new(rootfs.to_owned(), "/".into(), read_only)];
    for (i, m) in cmd.spec.mounts().iter().flatten().enumerate() {
        let opts = m.options().as_deref().unwrap_or(&[]);
        let bind =
            m.typ().as_deref() == Some("bind") || opts.iter().any(|o| o == "bind" || o == "rbind");
        if !bind {
            continue;
        }
        let field = format!("mounts[{i}]");
        let src = m.source().as_deref().ok_or_else(|| {
            DriverError::invalid_spec(format!("{field}.source"), "a bind mount needs a source")
        })?;
        let host = if src.is_absolute() {
            src.to_path_buf()
        } else {
            cmd.bundle.join(src)
        };
        if !host.is_dir() {
            return Err(DriverError::invalid_spec(
                format!("{field}.source"),
                format!(
                    "{} is not a directory (wasm preopens are directories)",
                    host.display()
                ),
            ));
        }
        let dest = m.destination();
        if !dest.is_absolute()
            || dest
                .components()
                .any(|c| c == std::path::Component::ParentDir)
        {
            return Err(DriverError::invalid_spec(
                format!("{field}.destination"),
                format!("{} must be absolute, without '..'", dest.display()),
            ));
        }
        out.push(Preopen::new(
            host,
            dest.display().to_string(),
            read_only || opts.iter().any(|o| o == "ro"),
        ));
    }
    Ok(out)
}

/// CPU time of a thread of this process: (total from schedstat, user, system), in ns.
fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

impl Driver for WasmDriver {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with(Operation::Exec)
            .with(Operation::Pause)
            .with(Operation::Stats)
            .with(Operation::Pids)
            .with(Operation::Update)
            .with(Operation::Oom)
            .with(Operation::TwoPhase)
            .with(Operation::TwoPhaseExec)
    }

    // `run` and `exec` are the API's lifecycle engine over the primitives below.

    fn create(&self, cmd: &Command, pipes: Pipes) -> Result<Created> {
        execdriver_api::validate_spec(&cmd.spec)?;
        pipes.refuse_extra(NAME)?;
        let process = cmd.process()?;
        let rootfs_path = cmd.rootfs()?;
        let rootfs = rootfs_path.canonicalize().map_err(|e| {
            DriverError::invalid_spec("root.path", format!("{}: {e}", rootfs_path.display()))
        })?;
        if !rootfs.is_dir() {
            return Err(DriverError::invalid_spec(
                "root.path",
                format!("{} is not a directory", rootfs.display()),
            ));
        }
        let resources = cmd
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref());
        if let Some(r) = resources {
            check_resources(r)?;
        }
        let limit = memory_limit(resources)?;
        let cpu = resources.and_then(|r| r.cpu().as_ref());
        let pids = resources
            .and_then(|r| r.pids().as_ref())
            .map_or(0, |p| p.limit().max(0) as u64);
        let preopens = preopens(cmd, &rootfs)?;
        let http = crate::http::listen_address(cmd.spec.annotations().as_ref())?;
        let planned = self.plan(&rootfs, process, preopens.clone(), http)?;
        if planned.compiled.serves_http() && pids == 1 {
            return Err(crate::http::no_room_for_requests());
        }

        let shared = Arc::new(Shared::new(
            cmd.id.clone(),
            limit,
            cpu.and_then(|c| c.quota()),
            cpu.and_then(|c| c.period()),
        ));
        let init = Arc::new(Control::new(shared.clone()));
        let c = Arc::new(Container {
            bundle: cmd.bundle.clone(),
            rootfs,
            created: SystemTime::now(),
            annotations: cmd
                .spec
                .annotations()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            shared,
            init: init.clone(),
            instances: Arc::new(Instances::new(init.clone(), pids)),
            preopens,
            http_address: OnceLock::new(),
            started: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            exit: Exit::new(),
            pending: Mutex::new(None),
            execs: Mutex::new(HashMap::new()),
        });
        {
            let mut table = lock(&self.table);
            if table.contains_key(&cmd.id) {
                return Err(DriverError::AlreadyExists {
                    id: cmd.id.to_string(),
                });
            }
            table.insert(cmd.id.clone(), c.clone());
        }
        match self.instantiate(&c, &init, planned, pipes) {
            Ok(Ok(ready)) => {
                if let Ready::Http { server } = &ready {
                    if let Some(a) = server.local_addr() {
                        let _ = c.http_address.set(a);
                    }
                    c.shared.http.serving.store(true, Ordering::SeqCst);
                }
                *lock(&c.pending) = Some(ready);
            }
            // Killed while it instantiated: created, and exited at once.
            Ok(Err(status)) => end_unstarted(&c, status),
            Err(e) => {
                self.remove(&cmd.id);
                return Err(e);
            }
        }
        Ok(Created::new(std::process::id(), c.shared.oom.clone()))
    }

    fn start(&self, id: &ContainerId) -> Result<()> {
        let c = self.get(id)?;
        let Some(ready) = lock(&c.pending).take() else {
            return Err(DriverError::InvalidState {
                id: id.to_string(),
                op: "start".into(),
                status: c.status(),
            });
        };
        c.started.store(true, Ordering::SeqCst);
        let launched = self.launch(&c, &c.init, ready, {
            let c = c.clone();
            move |status| end_container(c, status)
        });
        if let Err(e) = launched {
            end_unstarted(&c, ExitStatus::signaled(9));
            return Err(e);
        }
        Ok(())
    }

    fn wait(&self, id: &ContainerId) -> Result<Exit> {
        Ok(self.get(id)?.exit.clone())
    }

    fn delete(&self, id: &ContainerId) -> Result<()> {
        let c = self.get(id)?;
        if c.exit.status().is_none() {
            return Err(DriverError::InvalidState {
                id: id.to_string(),
                op: "delete".into(),
                status: c.status(),
            });
        }
        c.shared.oom.close();
        let mut table = lock(&self.table);
        if table.get(id).is_some_and(|x| Arc::ptr_eq(x, &c)) {
            table.remove(id);
        }
        Ok(())
    }

    fn exec_create(
        &self,
        id: &ContainerId,
        exec_id: &str,
        process: &Process,
        pipes: Pipes,
    ) -> Result<Created> {
        pipes.refuse_extra(NAME)?;
        let c = self.running(id, "exec")?;
        if lock(&c.execs).contains_key(exec_id) {
            return Err(DriverError::exec_exists(id, exec_id));
        }
        let planned = self.plan(&c.rootfs, process, c.preopens.clone(), None)?;
        if planned.compiled.serves_http() {
            return Err(DriverError::unsupported(
                "exec of an HTTP component (it serves in the container's init only)",
                NAME,
            ));
        }
        let control = Arc::new(Control::new(c.shared.clone()));
        if !c.instances.try_add(&control) {
            let max = c.instances.max.load(Ordering::Relaxed);
            return Err(DriverError::sys(
                format!("container {id}: exec beyond linux.resources.pids.limit {max}"),
                libc_eagain(),
            ));
        }
        let exit = Exit::new();
        let pending = match self.instantiate(&c, &control, planned, pipes) {
            Ok(Ok(ready)) => Some(ready),
            Ok(Err(status)) => {
                c.instances.remove(&control);
                exit.set(status);
                None
            }
            Err(e) => {
                c.instances.remove(&control);
                return Err(e);
            }
        };
        {
            use std::collections::hash_map::Entry;
            let mut execs = lock(&c.execs);
            match execs.entry(exec_id.to_owned()) {
                Entry::Occupied(_) => {
                    drop(execs);
                    c.instances.remove(&control);
                    return Err(DriverError::exec_exists(id, exec_id));
                }
                Entry::Vacant(v) => {
                    v.insert(ExecInstance {
                        control,
                        exit,
                        pending,
                    });
                }
            }
        }
        // The container's init ended meanwhile: so does this one.
        if c.stopped.load(Ordering::SeqCst)
            && let Some(e) = lock(&c.execs).get_mut(exec_id)
            && e.pending.take().is_some()
        {
            c.instances.remove(&e.control);
            e.exit.set(ExitStatus::signaled(9));
        }
        Ok(Created::new(std::process::id(), c.shared.oom.clone()))
    }

    fn exec_start(&self, id: &ContainerId, exec_id: &str) -> Result<()> {
        let c = self.get(id)?;
        let (control, exit, ready) = {
            let mut execs = lock(&c.execs);
            let e = execs
                .get_mut(exec_id)
                .ok_or_else(|| DriverError::exec_not_found(id, exec_id))?;
            let Some(ready) = e.pending.take() else {
                return Err(DriverError::exec_started(
                    id,
                    exec_id,
                    e.exit.status().is_some(),
                ));
            };
            (e.control.clone(), e.exit.clone(), ready)
        };
        let (instances, ended, set) = (c.instances.clone(), control.clone(), exit.clone());
        let launched = self.launch(&c, &control, ready, move |status| async move {
            instances.remove(&ended);
            set.set(status);
        });
        if let Err(e) = launched {
            c.instances.remove(&control);
            exit.set(ExitStatus::signaled(9));
            return Err(e);
        }
        Ok(())
    }

    fn exec_wait(&self, id: &ContainerId, exec_id: &str) -> Result<Exit> {
        let c = self.get(id)?;
        lock(&c.execs)
            .get(exec_id)
            .map(|e| e.exit.clone())
            .ok_or_else(|| DriverError::exec_not_found(id, exec_id))
    }

    fn exec_delete(&self, id: &ContainerId, exec_id: &str) -> Result<()> {
        let c = self.get(id)?;
        let e = lock(&c.execs)
            .remove(exec_id)
            .ok_or_else(|| DriverError::exec_not_found(id, exec_id))?;
        if e.pending.is_some() {
            c.instances.remove(&e.control);
            e.exit.set(ExitStatus::signaled(9));
        } else if e.exit.status().is_none() {
            e.control.request_kill(9);
            if e.exit.wait_timeout(Duration::from_secs(10)).is_none() {
                return Err(DriverError::Internal {
                    context: format!("container {id}: exec {exec_id}"),
                    message: "still running 10s after the kill (blocked in a host call?)".into(),
                });
            }
        }
        Ok(())
    }

    fn kill(&self, id: &ContainerId, signal: Signal) -> Result<()> {
        let c = self.get(id)?;
        if c.stopped.load(Ordering::SeqCst) {
            return Err(DriverError::NotRunning {
                id: id.to_string(),
                status: Status::Stopped,
            });
        }
        match signal.number() {
            2 | 9 | 15 => {
                c.init.request_kill(signal.number());
                // Not started: nothing runs to notice, so it ends here.
                if lock(&c.pending).take().is_some() {
                    end_unstarted(&c, ExitStatus::signaled(signal.number()));
                }
                Ok(())
            }
            _ => Err(DriverError::unsupported(format!("signal {signal}"), NAME)),
        }
    }

    fn pause(&self, id: &ContainerId) -> Result<()> {
        let c = self.running(id, "pause")?;
        c.shared.set_paused(true);
        Ok(())
    }

    fn unpause(&self, id: &ContainerId) -> Result<()> {
        let c = self.get(id)?;
        match c.status() {
            Status::Paused => {
                c.shared.set_paused(false);
                Ok(())
            }
            status => Err(DriverError::InvalidState {
                id: id.to_string(),
                op: "unpause".into(),
                status,
            }),
        }
    }

    fn terminate(&self, id: &ContainerId) -> Result<()> {
        let c = self.get(id)?;
        for i in c.instances.lock().iter() {
            i.request_kill(9);
        }
        if lock(&c.pending).take().is_some() {
            end_unstarted(&c, ExitStatus::signaled(9));
        }
        match c.exit.wait_timeout(Duration::from_secs(10)) {
            Some(_) => Ok(()),
            None => Err(DriverError::Internal {
                context: format!("container {id}: terminate"),
                message: "still running 10s after the kill (blocked in a host call?)".into(),
            }),
        }
    }

    fn clean(&self, id: &ContainerId) -> Result<()> {
        let c = match lock(&self.table).get(id) {
            None => return Ok(()),
            Some(c) => c.clone(),
        };
        if c.status() != Status::Stopped || c.exit.status().is_none() {
            return Err(DriverError::InvalidState {
                id: id.to_string(),
                op: "clean".into(),
                status: c.status(),
            });
        }
        // Instances leave nothing behind once they ended: only the record goes.
        self.delete(id)
    }

    fn info(&self, id: &ContainerId) -> Result<Info> {
        let c = self.get(id)?;
        let mut info = Info::new(id.clone(), NAME, c.status(), c.bundle.clone());
        info.pid = (c.status() != Status::Stopped).then_some(std::process::id());
        info.created = c.created;
        info.annotations = c.annotations.clone();
        if let Some(a) = c.http_address.get() {
            info.annotations
                .insert(crate::http::ADDRESS_ANNOTATION.into(), a.to_string());
        }
        Ok(info)
    }

    fn pids(&self, id: &ContainerId) -> Result<Vec<u32>> {
        let c = self.get(id)?;
        if c.status() == Status::Stopped {
            return Ok(Vec::new());
        }
        Ok(vec![std::process::id()])
    }

    fn stats(&self, id: &ContainerId) -> Result<ResourceStats> {
        let c = self.get(id)?;
        if c.status() == Status::Stopped {
            return Err(DriverError::NotRunning {
                id: id.to_string(),
                status: Status::Stopped,
            });
        }
        let instances = c.instances.lock().clone();
        let mut cpu = CpuStats::default();
        let (t, u, s) = *c
            .shared
            .cpu_done
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (cpu.total_ns, cpu.user_ns, cpu.system_ns) = (t, u, s);
        for i in &instances {
            let (t, u, s) = i.cpu_now();
            cpu.total_ns += t;
            cpu.user_ns += u;
            cpu.system_ns += s;
        }
        cpu.throttled_periods = c.shared.throttled_periods.load(Ordering::Relaxed);
        cpu.throttled_ns = c.shared.throttled_ns.load(Ordering::Relaxed);
        let mut memory = MemoryStats::default();
        memory.usage = c.shared.memory_used.load(Ordering::Relaxed);
        memory.rss = memory.usage;
        memory.limit = c.shared.limit().unwrap_or_else(host_memory);
        memory.failcnt = c.shared.oom.count();
        let mut pids = PidsStats::default();
        pids.current = instances.len() as u64;
        let max = c.instances.max.load(Ordering::Relaxed);
        pids.limit = (max > 0).then_some(max);
        let mut s = ResourceStats::new();
        s.cpu = cpu;
        s.memory = memory;
        s.pids = pids;
        let http = &c.shared.http;
        if http.serving.load(Ordering::SeqCst) {
            s.http = Some(HttpStats::new(
                http.served.load(Ordering::SeqCst),
                http.in_flight.load(Ordering::SeqCst),
            ));
        }
        Ok(s)
    }

    fn update(&self, id: &ContainerId, resources: &LinuxResources) -> Result<()> {
        let c = self.get(id)?;
        if c.status() == Status::Stopped {
            return Err(DriverError::NotRunning {
                id: id.to_string(),
                status: Status::Stopped,
            });
        }
        check_resources(resources)?;
        if resources.pids().as_ref().is_some_and(|p| p.limit() == 1)
            && c.shared.http.serving.load(Ordering::SeqCst)
        {
            return Err(crate::http::no_room_for_requests());
        }
        if let Some(l) = memory_limit(Some(resources))? {
            c.shared.memory_limit.store(l, Ordering::SeqCst);
        } else if resources.memory().as_ref().and_then(|m| m.limit()) == Some(-1) {
            c.shared.memory_limit.store(u64::MAX, Ordering::SeqCst);
        }
        if let Some(cpu) = resources.cpu() {
            if let Some(q) = cpu.quota() {
                c.shared.cpu_quota_us.store(q, Ordering::SeqCst);
            }
            if let Some(p) = cpu.period() {
                c.shared.cpu_period_us.store(p, Ordering::SeqCst);
            }
        }
        if let Some(p) = resources.pids() {
            c.instances.set_max(p.limit().max(0) as u64);
        }
        Ok(())
    }

    fn list(&self) -> Result<Vec<ContainerId>> {
        let mut ids: Vec<_> = lock(&self.table).keys().cloned().collect();
        ids.sort();
        Ok(ids)
    }

    fn can_handle(&self, cmd: &Command) -> Result<()> {
        if cmd.is_wasm_entrypoint() {
            Ok(())
        } else {
            Err(DriverError::cant_handle(
                NAME,
                "process.args[0] is not a WebAssembly program (.wasm, .wat, #func, or a file \
                 starting with \\0asm)",
            ))
        }
    }

    /// The engine (built now if it was not: the pooling allocator's reservation, the epoch
    /// ticker) and the on-disk cache directory.
    fn health(&self) -> execdriver_api::Health {
        use execdriver_api::{Health, Level};
        let mut h = Health::new();
        match self.runtime() {
            Ok(_) => h.push(
                "engine",
                Level::Ok,
                format!(
                    "wasmtime, {} instance slots, {} containers",
                    self.options.max_instances,
                    lock(&self.table).len()
                ),
            ),
            Err(e) => h.push("engine", Level::Failed, e.to_string()),
        }
        if let Some(dir) = &self.options.cache_dir {
            h.push_dir("cache dir", dir, Level::Degraded, |d| {
                nix::unistd::access(d, nix::unistd::AccessFlags::W_OK).is_ok()
            });
        }
        h
    }
}

const fn libc_eagain() -> i32 {
    11
}
