//! Placeholder: line-protocol encoder (being written).
