//! weave-mesh: one weave network across hosts (issue 13).
//!
//! `etcd`: a small blocking client for etcd's v3 JSON gateway.

pub mod etcd;
