//! `execdriver-bench`: execdriver side by side with crun, runc and the wasmtime CLI, in one run.
//!
//! ```text
//! execdriver-bench [--smoke] [--out DIR] [--only a,b] [--execdriver PATH]
//! ```
//!
//! As root it re-runs itself in a private mount + cgroup namespace in which the cgroup
//! filesystems are mounted again (so every runtime's cgroups land under this process's own) and
//! the cgroup2 mount of a hybrid host is covered by an empty tmpfs (crun refuses hybrid
//! layouts); every runtime, ours included, runs in that same namespace. Results go to
//! `DIR/results.md` and `DIR/results.json` (default `target/bench`), and to stdout.

mod floor;
mod measure;
mod peers;
mod report;
mod scenarios;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use report::Table;
use scenarios::Ctx;

struct Args {
    smoke: bool,
    out: PathBuf,
    only: Option<Vec<String>>,
    execdriver: Option<PathBuf>,
    inner: bool,
    /// `--repeat WHAT N`: only run one in-library operation N times (to profile it).
    repeat: Option<(String, usize)>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        smoke: false,
        out: PathBuf::from("target/bench"),
        only: None,
        execdriver: None,
        inner: false,
        repeat: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--smoke" => a.smoke = true,
            "--inner" => a.inner = true,
            "--out" => a.out = it.next().ok_or("--out needs a directory")?.into(),
            "--only" => {
                a.only = Some(
                    it.next()
                        .ok_or("--only needs scenario names")?
                        .split(',')
                        .map(str::to_owned)
                        .collect(),
                );
            }
            "--execdriver" => {
                a.execdriver = Some(it.next().ok_or("--execdriver needs a path")?.into())
            }
            "--repeat" => {
                let what = it
                    .next()
                    .ok_or("--repeat needs native-run|wasm-warm and a count")?;
                let n = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or("--repeat needs a count")?;
                a.repeat = Some((what, n));
            }
            "-h" | "--help" => {
                println!(
                    "execdriver-bench [--smoke] [--out DIR] [--only lifecycle,throughput,running,oom,protection,wasm,memory,http,scale] [--execdriver PATH]\n\
                     execdriver-bench --repeat native-run|wasm-warm N   (one in-library operation N times, for perf)"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// As root: this program again, inside the benchmark namespace.
fn reexec(args: &Args) -> Result<ExitCode, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut line = vec![quote(me.to_str().ok_or("exe path")?), "--inner".into()];
    for a in std::env::args().skip(1) {
        line.push(quote(&a));
    }
    let _ = args;
    let script = format!(
        "{} exec {}",
        execdriver_tests::cgns::remount_script(true),
        line.join(" ")
    );
    let st = std::process::Command::new("unshare")
        .args([
            "--mount",
            "--cgroup",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ])
        .status()
        .map_err(|e| format!("unshare: {e}"))?;
    Ok(ExitCode::from(st.code().unwrap_or(1).clamp(0, 255) as u8))
}

fn git_rev() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("execdriver-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let root = execdriver_tests::is_root();
    if root && !args.inner {
        return match reexec(&args) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("execdriver-bench: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match run(&args, root) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("execdriver-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the scenarios; false when one failed.
fn run(args: &Args, root: bool) -> Result<bool, String> {
    let out = std::path::absolute(&args.out).map_err(|e| e.to_string())?;
    let work = out.join("work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let execdriver = match &args.execdriver {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("execdriver"),
    };
    if !execdriver.is_file() {
        return Err(format!(
            "{} not found: build it (cargo build -p execdriver-cli) or pass --execdriver",
            execdriver.display()
        ));
    }
    let rootfs = if root {
        Some(execdriver_tests::busybox_rootfs()?.to_path_buf())
    } else {
        None
    };
    let native = if root {
        let options = serde_json::json!({ "root": work.join("state").join("lib") });
        Some(
            execdriver::native::factory()
                .create(&options)
                .map_err(|e| e.to_string())?,
        )
    } else {
        None
    };
    let (runc, crun) = (peers::runc(), peers::crun());
    // The oci driver over each peer binary, for `Driver::run` through it.
    let oci = |peer: &Option<peers::Peer>| -> Result<Option<std::sync::Arc<dyn execdriver::Driver>>, String> {
        match peer {
            Some(p) if root => {
                let options = serde_json::json!({
                    "binary": p.path,
                    "root": work.join("state").join(format!("oci-{}", p.name)),
                });
                execdriver::oci::factory()
                    .create(&options)
                    .map(Some)
                    .map_err(|e| e.to_string())
            }
            _ => Ok(None),
        }
    };
    let (oci_runc, oci_crun) = (oci(&runc)?, oci(&crun)?);
    let ctx = Ctx {
        smoke: args.smoke,
        work: work.clone(),
        execdriver,
        runc,
        crun,
        oci_runc,
        oci_crun,
        wasmtime: peers::wasmtime(&work),
        rootfs,
        native,
    };
    if let Some((what, n)) = &args.repeat {
        let t = std::time::Instant::now();
        scenarios::repeat(&ctx, what, *n)?;
        eprintln!("{what} x{n}: {:?} each", t.elapsed() / (*n).max(1) as u32);
        return Ok(true);
    }
    let wanted = |name: &str| {
        args.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|x| x == name))
    };
    let mut tables: Vec<Table> = Vec::new();
    let mut failures = Vec::new();
    let mut run_one = |name: &str, f: &dyn Fn() -> Result<Vec<Table>, String>| {
        if !wanted(name) {
            return;
        }
        eprintln!("execdriver-bench: {name} ...");
        match f() {
            Ok(t) => tables.extend(t),
            Err(e) => {
                eprintln!("execdriver-bench: {name}: {e}");
                failures.push(format!("{name}: {e}"));
            }
        }
    };
    let native_note = |name: &str| -> Option<String> {
        (!root).then(|| format!("{name}: skipped (the native driver needs root)"))
    };
    let mut skipped = Vec::new();
    for name in ["lifecycle", "throughput", "running", "oom", "protection"] {
        if let Some(n) = native_note(name) {
            skipped.push(n);
        }
    }
    if root {
        run_one("lifecycle", &|| {
            Ok(vec![
                scenarios::lifecycle(&ctx, true)?,
                scenarios::lifecycle(&ctx, false)?,
            ])
        });
        run_one("throughput", &|| Ok(vec![scenarios::throughput(&ctx)?]));
        run_one("running", &|| scenarios::running(&ctx));
        run_one("oom", &|| Ok(vec![scenarios::oom(&ctx)?]));
        run_one("protection", &|| Ok(vec![scenarios::protection(&ctx)?]));
    }
    run_one("wasm", &|| scenarios::wasm(&ctx));
    run_one("memory", &|| Ok(vec![scenarios::memory(&ctx)?]));
    run_one("http", &|| scenarios::http(&ctx));
    run_one("scale", &|| Ok(vec![scenarios::scale(&ctx)?]));
    scenarios::cleanup(&ctx);

    let mut md = String::new();
    md.push_str(&format!(
        "## Results{}\n\n- machine: {}\n- execdriver {} (git {}), {}\n- peers: {}\n- every runtime runs in one private mount + cgroup namespace in which the cgroup2 mount is covered by an empty tmpfs (crun 1.8 refuses hybrid layouts); contenders of a table run alternately (A B C A B C …) after warm-up rounds\n\n",
        if args.smoke { " (smoke: one round, tiny counts; not a measurement)" } else { "" },
        peers::machine(),
        env!("CARGO_PKG_VERSION"),
        git_rev(),
        if cfg!(debug_assertions) { "debug build" } else { "release build" },
        [&ctx.crun, &ctx.runc, &ctx.wasmtime]
            .iter()
            .map(|p| match p {
                Some(p) => format!("{} ({})", p.name, p.version),
                None => "(missing)".into(),
            })
            .collect::<Vec<_>>()
            .join(", "),
    ));
    for t in &tables {
        md.push_str(&t.markdown());
        md.push('\n');
    }
    for s in &skipped {
        md.push_str(&format!("- {s}\n"));
    }
    for f in &failures {
        md.push_str(&format!("- **failed**: {f}\n"));
    }
    let json = serde_json::json!({
        "smoke": args.smoke,
        "machine": peers::machine(),
        "git": git_rev(),
        "tables": tables.iter().map(Table::json).collect::<Vec<_>>(),
        "failures": failures,
        "skipped": skipped,
    });
    write(&out.join("results.md"), md.as_bytes())?;
    write(
        &out.join("results.json"),
        serde_json::to_string_pretty(&json)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    println!("{md}");
    let _ = std::fs::remove_dir_all(&work);
    Ok(failures.is_empty())
}

fn write(p: &Path, b: &[u8]) -> Result<(), String> {
    std::fs::write(p, b).map_err(|e| format!("{}: {e}", p.display()))
}
