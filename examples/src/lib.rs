//! Runnable examples of execdriver; see the `examples/` targets.
