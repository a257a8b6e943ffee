//! What the Kafka source and sink share: building a librdkafka client
//! configuration from crew's defaults and the user's pass-through options.

use std::collections::BTreeMap;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// A property crew sets itself and the user may not override, with why.
pub(crate) struct Fixed {
    pub key: &'static str,
    pub value: &'static str,
    pub why: &'static str,
}

/// `defaults` first, then the user's `options` (which win), then `fixed`.
/// Refuses an option that changes a fixed property, or one that duplicates
/// a setting the component has a field for (`bootstrap.servers` is
/// `brokers`).
pub(crate) fn client_config(
    brokers: &str,
    defaults: &[(&str, &str)],
    options: &BTreeMap<String, String>,
    fixed: &[Fixed],
    own_fields: &[(&str, &str)],
) -> Result<ClientConfig, String> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (key, value) in defaults {
        config.set(*key, *value);
    }
    for (key, value) in options {
        if key == "bootstrap.servers" {
            return Err("`options.bootstrap.servers`: set `brokers` instead".to_owned());
        }
        if let Some((_, field)) = own_fields.iter().find(|(k, _)| k == key) {
            return Err(format!("`options.{key}`: set `{field}` instead"));
        }
        if let Some(fixed) = fixed.iter().find(|f| f.key == key) {
            if value != fixed.value {
                return Err(format!(
                    "`options.{key}` must be `{}`: {}",
                    fixed.value, fixed.why
                ));
            }
        }
        config.set(key.as_str(), value.as_str());
    }
    for fixed in fixed {
        config.set(fixed.key, fixed.value);
    }
    Ok(config)
}

/// Deserializes librdkafka options, taking TOML strings, integers, floats
/// and booleans alike (`"session.timeout.ms" = 10000` reads as written,
/// not as a type error): librdkafka takes every value as text.
pub(crate) fn options<'de, D>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let raw = <BTreeMap<String, OptionValue> as serde::Deserialize>::deserialize(deserializer)?;
    Ok(raw.into_iter().map(|(key, value)| (key, value.0)).collect())
}

/// One librdkafka option value, as text. A hand-written visitor rather than
/// an untagged enum, so a wrong type (an array, a table) is refused with a
/// message that says what is expected, not "did not match any variant".
struct OptionValue(String);

impl<'de> serde::Deserialize<'de> for OptionValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = OptionValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a librdkafka option value: a string, a number or a boolean")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OptionValue, E> {
                Ok(OptionValue(v.to_owned()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<OptionValue, E> {
                Ok(OptionValue(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<OptionValue, E> {
                Ok(OptionValue(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<OptionValue, E> {
                Ok(OptionValue(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<OptionValue, E> {
                Ok(OptionValue(v.to_string()))
            }
        }
        deserializer.deserialize_any(Text)
    }
}

/// A metric-safe reason for a Kafka error: `kafka_msg_size_too_large`.
pub(crate) fn reason_of(error: &KafkaError) -> String {
    match error.rdkafka_error_code() {
        Some(code) => format!("kafka_{}", snake_case(&format!("{code:?}"))),
        None => "kafka".to_owned(),
    }
}

/// Whether sending again may succeed: timeouts, a broker or leader that is
/// away, a full queue. The rest (a record too large, an unknown topic, no
/// authorization) fail the same way every time.
pub(crate) fn is_retriable(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::MessageTimedOut
            | C::RequestTimedOut
            | C::OperationTimedOut
            | C::QueueFull
            | C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::NetworkException
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::NotEnoughReplicas
            | C::NotEnoughReplicasAfterAppend
            | C::NotCoordinator
            | C::CoordinatorNotAvailable
            | C::CoordinatorLoadInProgress
            | C::RebalanceInProgress
            | C::PurgeQueue
            | C::PurgeInflight
            | C::OutOfOrderSequenceNumber
            | C::UnknownProducerId
            | C::KafkaStorageError
            | C::Retry
    )
}

fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    for (i, ch) in name.chars().enumerate() {
        if ch.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_override_defaults_but_not_fixed_ones() {
        let fixed = [Fixed {
            key: "enable.auto.commit",
            value: "false",
            why: "crew commits",
        }];
        let mut options = BTreeMap::new();
        options.insert("linger.ms".to_owned(), "7".to_owned());
        let config = client_config("b:1", &[("linger.ms", "5")], &options, &fixed, &[]).unwrap();
        assert_eq!(config.get("linger.ms"), Some("7"));
        assert_eq!(config.get("enable.auto.commit"), Some("false"));

        options.insert("enable.auto.commit".to_owned(), "true".to_owned());
        let error = client_config("b:1", &[], &options, &fixed, &[]).unwrap_err();
        assert!(error.contains("options.enable.auto.commit"), "{error}");

        let mut options = BTreeMap::new();
        options.insert("group.id".to_owned(), "g".to_owned());
        let error = client_config("b:1", &[], &options, &[], &[("group.id", "group")]).unwrap_err();
        assert_eq!(error, "`options.group.id`: set `group` instead");
    }

    #[test]
    fn reasons_are_snake_case() {
        let error = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert_eq!(reason_of(&error), "kafka_message_size_too_large");
    }
}
