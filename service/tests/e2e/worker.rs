//! Tests of the `unbounded-queue` scenario (not built yet).
