//! The agent's hold on the kernel's data path: the VXLAN device on the weave bridge and its
//! peers. Behind a trait so the agent's logic is testable without netlink, and so that
//! `weave-mesh run --no-overlay` can keep membership and addresses while something else
//! manages the devices.

use std::net::Ipv4Addr;
use std::sync::Mutex;

/// What the agent asks of the data path. Errors are sentences for the log.
pub trait DataPath: Send + Sync {
    /// Creates or repairs the overlay; returns the MTU containers must use, if it knows one.
    fn ensure(&self) -> Result<Option<u32>, String>;
    /// Makes the overlay's peers exactly `peers` (underlay addresses of the other hosts).
    fn set_peers(&self, peers: &[Ipv4Addr]) -> Result<(), String>;
}

/// No data path (`--no-overlay`): membership and addresses only.
#[derive(Debug, Default)]
pub struct NoOverlay;

impl DataPath for NoOverlay {
    fn ensure(&self) -> Result<Option<u32>, String> {
        Ok(None)
    }

    fn set_peers(&self, _peers: &[Ipv4Addr]) -> Result<(), String> {
        Ok(())
    }
}

/// A data path that only records what it was asked (unit tests of the agent's logic).
#[derive(Debug, Default)]
pub struct Recorder {
    pub calls: Mutex<Vec<Vec<Ipv4Addr>>>,
}

impl DataPath for Recorder {
    fn ensure(&self) -> Result<Option<u32>, String> {
        Ok(Some(1450))
    }

    fn set_peers(&self, peers: &[Ipv4Addr]) -> Result<(), String> {
        self.calls.lock().unwrap().push(peers.to_vec());
        Ok(())
    }
}

impl<T: DataPath + ?Sized> DataPath for std::sync::Arc<T> {
    fn ensure(&self) -> Result<Option<u32>, String> {
        (**self).ensure()
    }

    fn set_peers(&self, peers: &[Ipv4Addr]) -> Result<(), String> {
        (**self).set_peers(peers)
    }
}
