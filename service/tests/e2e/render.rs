//! Tests of the `pool-no-reset` scenario (not built yet).
