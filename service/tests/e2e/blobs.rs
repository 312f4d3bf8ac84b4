//! Tests of the `offheap-mmap` scenario (not built yet).
