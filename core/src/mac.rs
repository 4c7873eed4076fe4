//! MAC addresses as weave uses them: ethwe's, chosen by weave-hook and kept in the record.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A MAC address, written `0a:58:0a:02:00:05` (records keep it so).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// ethwe's MAC: locally administered and unicast, `0a:58:` and the four bytes of the
    /// container's first address, as OVN and Docker's overlay driver choose theirs. A
    /// neighbour's stale entry for a reused address then still names the right MAC, and
    /// two live containers of one network never share one (the store never hands an
    /// address out twice).
    pub fn for_address(first: Ipv4Addr) -> Self {
        let [a, b, c, d] = first.octets();
        Mac([0x0a, 0x58, a, b, c, d])
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl FromStr for Mac {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a MAC address like 0a:58:0a:02:00:05");
        let mut mac = [0; 6];
        let mut parts = s.split(':');
        for byte in &mut mac {
            let part = parts.next().filter(|p| p.len() == 2).ok_or_else(bad)?;
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        match parts.next() {
            Some(_) => Err(bad()),
            None => Ok(Mac(mac)),
        }
    }
}

impl TryFrom<String> for Mac {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Mac> for String {
    fn from(mac: Mac) -> String {
        mac.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_from_the_address_locally_administered_unicast() {
        let mac = Mac::for_address("10.2.0.5".parse().unwrap());
        assert_eq!(mac.to_string(), "0a:58:0a:02:00:05");
        assert_eq!(mac.0[0] & 0x03, 0x02, "locally administered, unicast");
    }

    #[test]
    fn round_trips_and_refuses_junk() {
        let mac: Mac = "0a:58:0a:02:00:ff".parse().unwrap();
        assert_eq!(mac.0, [0x0a, 0x58, 0x0a, 0x02, 0x00, 0xff]);
        let json = serde_json::to_string(&mac).unwrap();
        assert_eq!(json, "\"0a:58:0a:02:00:ff\"");
        assert_eq!(serde_json::from_str::<Mac>(&json).unwrap(), mac);
        for bad in [
            "",
            "0a:58:0a:02:00",
            "0a:58:0a:02:00:05:01",
            "0a:58:0a:02:00:g5",
            "a:58:0a:02:00:05:",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad:?}");
        }
    }
}
