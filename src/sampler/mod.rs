//! Sample-time label backend (work in progress).
