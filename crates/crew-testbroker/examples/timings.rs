//! Measures the test broker: start, 200k records produced, read back.
//! `cargo run -p crew-testbroker --example timings [records] [payload bytes]`

use std::time::Instant;

use crew_testbroker::{Broker, Record};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(200_000, |a| a.parse().expect("a record count"));
    let size: usize = std::env::args()
        .nth(2)
        .map_or(100, |a| a.parse().expect("a payload size"));
    let t = Instant::now();
    let broker = Broker::start();
    println!("start: {:?}", t.elapsed());

    let t = Instant::now();
    broker.create_topic("timings", 8);
    println!("create_topic (8 partitions): {:?}", t.elapsed());

    let records = (0..n).map(|i| Record {
        key: Some(format!("key-{}", i % 997).into_bytes()),
        payload: format!("{i:0>size$}").into_bytes(),
        ..Record::default()
    });
    let t = Instant::now();
    broker.produce("timings", records);
    println!("produce {n} x {size} B: {:?}", t.elapsed());

    let t = Instant::now();
    let read = broker.read_topic("timings");
    println!("read_topic {}: {:?}", read.len(), t.elapsed());
    assert_eq!(read.len(), n, "read back");

    broker.create_topic("small", 1);
    broker.produce("small", [Record::default()]);
    let t = Instant::now();
    let read = broker.read_topic("small");
    println!("read_topic of 1 record: {:?}", t.elapsed());
    assert_eq!(read.len(), 1, "read back");

    let t = Instant::now();
    drop(broker);
    println!("drop: {:?}", t.elapsed());
}
