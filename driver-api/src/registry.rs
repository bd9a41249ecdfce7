//! Selecting a driver by name: [`DriverFactory`], [`Registry`], [`DriverConfig`].

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::command::Command;
use crate::driver::{Capabilities, Driver, Operation};
use crate::error::{DriverError, Result};
use crate::health::{Health, Level};
use crate::managed::{Drain, Gate, Managed};

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

/// The drivers an engine can pick from, by name. No global state: build one, register
/// factories, create drivers from configuration.
///
/// The registry is **live**: every method takes `&self` and may be called from any thread
/// while its drivers run containers (a clone shares the same registry). A driver can be added
/// with [`register`](Self::register) at any time and taken away with
/// [`unregister`](Self::unregister), which *drains* it: the drivers made from it take no new
/// containers ([`DriverError::Draining`]), the ones running finish (and can still be killed,
/// inspected, exec'd into and cleaned), and the returned [`Drain`] says when the last is done.
/// The name is free at once, so a new version of a driver can take it while the old drains.
///
/// [`resolve`](Self::resolve) picks a driver for a container by what it needs (operations and
/// [`Driver::can_handle`]), in registration order, unless the caller pins one;
/// [`health`](Self::health) asks every driver what works on this host.
///
/// ```
/// # fn demo(factory: std::sync::Arc<dyn execdriver_api::DriverFactory>) -> execdriver_api::Result<()> {
/// use execdriver_api::{DriverConfig, Registry};
///
/// let registry = Registry::new();
/// registry.register(factory)?;
/// let driver = registry.create(&DriverConfig::new("process"))?;
/// // ... later, while containers run:
/// let drain = registry.unregister("process")?;
/// drain.wait(); // every container the driver was running has finished
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    /// In registration order (the order [`resolve`](Self::resolve) tries them in).
    entries: Arc<RwLock<Vec<Arc<Entry>>>>,
}

struct Entry {
    factory: Arc<dyn DriverFactory>,
    /// Shared by every driver made from this registration.
    gate: Arc<Gate>,
    /// The options of the registry's own driver of this name.
    options: serde_json::Value,
    /// The registry's own driver of this name, made on first need.
    shared: Mutex<Option<Arc<dyn Driver>>>,
}

impl Entry {
    fn name(&self) -> &str {
        self.factory.name()
    }

    fn managed(&self, options: &serde_json::Value) -> Result<Arc<dyn Driver>> {
        let inner = self.factory.create(options)?;
        Ok(Arc::new(Managed::new(inner, self.gate.clone())))
    }

    fn shared(&self) -> Result<Arc<dyn Driver>> {
        let mut slot = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(d) = &*slot {
            return Ok(d.clone());
        }
        // A failed creation is not kept: the host may get what the driver lacked.
        let d = self.managed(&self.options)?;
        *slot = Some(d.clone());
        Ok(d)
    }
}

/// What a container needs of a driver, for [`Registry::resolve`].
#[derive(Clone, Copy, Default)]
pub struct Requirements<'a> {
    command: Option<&'a Command>,
    needs: Capabilities,
    pin: Option<&'a str>,
}

impl<'a> Requirements<'a> {
    /// Nothing required: the first registered driver that can be made fits.
    pub fn new() -> Self {
        Self::default()
    }

    /// A driver that [can handle](Driver::can_handle) `command`.
    #[must_use]
    pub fn command(mut self, command: &'a Command) -> Self {
        self.command = Some(command);
        self
    }

    /// A driver that supports `op`.
    #[must_use]
    pub fn needs(mut self, op: Operation) -> Self {
        self.needs = self.needs.with(op);
        self
    }

    /// The operator's choice: this driver, whatever the rest says (when `Some`).
    #[must_use]
    pub fn pin(mut self, name: Option<&'a str>) -> Self {
        self.pin = name;
        self
    }
}

/// The driver [`Registry::resolve`] picked.
#[derive(Clone)]
pub struct Resolved {
    /// Its registered name.
    pub name: String,
    /// The registry's own driver of that name ([`Registry::driver`]).
    pub driver: Arc<dyn Driver>,
}

impl fmt::Debug for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolved")
            .field("name", &self.name)
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Entry>>> {
        self.entries.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn entry(&self, name: &str) -> Result<Arc<Entry>> {
        let entries = self.read();
        entries
            .iter()
            .find(|e| e.name() == name)
            .cloned()
            .ok_or_else(|| DriverError::UnknownDriver {
                name: name.to_owned(),
                available: sorted_names(&entries),
            })
    }

    /// Adds a factory under its name; drivers of it can be created at once, also by threads
    /// already using the registry.
    ///
    /// # Errors
    /// [`DriverError::DuplicateDriver`] when the name is taken; [`DriverError::InvalidConfig`]
    /// for an empty name.
    pub fn register(&self, factory: Arc<dyn DriverFactory>) -> Result<()> {
        self.register_with_options(factory, serde_json::Value::Null)
    }

    /// [`register`](Self::register), with the options the registry's own driver of this name
    /// ([`driver`](Self::driver), [`resolve`](Self::resolve), [`health`](Self::health)) is
    /// made with; [`create`](Self::create) still takes its options from the config it is given.
    /// The options are checked when that driver is first made.
    ///
    /// # Errors
    /// As [`register`](Self::register).
    pub fn register_with_options(
        &self,
        factory: Arc<dyn DriverFactory>,
        options: serde_json::Value,
    ) -> Result<()> {
        let name = factory.name().to_owned();
        if name.trim().is_empty() {
            return Err(DriverError::InvalidConfig {
                reason: "a driver factory has an empty name".into(),
            });
        }
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.iter().any(|e| e.name() == name) {
            return Err(DriverError::DuplicateDriver { name });
        }
        entries.push(Arc::new(Entry {
            factory,
            gate: Arc::new(Gate::new(name)),
            options,
            shared: Mutex::new(None),
        }));
        Ok(())
    }

    /// Removes the driver `name` and drains it: every driver made from this registration
    /// refuses new containers with [`DriverError::Draining`] from now on, while the containers
    /// it runs finish (kill, terminate, info, stats, exec and clean keep working). The name is
    /// free for a new registration at once. Only calls made in this process count: containers
    /// a persistent driver left from another process are not waited for.
    ///
    /// # Errors
    /// [`DriverError::UnknownDriver`].
    pub fn unregister(&self, name: &str) -> Result<Drain> {
        let entry = {
            let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
            let Some(at) = entries.iter().position(|e| e.name() == name) else {
                return Err(DriverError::UnknownDriver {
                    name: name.to_owned(),
                    available: sorted_names(&entries),
                });
            };
            entries.remove(at)
        };
        entry.gate.close();
        Ok(Drain {
            gate: entry.gate.clone(),
        })
    }

    /// Creates a new driver of the kind `config` selects, with its options.
    ///
    /// # Errors
    /// [`DriverError::UnknownDriver`] listing the registered names; the factory's
    /// [`DriverError::InvalidOptions`].
    pub fn create(&self, config: &DriverConfig) -> Result<Arc<dyn Driver>> {
        self.entry(&config.driver)?.managed(&config.options)
    }

    /// The registry's own driver `name`, with the options it was registered with (default
    /// options after [`register`](Self::register)): made on first use and shared
    /// by every later call (and by [`resolve`](Self::resolve) and [`health`](Self::health)).
    ///
    /// # Errors
    /// [`DriverError::UnknownDriver`]; what the factory refused.
    pub fn driver(&self, name: &str) -> Result<Arc<dyn Driver>> {
        self.entry(name)?.shared()
    }

    /// Picks the driver for a container: the pinned one when `requirements` pins one (the
    /// operator's choice wins), else the first registered driver, in registration order, that
    /// supports every operation asked for and [can handle](Driver::can_handle) the command.
    ///
    /// # Errors
    /// [`DriverError::UnknownDriver`] for a pin that is not registered;
    /// [`DriverError::NoDriverFits`] saying why each driver was passed over.
    pub fn resolve(&self, requirements: &Requirements<'_>) -> Result<Resolved> {
        if let Some(name) = requirements.pin {
            return Ok(Resolved {
                name: name.to_owned(),
                driver: self.driver(name)?,
            });
        }
        let entries: Vec<Arc<Entry>> = self.read().clone();
        let mut reasons = Vec::new();
        for entry in entries {
            let name = entry.name().to_owned();
            let driver = match entry.shared() {
                Ok(d) => d,
                Err(e) => {
                    reasons.push(format!("{name}: unavailable ({e})"));
                    continue;
                }
            };
            let caps = driver.capabilities();
            let missing: Vec<_> = requirements
                .needs
                .operations()
                .into_iter()
                .filter(|op| !caps.supports(*op))
                .map(Operation::name)
                .collect();
            if !missing.is_empty() {
                reasons.push(format!("{name}: does not support {}", missing.join(", ")));
                continue;
            }
            if let Some(cmd) = requirements.command
                && let Err(e) = driver.can_handle(cmd)
            {
                let why = match e {
                    DriverError::CantHandle { reason, .. } => reason,
                    other => other.to_string(),
                };
                reasons.push(format!("{name}: {why}"));
                continue;
            }
            return Ok(Resolved { name, driver });
        }
        if reasons.is_empty() {
            reasons.push("no driver is registered".into());
        }
        Err(DriverError::NoDriverFits { reasons })
    }

    /// Every registered driver's [`health`](Driver::health), sorted by name. A driver that
    /// can't be made is one failed check saying why.
    pub fn health(&self) -> Vec<(String, Health)> {
        let mut entries: Vec<Arc<Entry>> = self.read().clone();
        entries.sort_by(|a, b| a.name().cmp(b.name()));
        entries
            .into_iter()
            .map(|e| {
                let health = match e.shared() {
                    Ok(d) => d.health(),
                    Err(err) => Health::new().with("create", Level::Failed, err.to_string()),
                };
                (e.name().to_owned(), health)
            })
            .collect()
    }

    /// The factory registered as `name`.
    ///
    /// # Errors
    /// [`DriverError::UnknownDriver`] listing the registered names.
    pub fn factory(&self, name: &str) -> Result<Arc<dyn DriverFactory>> {
        Ok(self.entry(name)?.factory.clone())
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        sorted_names(&self.read())
    }

    /// Whether `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.read().iter().any(|e| e.name() == name)
    }
}

fn sorted_names(entries: &[Arc<Entry>]) -> Vec<String> {
    let mut names: Vec<String> = entries.iter().map(|e| e.name().to_owned()).collect();
    names.sort();
    names
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
        let r = Registry::new();
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
        let r = registry();
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

/// The live registry: registration while in use, draining, resolution, health.
#[cfg(test)]
mod live_tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::{ContainerId, ExitStatus, Hooks, Info, Pipes, Signal};

    /// A driver whose `run` blocks until the test sends on its channel; it handles commands
    /// whose first arg starts with its prefix.
    struct Blocking {
        name: String,
        caps: Capabilities,
        prefix: &'static str,
        release: Mutex<mpsc::Receiver<()>>,
        entered: mpsc::SyncSender<()>,
    }

    impl Driver for Blocking {
        fn name(&self) -> &str {
            &self.name
        }
        fn capabilities(&self) -> Capabilities {
            self.caps
        }
        fn run(&self, _: &Command, _: Pipes, _: &Hooks) -> Result<ExitStatus> {
            let _ = self.entered.send(());
            let _ = self.release.lock().unwrap().recv();
            Ok(ExitStatus::exited(0))
        }
        fn exec(
            &self,
            _: &ContainerId,
            _: &oci_spec::runtime::Process,
            _: Pipes,
            _: &Hooks,
        ) -> Result<ExitStatus> {
            Ok(ExitStatus::exited(7))
        }
        fn kill(&self, id: &ContainerId, _: Signal) -> Result<()> {
            Err(DriverError::not_found(id))
        }
        fn terminate(&self, _: &ContainerId) -> Result<()> {
            Ok(())
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
        fn can_handle(&self, cmd: &Command) -> Result<()> {
            let arg0 = cmd
                .process()?
                .args()
                .as_ref()
                .and_then(|a| a.first().cloned());
            match arg0 {
                Some(a) if a.starts_with(self.prefix) => Ok(()),
                _ => Err(DriverError::cant_handle(
                    &self.name,
                    format!("args[0] does not start with {}", self.prefix),
                )),
            }
        }
        fn health(&self) -> Health {
            Health::new().with("engine", Level::Ok, "ready")
        }
    }

    /// Makes `Blocking` drivers; the test keeps the channel ends.
    struct BlockingFactory {
        name: &'static str,
        caps: Capabilities,
        prefix: &'static str,
        ends: Mutex<Vec<(mpsc::Receiver<()>, mpsc::SyncSender<()>)>>,
        fail: bool,
    }

    impl BlockingFactory {
        /// The factory, the sender that releases its drivers' runs and the receiver that
        /// hears them start (one driver).
        fn new(
            name: &'static str,
            caps: Capabilities,
            prefix: &'static str,
        ) -> (Arc<Self>, mpsc::Sender<()>, mpsc::Receiver<()>) {
            let (release_tx, release_rx) = mpsc::channel();
            let (entered_tx, entered_rx) = mpsc::sync_channel(16);
            let f = Arc::new(Self {
                name,
                caps,
                prefix,
                ends: Mutex::new(vec![(release_rx, entered_tx)]),
                fail: false,
            });
            (f, release_tx, entered_rx)
        }
    }

    impl DriverFactory for BlockingFactory {
        fn name(&self) -> &str {
            self.name
        }
        fn create(&self, _: &serde_json::Value) -> Result<Arc<dyn Driver>> {
            if self.fail {
                return Err(DriverError::Internal {
                    context: self.name.into(),
                    message: "no engine on this host".into(),
                });
            }
            let (release, entered) =
                self.ends
                    .lock()
                    .unwrap()
                    .pop()
                    .ok_or_else(|| DriverError::Internal {
                        context: self.name.into(),
                        message: "the test made one driver only".into(),
                    })?;
            Ok(Arc::new(Blocking {
                name: self.name.into(),
                caps: self.caps,
                prefix: self.prefix,
                release: Mutex::new(release),
                entered,
            }))
        }
    }

    fn command(arg0: &str) -> Command {
        let spec = crate::parse_spec(
            serde_json::json!({
                "ociVersion": "1.0.2",
                "root": {"path": "rootfs"},
                "process": {"args": [arg0], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        Command::new(ContainerId::new("c").unwrap(), "/b", spec).unwrap()
    }

    #[test]
    fn unregister_drains_while_a_container_runs() {
        let registry = Registry::new();
        let (factory, release, entered) = BlockingFactory::new("slow", Capabilities::none(), "");
        registry.register(factory).unwrap();
        let driver = registry.create(&DriverConfig::new("slow")).unwrap();

        // A container runs on another thread.
        let running = {
            let d = driver.clone();
            std::thread::spawn(move || d.run(&command("x"), Pipes::null(), &Hooks::new()))
        };
        entered.recv().unwrap();

        // Registering another driver meanwhile is fine (&self, from any thread).
        let r2 = registry.clone();
        std::thread::spawn(move || r2.register(Arc::new(super::tests_nop("other"))))
            .join()
            .unwrap()
            .unwrap();
        assert_eq!(registry.names(), ["other", "slow"]);

        let drain = registry.unregister("slow").unwrap();
        assert_eq!(drain.driver(), "slow");
        assert!(!registry.contains("slow"));
        assert_eq!(drain.in_use(), 1);
        assert!(!drain.wait_timeout(Duration::from_millis(20)));

        // No new container; the running one can still be exec'd into and inspected.
        let e = driver
            .run(&command("y"), Pipes::null(), &Hooks::new())
            .unwrap_err();
        assert!(matches!(e, DriverError::Draining { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            "the slow driver is draining: it takes no new containers"
        );
        let process = command("z").process().unwrap().clone();
        let id = ContainerId::new("c").unwrap();
        assert_eq!(
            driver
                .exec(&id, &process, Pipes::null(), &Hooks::new())
                .unwrap()
                .code,
            7
        );
        assert!(driver.terminate(&id).is_ok());
        assert!(
            driver.health().to_string().contains("draining"),
            "{}",
            driver.health()
        );

        // The name is free at once: a new version can take it while the old one drains.
        let (factory2, _release2, _entered2) =
            BlockingFactory::new("slow", Capabilities::none(), "");
        registry.register(factory2).unwrap();
        assert!(registry.contains("slow"));

        release.send(()).unwrap();
        assert_eq!(running.join().unwrap().unwrap().code, 0);
        drain.wait();
        assert!(drain.is_drained());
        assert!(drain.wait_timeout(Duration::ZERO));
    }

    #[test]
    fn unknown_names_are_refused_by_unregister() {
        let registry = Registry::new();
        let e = registry.unregister("nope").unwrap_err();
        assert!(matches!(e, DriverError::UnknownDriver { .. }), "{e}");
    }

    #[test]
    fn resolve_picks_by_operations_and_can_handle_in_registration_order() {
        let registry = Registry::new();
        let (native, _r1, _e1) = BlockingFactory::new(
            "native",
            Capabilities::none().with(Operation::Pause),
            "/bin",
        );
        let (wasm, _r2, _e2) = BlockingFactory::new("wasm", Capabilities::none(), "/app");
        let (any, _r3, _e3) =
            BlockingFactory::new("any", Capabilities::none().with(Operation::Pause), "/");
        registry.register(native).unwrap();
        registry.register(wasm).unwrap();
        registry.register(any).unwrap();

        let pick = |req: Requirements<'_>| registry.resolve(&req).map(|r| r.name);
        let bin = command("/bin/sh");
        let app = command("/app.wasm");
        assert_eq!(pick(Requirements::new().command(&bin)).unwrap(), "native");
        assert_eq!(pick(Requirements::new().command(&app)).unwrap(), "wasm");
        // wasm can't pause: the next one that can and handles it.
        assert_eq!(
            pick(Requirements::new().command(&app).needs(Operation::Pause)).unwrap(),
            "any"
        );
        // The pin wins over what fits.
        assert_eq!(
            pick(Requirements::new().command(&app).pin(Some("native"))).unwrap(),
            "native"
        );
        let e = pick(Requirements::new().pin(Some("nope"))).unwrap_err();
        assert!(matches!(e, DriverError::UnknownDriver { .. }), "{e}");
        // The registry's own driver is shared between calls.
        let a = registry
            .resolve(&Requirements::new().command(&bin))
            .unwrap();
        let b = registry.driver("native").unwrap();
        assert!(Arc::ptr_eq(&a.driver, &b));

        // Nothing fits: why, per driver.
        let e = pick(Requirements::new().command(&app).needs(Operation::Exec)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no registered driver can run this container: native: does not support exec; \
             wasm: does not support exec; any: does not support exec"
        );
        let other = command("x");
        let e = pick(Requirements::new().command(&other).needs(Operation::Pause)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no registered driver can run this container: native: args[0] does not start with \
             /bin; wasm: does not support pause; any: args[0] does not start with /"
        );
        let e = Registry::new().resolve(&Requirements::new()).unwrap_err();
        assert!(e.to_string().contains("no driver is registered"), "{e}");
    }

    #[test]
    fn health_of_every_driver_and_of_one_that_cannot_be_made() {
        let registry = Registry::new();
        let (ok, _r, _e) = BlockingFactory::new("b-ok", Capabilities::none(), "");
        registry.register(ok).unwrap();
        let (mut broken, _r2, _e2) = BlockingFactory::new("a-broken", Capabilities::none(), "");
        Arc::get_mut(&mut broken).unwrap().fail = true;
        registry.register(broken).unwrap();
        let health = registry.health();
        let names: Vec<_> = health.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a-broken", "b-ok"]);
        assert_eq!(health[0].1.level(), Level::Failed);
        assert!(health[0].1.to_string().contains("no engine on this host"));
        assert!(health[1].1.is_ok());
        assert_eq!(health[1].1.checks[0].name, "engine");
        // A failed creation is not kept; resolving says the driver is unavailable.
        let e = registry
            .resolve(
                &Requirements::new()
                    .command(&command("/x"))
                    .needs(Operation::Exec),
            )
            .unwrap_err();
        assert!(e.to_string().contains("a-broken: unavailable"), "{e}");
    }
}

#[cfg(test)]
fn tests_nop(name: &'static str) -> impl DriverFactory {
    struct F(&'static str);
    impl DriverFactory for F {
        fn name(&self) -> &str {
            self.0
        }
        fn create(&self, _: &serde_json::Value) -> Result<Arc<dyn Driver>> {
            Err(DriverError::Internal {
                context: self.0.into(),
                message: "not made in this test".into(),
            })
        }
    }
    F(name)
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
