//! (filled by its own issue)
