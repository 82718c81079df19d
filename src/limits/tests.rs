use std::net::IpAddr;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};

use std::sync::atomic::AtomicU64;

use super::{Key, Limiter, client_address, make_room, parse_forwarded_ip};
use crate::config::{Rate, TrustedNet};

const SECOND: u64 = 1_000_000_000;

fn per_minute(count: u32) -> Rate {
    Rate {
        count,
        period: Duration::from_secs(60),
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn net(addr: &str, prefix: u8) -> TrustedNet {
    TrustedNet {
        addr: ip(addr),
        prefix,
    }
}

fn xff(values: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in values {
        h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
    }
    h
}

#[test]
fn a_rate_allows_its_burst_at_once_then_one_per_interval() {
    let l = Limiter::new(per_minute(3), 100);
    let k = Key::address(ip("192.0.2.1"));
    let t = 5 * SECOND;
    for _ in 0..3 {
        assert_eq!(l.check(k, t), Ok(()));
    }
    // The fourth waits one interval (20 s) from the first.
    let wait = l.check(k, t).unwrap_err();
    assert_eq!(wait, Duration::from_secs(20));
    // A refused request costs nothing: still 20 s, not 40.
    assert_eq!(l.check(k, t).unwrap_err(), Duration::from_secs(20));
    assert_eq!(l.check(k, t + 20 * SECOND), Ok(()));
    assert!(l.check(k, t + 20 * SECOND).is_err());
    // After a full period of quiet the whole burst is back.
    let later = t + 100 * SECOND;
    for _ in 0..3 {
        assert_eq!(l.check(k, later), Ok(()));
    }
    assert!(l.check(k, later).is_err());
}

#[test]
fn keys_are_counted_apart() {
    let l = Limiter::new(per_minute(1), 100);
    let (a, b) = (Key::address(ip("192.0.2.1")), Key::address(ip("192.0.2.2")));
    assert_eq!(l.check(a, SECOND), Ok(()));
    assert!(l.check(a, SECOND).is_err());
    assert_eq!(l.check(b, SECOND), Ok(()));
}

#[test]
fn an_ipv6_client_is_its_64_and_a_mapped_ipv4_address_is_the_ipv4_address() {
    assert_eq!(
        Key::address(ip("2001:db8:1:2::1")),
        Key::address(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
    );
    assert_ne!(
        Key::address(ip("2001:db8:1:2::1")),
        Key::address(ip("2001:db8:1:3::1"))
    );
    assert_eq!(
        Key::address(ip("::ffff:192.0.2.7")),
        Key::address(ip("192.0.2.7"))
    );
}

#[test]
fn an_address_spraying_flood_keeps_memory_bounded() {
    let l = Limiter::new(per_minute(5), 1_000);
    let t = 10 * SECOND;
    for i in 0..200_000u32 {
        let k = Key::V4(0x0a00_0000 + i);
        assert_eq!(
            l.check(k, t + u64::from(i)),
            Ok(()),
            "a new address has a full bucket"
        );
    }
    // 16 shards of at most ceil(1000 / 16) keys.
    assert!(l.len() <= 16 * 63, "{} keys kept", l.len());
}

#[test]
fn a_full_shard_sweeps_its_stale_keys_before_it_evicts_a_live_one() {
    let mut arrivals = std::collections::HashMap::new();
    let now = 100 * SECOND;
    for i in 0..10 {
        arrivals.insert(Key::V4(i), now - SECOND); // full buckets again
    }
    arrivals.insert(Key::V4(99), now + 5 * SECOND); // still limited
    let last_sweep = AtomicU64::new(0);
    make_room(&mut arrivals, 11, &last_sweep, now);
    assert_eq!(arrivals.len(), 1);
    assert!(arrivals.contains_key(&Key::V4(99)), "the live key is kept");
    // Within the second, no second sweep: one key goes, not the five stale ones.
    for i in 1..=5 {
        arrivals.insert(Key::V4(i), now - SECOND);
    }
    make_room(&mut arrivals, 6, &last_sweep, now + 1);
    assert_eq!(arrivals.len(), 5, "one evicted, no sweep");
    // A second later, the sweep runs again.
    make_room(&mut arrivals, 5, &last_sweep, now + 1 + SECOND);
    assert!(arrivals.len() <= 1, "{}", arrivals.len());
}

#[test]
fn the_client_is_the_peer_unless_the_peer_is_a_trusted_proxy() {
    let proxies = [net("10.0.0.0", 8), net("::1", 128)];
    let spoofed = xff(&["203.0.113.9"]);
    assert_eq!(
        client_address(ip("198.51.100.4"), &spoofed, &proxies),
        ip("198.51.100.4"),
        "an untrusted peer's X-Forwarded-For is ignored"
    );
    assert_eq!(
        client_address(ip("10.1.2.3"), &xff(&["198.51.100.4"]), &proxies),
        ip("198.51.100.4")
    );
    assert_eq!(
        client_address(ip("::1"), &xff(&["198.51.100.4"]), &proxies),
        ip("198.51.100.4")
    );
}

#[test]
fn the_client_is_the_nearest_untrusted_hop_of_every_forwarded_for_header() {
    let proxies = [net("10.0.0.0", 8)];
    // The client wrote "1.1.1.1"; its address as the edge saw it is 198.51.100.4; two trusted
    // proxies appended after that.
    let h = xff(&["1.1.1.1, 198.51.100.4", "10.0.0.5"]);
    assert_eq!(
        client_address(ip("10.0.0.6"), &h, &proxies),
        ip("198.51.100.4")
    );
    // Every hop trusted: the leftmost.
    let h = xff(&["10.9.9.9, 10.0.0.5"]);
    assert_eq!(client_address(ip("10.0.0.6"), &h, &proxies), ip("10.9.9.9"));
    // No header: the peer.
    assert_eq!(
        client_address(ip("10.0.0.6"), &HeaderMap::new(), &proxies),
        ip("10.0.0.6")
    );
    // Garbage stops the walk at the last trusted hop: nothing left of it is believed.
    let h = xff(&["198.51.100.4, nonsense, 10.0.0.5"]);
    assert_eq!(client_address(ip("10.0.0.6"), &h, &proxies), ip("10.0.0.5"));
}

#[test]
fn forwarded_entries_may_carry_ports_and_brackets() {
    assert_eq!(parse_forwarded_ip("192.0.2.1:8080"), Some(ip("192.0.2.1")));
    assert_eq!(
        parse_forwarded_ip("[2001:db8::1]:443"),
        Some(ip("2001:db8::1"))
    );
    assert_eq!(parse_forwarded_ip("[2001:db8::1]"), Some(ip("2001:db8::1")));
    assert_eq!(parse_forwarded_ip("2001:db8::1"), Some(ip("2001:db8::1")));
    assert_eq!(parse_forwarded_ip("unknown"), None);
    assert_eq!(parse_forwarded_ip("192.0.2.1:http"), None);
    assert_eq!(parse_forwarded_ip(""), None);
}

#[test]
fn a_trusted_range_contains_its_addresses_only() {
    let n = net("10.0.0.0", 8);
    assert!(n.contains(ip("10.255.0.1")));
    assert!(n.contains(ip("::ffff:10.0.0.1")));
    assert!(!n.contains(ip("11.0.0.1")));
    assert!(!n.contains(ip("::1")));
    let any = net("0.0.0.0", 0);
    assert!(any.contains(ip("203.0.113.1")));
    let v6 = net("fd00::", 8);
    assert!(v6.contains(ip("fd12::1")));
    assert!(!v6.contains(ip("fe80::1")));
}
