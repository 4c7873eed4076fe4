pub mod netlink;
pub mod cidr;
pub mod oci;
pub mod options;
pub mod process;
pub mod store;
