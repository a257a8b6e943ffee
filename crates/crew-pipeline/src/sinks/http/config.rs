//! What an HTTP sink is told in the pipeline file, and the checks that can
//! be made before anything connects.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use serde::Deserialize;

use crate::concurrency::{AdaptiveSettings, Concurrency};
use crate::retry::RetryPolicy;

/// Configuration of an [`HttpSink`](super::HttpSink).
///
/// ```
/// use crew_pipeline::sinks::HttpSinkConfig;
///
/// let config: HttpSinkConfig = toml::from_str(r#"
///     uri = "http://127.0.0.1:8080/events"
///     concurrency = "adaptive"
///     headers = { authorization = "Bearer s3cret" }
///     retry = { max_attempts = 3 }
/// "#).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.max_events, 1_000);
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// Where requests go: an `http://` or `https://` URL.
    pub uri: String,
    /// `post` (the default) or `put`.
    #[serde(default)]
    pub method: HttpMethod,
    /// How a request's body holds its records.
    #[serde(default)]
    pub encoding: HttpEncoding,
    /// Whether bodies are compressed.
    #[serde(default)]
    pub compression: HttpCompression,
    /// Headers sent with every request (an `authorization`, a tenant id).
    /// `content-type` and `content-encoding` follow `encoding` and
    /// `compression` unless set here.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// At most this many records in one request; larger batches are split.
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// At most about this many body bytes (before compression) in one
    /// request; a single larger record still goes alone.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// How long one attempt may take, connecting included.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// How many requests may be in flight: a fixed number, or `"adaptive"`
    /// (the default), which follows the service's response times.
    #[serde(default)]
    pub concurrency: Concurrency,
    /// Tuning of the adaptive limit.
    #[serde(default)]
    pub adaptive: AdaptiveSettings,
    /// Attempts per request for timeouts, refused connections, 408, 429 and
    /// 5xx answers, with their backoff. A request that still fails is sent
    /// again at the next flush, and the pipeline's sink retry policy decides
    /// when to give up (the run then fails without acking those events).
    #[serde(default)]
    pub retry: RetryPolicy,
}

/// The HTTP method of the sink's requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpMethod {
    /// `POST`.
    #[default]
    Post,
    /// `PUT`.
    Put,
}

/// How records are laid out in a request body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpEncoding {
    /// One record per line (`application/x-ndjson`).
    #[default]
    Ndjson,
    /// A JSON array of the records (`application/json`).
    JsonArray,
}

/// Compression of request bodies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpCompression {
    /// Bodies as they are.
    #[default]
    None,
    /// gzip, with `content-encoding: gzip`.
    Gzip,
}

fn default_max_events() -> usize {
    1_000
}

fn default_max_bytes() -> usize {
    1024 * 1024
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

/// A configuration the HTTP sink cannot work with; the message names the
/// field.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpConfigError(pub String);

impl HttpSinkConfig {
    /// Checks what can be checked without a network: the URL, the headers,
    /// the limits.
    pub fn validate(&self) -> Result<(), HttpConfigError> {
        self.url()?;
        self.header_map()?;
        let invalid = |message: String| Err(HttpConfigError(message));
        if self.max_events == 0 {
            return invalid("`max_events` must be at least 1".to_owned());
        }
        if self.max_bytes == 0 {
            return invalid("`max_bytes` must be at least 1".to_owned());
        }
        if self.timeout.is_zero() {
            return invalid("`timeout` must be more than zero".to_owned());
        }
        if self.retry.max_attempts == 0 {
            return invalid("`retry.max_attempts` must be at least 1".to_owned());
        }
        // The settings name their own fields; here they sit under `adaptive`.
        self.adaptive
            .validate()
            .map_err(|message| HttpConfigError(message.replacen('`', "`adaptive.", 1)))
    }

    pub(super) fn url(&self) -> Result<reqwest::Url, HttpConfigError> {
        // The URI is not quoted back: it may hold a password.
        let url = reqwest::Url::parse(&self.uri)
            .map_err(|e| HttpConfigError(format!("`uri` is not a URL: {e}")))?;
        match url.scheme() {
            "http" | "https" => Ok(url),
            other => Err(HttpConfigError(format!(
                "`uri`: the scheme must be http or https, not {other}"
            ))),
        }
    }

    /// The headers of every request: the configured ones over the defaults
    /// that `encoding` and `compression` imply.
    pub(super) fn header_map(&self) -> Result<HeaderMap, HttpConfigError> {
        let mut map = HeaderMap::new();
        let content_type = match self.encoding {
            HttpEncoding::Ndjson => "application/x-ndjson",
            HttpEncoding::JsonArray => "application/json",
        };
        map.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        if self.compression == HttpCompression::Gzip {
            map.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        for (name, value) in &self.headers {
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                HttpConfigError(format!("`headers`: {name:?} is not a header name"))
            })?;
            let value = HeaderValue::from_str(value).map_err(|_| {
                HttpConfigError(format!(
                    "`headers.{name}`: the value holds a character a header cannot carry"
                ))
            })?;
            map.insert(header, value);
        }
        Ok(map)
    }
}
