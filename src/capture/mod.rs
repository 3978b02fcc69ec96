//! Receivers for OTLP traces and Pyroscope pushes (work in progress).
