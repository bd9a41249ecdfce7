//! The example engine picks the `process` driver from its JSON config file.

use std::process::Command;

fn engine() -> Command {
    Command::new(env!("CARGO_BIN_EXE_engine"))
}

#[test]
fn runs_a_command_with_the_driver_named_in_the_config_file() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/engine.json");
    let out = engine()
        .args([
            config,
            "sh",
            "-c",
            "echo hello from the process driver; exit 3",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from the process driver\n"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("using the process driver"), "{err}");
    assert!(err.contains("created as pid"), "{err}");
}

#[test]
fn an_unknown_driver_in_the_config_lists_the_registered_ones() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("engine.json");
    std::fs::write(&config, r#"{"driver": "nope"}"#).unwrap();
    let out = engine().arg(&config).arg("true").output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown driver \"nope\"; available drivers: process"),
        "{err}"
    );
}
