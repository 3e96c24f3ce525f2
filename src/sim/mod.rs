//! Placeholder: the Monitor API simulator (being written).
