//! Harness for the end-to-end tests: bundles, throwaway host namespaces, cleanup guards.

pub mod docker;
pub mod podman;
