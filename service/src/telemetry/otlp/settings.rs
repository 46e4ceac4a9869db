//! What the gRPC exporter sends where: the endpoint, and the metadata, TLS and compression
//! settings of the `OTEL_EXPORTER_OTLP_*` variables opentelemetry-otlp read for it. This
//! build has neither TLS nor compression for OTLP, so asking for either stops startup
//! with a message naming the variable, rather than failing every export (TLS) or being
//! ignored (compression), as opentelemetry-otlp did.

use std::fmt;
use std::time::Duration;

use http::uri::Scheme;
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use tonic::metadata::MetadataMap;

use crate::telemetry::otel::Destination;

/// Where and with what metadata [`super::GrpcSpanExporter`] sends, from the endpoint and
/// the `OTEL_EXPORTER_OTLP_*` variables.
#[derive(Clone)]
pub struct Settings {
    pub(super) endpoint: Uri,
    /// Sent with every export.
    pub(super) metadata: MetadataMap,
    /// One export, retries included.
    pub(super) timeout: Duration,
}

impl Settings {
    /// Reads the settings for `destination` from the variables `env` looks up; a value
    /// this exporter cannot honour is an error naming its variable.
    pub fn new(
        destination: &Destination,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let first_set = |names: [&'static str; 2]| {
            names
                .into_iter()
                .find_map(|name| env(name).map(|value| (name, value)))
        };
        if let Some((name, value)) = first_set([
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
            "OTEL_EXPORTER_OTLP_COMPRESSION",
        ])
        .filter(|(_, value)| !value.is_empty() && !value.eq_ignore_ascii_case("none"))
        {
            return Err(format!(
                "invalid {name}: {value:?}: this build sends OTLP uncompressed; unset it or \
                 set it to none"
            ));
        }
        let insecure = first_set([
            "OTEL_EXPORTER_OTLP_TRACES_INSECURE",
            "OTEL_EXPORTER_OTLP_INSECURE",
        ])
        .is_some_and(|(_, value)| value.eq_ignore_ascii_case("true"));
        let metadata = match first_set([
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "OTEL_EXPORTER_OTLP_HEADERS",
        ]) {
            Some((name, value)) => {
                headers(&value).map_err(|reason| format!("invalid {name}: {reason}"))?
            }
            None => MetadataMap::new(),
        };
        let endpoint = &destination.endpoint;
        Ok(Self {
            endpoint: endpoint_uri(endpoint, insecure).map_err(|reason| {
                format!("invalid {} {endpoint:?}: {reason}", destination.variable)
            })?,
            metadata,
            timeout: destination.timeout,
        })
    }
}

impl fmt::Debug for Settings {
    /// Leaves the metadata's values out: they hold credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("endpoint", &self.endpoint)
            .field("metadata", &self.metadata.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The endpoint as a URI with the `http` scheme; without a scheme, `http://` is assumed
/// only when `OTEL_EXPORTER_OTLP_[TRACES_]INSECURE` is true, as opentelemetry-otlp does
/// (it assumes `https://` otherwise).
fn endpoint_uri(endpoint: &str, insecure: bool) -> Result<Uri, String> {
    let has_scheme = endpoint
        .split_once("://")
        .is_some_and(|(scheme, _)| !scheme.contains(['/', '?', '#']));
    let uri = if has_scheme {
        endpoint.parse::<Uri>()
    } else if insecure {
        format!("http://{endpoint}").parse::<Uri>()
    } else {
        return Err(
            "no scheme, so TLS would be used, which this build does not have for OTLP: \
             write http://, or set OTEL_EXPORTER_OTLP_INSECURE=true"
                .to_owned(),
        );
    }
    .map_err(|e| e.to_string())?;
    match uri.scheme() {
        Some(scheme) if *scheme == Scheme::HTTP && uri.host().is_some() => Ok(uri),
        Some(scheme) if *scheme == Scheme::HTTPS => Err(
            "https needs TLS, which this build does not have for OTLP: use http:// (a \
             collector in the pod or the cluster)"
                .to_owned(),
        ),
        _ => Err("not an http://host:port URL".to_owned()),
    }
}

/// `key=value,key=value`, values percent-decoded (or kept as they are when they do not
/// decode), as opentelemetry-otlp reads the headers variables. Unlike it, an entry that
/// is not `key=value` or is not a valid header is an error, not silently dropped.
fn headers(raw: &str) -> Result<MetadataMap, String> {
    let mut headers = HeaderMap::new();
    for pair in raw
        .split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
    {
        let Some((key, value)) = pair
            .split_once('=')
            .filter(|(key, _)| !key.trim().is_empty())
        else {
            return Err(format!("{pair:?} is not key=value"));
        };
        let value = value.trim();
        let value = percent_decoded(value).unwrap_or_else(|| value.to_owned());
        let name = HeaderName::from_bytes(key.trim().as_bytes())
            .map_err(|_| format!("{key:?} is not a header name"))?;
        let value = HeaderValue::from_str(&value)
            .map_err(|_| format!("the value of {key:?} is not a header value"))?;
        headers.append(name, value);
    }
    Ok(MetadataMap::from_headers(headers))
}

/// `value` with each `%XX` replaced by that byte; `None` when a `%` is not followed by two
/// hex digits or the result is not UTF-8.
fn percent_decoded(value: &str) -> Option<String> {
    let mut decoded = Vec::with_capacity(value.len());
    let mut rest = value.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let (&[high, low], tail) = tail.split_first_chunk()?;
            decoded.push(hex_digit(high)? << 4 | hex_digit(low)?);
            rest = tail;
        } else {
            decoded.push(byte);
            rest = tail;
        }
    }
    String::from_utf8(decoded).ok()
}

fn hex_digit(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|digit| u8::try_from(digit).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings for `endpoint` (`OTEL_EXPORTER_OTLP_ENDPOINT`) in an environment
    /// holding only `vars`.
    fn settings(endpoint: &str, vars: &[(&str, &str)]) -> Result<Settings, String> {
        let destination = Destination::grpc("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint);
        Settings::new(&destination, |name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    fn header(settings: &Settings, name: &str) -> Option<String> {
        let value = settings.metadata.get(name)?;
        Some(value.to_str().unwrap().to_owned())
    }

    #[test]
    fn an_http_endpoint_with_no_other_variables_is_accepted() {
        let settings = settings("http://otel-collector:4317", &[]).unwrap();

        assert_eq!(settings.endpoint, "http://otel-collector:4317");
        assert!(settings.metadata.is_empty());
    }

    #[test]
    fn headers_come_from_the_traces_variable_before_the_general_one() {
        let both = [
            (
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "Authorization=Bearer%20t0k3n, x-tenant = carts ,",
            ),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-general=1"),
        ];

        let traces = settings("http://c:4317", &both).unwrap();
        let general = settings("http://c:4317", &both[1..]).unwrap();

        assert_eq!(
            header(&traces, "authorization").as_deref(),
            Some("Bearer t0k3n")
        );
        assert_eq!(header(&traces, "x-tenant").as_deref(), Some("carts"));
        assert_eq!(header(&traces, "x-general"), None);
        assert_eq!(header(&general, "x-general").as_deref(), Some("1"));
    }

    #[test]
    fn a_header_value_that_does_not_percent_decode_is_kept_as_written() {
        let vars = [("OTEL_EXPORTER_OTLP_HEADERS", "x-discount=50%off,x-end=a%2")];

        let settings = settings("http://c:4317", &vars).unwrap();

        assert_eq!(header(&settings, "x-discount").as_deref(), Some("50%off"));
        assert_eq!(header(&settings, "x-end").as_deref(), Some("a%2"));
    }

    #[test]
    fn a_header_that_is_not_key_value_stops_startup_naming_the_variable() {
        for bad in ["novalue", "=value", "bad name=1", "x-bad=line%0Abreak"] {
            let vars = [("OTEL_EXPORTER_OTLP_TRACES_HEADERS", bad)];

            let error = settings("http://c:4317", &vars).unwrap_err();

            assert!(
                error.starts_with("invalid OTEL_EXPORTER_OTLP_TRACES_HEADERS: "),
                "{bad:?}: {error}"
            );
        }
    }

    #[test]
    fn an_https_endpoint_stops_startup_naming_the_variable() {
        let error = settings("https://collector:4317", &[]).unwrap_err();

        assert!(
            error.starts_with("invalid OTEL_EXPORTER_OTLP_ENDPOINT \"https://collector:4317\""),
            "{error}"
        );
        assert!(error.contains("TLS"), "{error}");
    }

    #[test]
    fn a_bad_traces_endpoint_is_named_as_that_variable() {
        let destination = Destination::grpc(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "https://collector:4317",
        );

        let error = Settings::new(&destination, |_| None).unwrap_err();

        assert!(
            error.starts_with("invalid OTEL_EXPORTER_OTLP_TRACES_ENDPOINT \"https://"),
            "{error}"
        );
    }

    #[test]
    fn an_endpoint_without_a_scheme_is_plain_http_only_when_insecure_is_set() {
        let error = settings("collector:4317", &[]).unwrap_err();
        let insecure =
            settings("collector:4317", &[("OTEL_EXPORTER_OTLP_INSECURE", "true")]).unwrap();

        assert!(error.contains("OTEL_EXPORTER_OTLP_INSECURE"), "{error}");
        assert_eq!(insecure.endpoint, "http://collector:4317");
        assert!(settings("unix:///run/otlp.sock", &[]).is_err());
        assert!(settings("http://", &[]).is_err());
    }

    #[test]
    fn compression_other_than_none_stops_startup_naming_the_variable() {
        for (variable, value) in [
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
        ] {
            let error = settings("http://c:4317", &[(variable, value)]).unwrap_err();

            assert!(
                error.starts_with(&format!("invalid {variable}: ")),
                "{error}"
            );
        }
        for value in ["none", "NONE", ""] {
            let vars = [("OTEL_EXPORTER_OTLP_COMPRESSION", value)];
            assert!(settings("http://c:4317", &vars).is_ok(), "{value:?}");
        }
    }
}
