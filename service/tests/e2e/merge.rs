//! Tests of the `vec-regrowth` scenario (not built yet).
