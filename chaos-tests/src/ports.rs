//! Loopback ports for the coordinators the harness starts.
//!
//! A coordinator is another process, so its port is found here, released,
//! and bound again by the child. A port found by binding port 0 comes from
//! the kernel's ephemeral range, where the proxies' own `bind(0)` and every
//! outgoing connection also draw: one of them can take the port in between,
//! and that coordinator then never starts (a CI run lost node 1 this way
//! and reported it as a replica that did not answer). Ports here come from
//! below the ephemeral range, where the kernel never hands out ports on its
//! own, walked in order from a random start so no two clusters of one
//! process are given the same port.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// The lowest port handed out: clear of the well-known and common
/// registered service ports.
const FLOOR: u16 = 20_000;

/// The next candidate, shared by every cluster of this process.
static NEXT: Mutex<Option<u16>> = Mutex::new(None);

/// A loopback address free right now, from below the ephemeral range when
/// there is room there (else from `bind(0)`, with the race above).
pub fn free_address() -> std::io::Result<SocketAddr> {
    let ceiling = ephemeral_floor();
    if ceiling <= FLOOR + 1_000 {
        return TcpListener::bind("127.0.0.1:0")?.local_addr();
    }
    let span = ceiling - FLOOR;
    let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
    let mut port = next.unwrap_or_else(|| FLOOR + random_below(span));
    for _ in 0..span {
        let candidate = port;
        port = if port + 1 >= ceiling { FLOOR } else { port + 1 };
        let address = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, candidate));
        if TcpListener::bind(address).is_ok() {
            *next = Some(port);
            return Ok(address);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no free loopback port in {FLOOR}..{ceiling}"),
    ))
}

/// The first port of the kernel's ephemeral range (Linux's default when it
/// cannot be read).
fn ephemeral_floor() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A start that differs between processes, so concurrent test binaries do
/// not walk the same ports in step (the run's seed must not decide it: two
/// replays of one seed may run at once).
fn random_below(n: u16) -> u16 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mixed = crate::rng::Rng::new(u64::from(nanos) ^ (u64::from(std::process::id()) << 32))
        .below(u64::from(n));
    u16::try_from(mixed).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_distinct_bindable_and_below_the_ephemeral_range() {
        let floor = ephemeral_floor();
        let addresses: Vec<SocketAddr> = (0..50).map(|_| free_address().unwrap()).collect();
        let mut ports: Vec<u16> = addresses.iter().map(SocketAddr::port).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 50, "a port was handed out twice");
        if floor > FLOOR + 1_000 {
            assert!(
                ports.iter().all(|p| (FLOOR..floor).contains(p)),
                "{ports:?}"
            );
        }
        for a in addresses {
            TcpListener::bind(a).unwrap();
        }
    }
}
