//! Adaptive concurrency for I/O sinks and stages: how many requests may be in
//! flight, following the service's latency instead of a hand-tuned number.
//!
//! This is Vector's Adaptive Request Concurrency (an AIMD controller, as in
//! TCP congestion control and Netflix's concurrency-limits):
//!
//! - The limit starts at [`AdaptiveSettings::initial_limit`] and is judged
//!   once per *window*, a window lasting about the long-run mean round-trip
//!   time (RTT).
//! - A window with backpressure (429, 503, a timeout) or a mean RTT well above
//!   the long-run mean (more than `rtt_deviation_scale` long-run deviations)
//!   multiplies the limit by `decrease_ratio` (multiplicative decrease).
//! - Otherwise, a window in which the limit was actually reached and whose
//!   mean RTT was no worse than the long-run mean raises the limit by one
//!   (additive increase). Slower than the mean but within the band holds.
//! - Then the window's mean RTT is folded into the long-run mean and
//!   deviation (EWMAs with weight `ewma_alpha`).
//!
//! Like Vector's, this controller judges latency *relative* to its own
//! recent past, so it reacts to a service getting slower, not to how slow it
//! is. A service whose latency climbs gently with load and never pushes back
//! can therefore draw the limit up slowly under noisy latencies; give such
//! sinks a request timeout (a timeout is [`Signal::Backpressure`]) or a
//! `max_limit`.
//!
//! A sink holds a [`Limiter`], takes a [`Permit`] per request, and hands the
//! permit back with the request's [`Signal`]. Lowering the limit never revokes
//! a permit already held: the surplus is retired as permits come back.

mod controller;
mod limiter;

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

pub use limiter::{Limiter, LimiterSnapshot, Permit};

/// How many requests a sink may have in flight.
///
/// In TOML: `concurrency = 8` or `concurrency = "adaptive"` (the default).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Concurrency {
    /// Exactly this many requests at most, never adjusted (1 or more).
    Fixed(usize),
    /// The limit follows the service's latency and backpressure (see
    /// [`AdaptiveSettings`]).
    #[default]
    Adaptive,
}

const CONCURRENCY_EXPECTED: &str = r#"a number of requests (1 or more) or "adaptive""#;

impl<'de> Deserialize<'de> for Concurrency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ConcurrencyVisitor;

        impl Visitor<'_> for ConcurrencyVisitor {
            type Value = Concurrency;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(CONCURRENCY_EXPECTED)
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Concurrency, E> {
                match usize::try_from(n) {
                    Ok(n) if n >= 1 => Ok(Concurrency::Fixed(n)),
                    _ => Err(E::invalid_value(de::Unexpected::Unsigned(n), &self)),
                }
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Concurrency, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::invalid_value(de::Unexpected::Signed(n), &self)),
                }
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Concurrency, E> {
                if s == "adaptive" {
                    Ok(Concurrency::Adaptive)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(s), &self))
                }
            }
        }

        // `deserialize_any`: the value may be an integer or a string, and
        // anything else (a float, a table) falls to the visitor's default
        // "invalid type" error, which quotes `expecting`.
        deserializer.deserialize_any(ConcurrencyVisitor)
    }
}

/// The adaptive controller's tuning, with Vector's names where they exist.
///
/// All fields are optional in the configuration; check with
/// [`validate`](AdaptiveSettings::validate) after loading.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptiveSettings {
    /// The limit before any response has been seen (1 or more). Starting low
    /// finds the service's capacity without first overloading it.
    pub initial_limit: usize,
    /// The limit never grows past this (at least `initial_limit`).
    pub max_limit: usize,
    /// A decrease multiplies the limit by this, in (0, 1).
    pub decrease_ratio: f64,
    /// The weight of each window's mean RTT in the long-run mean, in (0, 1].
    /// Higher follows changes faster but forgets sooner.
    pub ewma_alpha: f64,
    /// How many long-run deviations above the long-run mean a window's RTT
    /// may be before it counts as overload (0 or more).
    pub rtt_deviation_scale: f64,
}

impl Default for AdaptiveSettings {
    fn default() -> Self {
        AdaptiveSettings {
            initial_limit: 1,
            max_limit: 200,
            decrease_ratio: 0.9,
            ewma_alpha: 0.4,
            rtt_deviation_scale: 2.5,
        }
    }
}

impl AdaptiveSettings {
    /// Checks every field's range; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.initial_limit < 1 {
            return Err("`initial_limit` must be at least 1".into());
        }
        if self.max_limit < 1 {
            return Err("`max_limit` must be at least 1".into());
        }
        if self.max_limit < self.initial_limit {
            return Err("`max_limit` must be at least `initial_limit`".into());
        }
        // Written as negated ranges so that NaN fails too.
        if !(self.decrease_ratio > 0.0 && self.decrease_ratio < 1.0) {
            return Err(format!(
                "`decrease_ratio` must be between 0 and 1 (exclusive), not {}",
                self.decrease_ratio
            ));
        }
        if !(self.ewma_alpha > 0.0 && self.ewma_alpha <= 1.0) {
            return Err(format!(
                "`ewma_alpha` must be more than 0 and at most 1, not {}",
                self.ewma_alpha
            ));
        }
        if !(self.rtt_deviation_scale >= 0.0 && self.rtt_deviation_scale.is_finite()) {
            return Err(format!(
                "`rtt_deviation_scale` must be 0 or more, not {}",
                self.rtt_deviation_scale
            ));
        }
        Ok(())
    }

    /// The settings with every out-of-range field replaced (limits clamped,
    /// ratios reset to their default), so that a limiter built from
    /// unvalidated settings neither panics nor stalls.
    fn sanitized(self) -> AdaptiveSettings {
        let default = AdaptiveSettings::default();
        let initial_limit = self.initial_limit.clamp(1, limiter::MAX_LIMIT);
        let max_limit = self.max_limit.clamp(initial_limit, limiter::MAX_LIMIT);
        let in_range = |ok: bool, value: f64, fallback: f64| if ok { value } else { fallback };
        AdaptiveSettings {
            initial_limit,
            max_limit,
            decrease_ratio: in_range(
                self.decrease_ratio > 0.0 && self.decrease_ratio < 1.0,
                self.decrease_ratio,
                default.decrease_ratio,
            ),
            ewma_alpha: in_range(
                self.ewma_alpha > 0.0 && self.ewma_alpha <= 1.0,
                self.ewma_alpha,
                default.ewma_alpha,
            ),
            rtt_deviation_scale: in_range(
                self.rtt_deviation_scale >= 0.0 && self.rtt_deviation_scale.is_finite(),
                self.rtt_deviation_scale,
                default.rtt_deviation_scale,
            ),
        }
    }
}

/// What a finished request says about the service's load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// A response (any status that is not backpressure): its round-trip time
    /// is a latency sample.
    Ok,
    /// The service is overloaded (429, 503, a timeout, a refused
    /// connection): the limit goes down.
    Backpressure,
    /// An error that says nothing about load (e.g. a 400): no sample, no
    /// decrease.
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Config {
        concurrency: Concurrency,
    }

    fn concurrency(toml_value: &str) -> Result<Concurrency, String> {
        toml::from_str::<Config>(&format!("concurrency = {toml_value}"))
            .map(|c| c.concurrency)
            .map_err(|e| e.message().to_string())
    }

    #[test]
    fn concurrency_from_an_integer_or_adaptive() {
        assert_eq!(concurrency("8"), Ok(Concurrency::Fixed(8)));
        assert_eq!(concurrency("1"), Ok(Concurrency::Fixed(1)));
        assert_eq!(concurrency(r#""adaptive""#), Ok(Concurrency::Adaptive));
        assert_eq!(Concurrency::default(), Concurrency::Adaptive);
    }

    #[test]
    fn concurrency_refuses_zero_negative_other_strings_and_floats() {
        let expected = r#"expected a number of requests (1 or more) or "adaptive""#;
        for (input, unexpected) in [
            ("0", "invalid value: integer `0`"),
            ("-3", "invalid value: integer `-3`"),
            (r#""fast""#, r#"invalid value: string "fast""#),
            ("2.5", "invalid type: floating point `2.5`"),
            ("true", "invalid type: boolean `true`"),
        ] {
            let message = concurrency(input).expect_err(input);
            assert_eq!(
                message,
                format!("{unexpected}, {expected}"),
                "input {input}"
            );
        }
    }

    #[test]
    fn adaptive_settings_defaults_and_overrides() {
        let parsed: AdaptiveSettings = toml::from_str("max_limit = 50\newma_alpha = 0.5").unwrap();
        assert_eq!(
            parsed,
            AdaptiveSettings {
                max_limit: 50,
                ewma_alpha: 0.5,
                ..AdaptiveSettings::default()
            }
        );
        assert_eq!(parsed.validate(), Ok(()));
        let empty: AdaptiveSettings = toml::from_str("").unwrap();
        assert_eq!(empty, AdaptiveSettings::default());
    }

    #[test]
    fn adaptive_settings_refuse_unknown_fields_and_wrong_types() {
        let unknown = toml::from_str::<AdaptiveSettings>("max_concurrency = 5").unwrap_err();
        assert!(
            unknown
                .message()
                .starts_with("unknown field `max_concurrency`"),
            "{unknown}"
        );
        let wrong = toml::from_str::<AdaptiveSettings>(r#"max_limit = "many""#).unwrap_err();
        assert!(wrong.message().contains("invalid type: string"), "{wrong}");
    }

    #[test]
    fn validate_names_the_field() {
        let base = AdaptiveSettings::default();
        let cases = [
            (
                AdaptiveSettings {
                    initial_limit: 0,
                    ..base
                },
                "`initial_limit` must be at least 1",
            ),
            (
                AdaptiveSettings {
                    initial_limit: 10,
                    max_limit: 5,
                    ..base
                },
                "`max_limit` must be at least `initial_limit`",
            ),
            (
                AdaptiveSettings {
                    decrease_ratio: 1.0,
                    ..base
                },
                "`decrease_ratio`",
            ),
            (
                AdaptiveSettings {
                    decrease_ratio: 0.0,
                    ..base
                },
                "`decrease_ratio`",
            ),
            (
                AdaptiveSettings {
                    decrease_ratio: f64::NAN,
                    ..base
                },
                "`decrease_ratio`",
            ),
            (
                AdaptiveSettings {
                    ewma_alpha: 0.0,
                    ..base
                },
                "`ewma_alpha`",
            ),
            (
                AdaptiveSettings {
                    ewma_alpha: 1.5,
                    ..base
                },
                "`ewma_alpha`",
            ),
            (
                AdaptiveSettings {
                    rtt_deviation_scale: -1.0,
                    ..base
                },
                "`rtt_deviation_scale`",
            ),
        ];
        for (settings, field) in cases {
            let message = settings.validate().expect_err(field);
            assert!(
                message.starts_with(field),
                "{message:?} should name {field}"
            );
        }
        assert_eq!(
            AdaptiveSettings {
                ewma_alpha: 1.0,
                ..base
            }
            .validate(),
            Ok(())
        );
        assert_eq!(
            AdaptiveSettings {
                rtt_deviation_scale: 0.0,
                ..base
            }
            .validate(),
            Ok(())
        );
    }

    #[test]
    fn sanitized_settings_are_valid() {
        let bad = AdaptiveSettings {
            initial_limit: 0,
            max_limit: 0,
            decrease_ratio: 7.0,
            ewma_alpha: f64::NAN,
            rtt_deviation_scale: f64::INFINITY,
        };
        let fixed = bad.sanitized();
        assert_eq!(fixed.validate(), Ok(()));
        assert_eq!((fixed.initial_limit, fixed.max_limit), (1, 1));
        let good = AdaptiveSettings {
            max_limit: 9,
            ..AdaptiveSettings::default()
        };
        assert_eq!(good.sanitized(), good);
    }
}
