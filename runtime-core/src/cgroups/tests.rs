//! Unit tests (no cgroup access).
