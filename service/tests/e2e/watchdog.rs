//! Tests of the `timer-per-request` scenario (not built yet).
