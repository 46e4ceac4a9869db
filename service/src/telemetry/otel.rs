//! OpenTelemetry tracing: the tracer provider (sampler, resource, OTLP exporter behind the
//! SDK's batch processor), the tracing-opentelemetry layer, and the W3C propagator.
//!
//! The SDK reads the standard `OTEL_*` variables itself but ignores a value it cannot
//! parse, so [`check_environment`] refuses it first, naming the variable. This module reads
//! what opentelemetry-otlp does not: the exporter specification's TLS files
//! (`OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE`, `..._CLIENT_CERTIFICATE`, `..._CLIENT_KEY`).

use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{KeyValue, global};
use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig, Identity};
use opentelemetry_otlp::{SpanExporter, WithTonicConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::resource::EnvResourceDetector;
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::registry::LookupSpan;

use super::TelemetryError;
use crate::config::{Config, SamplerName, TelemetryConfig};
use Check::{KeyValues, OneOf, Positive};

/// Each variable the SDK reads that a typo could silently change, with the values it takes.
const CHECKED: &[(&str, Check)] = &[
    ("OTEL_EXPORTER_OTLP_PROTOCOL", OneOf(PROTOCOL)),
    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", OneOf(PROTOCOL)),
    ("OTEL_EXPORTER_OTLP_COMPRESSION", OneOf(COMPRESSION)),
    ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", OneOf(COMPRESSION)),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", Positive),
    ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", Positive),
    ("OTEL_BSP_SCHEDULE_DELAY", Positive),
    ("OTEL_BSP_EXPORT_TIMEOUT", Positive),
    ("OTEL_BSP_MAX_QUEUE_SIZE", Positive),
    ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", Positive),
    ("OTEL_RESOURCE_ATTRIBUTES", KeyValues),
];
const PROTOCOL: &[&str] = &["grpc", "http/protobuf"];
const COMPRESSION: &[&str] = &["gzip", "none"];

#[derive(Debug, Clone, Copy)]
enum Check {
    OneOf(&'static [&'static str]),
    /// A whole number from 1 up.
    Positive,
    /// `key=value,key=value`.
    KeyValues,
}

/// Refuses a value of [`CHECKED`] the SDK would ignore; `env` reads a variable.
pub fn check_environment(env: impl Fn(&str) -> Option<String>) -> Result<(), TelemetryError> {
    for &(variable, check) in CHECKED {
        let Some(value) = env(variable) else { continue };
        let value = value.trim();
        let reason = match check {
            OneOf(allowed) if !allowed.contains(&value) => {
                format!("{value:?} is not one of {}", allowed.join(", "))
            }
            Positive if !value.parse::<u64>().is_ok_and(|n| n > 0) => {
                format!("{value:?} is not a whole number above 0")
            }
            KeyValues => match value.split(',').map(str::trim).find(|pair| {
                !pair.is_empty()
                    && pair
                        .split_once('=')
                        .is_none_or(|(key, _)| key.trim().is_empty())
            }) {
                Some(pair) => format!("{pair:?} is not key=value"),
                None => continue,
            },
            _ => continue,
        };
        return Err(TelemetryError::Invalid { variable, reason });
    }
    Ok(())
}

/// The provider every span goes through: sampler and resource from `config`, and the
/// batch processor with the OTLP exporter when an endpoint is set.
pub fn provider(config: &Config) -> Result<SdkTracerProvider, TelemetryError> {
    let builder = SdkTracerProvider::builder()
        .with_sampler(sampler(&config.telemetry))
        .with_resource(resource(config));
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
        && env("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
    {
        return Ok(builder.build());
    }
    // The async runtime's batch processor: the threaded one polls exports outside Tokio,
    // where the hyper client of http/protobuf panics.
    let processor = BatchSpanProcessor::builder(exporter(&env)?, Tokio).build();
    Ok(builder.with_span_processor(processor).build())
}

/// The layer that makes OpenTelemetry spans of `tracing` spans: the request's (TRACE level,
/// target `otel::tracing`) and any INFO or above, events never (they are log lines).
pub fn layer<S>(provider: &SdkTracerProvider) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("cart-service"))
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        // No OpenTelemetry context set on each enter and exit: nothing here reads it, and
        // it cost `add` at 64 connections with sampling off 34 → 28.6 µs of CPU a request.
        .with_context_activation(false)
        .with_filter(filter_fn(is_traced))
}

/// W3C trace context and baggage, in and out.
pub fn install_propagator() {
    global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ]));
}

/// The sampler `OTEL_TRACES_SAMPLER` (and `OTEL_TRACES_SAMPLER_ARG`) name.
#[must_use]
pub fn sampler(config: &TelemetryConfig) -> Sampler {
    let ratio = config.sampler_arg;
    let parent_based = |root| Sampler::ParentBased(Box::new(root));
    match config.sampler {
        SamplerName::AlwaysOn => Sampler::AlwaysOn,
        SamplerName::AlwaysOff => Sampler::AlwaysOff,
        SamplerName::Traceidratio => Sampler::TraceIdRatioBased(ratio),
        SamplerName::ParentbasedAlwaysOn => parent_based(Sampler::AlwaysOn),
        SamplerName::ParentbasedAlwaysOff => parent_based(Sampler::AlwaysOff),
        SamplerName::ParentbasedTraceidratio => parent_based(Sampler::TraceIdRatioBased(ratio)),
    }
}

/// `service.*`, `k8s.*` from the downward API, `deployment.environment.name`, then
/// `OTEL_RESOURCE_ATTRIBUTES` (read by the SDK), which wins.
#[must_use]
pub fn resource(config: &Config) -> Resource {
    Resource::builder_empty()
        .with_service_name(config.telemetry.service_name.clone())
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("deployment.environment.name", "development"),
            KeyValue::new("k8s.pod.name", config.pod.name.clone()),
            KeyValue::new("k8s.node.name", config.pod.node.clone()),
            KeyValue::new("k8s.namespace.name", config.pod.namespace.clone()),
        ])
        .with_detector(Box::new(EnvResourceDetector::new()))
        .build()
}

fn is_traced(metadata: &Metadata<'_>) -> bool {
    metadata.is_span()
        && (metadata.target() == tracing_opentelemetry_instrumentation_sdk::TRACING_TARGET
            || *metadata.level() <= Level::INFO)
}

/// The OTLP exporter of the protocol the variables name (gRPC by default). An `https://`
/// gRPC endpoint is verified against `OTEL_EXPORTER_OTLP_CERTIFICATE` when set, else the
/// system's roots, and presents the client certificate when one is set.
fn exporter(env: &impl Fn(&str) -> Option<String>) -> Result<SpanExporter, TelemetryError> {
    // The traces-only variable wins over the general one, as the specification has it.
    let either = |traces: &'static str, general: &'static str| {
        env(traces)
            .map(|value| (traces, value))
            .or_else(|| env(general).map(|value| (general, value)))
    };
    let endpoint = either(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    );
    let https = endpoint
        .as_ref()
        .filter(|(_, url)| url.trim().starts_with("https://"));
    let protocol = either(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    );
    if protocol.is_some_and(|(_, protocol)| protocol.trim() == "http/protobuf") {
        if let Some((variable, _)) = https {
            return Err(TelemetryError::Invalid {
                variable,
                reason: "https:// is supported over grpc only (OTEL_EXPORTER_OTLP_PROTOCOL=grpc)"
                    .to_owned(),
            });
        }
        return Ok(SpanExporter::builder().with_http().build()?);
    }
    let builder = SpanExporter::builder().with_tonic();
    if https.is_none() {
        return Ok(builder.build()?);
    }
    let read = |(variable, path): (&'static str, String)| {
        std::fs::read(path.trim()).map_err(|source| TelemetryError::File {
            variable,
            path,
            source,
        })
    };
    let ca = either(
        "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
    );
    let mut tls = match ca.map(read).transpose()? {
        Some(ca) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)),
        None => ClientTlsConfig::new().with_native_roots(),
    };
    let certificate = either(
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
    );
    let key = either(
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
        "OTEL_EXPORTER_OTLP_CLIENT_KEY",
    );
    match (
        certificate.map(read).transpose()?,
        key.map(read).transpose()?,
    ) {
        (Some(certificate), Some(key)) => tls = tls.identity(Identity::from_pem(certificate, key)),
        (None, None) => {}
        _ => {
            return Err(TelemetryError::Invalid {
                variable: "OTEL_EXPORTER_OTLP_CLIENT_KEY",
                reason: "set both OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and \
                         OTEL_EXPORTER_OTLP_CLIENT_KEY, or neither"
                    .to_owned(),
            });
        }
    }
    Ok(builder.with_tls_config(tls).build()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cli;
    use clap::Parser;

    fn check(vars: &[(&str, &str)]) -> Result<(), TelemetryError> {
        check_environment(|name| {
            let found = vars.iter().find(|(key, _)| *key == name);
            found.map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn a_value_the_sdk_would_ignore_stops_startup_naming_the_variable() {
        for (variable, value) in [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "zip"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "0"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "many"),
            ("OTEL_RESOURCE_ATTRIBUTES", "team=carts,novalue"),
        ] {
            let error = check(&[(variable, value)]).unwrap_err().to_string();
            assert!(
                error.starts_with(&format!("invalid {variable}:")),
                "{error}"
            );
        }
        check(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_RESOURCE_ATTRIBUTES", "a=1, b=2,"),
        ])
        .unwrap();
    }

    #[test]
    fn tls_files_that_cannot_be_used_stop_startup_naming_the_variable() {
        // Each case: the variable set beside an https:// endpoint, its value, and the
        // variable the error must name.
        for (set, value, named) in [
            ("CERTIFICATE", "/nonexistent/ca.pem", "CERTIFICATE"),
            ("CLIENT_CERTIFICATE", "/etc/hostname", "CLIENT_KEY"),
            ("PROTOCOL", "http/protobuf", "ENDPOINT"),
        ] {
            let vars = [("ENDPOINT", "https://collector:4317"), (set, value)];
            let env = |name: &str| {
                let mut found = vars
                    .iter()
                    .filter(|(key, _)| name.ends_with(&format!("P_{key}")));
                found.next().map(|(_, value)| (*value).to_owned())
            };
            let error = exporter(&env).unwrap_err().to_string();

            let variable = format!("OTEL_EXPORTER_OTLP_{named}");
            assert!(error.contains(&variable), "{variable}: {error}");
        }
    }

    #[test]
    fn the_sampler_is_parent_based_ten_percent_unless_set() {
        let name = |args: &[&str]| {
            let config = Cli::parse_from([&["cart-service"], args].concat()).config;
            format!("{:?}", sampler(&config.telemetry))
        };
        let default = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(0.1)));
        assert_eq!(name(&[]), format!("{default:?}"));
        let off = ["--otel-traces-sampler", "always_off"];
        assert_eq!(name(&off), format!("{:?}", Sampler::AlwaysOff));
    }

    #[test]
    fn the_resource_has_the_service_and_downward_api_attributes() {
        let mut config = Cli::parse_from(["cart-service"]).config;
        config.pod.name = "cart-0".into();
        let resource = resource(&config);
        for (key, value) in [
            ("k8s.pod.name", "cart-0"),
            ("k8s.namespace.name", "default"),
            ("service.name", "cart-service"),
            ("service.version", env!("CARGO_PKG_VERSION")),
        ] {
            let found = resource.get(&opentelemetry::Key::new(key));
            assert_eq!(
                found.map(|v| v.to_string()).as_deref(),
                Some(value),
                "{key}"
            );
        }
    }
}
