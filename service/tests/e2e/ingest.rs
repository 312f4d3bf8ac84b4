//! Tests of the `subslice-pin` scenario (not built yet).
