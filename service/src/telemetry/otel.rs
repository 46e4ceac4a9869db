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
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, TracerProviderBuilder};

use super::otlp::{GrpcSpanExporter, Settings};
use crate::config::{Config, OtlpProtocol};

/// How long one OTLP export may take before it is abandoned.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The provider every span goes through: sampler and resource from `config`, and a batch
/// OTLP exporter when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
pub fn provider(config: &Config) -> Result<SdkTracerProvider, String> {
    let builder = provider_builder(config)?;
    Ok(match span_processor(config)? {
        Some(processor) => builder.with_span_processor(processor),
        None => builder,
    }
    .build())
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

/// The batch processor and the exporter `OTEL_EXPORTER_OTLP_PROTOCOL` names (gRPC our own,
/// [`super::otlp`]; http/protobuf opentelemetry-otlp's), or none without an endpoint.
fn span_processor(config: &Config) -> Result<Option<BatchSpanProcessor<Tokio>>, String> {
    let Some(endpoint) = config
        .otel_exporter_otlp_endpoint
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty())
    else {
        return Ok(None);
    };
    Ok(Some(match config.otel_exporter_otlp_protocol {
        OtlpProtocol::Grpc => {
            let settings = Settings::new(endpoint, |name| std::env::var(name).ok())?;
            batch(GrpcSpanExporter::new(settings)?)
        }
        OtlpProtocol::HttpProtobuf => batch(
            SpanExporter::builder()
                .with_http()
                .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
                .with_timeout(EXPORT_TIMEOUT)
                .build()
                .map_err(|e| format!("invalid OTEL_EXPORTER_OTLP_ENDPOINT {endpoint:?}: {e}"))?,
        ),
    }))
}

/// The batch processor that runs on Tokio: the exporters' clients (tonic, hyper) need the
/// runtime, which the SDK's default thread-based processor does not provide. Batch size
/// and delay are the SDK defaults (512 spans, 5 s), as the seed had; `OTEL_BSP_*`
/// variables adjust them.
fn batch(
    exporter: impl opentelemetry_sdk::trace::SpanExporter + 'static,
) -> BatchSpanProcessor<Tokio> {
    BatchSpanProcessor::builder(exporter, Tokio).build()
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
