//! Which driver runs a bundle: `--driver` > `--config` > auto-detection.

use std::path::Path;

use execdriver::{Command, DriverConfig, DriverError};

/// The driver configuration for `cmd`.
pub fn config(
    driver: Option<&str>,
    config: Option<&Path>,
    root: Option<&Path>,
    cmd: &Command,
) -> Result<DriverConfig, DriverError> {
    let mut cfg = match (driver, config) {
        (Some(name), _) => DriverConfig::new(name),
        (None, Some(path)) => DriverConfig::from_file(path)?,
        (None, None) => DriverConfig::new(detect(cmd)),
    };
    if let Some(root) = root {
        let root = std::path::absolute(root)
            .map_err(|e| DriverError::io(format!("--root {}", root.display()), e))?;
        match &mut cfg.options {
            serde_json::Value::Null => cfg.options = serde_json::json!({ "root": root }),
            serde_json::Value::Object(map) => {
                map.insert("root".into(), serde_json::json!(root));
            }
            _ => {
                return Err(DriverError::InvalidConfig {
                    reason: "options: must be an object to take --root".into(),
                });
            }
        }
    }
    Ok(cfg)
}

/// `wasm` when `process.args[0]` names a `.wasm`/`.wat` file or a file starting with `\0asm`
/// inside the rootfs, else `native`.
pub fn detect(cmd: &Command) -> &'static str {
    let Some(arg0) = cmd
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.args().as_ref())
        .and_then(|a| a.first())
    else {
        return "native";
    };
    let path = arg0.split('#').next().unwrap_or(arg0);
    if path.ends_with(".wasm") || path.ends_with(".wat") {
        return "wasm";
    }
    if let Ok(rootfs) = cmd.rootfs() {
        let file = rootfs.join(path.trim_start_matches('/'));
        if let Ok(mut f) = std::fs::File::open(file) {
            use std::io::Read;
            let mut magic = [0u8; 4];
            if f.read_exact(&mut magic).is_ok() && &magic == b"\0asm" {
                return "wasm";
            }
        }
    }
    "native"
}
