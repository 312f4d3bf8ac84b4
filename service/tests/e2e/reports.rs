//! Tests of the `closure-capture` scenario (not built yet).
