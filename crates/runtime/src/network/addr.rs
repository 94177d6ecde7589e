//! Address plan: the subnet is cut into /30 blocks, one per sandbox slot; in
//! block `n`, `.1` is the host end and `.2` the sandbox.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::str::FromStr;

use crate::error::RuntimeError;

/// Index of a /30 block in the subnet. Slot 0 is never handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot(pub u32);

/// An IPv4 subnet sandboxes take their addresses from (e.g. `10.88.0.0/16`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    base: u32,
    prefix_len: u8,
}

impl Subnet {
    /// Number of usable slots (block 0 excluded).
    pub fn slots(&self) -> u32 {
        (1u32 << (32 - u32::from(self.prefix_len) - 2)).saturating_sub(1)
    }

    /// Prefix length of each sandbox's point-to-point block.
    pub fn pair_prefix_len(&self) -> u8 {
        30
    }

    /// (host address, sandbox address) of `slot`.
    pub fn pair(&self, slot: Slot) -> (Ipv4Addr, Ipv4Addr) {
        let block = self.base + slot.0 * 4;
        (Ipv4Addr::from(block + 1), Ipv4Addr::from(block + 2))
    }

    /// Whether the block `destination/prefix_len` lies inside this subnet (as
    /// narrow as it or narrower).
    pub(crate) fn holds(&self, destination: u32, prefix_len: u8) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0);
        prefix_len >= self.prefix_len && destination & mask == self.base
    }

    /// The first slot after `after` (wrapping round to 1) not in `used`.
    ///
    /// Handed out in turn rather than lowest first, so that a slot just freed
    /// is the last to be taken again: the kernel removes a deleted sandbox's
    /// host veth a few tens of milliseconds after its namespace, and a new
    /// sandbox on the same slot would have to remove it first.
    pub fn next_free(&self, used: &BTreeSet<Slot>, after: Slot) -> Option<Slot> {
        let last = self.slots();
        let after = if after.0 > last { 0 } else { after.0 };
        (after + 1..=last)
            .chain(1..=after)
            .map(Slot)
            .find(|slot| !used.contains(slot))
    }
}

impl FromStr for Subnet {
    type Err = RuntimeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || RuntimeError::Config(format!("subnet {s:?} is not an IPv4 CIDR of /8 to /28"));
        let (ip, len) = s.split_once('/').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let prefix_len: u8 = len.parse().map_err(|_| bad())?;
        if !(8..=28).contains(&prefix_len) {
            return Err(bad());
        }
        let mask = u32::MAX << (32 - prefix_len);
        let base = u32::from(ip);
        if base & !mask != 0 {
            return Err(RuntimeError::Config(format!(
                "subnet {s:?} has host bits set"
            )));
        }
        Ok(Self { base, prefix_len })
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_dot_one_and_dot_two_of_each_block() {
        let subnet: Subnet = "10.88.0.0/16".parse().expect("parse");
        assert_eq!(subnet.slots(), 16383);
        assert_eq!(
            subnet.pair(Slot(1)),
            (Ipv4Addr::new(10, 88, 0, 5), Ipv4Addr::new(10, 88, 0, 6))
        );
        assert_eq!(
            subnet.pair(Slot(64)),
            (Ipv4Addr::new(10, 88, 1, 1), Ipv4Addr::new(10, 88, 1, 2))
        );
        assert_eq!(subnet.to_string(), "10.88.0.0/16");
    }

    #[test]
    fn next_free_goes_round_and_reports_exhaustion() {
        let subnet: Subnet = "10.0.0.0/28".parse().expect("parse");
        assert_eq!(subnet.slots(), 3);
        let used = |slots: &[u32]| slots.iter().copied().map(Slot).collect::<BTreeSet<_>>();
        assert_eq!(subnet.next_free(&used(&[]), Slot(0)), Some(Slot(1)));
        // The slot after the last one handed out, even when a lower one is free.
        assert_eq!(subnet.next_free(&used(&[]), Slot(1)), Some(Slot(2)));
        assert_eq!(subnet.next_free(&used(&[3]), Slot(2)), Some(Slot(1)));
        assert_eq!(subnet.next_free(&used(&[1, 3]), Slot(3)), Some(Slot(2)));
        // A cursor past the end (a smaller subnet than before) starts over.
        assert_eq!(subnet.next_free(&used(&[]), Slot(900)), Some(Slot(1)));
        assert_eq!(subnet.next_free(&used(&[3, 2, 1]), Slot(1)), None);
    }

    #[test]
    fn rejects_bad_cidrs() {
        for s in [
            "10.88.0.0",
            "10.88.0.1/16",
            "10.88.0.0/30",
            "x/16",
            "10.0.0.0/4",
        ] {
            assert!(s.parse::<Subnet>().is_err(), "{s} should be rejected");
        }
    }
}
