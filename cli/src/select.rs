//! Which driver runs a bundle, and with which options: `--driver` > the operator's config file >
//! the `org.execdriver.driver` annotation > auto-detection.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use execdriver::{Command, DriverConfig, DriverError};
use serde::Deserialize;

/// The annotation a bundle may use to ask for a driver (unless the operator pinned one).
pub const DRIVER_ANNOTATION: &str = "org.execdriver.driver";

/// Where the operator's config file is looked for when `--config` is not given.
pub const DEFAULT_OPERATOR_CONFIG: &str = "/etc/execdriver/config.json";

/// The operator's config file:
///
/// ```json
/// { "driver": "native", "options": {...}, "drivers": { "wasm": {...} } }
/// ```
///
/// `driver` pins the driver of every container (annotations and auto-detection no longer
/// choose); `options` are the pinned driver's options; `drivers` gives options per driver
/// without pinning. Every key is optional; unknown keys are errors.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operator {
    #[serde(default)]
    pub driver: Option<String>,
    #[serde(default)]
    pub options: Option<serde_json::Value>,
    #[serde(default)]
    pub drivers: BTreeMap<String, serde_json::Value>,
}

impl Operator {
    /// Reads `--config FILE`, or the default file when it exists, or nothing.
    pub fn load(flag: Option<&Path>) -> Result<Self, DriverError> {
        let path = match flag {
            Some(p) => p.to_path_buf(),
            None => {
                let p = PathBuf::from(DEFAULT_OPERATOR_CONFIG);
                if !p.exists() {
                    return Ok(Self::default());
                }
                p
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|e| DriverError::InvalidConfig {
            reason: format!("{}: {e}", path.display()),
        })?;
        Self::parse(&text).map_err(|reason| DriverError::InvalidConfig {
            reason: format!("{}: {reason}", path.display()),
        })
    }

    /// Parses the config file's text; the error names the JSON path.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim_start().starts_with('[') {
            return Err("must be a JSON object, not an array".into());
        }
        let de = &mut serde_json::Deserializer::from_str(text);
        let op: Self = serde_path_to_error::deserialize(de).map_err(crate::error::json_path)?;
        if op.options.is_some() && op.driver.is_none() {
            return Err("options: needs `driver` (per-driver options go in `drivers`)".into());
        }
        Ok(op)
    }

    /// The options the operator set for `driver`.
    fn options_for(&self, driver: &str) -> serde_json::Value {
        if self.driver.as_deref() == Some(driver)
            && let Some(o) = &self.options
        {
            return o.clone();
        }
        self.drivers
            .get(driver)
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    }
}

/// Where a driver choice came from (for logs and errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Operator,
    Annotation,
    Detected,
}

/// The driver configuration for `cmd`, and where the driver's name came from.
pub fn choose(
    flag: Option<&str>,
    operator: &Operator,
    cmd: &Command,
) -> Result<(DriverConfig, Source), DriverError> {
    let annotation = cmd
        .spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(DRIVER_ANNOTATION))
        .cloned();
    let (name, source) = if let Some(name) = flag {
        (name.to_owned(), Source::Flag)
    } else if let Some(name) = &operator.driver {
        (name.clone(), Source::Operator)
    } else if let Some(name) = annotation {
        if name.is_empty() {
            return Err(DriverError::invalid_spec(
                format!("annotations.\"{DRIVER_ANNOTATION}\""),
                "must name a driver",
            ));
        }
        (name, Source::Annotation)
    } else {
        (detect(cmd)?, Source::Detected)
    };
    let options = operator.options_for(&name);
    Ok((
        DriverConfig {
            driver: name,
            options,
        },
        source,
    ))
}

/// How many wasm instances the CLI's driver makes room for, unless the operator says: one
/// container and its exec'd instances (a pool of 1000, the library's default, costs a
/// one-shot process milliseconds to set up and tear down).
pub const CLI_WASM_INSTANCES: u32 = 32;

/// The CLI's defaults on top of the operator's options: the native driver's state under
/// `<root>/native` (see [`place_native_root`]); for wasm, a small instance pool and a
/// compiled-module cache under `<root>/wasm-cache`, so that a module is compiled once, not at
/// every `execdriver run`.
pub fn cli_defaults(
    cfg: &mut DriverConfig,
    root: &Path,
    root_flag: bool,
) -> Result<(), DriverError> {
    place_native_root(cfg, root, root_flag)?;
    if cfg.driver != "wasm" {
        return Ok(());
    }
    if cfg.options.is_null() {
        cfg.options = serde_json::json!({});
    }
    let Some(map) = cfg.options.as_object_mut() else {
        return Err(DriverError::InvalidOptions {
            driver: "wasm".into(),
            reason: "options: must be an object".into(),
        });
    };
    map.entry("max_instances")
        .or_insert_with(|| serde_json::json!(CLI_WASM_INSTANCES));
    map.entry("cache_dir")
        .or_insert_with(|| serde_json::json!(root.join("wasm-cache")));
    Ok(())
}

/// Sets the `root` option of the drivers that keep state on disk (`native`, `oci`) to
/// `<root>/<driver>` unless the operator set one (and `--root` was not given).
pub fn place_native_root(
    cfg: &mut DriverConfig,
    root: &Path,
    root_flag: bool,
) -> Result<(), DriverError> {
    if cfg.driver != "native" && cfg.driver != "oci" {
        return Ok(());
    }
    let native_root = serde_json::json!(root.join(&cfg.driver));
    match &mut cfg.options {
        serde_json::Value::Null => cfg.options = serde_json::json!({ "root": native_root }),
        serde_json::Value::Object(map) => {
            if root_flag || !map.contains_key("root") {
                map.insert("root".into(), native_root);
            }
        }
        _ => {
            return Err(DriverError::InvalidOptions {
                driver: cfg.driver.clone(),
                reason: "options: must be an object".into(),
            });
        }
    }
    Ok(())
}

/// The first built-in driver, in registration order (native, wasm, oci), that can handle
/// `cmd` ([`execdriver::Driver::can_handle`]): `wasm` when `process.args[0]` names a
/// `.wasm`/`.wat` file, a `#func` entry or a file starting with `\0asm` inside the rootfs, else
/// `native`.
///
/// # Errors
/// [`DriverError::NoDriverFits`] saying why each driver passed.
pub fn detect(cmd: &Command) -> Result<String, DriverError> {
    execdriver::default_registry()
        .resolve(&execdriver::Requirements::new().command(cmd))
        .map(|r| r.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use execdriver::ContainerId;

    fn cmd(dir: &Path, args: &[&str], annotations: &[(&str, &str)]) -> Command {
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        let mut spec = serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": args, "cwd": "/", "user": {"uid": 0, "gid": 0}},
        });
        if !annotations.is_empty() {
            spec["annotations"] = annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), serde_json::json!(v)))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        std::fs::write(dir.join("config.json"), spec.to_string()).unwrap();
        Command::from_bundle(ContainerId::new("c").unwrap(), dir).unwrap()
    }

    #[test]
    fn detection_by_extension_and_magic() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(detect(&cmd(d.path(), &["/app.wasm"], &[])).unwrap(), "wasm");
        assert_eq!(
            detect(&cmd(d.path(), &["/app.wat#run"], &[])).unwrap(),
            "wasm"
        );
        assert_eq!(detect(&cmd(d.path(), &["sh"], &[])).unwrap(), "native");
        assert_eq!(detect(&cmd(d.path(), &["#_start"], &[])).unwrap(), "wasm");
        std::fs::write(d.path().join("rootfs/app"), b"\0asm\x01\0\0\0").unwrap();
        assert_eq!(detect(&cmd(d.path(), &["/app"], &[])).unwrap(), "wasm");
        std::fs::write(d.path().join("rootfs/bin"), b"\x7fELF").unwrap();
        assert_eq!(detect(&cmd(d.path(), &["/bin"], &[])).unwrap(), "native");
    }

    #[test]
    fn precedence_flag_operator_annotation_detection() {
        let d = tempfile::tempdir().unwrap();
        let c = cmd(d.path(), &["/app.wasm"], &[(DRIVER_ANNOTATION, "native")]);
        let none = Operator::default();
        let pinned = Operator::parse(r#"{"driver": "wasm"}"#).unwrap();
        // The annotation beats detection.
        assert_eq!(
            choose(None, &none, &c).unwrap().0.driver,
            "native".to_owned()
        );
        assert_eq!(choose(None, &none, &c).unwrap().1, Source::Annotation);
        // The operator's pin beats the annotation; the flag beats both.
        assert_eq!(choose(None, &pinned, &c).unwrap().0.driver, "wasm");
        assert_eq!(choose(None, &pinned, &c).unwrap().1, Source::Operator);
        assert_eq!(choose(Some("x"), &pinned, &c).unwrap().0.driver, "x");
        // Nothing said: detection.
        let c = cmd(d.path(), &["/app.wasm"], &[]);
        assert_eq!(
            choose(None, &none, &c).unwrap(),
            (DriverConfig::new("wasm"), Source::Detected)
        );
    }

    #[test]
    fn operator_options_follow_the_chosen_driver() {
        let d = tempfile::tempdir().unwrap();
        let c = cmd(d.path(), &["/app.wasm"], &[]);
        let op =
            Operator::parse(r#"{"drivers": {"wasm": {"tick_us": 500}, "native": {}}}"#).unwrap();
        let (cfg, _) = choose(None, &op, &c).unwrap();
        assert_eq!(cfg.options, serde_json::json!({"tick_us": 500}));
        let op =
            Operator::parse(r#"{"driver": "native", "options": {"cgroup_parent": "x"}}"#).unwrap();
        let (cfg, _) = choose(None, &op, &c).unwrap();
        assert_eq!(cfg.driver, "native");
        assert_eq!(cfg.options, serde_json::json!({"cgroup_parent": "x"}));
    }

    #[test]
    fn operator_config_errors_name_the_field() {
        let e = Operator::parse(r#"{"drivre": "x"}"#).unwrap_err();
        assert!(
            e.contains("unknown field `drivre`, expected one of `driver`, `options`, `drivers`"),
            "{e}"
        );
        assert!(
            Operator::parse(r#"{"drivers": {"wasm": 1, "native": []}}"#).is_ok(),
            "option values are the driver's to check"
        );
        assert!(
            Operator::parse(r#"{"driver": 3}"#)
                .unwrap_err()
                .starts_with("driver: invalid type: integer `3`")
        );
        assert!(
            Operator::parse(r#"{"options": {}}"#)
                .unwrap_err()
                .contains("needs `driver`")
        );
        assert!(Operator::parse("not json").is_err());
        // Found by a property test of the driver config: serde reads arrays as structs.
        assert!(
            Operator::parse(r#"["native"]"#)
                .unwrap_err()
                .contains("not an array")
        );
    }

    #[test]
    fn an_empty_annotation_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let c = cmd(d.path(), &["sh"], &[(DRIVER_ANNOTATION, "")]);
        let e = choose(None, &Operator::default(), &c)
            .unwrap_err()
            .to_string();
        assert!(e.contains("org.execdriver.driver"), "{e}");
    }

    #[test]
    fn native_root_goes_under_the_cli_root() {
        let mut cfg = DriverConfig::new("native");
        place_native_root(&mut cfg, Path::new("/r"), false).unwrap();
        assert_eq!(cfg.options, serde_json::json!({"root": "/r/native"}));
        let mut cfg = DriverConfig {
            driver: "native".into(),
            options: serde_json::json!({"root": "/op"}),
        };
        place_native_root(&mut cfg, Path::new("/r"), false).unwrap();
        assert_eq!(cfg.options["root"], "/op");
        place_native_root(&mut cfg, Path::new("/r"), true).unwrap();
        assert_eq!(cfg.options["root"], "/r/native");
        let mut cfg = DriverConfig::new("wasm");
        place_native_root(&mut cfg, Path::new("/r"), true).unwrap();
        assert_eq!(cfg.options, serde_json::Value::Null);
    }

    #[test]
    fn the_cli_gives_wasm_a_small_pool_and_a_cache_unless_the_operator_said() {
        let mut cfg = DriverConfig::new("wasm");
        cli_defaults(&mut cfg, Path::new("/r"), false).unwrap();
        assert_eq!(
            cfg.options,
            serde_json::json!({"max_instances": CLI_WASM_INSTANCES, "cache_dir": "/r/wasm-cache"})
        );
        let mut cfg = DriverConfig {
            driver: "wasm".into(),
            options: serde_json::json!({"max_instances": 500, "cache_dir": null}),
        };
        cli_defaults(&mut cfg, Path::new("/r"), true).unwrap();
        assert_eq!(
            cfg.options,
            serde_json::json!({"max_instances": 500, "cache_dir": null})
        );
        let mut cfg = DriverConfig {
            driver: "wasm".into(),
            options: serde_json::json!(3),
        };
        assert!(cli_defaults(&mut cfg, Path::new("/r"), false).is_err());
    }
}
