//! The real data path: weave-hook's `overlay` (the VXLAN device on the weave bridge, its flood
//! list and the underlay filter), called in this process through weave-hook's library.

use std::net::Ipv4Addr;

use weave_core::settings::Settings;
use weave_hook::overlay::{self, Overlay};

use crate::datapath::DataPath;

/// The kernel's VXLAN overlay of one bridge.
#[derive(Debug, Clone)]
pub struct KernelOverlay {
    pub settings: Settings,
    pub overlay: Overlay,
}

impl DataPath for KernelOverlay {
    fn ensure(&self) -> Result<Option<u32>, String> {
        overlay::ensure(&self.settings, &self.overlay)
            .map(Some)
            .map_err(|e| e.to_string())
    }

    fn set_peers(&self, peers: &[Ipv4Addr]) -> Result<(), String> {
        overlay::set_peers(&self.settings, &self.overlay, peers).map_err(|e| e.to_string())
    }
}
