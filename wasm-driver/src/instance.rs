//! One instance: its WASI context, its store, the epoch callback that kills, pauses and
//! throttles it, and the call of its entry function.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use execdriver_api::{DriverError, ExitStatus, Pipes, Stdio};
use wasmtime::{Store, UpdateDeadline, Val};
use wasmtime_wasi::cli::{InputFile, OutputFile, StdoutStream};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use crate::cache::{Compiled, ComponentPre};
use crate::control::{Control, Killed, Limiter, OomKilled};
use crate::engine::{CompCtx, CoreCtx, Runtime};

/// A directory the instance sees.
#[derive(Debug, Clone)]
pub(crate) struct Preopen {
    pub host: PathBuf,
    pub guest: String,
    pub read_only: bool,
    /// A detached nodev view of `host` (see `nodev`), shared by the container's instances;
    /// `None` where the engine can't make one.
    view: Option<Arc<std::os::fd::OwnedFd>>,
}

impl Preopen {
    /// A preopen of `host` at `guest`, through a nodev view where the engine may make one.
    pub fn new(host: PathBuf, guest: String, read_only: bool) -> Self {
        #[cfg(target_os = "linux")]
        let view = match crate::nodev::view(&host, read_only) {
            Ok(fd) => Some(Arc::new(fd)),
            Err(e) => {
                tracing::debug!(dir = %host.display(), err = %e, "no nodev view of the preopen (device nodes in it follow the engine's own permissions)");
                None
            }
        };
        #[cfg(not(target_os = "linux"))]
        let view = None;
        Self {
            host,
            guest,
            read_only,
            view,
        }
    }

    /// The path WASI opens: the view's root, or the directory itself.
    fn open_path(&self) -> PathBuf {
        match &self.view {
            Some(fd) => PathBuf::from(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&**fd)
            )),
            None => self.host.clone(),
        }
    }
}

/// Everything an instance is started with.
pub(crate) struct Setup {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub preopens: Vec<Preopen>,
    pub func: Option<String>,
    /// Where an HTTP component listens (the container's init only).
    pub http: Option<std::net::SocketAddr>,
}

/// The exit code of an instance that trapped (the wasmtime CLI's convention: 128 + SIGABRT).
/// Any other error of an instance (not a trap, not `proc_exit`) exits 1, as with that CLI.
pub const TRAP_EXIT_CODE: i32 = 134;

/// An instantiated module or component, not started yet.
pub(crate) enum Ready {
    Core {
        store: Store<CoreCtx>,
        instance: wasmtime::Instance,
        func: String,
    },
    Component {
        store: Store<CompCtx>,
        command: wasmtime_wasi::p2::bindings::Command,
    },
    ComponentP3 {
        store: Store<CompCtx>,
        command: wasmtime_wasi::p3::bindings::Command,
    },
    /// An HTTP component: its listener is bound, each request gets an instance.
    Http { server: crate::http::Server },
}

/// How an instance's stdio is driven.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Io {
    /// Through the runtime's reactor or blocking pool: a stream that waits for its peer never
    /// blocks the worker thread (see `stdio`). A started instance's.
    Async,
    /// Read and written inline: an HTTP request's instance, which shares the container's
    /// stdout with the requests running at once (the async streams hold one writer each).
    Inline,
}

/// The WASI context of `setup` with `pipes`; inside the runtime for [`Io::Async`].
pub(crate) fn wasi(setup: &Setup, pipes: Pipes, io: Io) -> Result<WasiCtxBuilder, DriverError> {
    let mut b = WasiCtxBuilder::new();
    b.args(&setup.args)
        .envs(&setup.env)
        .allow_blocking_current_thread(true);
    // The engine's own stdout or stderr, for `Stdio::Inherit` of an output (a duplicate).
    let own = |fd: std::os::fd::BorrowedFd<'_>| fd.try_clone_to_owned();
    let out = |fd: std::os::fd::OwnedFd| -> Box<dyn StdoutStream + Sync> {
        match io {
            Io::Async => crate::stdio::output(fd),
            Io::Inline => Box::new(OutputFile::new(std::fs::File::from(fd))),
        }
    };
    let dup_err = |e: std::io::Error| DriverError::io("duplicate the engine's stdio", e);
    match pipes.stdin {
        Stdio::Null => {}
        Stdio::Inherit => {
            b.inherit_stdin();
        }
        Stdio::Fd(fd) => match io {
            Io::Async => {
                b.stdin(crate::stdio::input(fd));
            }
            Io::Inline => {
                b.stdin(InputFile::new(std::fs::File::from(fd)));
            }
        },
    }
    match pipes.stdout {
        Stdio::Null => {}
        Stdio::Inherit if io == Io::Inline => {
            b.inherit_stdout();
        }
        Stdio::Inherit => {
            b.stdout(out(
                own(std::os::fd::AsFd::as_fd(&std::io::stdout())).map_err(dup_err)?
            ));
        }
        Stdio::Fd(fd) => {
            b.stdout(out(fd));
        }
    }
    match pipes.stderr {
        Stdio::Null => {}
        Stdio::Inherit if io == Io::Inline => {
            b.inherit_stderr();
        }
        Stdio::Inherit => {
            b.stderr(out(
                own(std::os::fd::AsFd::as_fd(&std::io::stderr())).map_err(dup_err)?
            ));
        }
        Stdio::Fd(fd) => {
            b.stderr(out(fd));
        }
    }
    for (i, p) in setup.preopens.iter().enumerate() {
        let perms = if p.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        b.preopened_dir(p.open_path(), &p.guest, perms)
            .map_err(|e| {
                let field = if i == 0 {
                    "root.path".to_owned()
                } else {
                    format!("mounts (preopen {})", p.guest)
                };
                DriverError::invalid_spec(field, format!("{}: {e}", p.host.display()))
            })?;
    }
    Ok(b)
}

/// The epoch callback: dies when killed, parks while paused, sleeps off an exhausted CPU
/// quota; otherwise yields to the other tasks of its worker thread and runs on for one more
/// tick. It runs while the instance is polled, so the instance's CPU time is read on the
/// thread that runs it (see [`Control::cpu_here`]), whichever worker that is.
fn on_epoch(
    control: Arc<Control>,
) -> impl FnMut() -> wasmtime::Result<UpdateDeadline> + Send + Sync + 'static {
    let mut period_start = Instant::now();
    let mut cpu_at_start = control.cpu_here();
    move || {
        if let Some(sig) = control.killed_by() {
            return Err(wasmtime::Error::new(Killed(sig)));
        }
        if control.shared.paused.load(Ordering::SeqCst) {
            let c = control.clone();
            return Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(async move { c.unpaused().await }),
            ));
        }
        if let Some((quota, period)) = control.shared.quota() {
            let period = Duration::from_micros(period);
            let now = Instant::now();
            let cpu = control.cpu_here();
            if now.duration_since(period_start) >= period {
                period_start = now;
                cpu_at_start = cpu;
            } else if cpu.saturating_sub(cpu_at_start) >= Duration::from_micros(quota) {
                // Quota used up: sit out the rest of the period.
                let wake = period_start + period;
                let shared = &control.shared;
                shared.throttled_periods.fetch_add(1, Ordering::Relaxed);
                shared.throttled_ns.fetch_add(
                    wake.saturating_duration_since(now).as_nanos() as u64,
                    Ordering::Relaxed,
                );
                period_start = wake;
                cpu_at_start = cpu;
                return Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(
                        wake,
                    ))),
                ));
            }
        }
        Ok(UpdateDeadline::Yield(1))
    }
}

/// Limits a component store by the container's memory and steers it from `control` (kill,
/// pause, CPU quota and a yield at every epoch tick).
pub(crate) fn steer(store: &mut Store<CompCtx>, control: &Arc<Control>) {
    store.limiter(|c| &mut c.limiter);
    store.set_epoch_deadline(1);
    let mut cb = on_epoch(control.clone());
    store.epoch_deadline_callback(move |_| cb());
}

/// Instantiates `compiled` (the instance exists, its entry has not been called); an HTTP
/// component binds its listener instead.
pub(crate) async fn instantiate(
    rt: &Runtime,
    compiled: &Compiled,
    setup: Setup,
    pipes: Pipes,
    control: &Arc<Control>,
    instances: &Arc<crate::http::Instances>,
) -> Result<Ready, wasmtime::Error> {
    let annotation = || format!("annotations.{}", crate::http::ANNOTATION);
    if setup.http.is_some() && !compiled.serves_http() {
        return Err(wasmtime::Error::new(DriverError::invalid_spec(
            annotation(),
            "the module serves no HTTP (no wasi:http/incoming-handler@0.2 export)",
        )));
    }
    let limiter = Limiter {
        control: control.clone(),
    };
    let component_store =
        |setup: &Setup, pipes: Pipes| -> Result<Store<CompCtx>, wasmtime::Error> {
            let mut b = wasi(setup, pipes, Io::Async).map_err(wasmtime::Error::new)?;
            let mut store = Store::new(&rt.engine, CompCtx::new(b.build(), limiter.clone()));
            steer(&mut store, control);
            Ok(store)
        };
    match compiled {
        Compiled::Core { pre, .. } => {
            let mut b = wasi(&setup, pipes, Io::Async).map_err(wasmtime::Error::new)?;
            let mut store = Store::new(
                &rt.engine,
                CoreCtx {
                    wasi: b.build_p1(),
                    limiter: limiter.clone(),
                },
            );
            store.limiter(|c| &mut c.limiter);
            store.set_epoch_deadline(1);
            let mut cb = on_epoch(control.clone());
            store.epoch_deadline_callback(move |_| cb());
            let instance = pre.instantiate_async(&mut store).await?;
            Ok(Ready::Core {
                store,
                instance,
                func: setup.func.unwrap_or_else(|| "_start".to_owned()),
            })
        }
        Compiled::Component {
            pre: ComponentPre::P2(pre),
        } => {
            let mut store = component_store(&setup, pipes)?;
            let command = pre.instantiate_async(&mut store).await?;
            Ok(Ready::Component { store, command })
        }
        Compiled::Component {
            pre: ComponentPre::P3(pre),
        } => {
            let mut store = component_store(&setup, pipes)?;
            let command = pre.instantiate_async(&mut store).await?;
            Ok(Ready::ComponentP3 { store, command })
        }
        Compiled::Component {
            pre: ComponentPre::Proxy(pre),
        } => {
            let Some(addr) = setup.http else {
                return Err(wasmtime::Error::new(DriverError::invalid_spec(
                    annotation(),
                    "missing: the component exports wasi:http/incoming-handler, so it serves \
                     HTTP on the address this annotation names",
                )));
            };
            let tasks = rt.tasks().map_err(wasmtime::Error::msg)?;
            let server = crate::http::Server::bind(
                addr,
                pre.clone(),
                setup,
                pipes,
                instances.clone(),
                tasks,
            )
            .map_err(wasmtime::Error::new)?;
            Ok(Ready::Http { server })
        }
    }
}

/// Calls the entry and turns the outcome into an exit status.
pub(crate) async fn call(ready: Ready, control: &Arc<Control>, id: &str) -> ExitStatus {
    let outcome: Result<i32, wasmtime::Error> = match ready {
        Ready::Core {
            mut store,
            instance,
            func,
        } => {
            let Some(f) = instance.get_func(&mut store, &func) else {
                return ExitStatus::exited(TRAP_EXIT_CODE);
            };
            let results = f.ty(&store).results().len();
            let mut out = vec![Val::I32(0); results];
            f.call_async(&mut store, &[], &mut out)
                .await
                .map(|()| match out.first() {
                    Some(Val::I32(code)) => *code,
                    _ => 0,
                })
        }
        Ready::Component { mut store, command } => command
            .wasi_cli_run()
            .call_run(&mut store)
            .await
            .map(|r| if r.is_ok() { 0 } else { 1 }),
        // WASI 0.3: `run` is an async function, called in the store's event loop.
        Ready::ComponentP3 { mut store, command } => store
            .run_concurrent(async move |a| command.wasi_cli_run().call_run(a).await)
            .await
            .and_then(|r| r)
            .map(|r| if r.is_ok() { 0 } else { 1 }),
        Ready::Http { server } => return server.serve(control).await,
    };
    exit_status(outcome, control, id)
}

/// The exit status of an instance's outcome.
pub(crate) fn exit_status(
    outcome: Result<i32, wasmtime::Error>,
    control: &Control,
    id: &str,
) -> ExitStatus {
    match outcome {
        Ok(code) => ExitStatus::exited(code),
        Err(e) => {
            if let Some(exit) = e.downcast_ref::<I32Exit>() {
                ExitStatus::exited(exit.0)
            } else if e.downcast_ref::<OomKilled>().is_some()
                || control.oom_killed.load(Ordering::SeqCst)
            {
                ExitStatus::signaled(9).with_oom_killed(true)
            } else if let Some(Killed(sig)) = e.downcast_ref::<Killed>() {
                ExitStatus::signaled(*sig)
            } else if let Some(sig) = control.killed_by() {
                ExitStatus::signaled(sig)
            } else if e.is::<wasmtime::Trap>() {
                tracing::warn!(%id, "wasm instance trapped: {e:#}");
                ExitStatus::exited(TRAP_EXIT_CODE)
            } else {
                // Not a trap: an error of the host side, e.g. p1 `proc_exit` with a status
                // outside WASI's 0..126. The wasmtime CLI exits 1 for these.
                tracing::warn!(%id, "wasm instance failed: {e:#}");
                ExitStatus::exited(1)
            }
        }
    }
}
