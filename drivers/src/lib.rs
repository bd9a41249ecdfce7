//! placeholder
pub use execdriver_api::*;
