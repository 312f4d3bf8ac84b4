//! Tests of the `rss-retained` scenario (not built yet).
