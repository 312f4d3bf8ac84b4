//! Tests of the `map-no-shrink` scenario (not built yet).
