//! OCI image archives built from a directory, for the tests that import images into
//! containerd (no registry on the test machine).

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// An OCI image archive (`ctr images import` reads it) named `name`, with one layer holding
/// `rootfs`, and `cmd` as its command.
///
/// # Panics
/// When a file can't be written or `tar` fails.
pub fn oci_image(work: &Path, name: &str, rootfs: &Path, cmd: &[&str], env: &[&str]) -> PathBuf {
    let img = work.join(format!("{}-layout", name.replace(['/', ':'], "_")));
    let blobs = img.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let layer_path = work.join("layer.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .arg("-cf")
        .arg(&layer_path)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "tar the layer");
    let layer = std::fs::read(&layer_path).unwrap();
    let put = |bytes: &[u8]| -> (String, usize) {
        let digest = sha256_hex(bytes);
        std::fs::write(blobs.join(&digest), bytes).unwrap();
        (format!("sha256:{digest}"), bytes.len())
    };
    let (layer_digest, layer_size) = put(&layer);
    let config = serde_json::json!({
        "architecture": match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", a => a },
        "os": "linux",
        "config": {"Cmd": cmd, "Env": env},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    })
    .to_string();
    let (config_digest, config_size) = put(config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": layer_size}],
    })
    .to_string();
    let (manifest_digest, manifest_size) = put(manifest.as_bytes());
    std::fs::write(img.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": manifest_digest, "size": manifest_size,
                       "annotations": {"io.containerd.image.name": name}}],
    });
    std::fs::write(img.join("index.json"), index.to_string()).unwrap();
    let archive = work.join(format!("{}.tar", name.replace(['/', ':'], "_")));
    let st = Command::new("tar")
        .arg("-C")
        .arg(&img)
        .arg("-cf")
        .arg(&archive)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "tar the image");
    archive
}
