//! Operates on native containers from another process, for the cross-process tests:
//! `edtest-ctl STATE_ROOT (list | info ID | kill ID SIGNAL | terminate ID | clean ID | pids ID)`.
//! Prints the result (info: `status pid`) and exits 0, or prints the error and exits 1.
//! `edtest-ctl STATE_ROOT engine ID...` is an engine: it starts a busybox `sleep` container per
//! id, prints `started ID PID` for each, and waits forever (the recovery test SIGKILLs it).

use execdriver_api::{ContainerId, DriverError};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
        }
        Err(e) => {
            println!("error: {e}");
            std::process::exit(1);
        }
    }
}

fn run(args: &[String]) -> Result<String, DriverError> {
    let usage = || DriverError::InvalidConfig {
        reason: "usage: edtest-ctl ROOT OP [ID [SIGNAL]]".into(),
    };
    let root = args.first().ok_or_else(usage)?;
    let op = args.get(1).ok_or_else(usage)?;
    let driver = execdriver::native::factory().create(&serde_json::json!({ "root": root }))?;
    let id = || -> Result<ContainerId, DriverError> {
        ContainerId::new(args.get(2).ok_or_else(usage)?.clone())
    };
    Ok(match op.as_str() {
        "list" => driver
            .list()?
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" "),
        "info" => {
            let i = driver.info(&id()?)?;
            format!(
                "{} {}",
                i.status,
                i.pid.map_or("-".into(), |p| p.to_string())
            )
        }
        "kill" => {
            let sig = args.get(3).ok_or_else(usage)?.parse()?;
            driver.kill(&id()?, sig)?;
            String::new()
        }
        "terminate" => {
            driver.terminate(&id()?)?;
            String::new()
        }
        "clean" => {
            driver.clean(&id()?)?;
            String::new()
        }
        "pids" => driver
            .pids(&id()?)?
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" "),
        "engine" => engine(&driver, &args[2..])?,
        _ => return Err(usage()),
    })
}

fn engine(
    driver: &std::sync::Arc<dyn execdriver_api::Driver>,
    ids: &[String],
) -> Result<String, DriverError> {
    use std::io::Write;
    let mut handles = Vec::new();
    for id in ids {
        let id = ContainerId::new(id.clone())?;
        let cmd = execdriver_tests::busybox_command(&id, &["sleep", "1000"], |_| {})?;
        let h = execdriver_api::spawn(
            driver.clone(),
            cmd,
            execdriver_api::Pipes::null(),
            execdriver_api::Hooks::new(),
        )?;
        let Some(pid) = h.wait_started() else {
            return Err(h.wait().err().unwrap_or(DriverError::Internal {
                context: format!("container {id}"),
                message: "exited at once".into(),
            }));
        };
        println!("started {id} {pid}");
        let _ = std::io::stdout().flush();
        handles.push(h);
    }
    loop {
        std::thread::park();
    }
}
