//! The OTLP/gRPC span exporter: each batch encoded by [`RequestEncoder`] straight from the
//! SDK's spans, and sent as one unary `TraceService/Export` call over a tonic channel.
//!
//! It replaces opentelemetry-otlp's tonic exporter, whose conversion of every batch into
//! opentelemetry-proto structs, and prost's encoding and dropping of them, took about
//! 22 000 of the 41 000 instructions a request's three spans cost to export at 100 %
//! sampling (callgrind). The transport keeps what that exporter did: a channel that
//! connects on first use, so startup needs no collector; the metadata of
//! `OTEL_EXPORTER_OTLP_TRACES_HEADERS` or else `OTEL_EXPORTER_OTLP_HEADERS`; up to three
//! retries of transient failures, all within the export timeout
//! (`OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT`); a partial success
//! reported as an error.
//!
//! - `encode`: the request's protobuf bytes, written from the spans;
//! - `wire`: the protobuf wire-format pieces that writes with;
//! - `settings`: the endpoint and the `OTEL_EXPORTER_OTLP_*` variables, checked at
//!   startup (no TLS, no compression in this build).

mod encode;
mod settings;
mod wire;

pub use encode::RequestEncoder;
pub use settings::Settings;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::Uri;
use http::uri::PathAndQuery;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use prost::bytes::BufMut as _;
use tokio::time::Instant;
use tonic::client::Grpc;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataMap;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

/// Sends span batches to an OTLP/gRPC collector.
pub struct GrpcSpanExporter {
    endpoint: Uri,
    client: Grpc<Channel>,
    metadata: MetadataMap,
    timeout: Duration,
    encoding: Mutex<Encoding>,
    shut_down: AtomicBool,
}

impl GrpcSpanExporter {
    /// The exporter for `settings`. Its channel connects on the first export, so this
    /// needs no collector, but it must run inside the Tokio runtime.
    pub fn new(settings: Settings) -> Result<Self, String> {
        let channel = Endpoint::from(settings.endpoint.clone())
            .user_agent(concat!("cart-service/", env!("CARGO_PKG_VERSION")))
            .map_err(|e| format!("cannot build the OTLP/gRPC channel: {e}"))?
            .connect_lazy();
        Ok(Self {
            endpoint: settings.endpoint,
            client: Grpc::new(channel),
            metadata: settings.metadata,
            timeout: settings.timeout,
            encoding: Mutex::new(Encoding {
                encoder: RequestEncoder::new(&Resource::builder_empty().build()),
                buffer: Arc::default(),
            }),
            shut_down: AtomicBool::new(false),
        })
    }

    /// The batch's request bytes, in the previous request's buffer: tonic lets go of a
    /// request once it has copied it into its HTTP/2 frame, so the buffer is ours again.
    fn encode(&self, batch: &[SpanData]) -> Arc<Vec<u8>> {
        let mut encoding = self.encoding.lock().unwrap_or_else(PoisonError::into_inner);
        let Encoding { encoder, buffer } = &mut *encoding;
        if Arc::get_mut(buffer).is_none() {
            *buffer = Arc::default();
        }
        let bytes = Arc::make_mut(buffer);
        bytes.clear();
        encoder.encode(batch, bytes);
        Arc::clone(buffer)
    }

    /// Sends `request`, retrying what the OTLP specification calls transient, with
    /// exponential backoff (100 ms, 200 ms, 400 ms, plus up to 100 ms of jitter), until
    /// the export timeout has passed since the first try.
    async fn send(&self, request: Arc<Vec<u8>>) -> Result<ExportResponse, OTelSdkError> {
        let deadline = Instant::now() + self.timeout;
        let mut backoff = Duration::from_millis(100);
        let mut retries = 0;
        loop {
            let status =
                match tokio::time::timeout_at(deadline, self.call(Arc::clone(&request), deadline))
                    .await
                {
                    Ok(Ok(response)) => return Ok(response),
                    Ok(Err(status)) => status,
                    Err(_) => return Err(OTelSdkError::Timeout(self.timeout)),
                };
            let pause = backoff + Duration::from_millis(rand::random_range(0..=100));
            if retries == 3 || !is_transient(status.code()) || Instant::now() + pause >= deadline {
                return Err(self.failure(&status));
            }
            tokio::time::sleep(pause).await;
            backoff *= 2;
            retries += 1;
        }
    }

    async fn call(
        &self,
        request: Arc<Vec<u8>>,
        deadline: Instant,
    ) -> Result<ExportResponse, Status> {
        let mut client = self.client.clone();
        client
            .ready()
            .await
            .map_err(|e| Status::unknown(format!("the channel is not ready: {e}")))?;
        let mut request = Request::new(request);
        *request.metadata_mut() = self.metadata.clone();
        // Also tells the collector how long it has (`grpc-timeout`).
        request.set_timeout(deadline.saturating_duration_since(Instant::now()));
        let path = PathAndQuery::from_static(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        );
        let response = client.unary(request, path, ExportCodec).await?;
        Ok(response.into_inner())
    }

    /// The error the batch processor logs: the gRPC code and, for a failure of tonic's
    /// own (connecting, the deadline), its causes. The collector's message stays out, as
    /// opentelemetry-otlp keeps it out: it can echo credentials from the metadata.
    fn failure(&self, status: &Status) -> OTelSdkError {
        let mut message = format!(
            "OTLP export to {} failed with gRPC code {:?}",
            self.endpoint,
            status.code()
        );
        let mut cause = std::error::Error::source(status);
        while let Some(error) = cause {
            message.push_str(": ");
            message.push_str(&error.to_string());
            cause = error.source();
        }
        OTelSdkError::InternalFailure(message)
    }
}

impl SpanExporter for GrpcSpanExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        if self.shut_down.load(Ordering::Acquire) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        let request = self.encode(&batch);
        let spans = batch.len();
        drop(batch);
        self.send(request).await?.accepted(spans)
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            Err(OTelSdkError::AlreadyShutdown)
        } else {
            Ok(())
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        let encoding = self
            .encoding
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        encoding.encoder = RequestEncoder::new(resource);
    }
}

impl fmt::Debug for GrpcSpanExporter {
    /// Leaves the metadata out: it holds credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcSpanExporter")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// The encoder and the buffer reused from export to export.
struct Encoding {
    encoder: RequestEncoder,
    /// The request bytes, shared with the call that sends them.
    buffer: Arc<Vec<u8>>,
}

/// `ExportTraceServiceResponse`: only its partial success matters.
#[derive(Clone, PartialEq, prost::Message)]
struct ExportResponse {
    #[prost(message, optional, tag = "1")]
    partial_success: Option<PartialSuccess>,
}

/// `ExportTracePartialSuccess`.
#[derive(Clone, PartialEq, prost::Message)]
struct PartialSuccess {
    #[prost(int64, tag = "1")]
    rejected_spans: i64,
    #[prost(string, tag = "2")]
    error_message: String,
}

impl ExportResponse {
    /// Ok, unless the collector rejected spans or warned (a partial success): that is
    /// not retried, as the specification says, but reported.
    fn accepted(self, spans: usize) -> OTelSdkResult {
        match self.partial_success {
            Some(partial) if partial.rejected_spans > 0 || !partial.error_message.is_empty() => {
                Err(OTelSdkError::InternalFailure(format!(
                    "the OTLP collector rejected {} of {spans} spans: {:?}",
                    partial.rejected_spans, partial.error_message
                )))
            }
            _ => Ok(()),
        }
    }
}

/// Writes the pre-encoded request as it is; reads the response with prost.
#[derive(Debug, Clone, Copy)]
struct ExportCodec;

impl Codec for ExportCodec {
    type Encode = Arc<Vec<u8>>;
    type Decode = ExportResponse;
    type Encoder = Self;
    type Decoder = Self;

    fn encoder(&mut self) -> Self {
        Self
    }

    fn decoder(&mut self) -> Self {
        Self
    }
}

impl Encoder for ExportCodec {
    type Item = Arc<Vec<u8>>;
    type Error = Status;

    fn encode(&mut self, item: Arc<Vec<u8>>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.reserve(item.len());
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for ExportCodec {
    type Item = ExportResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<ExportResponse>, Status> {
        prost::Message::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(format!("unreadable ExportTraceServiceResponse: {e}")))
    }
}

/// The OTLP specification's transient gRPC failures. `RESOURCE_EXHAUSTED` is one only
/// with a `RetryInfo`, which this exporter does not read.
fn is_transient(code: Code) -> bool {
    matches!(
        code,
        Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::OutOfRange
            | Code::Unavailable
            | Code::DataLoss
    )
}

#[cfg(test)]
mod tests {
    use opentelemetry::InstrumentationScope;
    use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status as SpanStatus, TraceId};
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTracePartialSuccess, ExportTraceServiceResponse,
    };
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use prost::Message as _;

    use super::*;
    use crate::telemetry::otel::Destination;

    /// The exporter for `endpoint`, with no other variables set.
    fn exporter(endpoint: &str) -> GrpcSpanExporter {
        let destination = Destination::grpc("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint);
        GrpcSpanExporter::new(Settings::new(&destination, |_| None).unwrap()).unwrap()
    }

    fn one_span() -> Vec<SpanData> {
        vec![SpanData {
            span_context: SpanContext::new(
                TraceId::from(1),
                SpanId::from(2),
                opentelemetry::trace::TraceFlags::SAMPLED,
                false,
                opentelemetry::trace::TraceState::NONE,
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Server,
            name: "GET /v1/cart/{user_id}".into(),
            start_time: std::time::SystemTime::now(),
            end_time: std::time::SystemTime::now(),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: SpanStatus::Unset,
            instrumentation_scope: InstrumentationScope::builder("cart-service").build(),
        }]
    }

    #[test]
    fn a_partial_success_is_reported_and_a_full_one_is_not() {
        let response = |partial_success| {
            let bytes = ExportTraceServiceResponse { partial_success }.encode_to_vec();
            ExportResponse::decode(&bytes[..]).unwrap()
        };
        let rejected = Some(ExportTracePartialSuccess {
            rejected_spans: 2,
            error_message: "spans too old".to_owned(),
        });

        let error = response(rejected).accepted(5).unwrap_err();

        assert!(
            error
                .to_string()
                .contains("rejected 2 of 5 spans: \"spans too old\""),
            "{error}"
        );
        assert!(response(None).accepted(5).is_ok());
        assert!(
            response(Some(ExportTracePartialSuccess::default()))
                .accepted(5)
                .is_ok()
        );
    }

    #[tokio::test]
    async fn an_unreachable_collector_is_an_export_error_naming_the_code() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let exporter = exporter(&endpoint);

        let error = exporter.export(one_span()).await.unwrap_err();

        assert!(error.to_string().contains("Unavailable"), "{error}");
        assert!(error.to_string().contains(&endpoint), "{error}");
    }

    #[tokio::test]
    async fn a_shut_down_exporter_exports_nothing() {
        let exporter = exporter("http://127.0.0.1:9");

        assert!(exporter.shutdown().is_ok());

        assert!(matches!(
            exporter.export(one_span()).await,
            Err(OTelSdkError::AlreadyShutdown)
        ));
        assert!(matches!(
            exporter.shutdown(),
            Err(OTelSdkError::AlreadyShutdown)
        ));
    }
}
