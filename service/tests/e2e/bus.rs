//! Tests of the `lapsed-listener` scenario (not built yet).
