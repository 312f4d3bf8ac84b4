//! Tests of the `label-cardinality` scenario (not built yet).
