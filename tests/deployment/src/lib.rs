//! Test-only crate: see `tests/`. It has no code of its own.
