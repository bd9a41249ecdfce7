//! The conformance kit against the native driver (root; a failure under CI=true without it).

execdriver_api::conformance_tests!(execdriver_tests::native::conformance_setup);
