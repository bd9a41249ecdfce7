//! Serving `wasi:http`: a component that exports `wasi:http/incoming-handler@0.2` runs as a
//! server container. The listen address is the bundle's annotation [`ANNOTATION`]; every
//! request gets a fresh instance of the pre-linked component (a pooling-allocator slot), with
//! the container's arguments, environment, preopens, stdout/stderr, memory limit and CPU
//! quota. Requests in flight count as the container's instances, the server as one more, so
//! `linux.resources.pids.limit` bounds them (a request waits for a free slot). Pause stops
//! accepting and parks running instances; `SIGTERM`/`SIGINT` stop accepting, let the requests
//! in flight finish and exit 0; `SIGKILL` ends everything at once (137). Outgoing requests are
//! refused (`HTTP-request-denied`): the in-process driver allows no network.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use execdriver_api::{DriverError, ExitStatus, Pipes, Stdio};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::{Notify, watch};
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpHooks, WasiHttpView};

use crate::control::{Control, Limiter};
use crate::engine::CompCtx;
use crate::instance::Setup;

/// The annotation that names the address an HTTP component listens on, `IP:PORT` (port 0: one
/// the kernel picks). It is bound in the engine's network namespace.
pub const ANNOTATION: &str = "org.execdriver.wasm.http";

/// The annotation [`Info`](execdriver_api::Info) reports the bound address under.
pub const ADDRESS_ANNOTATION: &str = "org.execdriver.wasm.http.address";

/// The listen address of `annotations`, if any.
pub(crate) fn listen_address(
    annotations: Option<&std::collections::HashMap<String, String>>,
) -> Result<Option<SocketAddr>, DriverError> {
    let Some(v) = annotations.and_then(|a| a.get(ANNOTATION)) else {
        return Ok(None);
    };
    v.parse().map(Some).map_err(|e| {
        DriverError::invalid_spec(
            format!("annotations.{ANNOTATION}"),
            format!("{v:?} is not IP:PORT ({e})"),
        )
    })
}

/// The error for `pids.limit` 1 on a server: the server itself is the one.
pub(crate) fn no_room_for_requests() -> DriverError {
    DriverError::invalid_spec(
        "linux.resources.pids.limit",
        "1 leaves no instance for requests (the HTTP server counts as one)",
    )
}

/// `wasi:http` hooks that refuse every outgoing request.
pub(crate) struct NoOutbound;

impl WasiHttpHooks for NoOutbound {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        tracing::info!(uri = %request.uri(), "outgoing HTTP request refused (no network)");
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

/// The instances of one container and how many may exist at once.
pub(crate) struct Instances {
    pub list: Mutex<Vec<Arc<Control>>>,
    /// `linux.resources.pids.limit`; 0 = no limit.
    pub max: std::sync::atomic::AtomicU64,
    /// Notified when an instance leaves the list.
    pub freed: Notify,
}

impl Instances {
    pub fn new(init: Arc<Control>, max: u64) -> Self {
        Self {
            list: Mutex::new(vec![init]),
            max: max.into(),
            freed: Notify::new(),
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Control>>> {
        self.list.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `c` if the limit allows it.
    pub fn try_add(&self, c: &Arc<Control>) -> bool {
        let mut list = self.lock();
        let max = self.max.load(Ordering::Relaxed);
        if max > 0 && list.len() as u64 >= max {
            return false;
        }
        list.push(c.clone());
        true
    }

    /// A new limit (0 = none); requests waiting for a slot look again.
    pub fn set_max(&self, max: u64) {
        self.max.store(max, Ordering::SeqCst);
        self.freed.notify_waiters();
    }

    /// Removes `c`; the CPU time it used stays the container's.
    pub fn remove(&self, c: &Arc<Control>) {
        let gone = {
            let mut list = self.lock();
            let before = list.len();
            list.retain(|i| !Arc::ptr_eq(i, c));
            before != list.len()
        };
        if gone {
            c.unbind_thread();
            let used = c.cpu_now();
            let mut done = c
                .shared
                .cpu_done
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *done = (done.0 + used.0, done.1 + used.1, done.2 + used.2);
        }
        self.freed.notify_waiters();
    }

    /// Adds `c` once the limit allows it, or gives up when `server` is asked to die.
    async fn add(&self, c: &Arc<Control>, server: &Control) -> bool {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if server.killed_by().is_some() {
                return false;
            }
            if self.try_add(c) {
                return true;
            }
            tokio::select! {
                () = freed => {}
                _ = server.killed() => return false,
            }
        }
    }
}

/// A bound HTTP server, not accepting yet.
pub(crate) struct Server {
    listener: std::net::TcpListener,
    inner: Arc<Inner>,
    /// Where connections and requests run.
    tasks: tokio::runtime::Handle,
}

struct Inner {
    pre: ProxyPre<CompCtx>,
    setup: Setup,
    /// The container's stdout and stderr, shared by the requests.
    stdout: Stdio,
    stderr: Stdio,
    instances: Arc<Instances>,
}

impl Server {
    /// Binds `addr` (the error names the annotation).
    pub fn bind(
        addr: SocketAddr,
        pre: ProxyPre<CompCtx>,
        setup: Setup,
        pipes: Pipes,
        instances: Arc<Instances>,
        tasks: tokio::runtime::Handle,
    ) -> Result<Self, DriverError> {
        let listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| {
                DriverError::invalid_spec(
                    format!("annotations.{ANNOTATION}"),
                    format!("listen on {addr}: {e}"),
                )
            })?;
        Ok(Self {
            listener,
            inner: Arc::new(Inner {
                pre,
                setup,
                stdout: pipes.stdout,
                stderr: pipes.stderr,
                instances,
            }),
            tasks,
        })
    }

    /// The address bound.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `control` (the container's init) is killed; see the module docs.
    pub async fn serve(self, control: &Arc<Control>) -> ExitStatus {
        let shared = control.shared.clone();
        let listener = match tokio::net::TcpListener::from_std(self.listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(id = %shared.id, "HTTP listener: {e}");
                return ExitStatus::exited(1);
            }
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut conns = tokio::task::JoinSet::new();
        let sig = loop {
            let woken = shared.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if let Some(sig) = control.killed_by() {
                break sig;
            }
            if shared.paused.load(Ordering::SeqCst) {
                // Frozen: connections wait in the listen backlog.
                woken.await;
                continue;
            }
            tokio::select! {
                () = woken => {}
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                r = listener.accept() => match r {
                    Ok((stream, _)) => match stream.into_std() {
                        Ok(stream) => {
                            let _ = stream.set_nodelay(true);
                            let conn = connection(stream, self.inner.clone(), control.clone(), stop_rx.clone());
                            conns.spawn_on(conn, &self.tasks);
                        }
                        Err(e) => tracing::debug!(id = %shared.id, "accept: {e}"),
                    },
                    Err(e) => tracing::debug!(id = %shared.id, "accept: {e}"),
                },
            }
        };
        drop(listener);
        if sig == 9 {
            conns.abort_all();
        } else {
            // Graceful: no new connections; the ones open finish their request in flight.
            let _ = stop_tx.send(true);
            loop {
                tokio::select! {
                    biased;
                    () = control.killed_hard() => {
                        conns.abort_all();
                        break;
                    }
                    next = conns.join_next() => if next.is_none() { break },
                }
            }
        }
        while conns.join_next().await.is_some() {}
        // Requests still running (their connection gone) die with the server.
        let left: Vec<_> = self
            .inner
            .instances
            .lock()
            .iter()
            .filter(|i| !Arc::ptr_eq(i, control))
            .cloned()
            .collect();
        for i in &left {
            i.request_kill(9);
        }
        shared.http.serving.store(false, Ordering::SeqCst);
        match control.killed_by() {
            Some(9) => ExitStatus::signaled(9),
            _ => ExitStatus::exited(0),
        }
    }
}

/// One connection: HTTP/1.1 with keep-alive, shut down gracefully when `stop` turns true.
async fn connection(
    stream: std::net::TcpStream,
    inner: Arc<Inner>,
    server: Arc<Control>,
    mut stop: watch::Receiver<bool>,
) {
    // Registered with the runtime it runs on.
    let stream = match tokio::net::TcpStream::from_std(stream) {
        Ok(s) => s,
        Err(e) => return tracing::debug!("HTTP connection: {e}"),
    };
    let service = hyper::service::service_fn(move |req| {
        let inner = inner.clone();
        let server = server.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(inner, server, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(wasmtime_wasi_http::io::TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!("HTTP connection: {e}");
            }
            return;
        }
        _ = stop.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
    }
    if let Err(e) = conn.await {
        tracing::debug!("HTTP connection: {e}");
    }
}

/// A plain-text response of the server itself (not of the component).
fn plain(status: u16, text: &str) -> hyper::Response<HyperOutgoingBody> {
    let body = http_body_util::Full::new(Bytes::from(format!("{text}\n")))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut r = hyper::Response::new(body);
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    r
}

/// One request: a fresh instance calls `handle`; its response (or a 5xx of ours).
async fn handle(
    inner: Arc<Inner>,
    server: Arc<Control>,
    req: hyper::Request<Incoming>,
) -> hyper::Response<HyperOutgoingBody> {
    let shared = server.shared.clone();
    let control = Arc::new(Control::new(shared.clone()));
    if !inner.instances.add(&control, &server).await {
        return plain(503, "execdriver: the server is stopping");
    }
    // Counted in flight until the instance is gone (its body may stream on after the head).
    shared.http.in_flight.fetch_add(1, Ordering::SeqCst);
    let done = InFlight {
        control: control.clone(),
        instances: inner.instances.clone(),
    };
    control.unpaused().await;
    if control.killed_by().is_some() {
        return plain(503, "execdriver: the server is stopping");
    }
    let store = match new_store(&inner, &control) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(id = %shared.id, "HTTP request: {e:#}");
            return plain(500, "execdriver: the instance could not be set up");
        }
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(run_handler(inner.clone(), control, store, req, tx, done));
    match rx.await {
        Ok(Ok(resp)) => resp,
        Ok(Err(code)) => {
            tracing::debug!(id = %shared.id, "the component answered an error: {code:?}");
            plain(500, &format!("execdriver: the component failed: {code:?}"))
        }
        Err(_) => {
            let why = match task.await {
                Ok(Ok(())) => "it did not set a response".to_owned(),
                Ok(Err(e)) => format!("{e:#}"),
                Err(e) => e.to_string(),
            };
            tracing::warn!(id = %shared.id, "HTTP request: {why}");
            plain(
                500,
                "execdriver: the instance failed before it set a response",
            )
        }
    }
}

/// Leaves the instance list and the in-flight count when the request's instance is gone.
struct InFlight {
    control: Arc<Control>,
    instances: Arc<Instances>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let http = &self.control.shared.http;
        http.in_flight.fetch_sub(1, Ordering::SeqCst);
        http.served.fetch_add(1, Ordering::SeqCst);
        self.instances.remove(&self.control);
    }
}

fn new_store(inner: &Inner, control: &Arc<Control>) -> Result<Store<CompCtx>, wasmtime::Error> {
    let pipes = Pipes {
        stdin: Stdio::Null,
        stdout: inner.stdout.try_clone()?,
        stderr: inner.stderr.try_clone()?,
        ..Pipes::null()
    };
    let mut wasi = crate::instance::wasi(&inner.setup, pipes, crate::instance::Io::Inline)
        .map_err(wasmtime::Error::new)?;
    let limiter = Limiter {
        control: control.clone(),
    };
    let mut store = Store::new(inner.pre.engine(), CompCtx::new(wasi.build(), limiter));
    crate::instance::steer(&mut store, control);
    Ok(store)
}

type Sender = tokio::sync::oneshot::Sender<
    Result<
        hyper::Response<HyperOutgoingBody>,
        wasmtime_wasi_http::p2::bindings::http::types::ErrorCode,
    >,
>;

async fn run_handler(
    inner: Arc<Inner>,
    control: Arc<Control>,
    mut store: Store<CompCtx>,
    req: hyper::Request<Incoming>,
    tx: Sender,
    done: InFlight,
) -> Result<(), wasmtime::Error> {
    let _done = done;
    let req = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, req)?;
    let out = store.data_mut().http().new_response_outparam(tx)?;
    let call = async {
        let proxy = inner.pre.instantiate_async(&mut store).await?;
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, req, out)
            .await
    };
    // The request's CPU time is the polls' on whichever worker ran them.
    crate::control::bound(&control, async {
        tokio::select! {
            biased;
            sig = control.killed() => Err(wasmtime::Error::msg(format!("killed by signal {sig}"))),
            r = call => r,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The crate's default sender is compiled out (`default-send-request` is off), so this
    /// hook is the only way out: every outgoing request is denied before anything connects.
    #[test]
    fn outgoing_requests_are_denied() {
        let body = http_body_util::Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync();
        let req = http::Request::builder()
            .uri("http://127.0.0.1:1/")
            .body(body)
            .unwrap();
        let fut = NoOutbound.send_request(req, None, Box::new(async { Ok(()) }));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let r = rt.block_on(Box::into_pin(fut));
        assert!(
            matches!(r, Err(wasmtime_wasi_http::Error::HttpRequestDenied)),
            "{:?}",
            r.err()
        );
    }
}
