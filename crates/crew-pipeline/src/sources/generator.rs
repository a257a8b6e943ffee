//! The `generator` source: Server Pixels events (`shared/spec/pixels.md`),
//! deterministic per seed, with a chosen share of malformed and invalid
//! lines, optionally paced to a rate.
//!
//! The line generator itself, [`PixelsEvents`], is public too, so `crew gen`
//! and the benchmarks write the same events to files.

use std::io::{self, Write};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;

use super::commit_log::CommitLog;
use crate::event::{Event, Offset, Origin, Partition};
use crate::source::{Full, ReadBatch, ReadStatus, Source, SourceError};

/// Bytes in `{"event_id":"`: where the event id starts in a line.
const EVENT_ID_AT: usize = 13;
/// Every this many malformed lines, one is oversize; the rest rotate through
/// the other kinds.
const OVERSIZE_EVERY: u64 = 100;
/// Shares are applied in parts per million, so that counts are exact.
const PPM: u64 = 1_000_000;
/// 2026-11-27T18:00:00.000Z, where generated timestamps start.
const BASE_MS: u64 = 1_795_802_400_000;
/// A paced generator held back (by backpressure) catches up at most this
/// much, instead of bursting everything it missed.
const MAX_CATCH_UP: Duration = Duration::from_secs(1);
/// More partitions than any real topic has: a typo, not a config.
const MAX_PARTITIONS: u32 = 100_000;
/// Oversize lines are for testing limits, not for filling memory.
const MAX_OVERSIZE_BYTES: usize = 1 << 30;
/// Room for a typical line, so the line buffer rarely grows.
const LINE_CAPACITY: usize = 768;

/// The generator's configuration.
///
/// ```toml
/// [source]
/// type = "generator"
/// seed = 7
/// count = 200000
/// rate = 5000.0        # events/s; leave out to go as fast as the pipeline takes them
/// clients = 10000
/// partitions = 4
/// malformed = 0.01
/// invalid = 0.005
/// ```
///
/// ```
/// use crew_pipeline::sources::GeneratorConfig;
///
/// let config = GeneratorConfig { seed: 7, count: Some(1_000), malformed: 0.01, ..GeneratorConfig::default() };
/// assert_eq!(config.partitions, 1);
/// assert_eq!(config.oversize_bytes, (1 << 20) + 1);
/// ```
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeneratorConfig {
    /// The same seed gives the same lines, in the same order (and the same
    /// partitions and keys), in every build.
    pub seed: u64,
    /// How many events in all; `None` for an endless stream.
    pub count: Option<u64>,
    /// Events per second, paced by sleeping; `None` for as fast as the
    /// pipeline takes them. After a stall the generator catches up at most
    /// one second's worth.
    pub rate: Option<f64>,
    /// How many distinct `client_id`s (the event key). Each client belongs
    /// to one shop, one region and one user agent.
    pub clients: u64,
    /// How many partitions: an event's partition is a hash of its
    /// `client_id` modulo this; offsets count up from 0 in each partition.
    pub partitions: u32,
    /// Share of lines, 0.0 to 1.0, that are not a JSON object: truncated
    /// JSON, an array or `null`, invalid UTF-8, an empty line, in turn, and
    /// one in a hundred a line of `oversize_bytes`. The count is exact:
    /// the first `n` lines hold `floor(n × malformed)` of them (to a
    /// millionth), spread evenly.
    pub malformed: f64,
    /// Share of lines, 0.0 to 1.0, that are well-formed JSON objects failing
    /// validation (event id, event name, shop id, timestamp or consent, in
    /// turn). Spread like malformed lines, which go first when both are due
    /// on the same line, so the first `n` lines hold `floor(n × invalid)` of
    /// them or one less. `malformed + invalid` must not exceed 1.
    pub invalid: f64,
    /// The length of an oversize malformed line. The default is one byte over
    /// the parse stage's default limit of 1 MiB. Keep it under 8 MiB to
    /// compare with the Go reference, whose line reader stops at 8 MiB.
    pub oversize_bytes: usize,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            seed: 1,
            count: None,
            rate: None,
            clients: 10_000,
            partitions: 1,
            malformed: 0.0,
            invalid: 0.0,
            oversize_bytes: (1 << 20) + 1,
        }
    }
}

impl GeneratorConfig {
    /// Checks the values serde cannot: shares within 0..=1, at least one
    /// client, 1 to 100,000 partitions, a positive rate, oversize lines of at
    /// most 1 GiB.
    pub fn validate(&self) -> Result<(), String> {
        for (name, share) in [("malformed", self.malformed), ("invalid", self.invalid)] {
            if !(0.0..=1.0).contains(&share) {
                return Err(format!(
                    "generator: `{name}` must be between 0.0 and 1.0, not {share}"
                ));
            }
        }
        if self.malformed + self.invalid > 1.0 {
            return Err(format!(
                "generator: `malformed` + `invalid` must not exceed 1.0 (they are {} + {})",
                self.malformed, self.invalid
            ));
        }
        if self.clients == 0 {
            return Err("generator: `clients` must be at least 1".to_owned());
        }
        if !(1..=MAX_PARTITIONS).contains(&self.partitions) {
            return Err(format!(
                "generator: `partitions` must be between 1 and {MAX_PARTITIONS}, not {}",
                self.partitions
            ));
        }
        if self.oversize_bytes > MAX_OVERSIZE_BYTES {
            return Err(format!(
                "generator: `oversize_bytes` must be at most {MAX_OVERSIZE_BYTES}, not {}",
                self.oversize_bytes
            ));
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(format!(
                    "generator: `rate` must be a positive number of events/s, not {rate}"
                ));
            }
        }
        Ok(())
    }
}

/// What a generated line is, and so how a correct pipeline ends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LineKind {
    /// A valid event: delivered, or dropped by the consent filter.
    Valid,
    /// A JSON object that fails validation.
    Invalid(InvalidKind),
    /// Not a JSON object at all: a parse failure.
    Malformed(MalformedKind),
}

/// Which validation an invalid line fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InvalidKind {
    /// `event_id` is 35 characters, not 36.
    EventId,
    /// `event_name` is not one of the eight names.
    EventName,
    /// `shop_id` is 0 or negative.
    ShopId,
    /// `timestamp` is not RFC 3339.
    Timestamp,
    /// `consent` is a string, not an object.
    Consent,
}

/// How a malformed line is broken. Each one also fails in the Go reference,
/// so both produce the same set of event ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MalformedKind {
    /// An event cut short.
    Truncated,
    /// Valid JSON that is not an object: the event inside an array, or `null`.
    NotObject,
    /// An event whose id holds a 0xFF byte (Go reads it as U+FFFD, which
    /// makes the id 38 bytes, so it fails there too).
    InvalidUtf8,
    /// An empty line.
    Empty,
    /// A line of `oversize_bytes`, which is also not valid JSON (an
    /// unterminated string), so a reader with a higher limit rejects it too.
    Oversize,
}

const INVALID_KINDS: [InvalidKind; 5] = [
    InvalidKind::EventId,
    InvalidKind::EventName,
    InvalidKind::ShopId,
    InvalidKind::Timestamp,
    InvalidKind::Consent,
];

const MALFORMED_KINDS: [MalformedKind; 4] = [
    MalformedKind::Truncated,
    MalformedKind::NotObject,
    MalformedKind::InvalidUtf8,
    MalformedKind::Empty,
];

/// What [`PixelsEvents::next_line`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineInfo {
    /// The line's position in the stream, from 0 (the event's `seq`).
    pub seq: u64,
    /// What the line is.
    pub kind: LineKind,
    client_id: [u8; CLIENT_ID_LEN],
}

impl LineInfo {
    /// The event's `client_id` (its key), also for lines that are broken.
    pub fn client_id(&self) -> &str {
        std::str::from_utf8(&self.client_id).unwrap_or_default()
    }
}

/// `c-` and 12 hex digits.
const CLIENT_ID_LEN: usize = 14;

/// Counts of what [`PixelsEvents::write_ndjson`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteSummary {
    /// Lines written.
    pub lines: u64,
    /// Bytes written, newlines included.
    pub bytes: u64,
    /// Lines that are not a JSON object.
    pub malformed: u64,
    /// Lines that are JSON objects failing validation.
    pub invalid: u64,
}

/// Adds up the summaries of consecutive writes.
impl std::ops::AddAssign for WriteSummary {
    fn add_assign(&mut self, other: WriteSummary) {
        self.lines += other.lines;
        self.bytes += other.bytes;
        self.malformed += other.malformed;
        self.invalid += other.invalid;
    }
}

/// The Server Pixels line generator: one line per call, deterministic per
/// seed.
///
/// ```
/// use crew_pipeline::sources::{GeneratorConfig, LineKind, PixelsEvents};
///
/// let mut events = PixelsEvents::new(&GeneratorConfig { seed: 3, ..GeneratorConfig::default() }).unwrap();
/// let mut line = Vec::new();
/// let info = events.next_line(&mut line);
/// assert_eq!(info.seq, 0);
/// assert_eq!(info.kind, LineKind::Valid);
/// assert!(line.starts_with(b"{\"event_id\":\""));
///
/// let mut file = Vec::new();
/// let summary = events.write_ndjson(&mut file, 100).unwrap();
/// assert_eq!(summary.lines, 100);
/// assert_eq!(file.iter().filter(|&&b| b == b'\n').count(), 100);
/// ```
#[derive(Clone, Debug)]
pub struct PixelsEvents {
    rng: Rng,
    seq: u64,
    clients: u64,
    malformed_ppm: u64,
    invalid_ppm: u64,
    malformed_made: u64,
    /// Malformed lines other than oversize ones: they rotate through the kinds.
    rotating_made: u64,
    invalid_made: u64,
    oversize_bytes: usize,
}

impl PixelsEvents {
    /// A generator for `config`; its `count`, `rate` and `partitions` are
    /// the source's business and ignored here.
    pub fn new(config: &GeneratorConfig) -> Result<PixelsEvents, SourceError> {
        config.validate().map_err(SourceError::fatal)?;
        Ok(PixelsEvents {
            rng: Rng(config.seed),
            seq: 0,
            clients: config.clients,
            malformed_ppm: to_ppm(config.malformed),
            invalid_ppm: to_ppm(config.invalid),
            malformed_made: 0,
            rotating_made: 0,
            invalid_made: 0,
            oversize_bytes: config.oversize_bytes,
        })
    }

    /// The `seq` of the next line: how many lines were generated so far.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Appends the next line to `out`, without a newline, and tells what it
    /// is.
    pub fn next_line(&mut self, out: &mut Vec<u8>) -> LineInfo {
        let seq = self.seq;
        self.seq += 1;
        let kind = self.kind_of(seq);
        let client = self.rng.below(self.clients);
        let profile = Client::new(client);
        let start = out.len();
        let invalid = match kind {
            LineKind::Invalid(invalid) => Some(invalid),
            _ => None,
        };
        self.write_event(out, seq, &profile, invalid);
        if let LineKind::Malformed(malformed) = kind {
            self.break_line(out, start, malformed);
        }
        LineInfo {
            seq,
            kind,
            client_id: profile.id,
        }
    }

    /// Writes the next `count` lines to `writer`, each followed by `\n`.
    pub fn write_ndjson(&mut self, mut writer: impl Write, count: u64) -> io::Result<WriteSummary> {
        const FLUSH_AT: usize = 256 << 10;
        let mut summary = WriteSummary::default();
        let mut buf = Vec::with_capacity(FLUSH_AT + LINE_CAPACITY);
        for _ in 0..count {
            let info = self.next_line(&mut buf);
            buf.push(b'\n');
            summary.lines += 1;
            match info.kind {
                LineKind::Valid => {}
                LineKind::Invalid(_) => summary.invalid += 1,
                LineKind::Malformed(_) => summary.malformed += 1,
            }
            if buf.len() >= FLUSH_AT {
                writer.write_all(&buf)?;
                summary.bytes += buf.len() as u64;
                buf.clear();
            }
        }
        writer.write_all(&buf)?;
        summary.bytes += buf.len() as u64;
        writer.flush()?;
        Ok(summary)
    }

    /// Spreads malformed and invalid lines evenly: line `seq` is malformed
    /// when the count due by then, `floor((seq + 1) × share)`, is not yet
    /// reached; malformed lines go first when both are due.
    fn kind_of(&mut self, seq: u64) -> LineKind {
        if self.malformed_made < due(seq, self.malformed_ppm) {
            let index = self.malformed_made;
            self.malformed_made += 1;
            if index % OVERSIZE_EVERY == OVERSIZE_EVERY - 1 {
                return LineKind::Malformed(MalformedKind::Oversize);
            }
            let kind =
                MALFORMED_KINDS[(self.rotating_made % MALFORMED_KINDS.len() as u64) as usize];
            self.rotating_made += 1;
            return LineKind::Malformed(kind);
        }
        if self.invalid_made < due(seq, self.invalid_ppm) {
            let kind = INVALID_KINDS[(self.invalid_made % INVALID_KINDS.len() as u64) as usize];
            self.invalid_made += 1;
            return LineKind::Invalid(kind);
        }
        LineKind::Valid
    }

    fn write_event(
        &mut self,
        out: &mut Vec<u8>,
        seq: u64,
        client: &Client,
        invalid: Option<InvalidKind>,
    ) {
        let rng = &mut self.rng;
        let name = pick_weighted(rng, &EVENT_NAMES);

        out.extend_from_slice(b"{\"event_id\":\"");
        let (high, low) = (rng.next_u64(), rng.next_u64());
        push_uuid(out, high, low, invalid == Some(InvalidKind::EventId));

        out.extend_from_slice(b"\",\"event_name\":\"");
        if invalid == Some(InvalidKind::EventName) {
            out.extend_from_slice(
                pick(
                    rng,
                    &["page_view", "add_to_cart", "Product_Viewed", "checkout"],
                )
                .as_bytes(),
            );
        } else {
            out.extend_from_slice(name.as_bytes());
        }

        out.extend_from_slice(b"\",\"shop_id\":");
        if invalid == Some(InvalidKind::ShopId) {
            if rng.below(2) == 0 {
                out.push(b'0');
            } else {
                out.push(b'-');
                push_u64(out, client.shop);
            }
        } else {
            push_u64(out, client.shop);
        }

        out.extend_from_slice(b",\"client_id\":\"");
        out.extend_from_slice(&client.id);
        out.extend_from_slice(b"\",\"seq\":");
        push_u64(out, seq);

        out.extend_from_slice(b",\"timestamp\":\"");
        let millis = BASE_MS
            .saturating_add(seq.saturating_mul(25))
            .saturating_add(rng.below(2_000));
        push_timestamp(out, millis, invalid == Some(InvalidKind::Timestamp));

        out.extend_from_slice(b"\",\"consent\":");
        if invalid == Some(InvalidKind::Consent) {
            out.extend_from_slice(b"\"granted\"");
        } else {
            out.extend_from_slice(b"{\"analytics\":");
            push_bool(out, rng.below(100) < 90);
            out.extend_from_slice(b",\"marketing\":");
            push_bool(out, rng.below(100) < 70);
            out.extend_from_slice(b",\"preferences\":");
            push_bool(out, rng.below(100) < 80);
            out.push(b'}');
        }

        out.extend_from_slice(b",\"region\":\"");
        out.extend_from_slice(client.region.code.as_bytes());

        out.extend_from_slice(b"\",\"context\":{\"user_agent\":\"");
        out.extend_from_slice(client.user_agent.as_bytes());
        out.extend_from_slice(b"\",\"url\":\"https://shop-");
        push_u64(out, client.shop);
        out.extend_from_slice(b".example.com");
        push_path(out, rng, name);
        out.extend_from_slice(b"\",\"ip\":\"");
        push_u64(out, 1 + rng.below(223));
        for _ in 0..3 {
            out.push(b'.');
            push_u64(out, rng.below(256));
        }

        out.extend_from_slice(b"\"},\"data\":{\"checkout\":{\"total\":");
        let items = 1 + rng.below(3);
        let mut lines = [(0u64, 0u64, 0u64); 3];
        let mut total_cents = 0;
        for line in lines.iter_mut().take(items as usize) {
            let sku = 10_000 + rng.below(90_000);
            let qty = 1 + rng.below(4);
            let cents = 199 + rng.below(49_800);
            total_cents += qty * cents;
            *line = (sku, qty, cents);
        }
        push_cents(out, total_cents);
        out.extend_from_slice(b",\"currency\":\"");
        out.extend_from_slice(client.region.currency.as_bytes());
        out.extend_from_slice(b"\",\"line_items\":[");
        for (i, (sku, qty, cents)) in lines.iter().take(items as usize).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"sku\":\"SKU-");
            push_u64(out, *sku);
            out.extend_from_slice(b"\",\"qty\":");
            push_u64(out, *qty);
            out.extend_from_slice(b",\"price\":");
            push_cents(out, *cents);
            out.push(b'}');
        }
        out.extend_from_slice(b"]}}}");
    }

    /// Breaks the well-formed event at `out[start..]` into a malformed line.
    fn break_line(&mut self, out: &mut Vec<u8>, start: usize, kind: MalformedKind) {
        let len = out.len() - start;
        match kind {
            MalformedKind::Truncated => {
                // Anywhere in the second half, never the whole line: an
                // object without its closing brace is never valid JSON.
                let cut = len / 2 + self.rng.below((len - len / 2) as u64) as usize;
                out.truncate(start + cut);
            }
            MalformedKind::NotObject => {
                if self.rotating_made % 8 < 4 {
                    out.insert(start, b'[');
                    out.push(b']');
                } else {
                    out.truncate(start);
                    out.extend_from_slice(b"null");
                }
            }
            MalformedKind::InvalidUtf8 => {
                let at = start + EVENT_ID_AT + self.rng.below(36) as usize;
                if let Some(byte) = out.get_mut(at) {
                    *byte = 0xFF;
                }
            }
            MalformedKind::Empty => out.truncate(start),
            MalformedKind::Oversize => {
                out.pop();
                out.extend_from_slice(b",\"padding\":\"");
                let padding = (start + self.oversize_bytes)
                    .saturating_sub(out.len())
                    .max(1);
                out.resize(out.len() + padding, b'x');
            }
        }
    }
}

/// Lines due by `seq` at `ppm` parts per million: `floor((seq + 1) × ppm / 10⁶)`.
fn due(seq: u64, ppm: u64) -> u64 {
    ((u128::from(seq) + 1) * u128::from(ppm) / u128::from(PPM)) as u64
}

fn to_ppm(share: f64) -> u64 {
    (share.clamp(0.0, 1.0) * PPM as f64).round() as u64
}

/// A client's fixed traits, derived from its index alone, so that a client
/// keeps its id, shop, region and device across seeds and runs.
struct Client {
    id: [u8; CLIENT_ID_LEN],
    shop: u64,
    region: &'static Region,
    user_agent: &'static str,
}

impl Client {
    fn new(index: u64) -> Client {
        let hash = mix(index ^ 0x5eed_c11e_a7ed_0001);
        let mut id = [0u8; CLIENT_ID_LEN];
        id[0] = b'c';
        id[1] = b'-';
        for (i, byte) in id[2..].iter_mut().enumerate() {
            *byte = HEX[((hash >> (44 - 4 * i)) & 0xF) as usize];
        }
        let mut traits = Rng(hash);
        Client {
            id,
            shop: 1 + traits.below(60_000),
            region: pick_weighted(&mut traits, &REGIONS),
            user_agent: pick(&mut traits, &USER_AGENTS),
        }
    }
}

struct Region {
    code: &'static str,
    currency: &'static str,
}

const fn region(code: &'static str, currency: &'static str) -> Region {
    Region { code, currency }
}

/// Weights in percent.
const REGIONS: [(Region, u64); 13] = [
    (region("US", "USD"), 30),
    (region("CA", "CAD"), 10),
    (region("GB", "GBP"), 10),
    (region("DE", "EUR"), 10),
    (region("FR", "EUR"), 8),
    (region("AU", "AUD"), 6),
    (region("JP", "JPY"), 6),
    (region("NL", "EUR"), 4),
    (region("ES", "EUR"), 4),
    (region("IT", "EUR"), 4),
    (region("BR", "USD"), 3),
    (region("MX", "USD"), 3),
    (region("IE", "EUR"), 2),
];

/// Weights in percent.
const EVENT_NAMES: [(&str, u64); 8] = [
    ("page_viewed", 30),
    ("product_viewed", 24),
    ("collection_viewed", 12),
    ("product_added_to_cart", 10),
    ("search_submitted", 8),
    ("checkout_started", 7),
    ("payment_info_submitted", 5),
    ("checkout_completed", 4),
];

const USER_AGENTS: [&str; 8] = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.6478.122 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.6422.165 Mobile Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0",
];

const COLLECTIONS: [&str; 6] = [
    "new-arrivals",
    "sale",
    "summer",
    "bestsellers",
    "accessories",
    "gift-cards",
];
const SEARCHES: [&str; 6] = [
    "shoes",
    "red+dress",
    "gift",
    "linen+shirt",
    "backpack",
    "sale",
];
const PAGES: [&str; 5] = [
    "",
    "pages/about",
    "pages/shipping",
    "pages/faq",
    "blogs/news",
];

/// A URL path that fits the event.
fn push_path(out: &mut Vec<u8>, rng: &mut Rng, name: &str) {
    match name {
        "product_viewed" | "product_added_to_cart" => {
            out.extend_from_slice(b"/products/");
            push_u64(out, 10_000 + rng.below(90_000));
        }
        "collection_viewed" => {
            out.extend_from_slice(b"/collections/");
            out.extend_from_slice(pick(rng, &COLLECTIONS).as_bytes());
        }
        "search_submitted" => {
            out.extend_from_slice(b"/search?q=");
            out.extend_from_slice(pick(rng, &SEARCHES).as_bytes());
        }
        "checkout_started" | "payment_info_submitted" | "checkout_completed" => {
            out.extend_from_slice(b"/checkouts/cn/");
            push_hex(out, rng.next_u64(), 16);
            if name == "payment_info_submitted" {
                out.extend_from_slice(b"/payment");
            } else if name == "checkout_completed" {
                out.extend_from_slice(b"/thank-you");
            }
        }
        _ => {
            out.push(b'/');
            out.extend_from_slice(pick(rng, &PAGES).as_bytes());
        }
    }
}

/// The `generator` source: [`PixelsEvents`] as events, keyed by `client_id`
/// and spread over partitions by it.
///
/// Events come in `seq` order. When the next event's partition has no room,
/// the generator waits for it rather than reading ahead in other partitions
/// (a single stream has nothing else to offer). Commits are kept in a
/// [`CommitLog`], since there is nothing to persist.
///
/// ```
/// use crew_pipeline::sources::{Generator, GeneratorConfig};
///
/// let generator = Generator::new(GeneratorConfig { count: Some(1_000), partitions: 4, ..GeneratorConfig::default() })
///     .expect("a valid config");
/// let commits = generator.commit_log();
/// # drop((generator, commits));
/// ```
#[derive(Debug)]
pub struct Generator {
    events: PixelsEvents,
    count: Option<u64>,
    partitions: u32,
    next_offsets: Vec<Offset>,
    pending: Option<Event>,
    pacer: Option<Pacer>,
    commits: CommitLog,
}

impl Generator {
    /// A generator for `config`; fails if the config does not
    /// [`validate`](GeneratorConfig::validate).
    pub fn new(config: GeneratorConfig) -> Result<Generator, SourceError> {
        let events = PixelsEvents::new(&config)?;
        Ok(Generator {
            events,
            count: config.count,
            partitions: config.partitions,
            next_offsets: vec![0; config.partitions as usize],
            pending: None,
            pacer: config.rate.map(Pacer::new),
            commits: CommitLog::default(),
        })
    }

    /// A handle on the commits this generator receives; take it before the
    /// generator goes into a pipeline.
    pub fn commit_log(&self) -> CommitLog {
        self.commits.clone()
    }

    /// How many events were generated so far.
    pub fn generated(&self) -> u64 {
        self.events.seq()
    }

    fn exhausted(&self) -> bool {
        self.count.is_some_and(|count| self.events.seq() >= count)
    }

    fn next_event(&mut self) -> Event {
        let mut line = Vec::with_capacity(LINE_CAPACITY);
        let info = self.events.next_line(&mut line);
        let partition = (super::fnv1a(&info.client_id) % u64::from(self.partitions)) as Partition;
        let offset = match self.next_offsets.get_mut(partition as usize) {
            Some(next) => {
                let offset = *next;
                *next += 1;
                offset
            }
            // The modulo keeps the partition in range.
            None => 0,
        };
        Event::new(Origin { partition, offset }, line)
            .with_key(Bytes::copy_from_slice(&info.client_id))
    }
}

impl Source for Generator {
    fn read(&mut self, batch: &mut ReadBatch) -> Result<ReadStatus, SourceError> {
        if let Some(event) = self.pending.take() {
            if let Err(Full(event)) = batch.push(event) {
                self.pending = Some(event);
                return Ok(full_or_blocked(batch));
            }
        }
        loop {
            if self.exhausted() {
                return Ok(ReadStatus::End);
            }
            if batch.is_full() {
                return Ok(ReadStatus::More);
            }
            if let Some(pacer) = &mut self.pacer {
                let due = pacer.due(self.events.seq());
                let now = Instant::now();
                if due > now {
                    let linger = batch.linger_until();
                    if due > linger && !batch.is_empty() {
                        return Ok(ReadStatus::More);
                    }
                    // Pacing, not synchronization: nothing else will wake us.
                    thread::sleep(due.min(linger).saturating_duration_since(now));
                    if due > linger {
                        return Ok(ReadStatus::More);
                    }
                }
            }
            let event = self.next_event();
            if let Err(Full(event)) = batch.push(event) {
                self.pending = Some(event);
                return Ok(full_or_blocked(batch));
            }
        }
    }

    fn commit(&mut self, done_through: &[(Partition, Offset)]) -> Result<(), SourceError> {
        self.commits.record(done_through);
        Ok(())
    }

    /// What was generated so far: a generator has nothing waiting beyond
    /// what it made, so its lag is what is read and not yet committed.
    fn end_offsets(&mut self) -> Vec<(Partition, Offset)> {
        (0..)
            .zip(&self.next_offsets)
            .filter(|(_, next)| **next > 0)
            .map(|(partition, next)| (partition, *next))
            .collect()
    }
}

/// After a refused push: `More` if the batch is full, else the partition had
/// no room.
pub(super) fn full_or_blocked(batch: &ReadBatch) -> ReadStatus {
    if batch.is_full() {
        ReadStatus::More
    } else {
        ReadStatus::Blocked
    }
}

/// When each event is due at a fixed rate: the generator's pacing, for
/// anything else that emits events at a rate (`crew gen --rate`).
///
/// After a stall it catches up at most one second's worth of events, then
/// keeps the rate from there, instead of bursting everything it missed.
///
/// ```
/// use crew_pipeline::sources::Pacer;
///
/// let mut pacer = Pacer::new(1_000.0);
/// let first = pacer.due(0);
/// let thousandth = pacer.due(1_000);
/// assert!(thousandth.duration_since(first).as_millis() >= 999);
/// ```
#[derive(Debug)]
pub struct Pacer {
    rate: f64,
    start: Instant,
}

impl Pacer {
    /// A pacer for `rate` events per second, starting now.
    pub fn new(rate: f64) -> Pacer {
        Pacer {
            rate,
            start: Instant::now(),
        }
    }

    /// When event number `n` is due; moves the schedule forward if it has
    /// fallen more than one second behind.
    pub fn due(&mut self, n: u64) -> Instant {
        self.due_at(n, Instant::now())
    }

    /// [`due`](Self::due), seen at `now`.
    pub fn due_at(&mut self, n: u64, now: Instant) -> Instant {
        let after = Duration::try_from_secs_f64(n as f64 / self.rate).unwrap_or(Duration::MAX);
        let Some(due) = self.start.checked_add(after) else {
            // Beyond what the clock can represent: never, in practice.
            return now + Duration::from_secs(3600);
        };
        let behind = now.saturating_duration_since(due);
        if behind > MAX_CATCH_UP {
            let shift = behind - MAX_CATCH_UP;
            self.start += shift;
            return due + shift;
        }
        due
    }
}

/// SplitMix64: small, fast, and fixed here, so that a seed means the same
/// stream in every build and every version of the dependencies.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `0..n`; 0 when `n` is 0.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// SplitMix64's finalizer.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn pick<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
    items
        .get(rng.below(items.len() as u64) as usize)
        .copied()
        .unwrap_or_default()
}

fn pick_weighted<'a, T>(rng: &mut Rng, items: &'a [(T, u64)]) -> &'a T {
    let total: u64 = items.iter().map(|(_, weight)| weight).sum();
    let mut roll = rng.below(total);
    for (item, weight) in items {
        if roll < *weight {
            return item;
        }
        roll -= weight;
    }
    // Only reached through rounding that cannot happen; the last is as good.
    &items[items.len() - 1].0
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_hex(out: &mut Vec<u8>, value: u64, digits: u32) {
    for i in (0..digits).rev() {
        out.push(HEX[((value >> (4 * i)) & 0xF) as usize]);
    }
}

/// A version-4 UUID from 128 random bits; `short` leaves off the last digit.
fn push_uuid(out: &mut Vec<u8>, high: u64, low: u64, short: bool) {
    push_hex(out, high >> 32, 8);
    out.push(b'-');
    push_hex(out, high >> 16, 4);
    out.push(b'-');
    push_hex(out, 0x4000 | (high & 0x0FFF), 4);
    out.push(b'-');
    push_hex(out, 0x8000 | ((low >> 48) & 0x3FFF), 4);
    out.push(b'-');
    push_hex(out, low, if short { 11 } else { 12 });
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn push_padded(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut digits = Vec::with_capacity(20);
    push_u64(&mut digits, n);
    out.resize(out.len() + width.saturating_sub(digits.len()), b'0');
    out.extend_from_slice(&digits);
}

fn push_cents(out: &mut Vec<u8>, cents: u64) {
    push_u64(out, cents / 100);
    out.push(b'.');
    push_padded(out, cents % 100, 2);
}

fn push_bool(out: &mut Vec<u8>, value: bool) {
    out.extend_from_slice(if value { b"true" } else { b"false" });
}

/// RFC 3339 in UTC with milliseconds; `broken` writes a day-first format
/// that no RFC 3339 parser accepts.
fn push_timestamp(out: &mut Vec<u8>, millis: u64, broken: bool) {
    let days = millis / 86_400_000;
    let in_day = millis % 86_400_000;
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    if broken {
        push_padded(out, day, 2);
        out.push(b'/');
        push_padded(out, month, 2);
        out.push(b'/');
        push_u64(out, year);
        out.push(b' ');
    } else {
        push_u64(out, year);
        out.push(b'-');
        push_padded(out, month, 2);
        out.push(b'-');
        push_padded(out, day, 2);
        out.push(b'T');
    }
    push_padded(out, hour, 2);
    out.push(b':');
    push_padded(out, minute, 2);
    out.push(b':');
    push_padded(out, second, 2);
    if !broken {
        out.push(b'.');
        push_padded(out, milli, 3);
        out.push(b'Z');
    }
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    fn config(seed: u64) -> GeneratorConfig {
        GeneratorConfig {
            seed,
            ..GeneratorConfig::default()
        }
    }

    fn lines(config: &GeneratorConfig, n: u64) -> Vec<(Vec<u8>, LineInfo)> {
        let mut events = PixelsEvents::new(config).unwrap();
        (0..n)
            .map(|_| {
                let mut line = Vec::new();
                let info = events.next_line(&mut line);
                (line, info)
            })
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_lines() {
        let config = GeneratorConfig {
            malformed: 0.05,
            invalid: 0.05,
            oversize_bytes: 2000,
            ..config(42)
        };
        assert_eq!(lines(&config, 3000), lines(&config, 3000));
        let other = GeneratorConfig {
            seed: 43,
            ..config.clone()
        };
        assert_ne!(lines(&config, 100), lines(&other, 100));
    }

    #[test]
    fn the_stream_is_pinned() {
        // A seed must mean the same lines in every build: files made by
        // `crew gen` are compared across builds and machines. Change this
        // only with a reason to change the stream.
        let config = GeneratorConfig {
            malformed: 0.05,
            invalid: 0.05,
            oversize_bytes: 2000,
            ..config(1)
        };
        let mut all = Vec::new();
        PixelsEvents::new(&config)
            .unwrap()
            .write_ndjson(&mut all, 1000)
            .unwrap();
        assert_eq!(
            (all.len(), crate::sources::fnv1a(&all)),
            (614_585, 7_426_306_130_699_900_584)
        );
    }

    #[test]
    fn good_lines_are_valid_events() {
        let names: HashSet<&str> = EVENT_NAMES.iter().map(|(n, _)| *n).collect();
        let mut seen_names = HashSet::new();
        let mut regions = HashSet::new();
        let mut currencies = HashSet::new();
        let mut items = HashSet::new();
        let (mut mobile, mut marketing, mut total_bytes) = (0, 0, 0);
        let n = 10_000;
        for (seq, (line, info)) in lines(&config(9), n).into_iter().enumerate() {
            assert_eq!(info.kind, LineKind::Valid);
            assert_eq!(info.seq, seq as u64);
            total_bytes += line.len();
            let value: sonic_rs::Value = sonic_rs::from_slice(&line).unwrap();
            use sonic_rs::{JsonContainerTrait, JsonValueTrait};
            let object = value.as_object().unwrap();
            let id = object.get(&"event_id").and_then(|v| v.as_str()).unwrap();
            assert_eq!(id.len(), 36);
            let name = object.get(&"event_name").and_then(|v| v.as_str()).unwrap();
            assert!(names.contains(name), "{name}");
            seen_names.insert(name.to_owned());
            assert!(object.get(&"shop_id").and_then(|v| v.as_u64()).unwrap() > 0);
            assert_eq!(
                object.get(&"seq").and_then(|v| v.as_u64()),
                Some(seq as u64)
            );
            assert_eq!(
                object.get(&"client_id").and_then(|v| v.as_str()),
                Some(info.client_id())
            );
            let ts = object.get(&"timestamp").and_then(|v| v.as_str()).unwrap();
            assert!(
                ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
                "{ts}"
            );
            let consent = object.get(&"consent").and_then(|v| v.as_object()).unwrap();
            if consent.get(&"marketing").and_then(|v| v.as_bool()).unwrap() {
                marketing += 1;
            }
            regions.insert(
                object
                    .get(&"region")
                    .and_then(|v| v.as_str())
                    .unwrap()
                    .to_owned(),
            );
            let context = object.get(&"context").and_then(|v| v.as_object()).unwrap();
            let ua = context.get(&"user_agent").and_then(|v| v.as_str()).unwrap();
            if ua.contains("Mobile") || ua.contains("Android") {
                mobile += 1;
            }
            assert!(context.get(&"ip").and_then(|v| v.as_str()).is_some());
            let checkout = value["data"]["checkout"].as_object().unwrap();
            currencies.insert(
                checkout
                    .get(&"currency")
                    .and_then(|v| v.as_str())
                    .unwrap()
                    .to_owned(),
            );
            items.insert(
                checkout
                    .get(&"line_items")
                    .and_then(|v| v.as_array())
                    .unwrap()
                    .len(),
            );
            assert!(checkout.get(&"total").and_then(|v| v.as_f64()).unwrap() > 0.0);
        }
        assert_eq!(seen_names.len(), 8);
        assert!(
            regions.contains("DE") && regions.contains("FR") && regions.contains("US"),
            "{regions:?}"
        );
        assert_eq!(currencies.len(), 6, "{currencies:?}");
        assert_eq!(items, HashSet::from([1, 2, 3]));
        let share = |k: usize| k as f64 / n as f64;
        assert!(
            (0.67..0.73).contains(&share(marketing)),
            "marketing {}",
            share(marketing)
        );
        assert!(
            (0.3..0.7).contains(&share(mobile)),
            "mobile {}",
            share(mobile)
        );
        let mean = total_bytes as f64 / n as f64;
        assert!((600.0..660.0).contains(&mean), "mean line {mean} bytes");
    }

    #[test]
    fn malformed_and_invalid_shares_are_exact_and_kinds_even() {
        let n = 20_000u64;
        let config = GeneratorConfig {
            malformed: 0.07,
            invalid: 0.03,
            oversize_bytes: 4096,
            ..config(5)
        };
        let mut kinds: HashMap<LineKind, u64> = HashMap::new();
        let mut not_objects = HashSet::new();
        for (line, info) in lines(&config, n) {
            *kinds.entry(info.kind).or_default() += 1;
            match info.kind {
                LineKind::Valid => {
                    assert!(sonic_rs::from_slice::<sonic_rs::Value>(&line).is_ok());
                }
                LineKind::Invalid(kind) => {
                    let value: sonic_rs::Value = sonic_rs::from_slice(&line).unwrap();
                    use sonic_rs::JsonValueTrait;
                    assert!(value.is_object(), "{kind:?}");
                    let id = value["event_id"].as_str().unwrap();
                    assert_eq!(id.len(), if kind == InvalidKind::EventId { 35 } else { 36 });
                    let shop = value["shop_id"].as_i64().unwrap();
                    assert_eq!(shop > 0, kind != InvalidKind::ShopId);
                    assert_eq!(value["consent"].is_object(), kind != InvalidKind::Consent);
                    let ts = value["timestamp"].as_str().unwrap();
                    assert_eq!(ts.contains('T'), kind != InvalidKind::Timestamp, "{ts}");
                    let name = value["event_name"].as_str().unwrap();
                    assert_eq!(
                        EVENT_NAMES.iter().any(|(n, _)| *n == name),
                        kind != InvalidKind::EventName
                    );
                }
                LineKind::Malformed(kind) => {
                    let parsed = sonic_rs::from_slice::<sonic_rs::Value>(&line);
                    use sonic_rs::JsonValueTrait;
                    assert!(
                        parsed.map_or(true, |v| !v.is_object()),
                        "{kind:?} parsed as an object"
                    );
                    match kind {
                        MalformedKind::Empty => assert!(line.is_empty()),
                        MalformedKind::Oversize => assert_eq!(line.len(), 4096),
                        MalformedKind::InvalidUtf8 => {
                            assert!(std::str::from_utf8(&line).is_err());
                            let at = line.iter().position(|&b| b == 0xFF).unwrap();
                            assert!((EVENT_ID_AT..EVENT_ID_AT + 36).contains(&at));
                        }
                        MalformedKind::NotObject => {
                            not_objects.insert(line.first().copied());
                        }
                        MalformedKind::Truncated => {
                            assert!(!line.is_empty() && std::str::from_utf8(&line).is_ok())
                        }
                    }
                }
            }
        }
        let malformed: u64 = kinds
            .iter()
            .filter(|(k, _)| matches!(k, LineKind::Malformed(_)))
            .map(|(_, c)| c)
            .sum();
        let invalid: u64 = kinds
            .iter()
            .filter(|(k, _)| matches!(k, LineKind::Invalid(_)))
            .map(|(_, c)| c)
            .sum();
        assert_eq!(malformed, n * 7 / 100);
        assert!(
            invalid == n * 3 / 100 || invalid + 1 == n * 3 / 100,
            "invalid {invalid}"
        );
        let oversize = malformed / 100;
        assert_eq!(
            kinds[&LineKind::Malformed(MalformedKind::Oversize)],
            oversize
        );
        let rotating = malformed - oversize;
        for (i, kind) in MALFORMED_KINDS.iter().enumerate() {
            let expected = rotating / 4 + u64::from((i as u64) < rotating % 4);
            assert_eq!(kinds[&LineKind::Malformed(*kind)], expected, "{kind:?}");
        }
        for kind in INVALID_KINDS {
            let count = kinds[&LineKind::Invalid(kind)];
            assert!(count.abs_diff(invalid / 5) <= 1, "{kind:?}: {count}");
        }
        assert_eq!(not_objects, HashSet::from([Some(b'['), Some(b'n')]));
    }

    #[test]
    fn shares_are_exact_over_any_prefix() {
        for (share, n) in [
            (0.29, 100u64),
            (0.01, 12_345),
            (1.0, 50),
            (0.0, 50),
            (0.333333, 999),
        ] {
            let config = GeneratorConfig {
                malformed: share,
                oversize_bytes: 1000,
                ..config(1)
            };
            let malformed = lines(&config, n)
                .iter()
                .filter(|(_, info)| matches!(info.kind, LineKind::Malformed(_)))
                .count() as u64;
            assert_eq!(
                malformed,
                (n as u128 * to_ppm(share) as u128 / PPM as u128) as u64,
                "share {share}"
            );
        }
    }

    #[test]
    fn the_default_oversize_line_is_one_byte_over_a_mebibyte() {
        let config = GeneratorConfig {
            malformed: 1.0,
            ..config(1)
        };
        let oversize = lines(&config, 100).pop().unwrap();
        assert_eq!(
            oversize.1.kind,
            LineKind::Malformed(MalformedKind::Oversize)
        );
        assert_eq!(oversize.0.len(), (1 << 20) + 1);
        assert!(!oversize.0.contains(&b'\n'));
    }

    #[test]
    fn bad_configs_are_refused() {
        for bad in [
            GeneratorConfig {
                malformed: 1.5,
                ..config(1)
            },
            GeneratorConfig {
                invalid: -0.1,
                ..config(1)
            },
            GeneratorConfig {
                malformed: 0.6,
                invalid: 0.6,
                ..config(1)
            },
            GeneratorConfig {
                clients: 0,
                ..config(1)
            },
            GeneratorConfig {
                partitions: 0,
                ..config(1)
            },
            GeneratorConfig {
                rate: Some(0.0),
                ..config(1)
            },
            GeneratorConfig {
                rate: Some(f64::NAN),
                ..config(1)
            },
            GeneratorConfig {
                malformed: f64::NAN,
                ..config(1)
            },
        ] {
            let error = Generator::new(bad.clone()).unwrap_err();
            assert!(!error.retriable, "{bad:?}");
            assert!(
                error.message.starts_with("generator: "),
                "{}",
                error.message
            );
        }
    }

    #[test]
    fn config_from_toml() {
        let config: GeneratorConfig =
            toml::from_str("seed = 3\ncount = 10\nrate = 50\npartitions = 2\nmalformed = 0.1")
                .unwrap();
        assert_eq!(
            config,
            GeneratorConfig {
                seed: 3,
                count: Some(10),
                rate: Some(50.0),
                partitions: 2,
                malformed: 0.1,
                ..GeneratorConfig::default()
            }
        );
        assert!(toml::from_str::<GeneratorConfig>("sead = 3").is_err());
    }

    #[test]
    fn timestamps_are_calendar_dates() {
        let mut out = Vec::new();
        push_timestamp(&mut out, BASE_MS, false);
        assert_eq!(out, b"2026-11-27T18:00:00.000Z");
        out.clear();
        push_timestamp(&mut out, BASE_MS + 35 * 86_400_000 + 3_723_004, false);
        assert_eq!(out, b"2027-01-01T19:02:03.004Z");
        out.clear();
        push_timestamp(&mut out, 951_782_400_000, false);
        assert_eq!(out, b"2000-02-29T00:00:00.000Z");
        out.clear();
        push_timestamp(&mut out, BASE_MS, true);
        assert_eq!(out, b"27/11/2026 18:00:00");
    }

    pub(crate) fn batch(max_events: usize, room: usize) -> ReadBatch {
        ReadBatch::new(
            max_events,
            usize::MAX,
            Instant::now() + Duration::from_secs(10),
            Box::new(move |_| room),
        )
    }

    #[test]
    fn the_source_keys_partitions_and_counts() {
        let mut generator = Generator::new(GeneratorConfig {
            count: Some(1_000),
            partitions: 3,
            clients: 50,
            ..config(11)
        })
        .unwrap();
        let mut events = Vec::new();
        loop {
            let mut batch = batch(64, usize::MAX);
            let status = generator.read(&mut batch).unwrap();
            assert!(batch.len() <= 64);
            events.append(&mut batch.events);
            if status == ReadStatus::End {
                break;
            }
            assert_eq!(status, ReadStatus::More);
        }
        assert_eq!(events.len(), 1_000);
        let mut next = [0u64; 3];
        let mut partition_of_key = HashMap::new();
        let reference = lines(
            &GeneratorConfig {
                clients: 50,
                ..config(11)
            },
            1_000,
        );
        for (event, (line, info)) in events.iter().zip(&reference) {
            assert_eq!(event.raw(), &line[..]);
            assert_eq!(event.key(), Some(info.client_id().as_bytes()));
            let origin = event.origin();
            assert_eq!(origin.offset, next[origin.partition as usize]);
            next[origin.partition as usize] += 1;
            assert_eq!(
                *partition_of_key
                    .entry(info.client_id().to_owned())
                    .or_insert(origin.partition),
                origin.partition
            );
        }
        assert!(
            next.iter().all(|&n| n > 0),
            "every partition used: {next:?}"
        );
    }

    #[test]
    fn the_source_respects_room_and_keeps_the_refused_event() {
        let mut generator = Generator::new(GeneratorConfig {
            count: Some(5),
            ..config(2)
        })
        .unwrap();
        let mut blocked = batch(10, 0);
        assert_eq!(generator.read(&mut blocked).unwrap(), ReadStatus::Blocked);
        assert!(blocked.is_empty());
        let mut two = batch(10, 2);
        assert_eq!(generator.read(&mut two).unwrap(), ReadStatus::Blocked);
        let mut rest = batch(10, 100);
        assert_eq!(generator.read(&mut rest).unwrap(), ReadStatus::End);
        let offsets: Vec<u64> = two
            .events
            .iter()
            .chain(&rest.events)
            .map(|e| e.origin().offset)
            .collect();
        assert_eq!(offsets, vec![0, 1, 2, 3, 4]);
        assert_eq!(generator.generated(), 5);
    }

    #[test]
    fn commits_are_readable() {
        let mut generator = Generator::new(config(1)).unwrap();
        let log = generator.commit_log();
        generator.commit(&[(0, 41)]).unwrap();
        assert_eq!(log.last(), vec![(0, 41)]);
        assert_eq!(log.committed(0), Some(41));
    }

    #[test]
    fn a_pacer_spaces_events_by_the_rate() {
        let mut pacer = Pacer::new(100.0);
        let start = pacer.start;
        assert_eq!(pacer.due_at(0, start), start);
        assert_eq!(pacer.due_at(50, start), start + Duration::from_millis(500));
        // Seen late, but within the catch-up: the schedule holds.
        let late = start + Duration::from_millis(900);
        assert_eq!(pacer.due_at(10, late), start + Duration::from_millis(100));
        assert_eq!(pacer.start, start);
    }

    #[test]
    fn a_pacer_far_behind_catches_up_one_second_at_most() {
        let mut pacer = Pacer::new(1000.0);
        let start = pacer.start;
        // As if the reader had stalled the writer for an hour.
        let now = start + Duration::from_secs(3600);
        assert_eq!(pacer.due_at(1, now), now - MAX_CATCH_UP);
        // The next events follow the moved schedule.
        assert_eq!(
            pacer.due_at(2, now),
            now - MAX_CATCH_UP + Duration::from_millis(1)
        );
    }

    #[test]
    fn a_paced_generator_hands_over_at_linger() {
        // 1 event/s: the first is due at once, the second not before the
        // linger deadline, so the read returns with one event.
        let mut generator = Generator::new(GeneratorConfig {
            rate: Some(1.0),
            ..config(1)
        })
        .unwrap();
        let mut batch = ReadBatch::new(
            100,
            usize::MAX,
            Instant::now() + Duration::from_millis(30),
            Box::new(|_| 100),
        );
        assert_eq!(generator.read(&mut batch).unwrap(), ReadStatus::More);
        assert_eq!(batch.len(), 1);
        let mut empty = ReadBatch::new(
            100,
            usize::MAX,
            Instant::now() + Duration::from_millis(10),
            Box::new(|_| 100),
        );
        let started = Instant::now();
        assert_eq!(generator.read(&mut empty).unwrap(), ReadStatus::More);
        assert!(empty.is_empty());
        assert!(
            started.elapsed() >= Duration::from_millis(5),
            "waited for the linger, not busy"
        );
    }
}
