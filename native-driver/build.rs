//! Builds the exec trampoline (`trampoline/trampoline.c`): a freestanding static program of a
//! few hundred bytes that the native driver seals into a memfd and execs before any
//! container-controlled program (see the crate docs, "Host binary protection").

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "trampoline/trampoline.c";
    println!("cargo:rerun-if-changed={src}");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let bin = out.join("trampoline");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os != "linux" {
        // The native driver builds (as an empty crate) on other systems.
        std::fs::write(&bin, b"").expect("write an empty trampoline");
        return;
    }
    // The C compiler for the target, as cc-rs finds it (CC, CC_<target>, or the default).
    let compiler = cc::Build::new()
        .opt_level(2)
        .cargo_metadata(false)
        .get_compiler();
    let mut cmd = Command::new(compiler.path());
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64") {
        // No endbr64 landing pads: nothing jumps into this program indirectly.
        cmd.arg("-fcf-protection=none");
    }
    let status = cmd
        .args([
            "-nostdlib",
            "-static",
            "-no-pie",
            "-fno-pie",
            "-Os",
            "-ffreestanding",
            "-fno-builtin",
            "-fno-stack-protector",
            "-fno-asynchronous-unwind-tables",
            "-Wall",
            "-Werror",
            "-Wl,--build-id=none",
            "-Wl,-z,norelro",
            "-Wl,-z,noexecstack",
            "-s",
            "-o",
        ])
        .arg(&bin)
        .arg(src)
        .status()
        .unwrap_or_else(|e| panic!("run the C compiler {:?}: {e}", compiler.path()));
    assert!(status.success(), "building {src} failed: {status}");
}
