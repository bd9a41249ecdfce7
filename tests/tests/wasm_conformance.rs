//! The conformance kit against the wasm driver (no root needed).

execdriver_api::conformance_tests!(execdriver_tests::wasm::conformance_setup);
