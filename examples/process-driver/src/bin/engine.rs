//! An example engine: picks its driver by name from a JSON config file, registers the
//! third-party `process` driver, and runs one command with hooks and an OOM receiver.
//!
//! Run: `cargo run -p execdriver-example-process --bin engine -- examples/process-driver/engine.json echo hello`

use std::path::PathBuf;
use std::process::ExitCode;

use execdriver_api::oci_spec::runtime::{Process, Spec};
use execdriver_api::{Command, ContainerId, DriverConfig, Hooks, Pipes, Registry};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(config), program) = (args.next(), args.collect::<Vec<_>>()) else {
        eprintln!("usage: engine CONFIG.json PROGRAM [ARGS...]");
        return ExitCode::from(2);
    };
    match run(PathBuf::from(config), program) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(err) => {
            eprintln!("engine: {err}");
            ExitCode::from(125)
        }
    }
}

fn run(config: PathBuf, program: Vec<String>) -> execdriver_api::Result<i32> {
    // 1. The engine's registry: here, the third-party driver only.
    let registry = Registry::new();
    registry.register(execdriver_example_process::factory())?;

    // 2. The driver named in the configuration file, with its options.
    let config = DriverConfig::from_file(&config)?;
    let driver = registry.create(&config)?;
    eprintln!(
        "engine: using the {} driver ({})",
        driver.name(),
        driver.capabilities()
    );

    // 3. A command: an OCI spec whose process is the given program.
    let mut process = Process::default();
    process
        .set_args(Some(program))
        .set_env(Some(vec!["PATH=/usr/local/bin:/usr/bin:/bin".into()]));
    let mut spec = Spec::default();
    spec.set_process(Some(process));
    let bundle = std::env::current_dir().map_err(|e| execdriver_api::DriverError::io("cwd", e))?;
    let cmd = Command::new(ContainerId::new("engine-example")?, bundle, spec)?;

    // 4. Hooks: learn the pid before the program starts, and keep an OOM receiver.
    let hooks = Hooks::new()
        .on_pre_start(|ctx| {
            eprintln!(
                "engine: container {} created as pid {}",
                ctx.id(),
                ctx.pid()
            );
            let oom = ctx.oom();
            std::thread::spawn(move || {
                for ev in oom {
                    eprintln!("engine: OOM kill #{} in {}", ev.count, ev.id);
                }
            });
            Ok(())
        })
        .on_post_stop(|ctx| {
            eprintln!("engine: container {} stopped: {:?}", ctx.id(), ctx.exit());
            Ok(())
        });

    let status = driver.run(&cmd, Pipes::inherit(), &hooks)?;
    eprintln!("engine: {status}");
    Ok(status.code)
}
