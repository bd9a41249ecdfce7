//! Operates on native containers from another process, for the cross-process tests:
//! `edtest-ctl STATE_ROOT (list | info ID | kill ID SIGNAL | terminate ID | clean ID | pids ID)`.
//! Prints the result (info: `status pid`) and exits 0, or prints the error and exits 1.

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
        _ => return Err(usage()),
    })
}
