//! Embedding execdriver: pick a driver by name from configuration, run a bundle with hooks and
//! an OOM receiver. Run (as root, from the repository root, after `./scripts/demo.sh` made the bundle):
//! `cargo run -p execdriver-examples --example embed -- native target/demo/bundle`

use execdriver::{Command, ContainerId, DriverConfig, Hooks, Pipes, default_registry};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let driver_name = args.next().unwrap_or_else(|| "native".into());
    let bundle = args.next().unwrap_or_else(|| "target/demo/bundle".into());

    let registry = default_registry(); // native + wasm; register your own factories too
    let driver = registry.create(&DriverConfig::new(driver_name))?;

    let cmd = Command::from_bundle(ContainerId::new("embed-demo")?, &bundle)?;
    let hooks = Hooks::new()
        .on_pre_start(|ctx| {
            println!("pre_start: pid {} exists, program not started", ctx.pid());
            let oom = ctx.oom(); // sees every OOM kill of this container
            std::thread::spawn(move || {
                oom.iter().for_each(|ev| println!("OOM kill #{}", ev.count))
            });
            Ok(())
        })
        .on_post_stop(|ctx| {
            println!("post_stop: {:?}", ctx.exit());
            Ok(())
        });
    let status = driver.run(&cmd, Pipes::inherit(), &hooks)?;
    println!("{} exited: {status}", cmd.id);
    Ok(())
}
