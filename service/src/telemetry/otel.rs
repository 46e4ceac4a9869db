//! OpenTelemetry tracing: the sampler, the resource and the OTLP exporter of the provider
//! the request's spans ([`super::span`]) go to: over gRPC our own ([`super::otlp`]), over
//! http/protobuf opentelemetry-otlp's.
//!
//! Everything comes from the standard `OTEL_*` variables, parsed into [`Config`] so
//! `--help` lists them and a bad value stops startup naming the variable.

use std::time::Duration;

use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::{KeyValue, global};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, TracerProviderBuilder};

use super::otlp::{GrpcSpanExporter, Settings};
use super::span_batch::{BatchSettings, SpanBatcher};
use crate::config::{Config, OtlpProtocol};

/// Where traces are exported, over which transport, and how long one export may take:
/// the traces-only variables win over the general ones, as the OTLP exporter
/// specification has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The variable the endpoint came from, for messages about it.
    pub variable: &'static str,
    /// The URL the exporter sends to: over http/protobuf with `/v1/traces` appended to
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, never to `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`.
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// One export, retries included.
    pub timeout: Duration,
}

impl Destination {
    /// The destination `config` names, or none when neither endpoint variable is set
    /// (an empty value counts as unset).
    #[must_use]
    pub fn of(config: &Config) -> Option<Self> {
        let set = |value: &Option<String>| {
            value
                .as_deref()
                .map(str::trim)
                .filter(|value| !value.is_empty())
                .map(str::to_owned)
        };
        let protocol = config
            .otel_exporter_otlp_traces_protocol
            .unwrap_or(config.otel_exporter_otlp_protocol);
        let (variable, endpoint) =
            if let Some(endpoint) = set(&config.otel_exporter_otlp_traces_endpoint) {
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint)
            } else {
                let base = set(&config.otel_exporter_otlp_endpoint)?;
                let endpoint = match protocol {
                    OtlpProtocol::Grpc => base,
                    OtlpProtocol::HttpProtobuf => {
                        format!("{}/v1/traces", base.trim_end_matches('/'))
                    }
                };
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
            };
        let timeout = config
            .otel_exporter_otlp_traces_timeout
            .unwrap_or(config.otel_exporter_otlp_timeout);
        Some(Self {
            variable,
            endpoint,
            protocol,
            timeout: Duration::from_millis(timeout),
        })
    }
}

#[cfg(test)]
impl Destination {
    /// A gRPC destination at `endpoint`, named by `variable`, with the default timeout:
    /// what the exporter's own tests start from.
    pub(crate) fn grpc(variable: &'static str, endpoint: &str) -> Self {
        Self {
            variable,
            endpoint: endpoint.to_owned(),
            protocol: OtlpProtocol::Grpc,
            timeout: Duration::from_secs(10),
        }
    }
}

/// The provider every span goes through: sampler and resource from `config`, and a batch
/// OTLP exporter when an endpoint is set ([`Destination`]).
pub fn provider(config: &Config) -> Result<SdkTracerProvider, String> {
    Ok(with_exporter(provider_builder(config)?, config)?.build())
}

/// The provider's builder with sampler and resource, for callers that add their own
/// exporter (the tests add an in-memory one).
pub fn provider_builder(config: &Config) -> Result<TracerProviderBuilder, String> {
    Ok(SdkTracerProvider::builder()
        .with_sampler(sampler(config)?)
        .with_resource(resource(config)?))
}

/// W3C trace context and baggage, in and out.
pub fn install_propagator() {
    global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ]));
}

/// The sampler `OTEL_TRACES_SAMPLER` (and `OTEL_TRACES_SAMPLER_ARG`) name.
pub fn sampler(config: &Config) -> Result<Sampler, String> {
    let ratio = config.otel_traces_sampler_arg;
    Ok(match config.otel_traces_sampler.as_str() {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => Sampler::TraceIdRatioBased(ratio),
        "parentbased_always_on" => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        "parentbased_always_off" => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        "parentbased_traceidratio" => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
        }
        other => {
            return Err(format!(
                "unknown sampler {other:?}: use always_on, always_off, traceidratio, \
                 parentbased_always_on, parentbased_always_off or parentbased_traceidratio"
            ));
        }
    })
}

/// Parses `OTEL_RESOURCE_ATTRIBUTES` (`key=value,key=value`, values percent-decoded is
/// not supported: keep them plain).
pub fn resource_attributes(raw: &str) -> Result<Vec<KeyValue>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => Ok(KeyValue::new(
                key.trim().to_owned(),
                value.trim().to_owned(),
            )),
            _ => Err(format!("{pair:?} is not key=value")),
        })
        .collect()
}

/// `service.*`, `k8s.*` from the downward API, `deployment.environment.name`, then
/// `OTEL_RESOURCE_ATTRIBUTES`, which wins.
pub fn resource(config: &Config) -> Result<Resource, String> {
    let mut attributes = vec![
        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        KeyValue::new("deployment.environment.name", "development"),
        KeyValue::new("k8s.pod.name", config.pod_name.clone()),
        KeyValue::new("k8s.node.name", config.node_name.clone()),
        KeyValue::new("k8s.namespace.name", config.pod_namespace.clone()),
    ];
    attributes.extend(resource_attributes(&config.otel_resource_attributes)?);
    Ok(Resource::builder_empty()
        .with_service_name(config.otel_service_name.clone())
        .with_attributes(attributes)
        .build())
}

/// `builder` with the batch processor ([`super::span_batch`]) and the exporter of the
/// [`Destination`]'s protocol (gRPC our own, [`super::otlp`]; http/protobuf
/// opentelemetry-otlp's), or as it is without an endpoint. `OTEL_BSP_*` set the
/// processor, the defaults being the seed's (512 spans, 5 s).
fn with_exporter(
    builder: TracerProviderBuilder,
    config: &Config,
) -> Result<TracerProviderBuilder, String> {
    let Some(destination) = Destination::of(config) else {
        return Ok(builder);
    };
    let batch = BatchSettings::of(config);
    Ok(match destination.protocol {
        OtlpProtocol::Grpc => {
            let settings = Settings::new(&destination, |name| std::env::var(name).ok())?;
            let exporter = GrpcSpanExporter::new(settings)?;
            builder.with_span_processor(SpanBatcher::new(exporter, batch))
        }
        OtlpProtocol::HttpProtobuf => {
            let exporter = SpanExporter::builder()
                .with_http()
                .with_endpoint(destination.endpoint.clone())
                .with_timeout(destination.timeout)
                .build()
                .map_err(|e| {
                    format!(
                        "invalid {} {:?}: {e}",
                        destination.variable, destination.endpoint
                    )
                })?;
            builder.with_span_processor(SpanBatcher::new(exporter, batch))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cli;
    use clap::Parser;

    #[test]
    fn the_default_sampler_is_parent_based_ten_percent() {
        let config = Cli::parse_from(["cart-service"]).config;
        let sampler = sampler(&config).unwrap();
        assert_eq!(
            format!("{sampler:?}"),
            format!(
                "{:?}",
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(0.1)))
            )
        );
    }

    /// The configuration with these variables set, and no others.
    fn configured(vars: &[(&str, &str)]) -> Config {
        let mut args = vec!["cart-service".to_owned()];
        for (name, value) in vars {
            let flag = name.to_ascii_lowercase().replace('_', "-");
            args.push(format!("--{flag}={value}"));
        }
        Cli::try_parse_from(args).unwrap().config
    }

    #[test]
    fn no_endpoint_means_no_destination() {
        assert_eq!(Destination::of(&configured(&[])), None);
        let empty = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", " "),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""),
        ];
        assert_eq!(Destination::of(&configured(&empty)), None);
    }

    #[test]
    fn the_general_endpoint_gets_v1_traces_over_http_only() {
        let grpc = configured(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")]);
        let http = configured(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ]);

        assert_eq!(
            Destination::of(&grpc),
            Some(Destination {
                variable: "OTEL_EXPORTER_OTLP_ENDPOINT",
                endpoint: "http://c:4317".to_owned(),
                protocol: OtlpProtocol::Grpc,
                timeout: Duration::from_secs(10),
            })
        );
        assert_eq!(
            Destination::of(&http).unwrap().endpoint,
            "http://c:4318/v1/traces"
        );
    }

    #[test]
    fn the_traces_variables_win_and_their_endpoint_is_used_as_it_is() {
        let config = configured(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "3000"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:4318/ingest",
            ),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "250"),
        ]);

        assert_eq!(
            Destination::of(&config),
            Some(Destination {
                variable: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                endpoint: "http://traces:4318/ingest".to_owned(),
                protocol: OtlpProtocol::HttpProtobuf,
                timeout: Duration::from_millis(250),
            })
        );
        let general_timeout = configured(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4317"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "3000"),
        ]);
        assert_eq!(
            Destination::of(&general_timeout).unwrap().timeout,
            Duration::from_secs(3)
        );
    }

    #[test]
    fn a_timeout_of_zero_is_refused() {
        for name in [
            "--otel-exporter-otlp-timeout=0",
            "--otel-exporter-otlp-traces-timeout=0",
        ] {
            assert!(
                Cli::try_parse_from(["cart-service", name]).is_err(),
                "{name}"
            );
        }
    }

    #[test]
    fn unknown_samplers_are_rejected() {
        let mut config = Cli::parse_from(["cart-service"]).config;
        config.otel_traces_sampler = "sometimes".into();
        assert!(sampler(&config).unwrap_err().contains("sometimes"));
    }

    #[test]
    fn resource_attributes_parse_and_override_the_defaults() {
        let mut config = Cli::parse_from(["cart-service"]).config;
        config.pod_name = "cart-0".into();
        config.otel_resource_attributes = "deployment.environment.name=prod, team=carts".into();
        let resource = resource(&config).unwrap();
        let get = |key: &'static str| {
            resource
                .get(&opentelemetry::Key::new(key))
                .map(|v| v.to_string())
        };
        assert_eq!(get("deployment.environment.name").as_deref(), Some("prod"));
        assert_eq!(get("team").as_deref(), Some("carts"));
        assert_eq!(get("k8s.pod.name").as_deref(), Some("cart-0"));
        assert_eq!(get("service.name").as_deref(), Some("cart-service"));
        assert!(resource_attributes("novalue").is_err());
    }
}
