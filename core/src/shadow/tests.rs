//! Operation-level tests.
