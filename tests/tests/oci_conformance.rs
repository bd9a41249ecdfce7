//! The conformance kit against the `oci` driver, once over runc and once over crun (root and
//! both binaries; a failure under CI=true without them).

mod runc {
    execdriver_api::conformance_tests!(execdriver_tests::oci::runc_setup);
}

mod crun {
    execdriver_api::conformance_tests!(execdriver_tests::oci::crun_setup);
}
