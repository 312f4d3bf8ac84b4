//! Tests of the `arc-cycle` scenario (not built yet).
