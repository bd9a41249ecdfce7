//! Embedding execdriver: pick a driver by name from configuration (or let the registry pick
//! one that can run the bundle), watch its lifecycle events, run a bundle with hooks and an OOM
//! receiver. Run (as root, from the repository root, after `./scripts/demo.sh` made the bundle):
//! `cargo run -p execdriver-examples --example embed -- native target/demo/bundle`
//! (`auto` instead of `native`: the first registered driver whose `can_handle` accepts it).

use execdriver::{
    Command, ContainerId, DriverConfig, Hooks, Pipes, Requirements, default_registry,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let driver_name = args.next().unwrap_or_else(|| "native".into());
    let bundle = args.next().unwrap_or_else(|| "target/demo/bundle".into());

    let registry = default_registry(); // native, wasm, oci; register your own factories too
    let cmd = Command::from_bundle(ContainerId::new("embed-demo")?, &bundle)?;
    let driver = if driver_name == "auto" {
        let picked = registry.resolve(&Requirements::new().command(&cmd))?;
        println!("resolved: {}", picked.name);
        picked.driver
    } else {
        registry.create(&DriverConfig::new(driver_name))?
    };
    println!("health: {}", driver.health());

    // Created, Started, Oom, Exited, Deleted ... as they happen, on another thread.
    let events = driver.subscribe()?;
    let watcher = std::thread::spawn(move || {
        for ev in events.iter() {
            println!("event #{} {}: {:?}", ev.seq, ev.id, ev.kind);
            if ev.kind == execdriver::EventKind::Deleted {
                break;
            }
        }
    });

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
    let _ = watcher.join();
    println!("{} exited: {status}", cmd.id);
    Ok(())
}
