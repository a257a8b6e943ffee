//! The Server Pixels workload: storefront events in, partner events out.
//!
//! Four stages built from the [`transforms`](crate::transforms), configured
//! as the workload's spec says (`shared/spec/pixels.md`) and behaving like
//! its Go reference (`shared/anchors/go-pixels`), so that on the same input
//! both deliver the same set of `event_id`s:
//!
//! | stage | does | outcome |
//! |---|---|---|
//! | `parse` | one JSON object per line | dead letter `parse` |
//! | `validate` | `event_id` a 36-byte string; `event_name` one of [`EVENT_NAMES`]; `shop_id` a positive integer; `timestamp` RFC 3339; `consent` an object — in Go's order | dead letter `invalid` |
//! | `consent` | `consent.marketing` not `true`; `region` opted out | drop `consent`; drop `region_opt_out` |
//! | `augment` | `device`, `context.ip` → `context.ip_hash`, `data.checkout.total_usd`, `partner`, `processed_at` | dead letter `edit` (only a total too large to convert) |
//!
//! On a 200,000-line file from the pixels generator (1% malformed, 1%
//! invalid) plus hand-made edge cases (timestamps, shop ids, consent,
//! regions, partial contexts and checkouts), the Go reference and these
//! stages deliver the same `event_id`s, with the same ok / dropped / failed
//! counts. Known differences, all on input no producer should write:
//!
//! - invalid UTF-8, and escaped lone surrogates (`"\ud800"`): Go's
//!   `encoding/json` replaces them with U+FFFD; the spec, and `parse`,
//!   refuse the line;
//! - a repeated key (`"consent":{..},"consent":{..}`): Go keeps the last,
//!   the stages read the first (see [`FieldPath`]);
//! - nesting deeper than 1,000 levels: Go allows 10,000, `parse` refuses it
//!   (sonic parses recursively, and deeper lines could overflow a stack).
//!
//! Output objects carry Go's content, not its key order.
//!
//! ```
//! use crew_pipeline::{Event, Origin, Outcome};
//!
//! let stages = crew_pipeline::pixels::stages();
//! let names: Vec<&str> = stages.iter().map(|(name, _)| name.as_str()).collect();
//! assert_eq!(names, ["parse", "validate", "consent", "augment"]);
//!
//! let line = br#"{"event_id":"3d9c1724-11e2-4b8f-ab0d-549b6f03675a","event_name":"page_viewed",
//!     "shop_id":7,"timestamp":"2026-11-27T18:07:14.645Z","consent":{"marketing":false}}"#;
//! let mut event = Event::new(Origin { partition: 0, offset: 0 }, &line[..]);
//! let mut outcome = Outcome::Keep;
//! for (_, stage) in &stages {
//!     outcome = stage.process(&mut event).unwrap();
//!     if outcome != Outcome::Keep {
//!         break;
//!     }
//! }
//! assert_eq!(outcome, Outcome::Drop("consent".into()));
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::stage::Stage;
use crate::transforms::{
    Check, Condition, ConfigError, DropRule, Edit, EditConfig, EditOp, FieldPath, FieldRule,
    Filter, FilterConfig, Literal, ParseJson, ParseJsonConfig, Validate, ValidateConfig,
};

/// The allowed `event_name`s.
pub const EVENT_NAMES: [&str; 8] = [
    "page_viewed",
    "product_viewed",
    "search_submitted",
    "product_added_to_cart",
    "checkout_started",
    "checkout_completed",
    "collection_viewed",
    "payment_info_submitted",
];

/// US dollars per unit of each currency, for `data.checkout.total_usd`.
pub const USD_RATES: [(&str, f64); 6] = [
    ("CAD", 0.73),
    ("USD", 1.0),
    ("GBP", 1.27),
    ("EUR", 1.09),
    ("JPY", 0.0067),
    ("AUD", 0.66),
];

/// The partners, picked by `shop_id % 4`.
pub const PARTNERS: [&str; 4] = ["meta", "google", "tiktok", "pinterest"];

/// A stage and its name, as [`PipelineBuilder::arc_stage`](crate::PipelineBuilder::arc_stage)
/// takes them.
pub type NamedStage = (String, Arc<dyn Stage>);

/// The drop reason for an event without marketing consent.
pub const CONSENT_DROP: &str = "consent";

/// The drop reason for an event from an opted-out region.
pub const REGION_DROP: &str = "region_opt_out";

/// The workload's settings.
///
/// ```
/// use crew_pipeline::pixels::PixelsConfig;
///
/// let config: PixelsConfig = toml::from_str(r#"salt = "s3cret""#).unwrap();
/// assert_eq!(config.opt_out_regions, ["DE", "FR"]);
/// assert!(config.stages().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PixelsConfig {
    /// `context.ip_hash` is SHA-256 of `"{salt}:{ip}"`; `"salt"` by default,
    /// as in the Go reference.
    pub salt: String,
    /// Regions whose events are dropped; `DE` and `FR` by default.
    pub opt_out_regions: Vec<String>,
    /// The largest line parsed, in bytes; 1 MiB by default.
    pub max_bytes: usize,
}

impl Default for PixelsConfig {
    fn default() -> Self {
        PixelsConfig {
            salt: "salt".to_owned(),
            opt_out_regions: vec!["DE".to_owned(), "FR".to_owned()],
            max_bytes: ParseJsonConfig::default().max_bytes,
        }
    }
}

/// A path written in this file.
fn fixed(dotted: &'static str) -> FieldPath {
    // Every path here is a constant, non-empty and without empty keys, which
    // the tests below go through.
    FieldPath::parse(dotted).unwrap_or_else(|err| unreachable!("{err}"))
}

impl PixelsConfig {
    /// The `parse` stage's settings.
    pub fn parse_config(&self) -> ParseJsonConfig {
        ParseJsonConfig {
            max_bytes: self.max_bytes,
            ..ParseJsonConfig::default()
        }
    }

    /// The `validate` stage's settings: Go's checks, in Go's order.
    pub fn validate_config(&self) -> ValidateConfig {
        let rule = |field: &'static str, check: Check| FieldRule {
            field: fixed(field),
            check,
            optional: false,
        };
        ValidateConfig {
            rules: vec![
                rule(
                    "event_id",
                    Check::String {
                        len: Some(36),
                        one_of: None,
                    },
                ),
                rule(
                    "event_name",
                    Check::String {
                        len: None,
                        one_of: Some(EVENT_NAMES.iter().map(|name| (*name).to_owned()).collect()),
                    },
                ),
                rule("shop_id", Check::PositiveInteger),
                rule("timestamp", Check::Timestamp),
                rule("consent", Check::Object),
            ],
            ..ValidateConfig::default()
        }
    }

    /// The `consent` stage's settings: no marketing consent, then an
    /// opted-out region (Go checks in that order).
    pub fn consent_config(&self) -> FilterConfig {
        let mut rules = vec![DropRule {
            reason: CONSENT_DROP.to_owned(),
            when: Condition::NotTrue {
                field: fixed("consent.marketing"),
            },
        }];
        if !self.opt_out_regions.is_empty() {
            rules.push(DropRule {
                reason: REGION_DROP.to_owned(),
                when: Condition::In {
                    field: fixed("region"),
                    values: self
                        .opt_out_regions
                        .iter()
                        .cloned()
                        .map(Literal::String)
                        .collect(),
                },
            });
        }
        FilterConfig { rules }
    }

    /// The `augment` stage's settings.
    pub fn augment_config(&self) -> EditConfig {
        EditConfig {
            ops: vec![
                EditOp::Classify {
                    source: fixed("context.user_agent"),
                    target: fixed("device"),
                    contains_any: vec!["Mobile".to_owned(), "Android".to_owned()],
                    then: "mobile".to_owned(),
                    otherwise: "desktop".to_owned(),
                },
                EditOp::Hash {
                    source: fixed("context.ip"),
                    target: fixed("context.ip_hash"),
                    salt_prefix: format!("{}:", self.salt),
                    bytes: 8,
                    remove_source: true,
                },
                EditOp::MultiplyLookup {
                    source: fixed("data.checkout.total"),
                    by: fixed("data.checkout.currency"),
                    target: fixed("data.checkout.total_usd"),
                    table: USD_RATES
                        .iter()
                        .map(|(currency, rate)| ((*currency).to_owned(), *rate))
                        .collect::<BTreeMap<_, _>>(),
                },
                EditOp::Pick {
                    source: fixed("shop_id"),
                    target: fixed("partner"),
                    values: PARTNERS
                        .iter()
                        .map(|partner| (*partner).to_owned())
                        .collect(),
                },
                EditOp::Now {
                    target: fixed("processed_at"),
                },
            ],
        }
    }

    /// The four stages, named `parse`, `validate`, `consent` and `augment`,
    /// ready for [`PipelineBuilder::arc_stage`](crate::PipelineBuilder::arc_stage).
    pub fn stages(&self) -> Result<Vec<NamedStage>, ConfigError> {
        Ok(vec![
            (
                "parse".to_owned(),
                Arc::new(ParseJson::new(self.parse_config())?) as Arc<dyn Stage>,
            ),
            (
                "validate".to_owned(),
                Arc::new(Validate::new(self.validate_config())?),
            ),
            (
                "consent".to_owned(),
                Arc::new(Filter::new(self.consent_config())?),
            ),
            (
                "augment".to_owned(),
                Arc::new(Edit::new(self.augment_config())?),
            ),
        ])
    }
}

/// The four stages with the default settings (salt `salt`, regions `DE` and
/// `FR` opted out, lines up to 1 MiB).
///
/// ```
/// use crew_pipeline::pixels;
///
/// let mut builder = crew_pipeline::Pipeline::builder();
/// for (name, stage) in pixels::stages() {
///     builder = builder.arc_stage(name, stage, None);
/// }
/// ```
pub fn stages() -> Vec<NamedStage> {
    match PixelsConfig::default().stages() {
        Ok(stages) => stages,
        // The defaults are constants, built by every test of this module.
        Err(err) => unreachable!("the default pixels settings are valid: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};
    use sonic_rs::{JsonContainerTrait, JsonValueTrait};

    use super::*;
    use crate::{Event, Origin, Outcome, StageError};

    const GOOD: &str = r#"{"event_id":"3d9c1724-11e2-4b8f-ab0d-549b6f03675a","event_name":"product_viewed","shop_id":36114,"client_id":"c-0f216cad4a26","seq":0,"timestamp":"2026-11-27T18:07:14.645Z","consent":{"analytics":true,"marketing":true,"preferences":true},"region":"AU","context":{"user_agent":"Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148","url":"https://shop-14489.example.com/products/48845","ip":"143.68.148.108"},"data":{"checkout":{"total":917.28,"currency":"GBP","line_items":[{"sku":"SKU-19772","qty":4,"price":195.63}]}}}"#;

    /// What happened to a line: the first drop or error, or the event at the
    /// end.
    #[derive(Debug)]
    enum End {
        Delivered(Event),
        Dropped(String),
        Failed(StageError),
    }

    fn run(line: &str) -> End {
        run_bytes(line.as_bytes())
    }

    fn run_bytes(line: &[u8]) -> End {
        let mut event = Event::new(
            Origin {
                partition: 0,
                offset: 0,
            },
            line.to_vec(),
        );
        for (_, stage) in stages() {
            match stage.process(&mut event) {
                Ok(Outcome::Keep) => {}
                Ok(Outcome::Drop(reason)) => return End::Dropped(reason.into_owned()),
                Err(err) => return End::Failed(err),
            }
        }
        End::Delivered(event)
    }

    fn delivered(line: &str) -> sonic_rs::Value {
        match run(line) {
            End::Delivered(mut event) => event.take_value().unwrap(),
            other => panic!("expected delivery, got {other:?}"),
        }
    }

    fn failed(line: &str) -> StageError {
        match run(line) {
            End::Failed(err) => err,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    /// GOOD with one top-level field replaced (or removed, for `None`).
    fn with(field: &str, json: Option<&str>) -> String {
        let mut object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(GOOD).unwrap();
        match json {
            Some(json) => object.insert(field.to_owned(), serde_json::from_str(json).unwrap()),
            None => object.remove(field),
        };
        serde_json::to_string(&object).unwrap()
    }

    #[test]
    fn a_good_event_is_augmented() {
        let out = delivered(GOOD);
        assert_eq!(out["device"].as_str(), Some("mobile"));
        let expected_hash = hex::encode(&Sha256::digest(b"salt:143.68.148.108")[..8]);
        assert_eq!(expected_hash.len(), 16);
        assert_eq!(
            out["context"]["ip_hash"].as_str(),
            Some(expected_hash.as_str())
        );
        assert!(out["context"].get("ip").is_none(), "context.ip is removed");
        assert_eq!(
            out["context"]["url"].as_str(),
            Some("https://shop-14489.example.com/products/48845")
        );
        assert_eq!(
            out["data"]["checkout"]["total_usd"].as_f64(),
            Some(917.28 * 1.27)
        );
        assert_eq!(out["partner"].as_str(), Some("tiktok"), "36114 % 4 = 2");
        let processed_at = out["processed_at"].as_str().unwrap();
        let format = time::format_description::well_known::Rfc3339;
        assert!(
            time::OffsetDateTime::parse(processed_at, &format).is_ok(),
            "{processed_at}"
        );
        assert!(processed_at.ends_with('Z'));
        // Everything else is kept.
        assert_eq!(
            out["event_id"].as_str(),
            Some("3d9c1724-11e2-4b8f-ab0d-549b6f03675a")
        );
        assert_eq!(
            out["data"]["checkout"]["line_items"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(out.as_object().unwrap().len(), 13);
        // And it serializes as one line.
        let line = sonic_rs::to_string(&out).unwrap();
        assert!(!line.contains('\n') && line.contains("\"ip_hash\""));
    }

    #[test]
    fn augment_follows_go_on_partial_events() {
        let desktop = with("context", Some(r#"{"user_agent":"Mozilla (X11; Linux)"}"#));
        let out = delivered(&desktop);
        assert_eq!(out["device"].as_str(), Some("desktop"));
        assert!(out["context"].get("ip_hash").is_none());
        // No context object: no device.
        let out = delivered(&with("context", Some("null")));
        assert!(out.get("device").is_none());
        // A currency without a rate: no total_usd.
        let out = delivered(&with(
            "data",
            Some(r#"{"checkout":{"total":5,"currency":"CHF"}}"#),
        ));
        assert!(out["data"]["checkout"].get("total_usd").is_none());
        // No total: 0.
        let out = delivered(&with("data", Some(r#"{"checkout":{"currency":"JPY"}}"#)));
        assert_eq!(out["data"]["checkout"]["total_usd"].as_f64(), Some(0.0));
        // shop_id written as a float still picks.
        assert_eq!(
            delivered(&with("shop_id", Some("5.0")))["partner"].as_str(),
            Some("google")
        );
        // A region that is not a string is not opted out.
        assert!(delivered(&with("region", Some("7")))
            .get("partner")
            .is_some());
    }

    #[test]
    fn parse_failures() {
        for (line, message) in [
            (&b""[..], "empty line"),
            (
                b"{\"event_id\":",
                "invalid JSON: Invalid JSON value at line 1 column 13",
            ),
            (b"null", "not a JSON object (found null)"),
            (b"[1,2]", "not a JSON object (found an array)"),
            (b"{\"a\":\"\xff\"}", "invalid UTF-8 at byte 6"),
        ] {
            match run_bytes(line) {
                End::Failed(err) => {
                    assert_eq!(err.reason, "parse");
                    assert_eq!(err.message, message);
                }
                other => panic!("{line:?}: {other:?}"),
            }
        }
        let long = format!("{GOOD}{}", " ".repeat(1 << 20));
        assert!(failed(&long).message.starts_with("line of 1049"));
    }

    #[test]
    fn each_invalid_field_fails_with_its_name() {
        for (field, json, message) in [
            ("event_id", None, "field `event_id` is missing"),
            (
                "event_id",
                Some(r#""short""#),
                "field `event_id`: expected a string of 36 bytes, found a string of 5 bytes",
            ),
            (
                "event_id",
                Some("1"),
                "field `event_id`: expected a string, found a number",
            ),
            (
                "event_name",
                Some(r#""signed_up""#),
                "field `event_name`: expected one of ",
            ),
            ("event_name", None, "field `event_name` is missing"),
            (
                "shop_id",
                Some("0"),
                "field `shop_id`: expected a positive integer, found 0",
            ),
            (
                "shop_id",
                Some("2.5"),
                "field `shop_id`: expected a positive integer, found 2.5",
            ),
            (
                "shop_id",
                Some(r#""36114""#),
                "field `shop_id`: expected a positive integer, found a string",
            ),
            (
                "timestamp",
                Some(r#""2026-11-27 18:07:14Z""#),
                "field `timestamp`: expected an RFC 3339 timestamp",
            ),
            ("timestamp", None, "field `timestamp` is missing"),
            (
                "consent",
                Some("true"),
                "field `consent`: expected an object, found a boolean",
            ),
            ("consent", None, "field `consent` is missing"),
        ] {
            let err = failed(&with(field, json));
            assert_eq!(err.reason, "invalid", "{field}");
            assert!(
                err.message.starts_with(message),
                "{field} {json:?}: {}",
                err.message
            );
        }
    }

    #[test]
    fn validation_runs_in_gos_order() {
        let mut object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(GOOD).unwrap();
        object.insert("consent".into(), serde_json::Value::Null);
        object.insert("shop_id".into(), serde_json::Value::Null);
        let err = failed(&serde_json::to_string(&object).unwrap());
        assert!(
            err.message.starts_with("field `shop_id`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn consent_and_region_drops() {
        let drop = |line: &str| match run(line) {
            End::Dropped(reason) => reason,
            other => panic!("expected a drop, got {other:?}"),
        };
        assert_eq!(
            drop(&with("consent", Some(r#"{"marketing":false}"#))),
            CONSENT_DROP
        );
        assert_eq!(
            drop(&with("consent", Some(r#"{"marketing":"yes"}"#))),
            CONSENT_DROP
        );
        assert_eq!(drop(&with("consent", Some("{}"))), CONSENT_DROP);
        assert_eq!(drop(&with("region", Some(r#""DE""#))), REGION_DROP);
        assert_eq!(drop(&with("region", Some(r#""FR""#))), REGION_DROP);
        // Consent is checked first.
        let both = with("consent", Some(r#"{"marketing":false}"#))
            .replace(r#""region":"AU""#, r#""region":"DE""#);
        assert_eq!(drop(&both), CONSENT_DROP);
        // A drop needs a valid event first.
        let invalid =
            with("consent", Some(r#"{"marketing":false}"#)).replace("product_viewed", "nope");
        assert_eq!(failed(&invalid).reason, "invalid");
    }

    #[test]
    fn settings_change_the_salt_and_regions() {
        let config = PixelsConfig {
            salt: "pepper".to_owned(),
            opt_out_regions: vec!["AU".to_owned()],
            ..PixelsConfig::default()
        };
        let stages = config.stages().unwrap();
        let mut event = Event::new(
            Origin {
                partition: 0,
                offset: 0,
            },
            GOOD.as_bytes().to_vec(),
        );
        let outcomes: Vec<_> = stages
            .iter()
            .map(|(_, stage)| stage.process(&mut event))
            .collect();
        assert_eq!(outcomes[2], Ok(Outcome::Drop(REGION_DROP.into())));

        let no_regions = PixelsConfig {
            salt: "pepper".to_owned(),
            opt_out_regions: vec![],
            ..PixelsConfig::default()
        };
        assert_eq!(no_regions.consent_config().rules.len(), 1);
        let mut event = Event::new(
            Origin {
                partition: 0,
                offset: 0,
            },
            GOOD.as_bytes().to_vec(),
        );
        for (_, stage) in no_regions.stages().unwrap() {
            assert_eq!(stage.process(&mut event), Ok(Outcome::Keep));
        }
        let hash = hex::encode(&Sha256::digest(b"pepper:143.68.148.108")[..8]);
        assert_eq!(
            event.value().unwrap()["context"]["ip_hash"].as_str(),
            Some(hash.as_str())
        );

        let err = toml::from_str::<PixelsConfig>("regions = []")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field"), "{err}");
    }
}
