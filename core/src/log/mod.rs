//! The append-only, checksummed, memory-mapped log (being built).
