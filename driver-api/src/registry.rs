//! Selecting a driver by name: [`DriverFactory`], [`Registry`], [`DriverConfig`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::driver::Driver;
use crate::error::{DriverError, Result};

/// Creates drivers of one kind from their options. Each driver crate exports one.
pub trait DriverFactory: Send + Sync {
    /// The name configurations select the driver by.
    fn name(&self) -> &str;

    /// One line on what the driver is, for listings.
    fn description(&self) -> &str {
        ""
    }

    /// Builds a driver from its options document (`null` means defaults). Unknown keys must be
    /// rejected; [`parse_options`] does that for a `#[serde(deny_unknown_fields)]` struct.
    /// Creating a driver must not touch the system (no directories, no threads) — that happens
    /// on first use — so that listing drivers is harmless.
    ///
    /// # Errors
    /// [`DriverError::InvalidOptions`] naming the offending key.
    fn create(&self, options: &serde_json::Value) -> Result<Arc<dyn Driver>>;
}

/// Which driver to use and its options: `{"driver": "wasm", "options": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriverConfig {
    /// The registered name.
    pub driver: String,
    /// The driver's own options; `null` or absent means its defaults.
    #[serde(default)]
    pub options: serde_json::Value,
}

impl DriverConfig {
    /// A config selecting `driver` with default options.
    pub fn new(driver: impl Into<String>) -> Self {
        Self {
            driver: driver.into(),
            options: serde_json::Value::Null,
        }
    }

    /// Parses a JSON document.
    ///
    /// # Errors
    /// [`DriverError::InvalidConfig`] with the JSON path and what is wrong.
    pub fn from_json(json: &str) -> Result<Self> {
        // serde would take a JSON array as the fields in order; a config is an object.
        if json.trim_start().starts_with('[') {
            return Err(DriverError::InvalidConfig {
                reason: "must be a JSON object, not an array".into(),
            });
        }
        let de = &mut serde_json::Deserializer::from_str(json);
        let cfg: Self = serde_path_to_error::deserialize(de).map_err(|err| {
            let path = err.path().to_string();
            let inner = err.into_inner();
            let reason = if path == "." || path == "?" {
                inner.to_string()
            } else {
                format!("{path}: {inner}")
            };
            DriverError::InvalidConfig { reason }
        })?;
        if cfg.driver.trim().is_empty() {
            return Err(DriverError::InvalidConfig {
                reason: "driver: must not be empty".into(),
            });
        }
        Ok(cfg)
    }

    /// Reads and parses a JSON file.
    ///
    /// # Errors
    /// [`DriverError::InvalidConfig`] naming the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DriverError::InvalidConfig {
            reason: format!("can't read {}: {e}", path.display()),
        })?;
        Self::from_json(&text).map_err(|e| match e {
            DriverError::InvalidConfig { reason } => DriverError::InvalidConfig {
                reason: format!("{}: {reason}", path.display()),
            },
            other => other,
        })
    }
}

/// Turns a driver's options document into its typed options struct. `null` means `{}`, so the
/// struct's `Default`s apply; unknown keys are rejected when `T` denies them.
///
/// # Errors
/// [`DriverError::InvalidOptions`] naming the key and the driver.
pub fn parse_options<T: DeserializeOwned>(driver: &str, options: &serde_json::Value) -> Result<T> {
    let value = if options.is_null() {
        serde_json::Value::Object(Default::default())
    } else {
        options.clone()
    };
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        DriverError::InvalidOptions {
            driver: driver.to_owned(),
            reason: if path == "." || path == "?" {
                inner.to_string()
            } else {
                format!("{path}: {inner}")
            },
        }
    })
}

/// The drivers an engine can pick from, by name. A plain value: build one, register factories,
/// create drivers from configuration. No global state.
#[derive(Clone, Default)]
pub struct Registry {
    factories: BTreeMap<String, Arc<dyn DriverFactory>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a factory under its name.
    ///
    /// # Errors
    /// [`DriverError::DuplicateDriver`] when the name is taken; [`DriverError::InvalidConfig`]
    /// for an empty name.
    pub fn register(&mut self, factory: Arc<dyn DriverFactory>) -> Result<()> {
        let name = factory.name().to_owned();
        if name.trim().is_empty() {
            return Err(DriverError::InvalidConfig {
                reason: "a driver factory has an empty name".into(),
            });
        }
        if self.factories.contains_key(&name) {
            return Err(DriverError::DuplicateDriver { name });
        }
        self.factories.insert(name, factory);
        Ok(())
    }

    /// Creates the driver `config` selects.
    ///
    /// # Errors
    /// [`DriverError::UnknownDriver`] listing the registered names; the factory's
    /// [`DriverError::InvalidOptions`].
    pub fn create(&self, config: &DriverConfig) -> Result<Arc<dyn Driver>> {
        self.factory(&config.driver)?.create(&config.options)
    }

    /// The factory registered as `name`.
    ///
    /// # Errors
    /// [`DriverError::UnknownDriver`] listing the registered names.
    pub fn factory(&self, name: &str) -> Result<&Arc<dyn DriverFactory>> {
        self.factories
            .get(name)
            .ok_or_else(|| DriverError::UnknownDriver {
                name: name.to_owned(),
                available: self.names().into_iter().map(str::to_owned).collect(),
            })
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.factories.keys().map(String::as_str).collect()
    }

    /// Whether `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.factories.contains_key(name)
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("drivers", &self.names())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_array_is_not_a_config() {
        // Found by `any_json_is_a_config_or_names_what_is_wrong`: ["a"] was {"driver": "a"}.
        let e = DriverConfig::from_json(r#"["native"]"#).unwrap_err();
        assert!(e.to_string().contains("not an array"), "{e}");
    }
    use crate::{Capabilities, Command, ContainerId, ExitStatus, Hooks, Info, Pipes, Signal};

    struct Nop(String);

    impl Driver for Nop {
        fn name(&self) -> &str {
            &self.0
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::none()
        }
        fn run(&self, _: &Command, _: Pipes, _: &Hooks) -> Result<ExitStatus> {
            Ok(ExitStatus::exited(0))
        }
        fn kill(&self, id: &ContainerId, _: Signal) -> Result<()> {
            Err(DriverError::not_found(id))
        }
        fn terminate(&self, id: &ContainerId) -> Result<()> {
            Err(DriverError::not_found(id))
        }
        fn clean(&self, _: &ContainerId) -> Result<()> {
            Ok(())
        }
        fn info(&self, id: &ContainerId) -> Result<Info> {
            Err(DriverError::not_found(id))
        }
        fn list(&self) -> Result<Vec<ContainerId>> {
            Ok(vec![])
        }
    }

    #[derive(Deserialize, Default, Debug, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct NopOptions {
        label: String,
        level: u32,
    }

    struct NopFactory(&'static str);

    impl DriverFactory for NopFactory {
        fn name(&self) -> &str {
            self.0
        }
        fn create(&self, options: &serde_json::Value) -> Result<Arc<dyn Driver>> {
            let o: NopOptions = parse_options(self.0, options)?;
            Ok(Arc::new(Nop(format!("{}{}", self.0, o.label))))
        }
    }

    fn registry() -> Registry {
        let mut r = Registry::new();
        r.register(Arc::new(NopFactory("b"))).unwrap();
        r.register(Arc::new(NopFactory("a"))).unwrap();
        r
    }

    #[test]
    fn creates_by_name_with_options() {
        let r = registry();
        assert_eq!(r.names(), ["a", "b"]);
        let cfg = DriverConfig::from_json(r#"{"driver":"a","options":{"label":"-x"}}"#).unwrap();
        assert_eq!(r.create(&cfg).unwrap().name(), "a-x");
        assert_eq!(r.create(&DriverConfig::new("b")).unwrap().name(), "b");
    }

    #[test]
    fn duplicate_and_empty_names_are_rejected() {
        let mut r = registry();
        let err = r.register(Arc::new(NopFactory("a"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a driver named \"a\" is already registered"
        );
        assert!(r.register(Arc::new(NopFactory(" "))).is_err());
        assert_eq!(r.names().len(), 2);
    }

    #[test]
    fn unknown_driver_lists_available() {
        let err = match registry().create(&DriverConfig::new("nope")) {
            Err(e) => e,
            Ok(_) => panic!("created an unknown driver"),
        };
        assert_eq!(
            err.to_string(),
            "unknown driver \"nope\"; available drivers: a, b"
        );
    }

    #[test]
    fn unknown_and_mistyped_options_are_rejected_by_the_factory() {
        let r = registry();
        for (opts, want) in [
            (r#"{"lable":"x"}"#, "unknown field `lable`"),
            (r#"{"level":"high"}"#, "level: invalid type: string"),
            (r#""x""#, "invalid type: string"),
        ] {
            let cfg = DriverConfig {
                driver: "a".into(),
                options: serde_json::from_str(opts).unwrap(),
            };
            let err = match r.create(&cfg) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("accepted {opts}"),
            };
            assert!(
                err.starts_with("invalid options for the a driver: "),
                "{err}"
            );
            assert!(err.contains(want), "{opts}: {err}");
        }
    }

    #[test]
    fn malformed_config_documents() {
        for (json, want) in [
            ("", "EOF while parsing"),
            ("{", "EOF while parsing"),
            ("{}", "missing field `driver`"),
            (r#"{"driver": 3}"#, "driver: invalid type: integer"),
            (r#"{"driver": ""}"#, "driver: must not be empty"),
            (r#"{"driver": "a", "opts": {}}"#, "unknown field `opts`"),
            ("null", "invalid type: null"),
        ] {
            let err = DriverConfig::from_json(json).unwrap_err().to_string();
            assert!(err.starts_with("invalid driver configuration: "), "{err}");
            assert!(err.contains(want), "{json:?}: {err}");
        }
    }

    #[test]
    fn config_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.json");
        let err = DriverConfig::from_file(&missing).unwrap_err().to_string();
        assert!(err.contains("nope.json"), "{err}");
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{\"driver\": 1}").unwrap();
        let err = DriverConfig::from_file(&bad).unwrap_err().to_string();
        assert!(err.contains("bad.json: driver: invalid type"), "{err}");
    }
}

/// Config parsing never panics: any text is a config or an `InvalidConfig` error.
#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            "\\PC{0,8}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 12, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(serde_json::Value::Array),
                prop::collection::btree_map(
                    prop::sample::select(vec!["driver", "options", "root", "x"]),
                    inner,
                    0..3
                )
                .prop_map(|m| serde_json::Value::Object(
                    m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_text_is_a_config_or_an_invalid_config(text in "\\PC{0,64}") {
            match DriverConfig::from_json(&text) {
                Ok(_) => {}
                Err(DriverError::InvalidConfig { reason }) => prop_assert!(!reason.is_empty()),
                Err(other) => prop_assert!(false, "unexpected error kind: {other}"),
            }
        }

        #[test]
        fn any_json_is_a_config_or_names_what_is_wrong(v in json()) {
            match DriverConfig::from_json(&v.to_string()) {
                Ok(cfg) => {
                    prop_assert_eq!(Some(cfg.driver.as_str()), v["driver"].as_str());
                }
                Err(DriverError::InvalidConfig { reason }) => prop_assert!(!reason.is_empty()),
                Err(other) => prop_assert!(false, "unexpected error kind: {other}"),
            }
        }

        #[test]
        fn registry_create_never_panics(v in json()) {
            let r = Registry::new();
            if let Ok(cfg) = DriverConfig::from_json(&v.to_string()) {
                prop_assert!(r.create(&cfg).is_err(), "an empty registry creates nothing");
            }
        }
    }
}
