//! The Kubernetes Container Runtime Interface, `runtime.v1`, as a tonic client — what kubelet
//! speaks to containerd's CRI plugin. `proto/api.proto` is cri-api's `pkg/apis/runtime/v1/api.proto`
//! (Apache-2.0, The Kubernetes Authors), unchanged.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// The generated messages and the `RuntimeService` / `ImageService` clients.
pub mod v1 {
    tonic::include_proto!("runtime.v1");
}
