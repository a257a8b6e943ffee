//! What more than one test file of crew-cli reads the same way.

use std::collections::BTreeMap;

/// The metric table rows of a docs/metrics.md text, name to type (rows
/// whose first cell is a `` `crew_…` `` name): what deploy/check.sh's awk
/// reads too.
pub fn documented_in(docs: &str) -> BTreeMap<String, String> {
    docs.lines()
        .filter_map(|line| {
            let mut cells = line.strip_prefix('|')?.split('|');
            let name = cells.next()?.trim().strip_prefix('`')?.strip_suffix('`')?;
            let kind = cells.next()?.trim();
            let valid = name.starts_with("crew_")
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            valid.then(|| (name.to_owned(), kind.to_owned()))
        })
        .collect()
}
