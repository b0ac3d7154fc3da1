// Run: cargo build --release -p tracker-core --example derive_loop &&
//      valgrind --tool=callgrind target/release/examples/derive_loop N
//
// Derives N visitor ids (a new IP each, one site and a Firefox user agent)
// with daily salts in memory, for instruction counts of `VisitorIds::derive`
// under callgrind (subtract a run with N = 0: the set-up). `external` as a
// second argument derives with salts supplied through a `SaltFeed`, as a
// cluster node does.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use tracker_core::SystemClock;
use tracker_core::browser::{SaltKey, SaltRotation, VisitorIds};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let ids = match args.next().as_deref() {
        Some("external") => {
            let ids = VisitorIds::external(SaltRotation::Day, Arc::new(SystemClock));
            let feed = ids.feed().expect("a feed");
            let now = feed.rotation().period(feed.now());
            feed.install(now, SaltKey::from_bytes([7; 16]));
            ids
        }
        _ => VisitorIds::in_memory(SaltRotation::Day, Arc::new(SystemClock)),
    };
    let ua = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0";
    let mut sum = 0u64;
    for i in 0..n {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        let id = ids.derive("shop.example", ip, ua).expect("derived");
        sum = sum.wrapping_add(u64::from(id.as_str().as_bytes()[0]));
    }
    println!("{n} ids, checksum {sum}");
}
