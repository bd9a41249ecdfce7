//! One wasmtime engine per driver: linkers, the tokio runtime host calls run on, and the
//! epoch ticker.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, Linker, PoolingAllocationConfig};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::control::Limiter;
use crate::options::WasmOptions;

/// A core module's store data.
pub(crate) struct CoreCtx {
    pub wasi: WasiP1Ctx,
    pub limiter: Limiter,
}

/// A component's store data.
pub(crate) struct CompCtx {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: Limiter,
    pub http: wasmtime_wasi_http::WasiHttpCtx,
    pub http_hooks: crate::http::NoOutbound,
}

impl CompCtx {
    pub fn new(wasi: WasiCtx, limiter: Limiter) -> Self {
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter,
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            http_hooks: crate::http::NoOutbound,
        }
    }
}

impl wasmtime_wasi_http::WasiHttpView for CompCtx {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            hooks: &mut self.http_hooks,
            table: &mut self.table,
            ctx: &mut self.http,
        }
    }
}

impl WasiView for CompCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The shared, expensive-to-build parts.
pub(crate) struct Runtime {
    pub engine: Engine,
    pub core_linker: Linker<CoreCtx>,
    pub comp_linker: wasmtime::component::Linker<CompCtx>,
    /// Instantiation runs on it (the caller's thread blocks on it) and the stdio streams'
    /// tasks live on it: one worker. Taken when dropped.
    io: Option<tokio::runtime::Runtime>,
    io_handle: tokio::runtime::Handle,
    /// Started instances, HTTP servers' connections and requests, on every core; built at the
    /// first start.
    tasks: std::sync::OnceLock<Result<tokio::runtime::Runtime, String>>,
    ticker: Ticker,
}

impl Runtime {
    pub fn new(opts: &WasmOptions) -> Result<Self, String> {
        let mut pool = PoolingAllocationConfig::new();
        let n = opts.max_instances.max(1);
        pool.total_core_instances(n)
            .total_component_instances(n)
            .total_memories(n)
            .total_tables(n)
            .total_stacks(n)
            .max_memory_size((opts.max_memory_mib.max(1) as usize) << 20);
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .wasm_component_model(true)
            // WASI 0.3 (p3) components: async functions, streams and futures.
            .wasm_component_model_async(true)
            .concurrency_support(true);
        let engine = Engine::new(&config).map_err(|e| format!("wasmtime engine: {e}"))?;
        let mut core_linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut core_linker, |c: &mut CoreCtx| &mut c.wasi)
            .map_err(|e| format!("WASI preview 1 linker: {e}"))?;
        crate::special::guard_p1(&mut core_linker)
            .map_err(|e| format!("WASI preview 1 open guard: {e}"))?;
        let mut comp_linker = wasmtime::component::Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut comp_linker)
            .map_err(|e| format!("WASI preview 2 linker: {e}"))?;
        crate::special::guard_p2(&mut comp_linker)
            .map_err(|e| format!("WASI preview 2 open guard: {e}"))?;
        // wasi:http 0.2 (types, outgoing-handler): what an HTTP component imports; outgoing
        // requests follow the network policy (none).
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut comp_linker)
            .map_err(|e| format!("wasi:http linker: {e}"))?;
        // WASI 0.3 beside 0.2 (its interfaces are versioned @0.3.0): a component imports one
        // or the other.
        wasmtime_wasi::p3::add_to_linker(&mut comp_linker)
            .map_err(|e| format!("WASI 0.3 linker: {e}"))?;
        crate::special::guard_p3(&mut comp_linker)
            .map_err(|e| format!("WASI 0.3 open guard: {e}"))?;
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("execdriver-wasm-io")
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        let ticker = Ticker::start(engine.clone(), Duration::from_micros(opts.tick_us.max(100)))?;
        Ok(Self {
            engine,
            core_linker,
            comp_linker,
            io_handle: tokio.handle().clone(),
            io: Some(tokio),
            tasks: std::sync::OnceLock::new(),
            ticker,
        })
    }

    /// The runtime started instances and HTTP requests run on as tasks, one worker thread
    /// per core (an instance yields at every epoch tick, so a busy one holds no worker, and
    /// its stdio never blocks one: see `stdio`).
    pub fn tasks(&self) -> Result<tokio::runtime::Handle, String> {
        self.tasks
            .get_or_init(|| {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(cores)
                    .thread_name("execdriver-wasm")
                    .enable_all()
                    .build()
                    .map_err(|e| format!("tokio runtime for instances: {e}"))
            })
            .as_ref()
            .map(|r| r.handle().clone())
            .map_err(Clone::clone)
    }

    /// The runtime instantiation blocks on (see `io`).
    pub fn io(&self) -> &tokio::runtime::Handle {
        &self.io_handle
    }

    /// Keeps the epoch ticking while the guard lives.
    pub fn ticking(&self) -> TickGuard<'_> {
        self.ticker.acquire();
        TickGuard {
            ticker: &self.ticker,
        }
    }
}

/// How long a dropped runtime waits for its tasks (a task of tokio's blocking pool, such as a
/// read of a terminal's stdin, may never end).
const SHUTDOWN_GRACE: Duration = Duration::from_millis(100);

impl Drop for Runtime {
    fn drop(&mut self) {
        // On a worker thread (the last started instance held the runtime) a blocking
        // shutdown is not allowed: the workers are told to stop, not waited for.
        let in_runtime = tokio::runtime::Handle::try_current().is_ok();
        let tasks = self.tasks.take().and_then(Result::ok);
        for rt in tasks.into_iter().chain(self.io.take()) {
            if in_runtime {
                rt.shutdown_background();
            } else {
                rt.shutdown_timeout(SHUTDOWN_GRACE);
            }
        }
    }
}

/// Increments the engine's epoch every tick while any instance runs; parked otherwise.
struct Ticker {
    active: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Ticker {
    fn start(engine: Engine, tick: Duration) -> Result<Self, String> {
        let active = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (active.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("execdriver-epoch".into())
            .spawn(move || {
                while !s.load(Ordering::Acquire) {
                    if a.load(Ordering::Acquire) == 0 {
                        std::thread::park();
                        continue;
                    }
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .map_err(|e| format!("epoch thread: {e}"))?;
        Ok(Self {
            active,
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }

    fn acquire(&self) {
        if self.active.fetch_add(1, Ordering::AcqRel) == 0 {
            self.unpark();
        }
    }

    fn unpark(&self) {
        if let Ok(t) = self.thread.lock()
            && let Some(t) = t.as_ref()
        {
            t.thread().unpark();
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.unpark();
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

/// See [`Runtime::ticking`].
pub(crate) struct TickGuard<'a> {
    ticker: &'a Ticker,
}

impl Drop for TickGuard<'_> {
    fn drop(&mut self) {
        self.ticker.active.fetch_sub(1, Ordering::AcqRel);
    }
}
