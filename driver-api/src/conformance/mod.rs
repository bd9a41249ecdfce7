//! The conformance kit: one list of behavioural checks that any [`Driver`] runs against itself.
//!
//! A driver crate supplies a [`Fixture`] — how to express each [`Program`] as a [`Command`] for
//! this driver (a busybox bundle, a `.wat` module, a host shell) — and runs the checks, most
//! conveniently with [`conformance_tests!`](crate::conformance_tests), which writes one `#[test]`
//! per check. A check whose operation the driver's [`Capabilities`](crate::Capabilities) do not
//! list is [skipped](Outcome::Skipped), never failed.
//!
//! ```ignore
//! execdriver_api::conformance_tests!(|| {
//!     let driver = my_driver::factory().create(&serde_json::Value::Null)?;
//!     Ok((driver, std::sync::Arc::new(my_driver::TestFixture::new()?)))
//! });
//! ```

mod checks;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use oci_spec::runtime::Process;

use crate::command::Command;
use crate::driver::{Driver, Operation};
use crate::error::DriverError;
use crate::id::ContainerId;

pub use checks::CHECKS;

/// What a check needs a container to do. The fixture turns each into a [`Command`] (and, for
/// exec, a [`Process`]) for its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Program {
    /// Exit at once with this code.
    Exit(i32),
    /// Write `stdout` to standard output and `stderr` to standard error, exactly, then exit 0.
    Echo {
        /// Bytes for stdout.
        stdout: String,
        /// Bytes for stderr.
        stderr: String,
    },
    /// Copy standard input to standard output until end of file, then exit 0.
    Cat,
    /// Run until killed. SIGTERM must end it with code 143 (dying of the signal, or a handler
    /// that exits 143 — a native container's pid 1 needs one); SIGKILL with 137.
    RunForever,
    /// Print one line to standard output at least every 100 ms, forever.
    Ticker,
    /// Allocate memory without bound under a memory limit the fixture sets (a few MiB), so
    /// that the driver's OOM handling kills it.
    OomHog,
    /// Exit 0 when this path exists as the container sees it, 1 when it does not (for drivers
    /// with [`Operation::Isolation`]).
    PathExists(String),
    /// Exec the engine's own executable the way an image can name it — `/proc/self/exe` as
    /// the program, resolved in the container — with the argument `--help` (for drivers with
    /// [`Operation::Isolation`]: it must never run, so stdout stays empty).
    EngineBinary,
    /// With `process.terminal = true` and a console size of 24 rows by 80 columns: print the
    /// terminal's size as `rows cols`, read one line from the terminal, print the size again
    /// and `got:<line>`, then exit 0 (for drivers with [`Operation::Terminal`]).
    Terminal,
}

/// A driver's test fixtures: how each [`Program`] runs on it.
pub trait Fixture: Send + Sync {
    /// A command for container `id` whose program does `program`.
    ///
    /// # Errors
    /// Whatever building the bundle needs.
    fn command(&self, id: &ContainerId, program: &Program) -> Result<Command, DriverError>;

    /// A process that does `program`, for [`Driver::exec`] into a container this fixture made.
    ///
    /// # Errors
    /// Whatever building the process needs.
    fn exec_process(&self, program: &Program) -> Result<Process, DriverError>;
}

/// What a conformance setup function returns: the driver under test and its fixture, or why
/// they can't be had here (a missing prerequisite).
pub type Setup = Result<(Arc<dyn Driver>, Arc<dyn Fixture>), String>;

/// One behavioural check.
pub struct Check {
    /// Its name (also the generated test's name).
    pub name: &'static str,
    /// The optional operations it needs; missing any of them skips it.
    pub requires: &'static [Operation],
    /// What it verifies, one line.
    pub description: &'static str,
    run: fn(&Kit) -> Result<(), String>,
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check")
            .field("name", &self.name)
            .field("requires", &self.requires)
            .finish()
    }
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It held.
    Passed,
    /// The driver does not support an operation the check needs.
    Skipped {
        /// The missing operation.
        missing: Operation,
    },
    /// It did not hold; why.
    Failed(String),
}

/// What the checks use: the driver, its fixture, and a source of fresh ids.
pub struct Kit {
    driver: Arc<dyn Driver>,
    fixture: Arc<dyn Fixture>,
    check: &'static str,
    counter: AtomicU64,
}

static RUN_SEQ: AtomicU64 = AtomicU64::new(0);

impl Kit {
    fn new(driver: Arc<dyn Driver>, fixture: Arc<dyn Fixture>, check: &'static str) -> Self {
        Self {
            driver,
            fixture,
            check,
            counter: AtomicU64::new(0),
        }
    }

    /// A fresh id, unique across processes and concurrent checks.
    pub fn id(&self) -> ContainerId {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let seq = RUN_SEQ.fetch_add(1, Ordering::Relaxed);
        let name: String = self.check.chars().take(40).collect();
        ContainerId::new(format!("ck-{}-{seq}-{name}-{n}", std::process::id()))
            .expect("kit ids are valid")
    }
}

/// Runs the check called `name`.
pub fn run_check(driver: Arc<dyn Driver>, fixture: Arc<dyn Fixture>, name: &str) -> Outcome {
    let Some(check) = CHECKS.iter().find(|c| c.name == name) else {
        return Outcome::Failed(format!("no conformance check is called {name:?}"));
    };
    run_one(driver, fixture, check)
}

/// How long one check may take before it is failed as hung.
const CHECK_TIMEOUT: Duration = Duration::from_secs(180);

fn run_one(driver: Arc<dyn Driver>, fixture: Arc<dyn Fixture>, check: &'static Check) -> Outcome {
    let caps = driver.capabilities();
    if let Some(missing) = check.requires.iter().find(|op| !caps.supports(**op)) {
        return Outcome::Skipped { missing: *missing };
    }
    let kit = Kit::new(driver, fixture, check.name);
    let (tx, rx) = crossbeam_channel::bounded(1);
    let spawned = std::thread::Builder::new()
        .name(format!(
            "ck-{}",
            check.name.chars().take(12).collect::<String>()
        ))
        .spawn(move || {
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (check.run)(&kit)));
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        return Outcome::Failed(format!("can't spawn the check thread: {e}"));
    }
    match rx.recv_timeout(CHECK_TIMEOUT) {
        Ok(Ok(Ok(()))) => Outcome::Passed,
        Ok(Ok(Err(why))) => Outcome::Failed(why),
        Ok(Err(_)) => Outcome::Failed("the check panicked".into()),
        Err(_) => Outcome::Failed(format!("hung for more than {CHECK_TIMEOUT:?}")),
    }
}

/// Every check's outcome.
#[derive(Debug, Clone)]
pub struct Report {
    /// `(check name, outcome)` in [`CHECKS`] order.
    pub outcomes: Vec<(&'static str, Outcome)>,
}

impl Report {
    /// The failed checks.
    pub fn failures(&self) -> Vec<(&'static str, &str)> {
        self.outcomes
            .iter()
            .filter_map(|(n, o)| match o {
                Outcome::Failed(why) => Some((*n, why.as_str())),
                _ => None,
            })
            .collect()
    }

    /// The skipped checks.
    pub fn skipped(&self) -> Vec<&'static str> {
        self.outcomes
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Skipped { .. }))
            .map(|(n, _)| *n)
            .collect()
    }
}

/// Runs every check, one after another.
pub fn run_all(driver: Arc<dyn Driver>, fixture: Arc<dyn Fixture>) -> Report {
    let outcomes = CHECKS
        .iter()
        .map(|c| (c.name, run_one(driver.clone(), fixture.clone(), c)))
        .collect();
    Report { outcomes }
}

/// For generated tests: passes, prints a skip line, or panics with the reason.
///
/// # Panics
/// When the outcome is a failure.
pub fn assert_outcome(driver: &str, name: &str, outcome: Outcome) {
    match outcome {
        Outcome::Passed => {}
        Outcome::Skipped { missing } => {
            eprintln!("SKIP conformance {driver}/{name}: the driver does not support {missing}");
        }
        Outcome::Failed(why) => panic!("conformance {driver}/{name} failed: {why}"),
    }
}

/// For generated tests whose driver can't be set up here (no root, missing fixture): under
/// `CI=true` that is a failure, elsewhere a loud skip.
///
/// # Panics
/// Under `CI=true`.
pub fn prerequisite_missing(name: &str, why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{name}: prerequisite missing under CI=true: {why}");
    }
    eprintln!("SKIP {name}: prerequisite missing: {why} (set CI=true to make this a failure)");
}

/// Writes one `#[test]` per conformance check for a driver. The argument is an expression that
/// evaluates to a closure returning a [`Setup`](crate::conformance::Setup); an `Err` is a missing prerequisite
/// (a failure under `CI=true`, a loud skip elsewhere).
#[macro_export]
macro_rules! conformance_tests {
    ($setup:expr) => {
        $crate::conformance_tests!(@each $setup;
            exit_codes, stdout_and_stderr, stdin, hook_order_and_pid, failing_pre_start_aborts,
            panicking_pre_start_aborts, failing_start_hook_kills, kill_with_sigkill,
            kill_with_sigterm, terminate, info_and_list_while_running, pause_and_unpause,
            stats_while_running, pids_while_running, exec_into_running, terminal, clean_then_reuse,
            concurrent_runs, duplicate_live_id_rejected, unknown_id_not_found,
            invalid_ids_rejected, host_files_out_of_reach, engine_binary_never_runs, oom_killed,
            events_in_order, two_phase_lifecycle, two_phase_exec);
    };
    (@each $setup:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let setup = $setup;
                let result: $crate::conformance::Setup = setup();
                match result {
                    Ok((driver, fixture)) => {
                        let name = driver.name().to_owned();
                        let outcome = $crate::conformance::run_check(driver, fixture, stringify!($name));
                        $crate::conformance::assert_outcome(&name, stringify!($name), outcome);
                    }
                    Err(why) => $crate::conformance::prerequisite_missing(stringify!($name), &why),
                }
            }
        )*
    };
}

#[cfg(test)]
mod tests;
