//! Placeholder: sinks (being written).
