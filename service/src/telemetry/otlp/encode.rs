//! The OTLP `ExportTraceServiceRequest` in protobuf wire format, written straight from the
//! SDK's [`SpanData`] for the gRPC exporter ([`super`]).
//!
//! opentelemetry-otlp converts every batch into opentelemetry-proto's structs first: a
//! `String` for each attribute key and string value, a `Vec` for each id, a `SipHash` map
//! of the scopes; then prost walks the structs twice (lengths, then bytes) and they are
//! dropped. That was about 22 000 of the 41 000 instructions a request's three spans
//! cost to export at 100 % sampling (callgrind). Here one pass over borrowed data writes
//! the bytes, with no allocation once the output buffer has grown: about 1 500
//! instructions a span, 4 600 for a request's three (callgrind), and 28 µs for a batch of
//! 512 where opentelemetry-proto's conversion and prost's encoding take 270 to 285 µs
//! (criterion, `otlp/*_512_spans` in `benches/hot_paths.rs`).
//!
//! The bytes are the ones prost writes for the request opentelemetry-proto 0.33 builds
//! from the same spans (`group_spans_by_resource_and_scope`): fields in tag order, proto3
//! defaults left out, spans grouped by instrumentation scope in order of first appearance
//! under one `ResourceSpans`. The tests hold the two byte for byte.
//!
//! A nested message's length comes before it but is known only after it: attributes'
//! lengths are computed first; other messages are written after a guessed length prefix,
//! which is corrected (and the message moved) when the guess was wrong; see
//! [`Width`].

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{Event, Link, SpanId, SpanKind, Status, TraceFlags, TraceState};
use opentelemetry::{Array, InstrumentationScope, StringValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanData;
use prost::encoding::{WireType, encoded_len_varint};

use super::wire::{Width, bytes, field_key, fixed32, fixed64, message, put_varint, string, varint};

/// Writes `ExportTraceServiceRequest`s for one resource.
#[derive(Debug, Clone)]
pub struct RequestEncoder {
    /// `ResourceSpans.resource` (field 1), key and length included: written once, copied
    /// into every request.
    resource: Vec<u8>,
    /// `ResourceSpans.schema_url` (field 3), the same way; empty when there is none.
    schema_url: Vec<u8>,
    /// Per batch: the index of the first span of each distinct scope, in order...
    scope_firsts: Vec<usize>,
    /// ...and the scope (an index into `scope_firsts`) of every span. Kept to reuse.
    span_scopes: Vec<usize>,
}

impl RequestEncoder {
    /// An encoder for spans of `resource`: its attributes and schema URL are encoded here,
    /// once, not per request.
    #[must_use]
    pub fn new(resource: &Resource) -> Self {
        let mut resource_field = Vec::new();
        message(&mut resource_field, 1, Width::Short, |out| {
            for (key, value) in resource {
                key_value(out, 1, key.as_str(), value);
            }
        });
        let mut schema_url = Vec::new();
        string(
            &mut schema_url,
            3,
            resource.schema_url().unwrap_or_default(),
        );
        Self {
            resource: resource_field,
            schema_url,
            scope_firsts: Vec::new(),
            span_scopes: Vec::new(),
        }
    }

    /// Appends the request carrying `batch` to `out`.
    pub fn encode(&mut self, batch: &[SpanData], out: &mut Vec<u8>) {
        self.group_by_scope(batch);
        let (firsts, scopes) = (&self.scope_firsts, &self.span_scopes);
        // ExportTraceServiceRequest.resource_spans: the one resource.
        message(out, 1, Width::Batch, |out| {
            out.extend_from_slice(&self.resource);
            for (scope, &first) in firsts.iter().enumerate() {
                let instrumentation = &batch[first].instrumentation_scope;
                // ResourceSpans.scope_spans
                message(out, 2, Width::Batch, |out| {
                    message(out, 1, Width::Short, |out| {
                        instrumentation_scope(out, instrumentation);
                    });
                    let spans = batch[first..].iter().zip(&scopes[first..]);
                    for (data, _) in spans.filter(|(_, span_scope)| **span_scope == scope) {
                        message(out, 2, Width::Span, |out| span(out, data));
                    }
                    string(out, 3, instrumentation.schema_url().unwrap_or_default());
                });
            }
            out.extend_from_slice(&self.schema_url);
        });
    }

    /// Numbers the batch's distinct scopes in order of first appearance. A batch holds
    /// one scope per tracer, usually one: each span is compared with its predecessor's
    /// scope first, then with the others.
    fn group_by_scope(&mut self, batch: &[SpanData]) {
        let firsts = &mut self.scope_firsts;
        firsts.clear();
        self.span_scopes.clear();
        let mut previous = None;
        for (index, data) in batch.iter().enumerate() {
            let this = &data.instrumentation_scope;
            let is_this = |first: usize| same_scope(&batch[first].instrumentation_scope, this);
            let scope = if let Some(scope) = previous.filter(|&scope| is_this(firsts[scope])) {
                scope
            } else if let Some(scope) = firsts.iter().position(|&first| is_this(first)) {
                scope
            } else {
                firsts.push(index);
                firsts.len() - 1
            };
            self.span_scopes.push(scope);
            previous = Some(scope);
        }
    }
}

/// `Span`, fields 1 to 16.
fn span(out: &mut Vec<u8>, data: &SpanData) {
    let context = &data.span_context;
    bytes(out, 1, &context.trace_id().to_bytes());
    bytes(out, 2, &context.span_id().to_bytes());
    trace_state(out, 3, context.trace_state());
    if data.parent_span_id != SpanId::INVALID {
        bytes(out, 4, &data.parent_span_id.to_bytes());
    }
    string(out, 5, &data.name);
    varint(out, 6, span_kind(&data.span_kind));
    fixed64(out, 7, unix_nanos(data.start_time));
    fixed64(out, 8, unix_nanos(data.end_time));
    for attribute in &data.attributes {
        key_value(out, 9, attribute.key.as_str(), &attribute.value);
    }
    varint(out, 10, data.dropped_attributes_count);
    for event in data.events.iter() {
        message(out, 11, Width::Short, |out| span_event(out, event));
    }
    varint(out, 12, data.events.dropped_count);
    for link in data.links.iter() {
        message(out, 13, Width::Short, |out| span_link(out, link));
    }
    varint(out, 14, data.links.dropped_count);
    // Always present, as the conversion always sets it, even when empty (unset).
    message(out, 15, Width::Short, |out| status(out, &data.status));
    fixed32(
        out,
        16,
        flags(context.trace_flags(), data.parent_span_is_remote),
    );
}

/// `Span.Event`.
fn span_event(out: &mut Vec<u8>, event: &Event) {
    fixed64(out, 1, unix_nanos(event.timestamp));
    string(out, 2, &event.name);
    for attribute in &event.attributes {
        key_value(out, 3, attribute.key.as_str(), &attribute.value);
    }
    varint(out, 4, event.dropped_attributes_count);
}

/// `Span.Link`.
fn span_link(out: &mut Vec<u8>, link: &Link) {
    let context = &link.span_context;
    bytes(out, 1, &context.trace_id().to_bytes());
    bytes(out, 2, &context.span_id().to_bytes());
    trace_state(out, 3, context.trace_state());
    for attribute in &link.attributes {
        key_value(out, 4, attribute.key.as_str(), &attribute.value);
    }
    varint(out, 5, link.dropped_attributes_count);
    fixed32(out, 6, flags(context.trace_flags(), context.is_remote()));
}

/// `Status`: the message (field 2) only for errors, then the code (field 3).
fn status(out: &mut Vec<u8>, status: &Status) {
    let code = match status {
        Status::Unset => 0,
        Status::Ok => 1,
        Status::Error { description } => {
            string(out, 2, description);
            2
        }
    };
    varint(out, 3, code);
}

/// `InstrumentationScope`: name, version, attributes (no dropped count in the SDK).
fn instrumentation_scope(out: &mut Vec<u8>, scope: &InstrumentationScope) {
    string(out, 1, scope.name());
    string(out, 2, scope.version().unwrap_or_default());
    for attribute in scope.attributes() {
        key_value(out, 3, attribute.key.as_str(), &attribute.value);
    }
}

/// The W3C `tracestate` header (`key=value,key=value`) written without building it.
fn trace_state(out: &mut Vec<u8>, tag: u32, state: &TraceState) {
    let (count, text) = state
        .into_iter()
        .fold((0, 0), |(count, len), (key, value)| {
            (count + 1, len + key.len() + 1 + value.len())
        });
    if count == 0 {
        return;
    }
    let len = text + count - 1;
    field_key(out, tag, WireType::LengthDelimited);
    put_varint(out, len as u64);
    for (index, (key, value)) in state.into_iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(key.as_bytes());
        out.push(b'=');
        out.extend_from_slice(value.as_bytes());
    }
}

/// Field `tag`, a `KeyValue`: the key, then the value as an `AnyValue`. Most attributes
/// hold one value, whose length is known before writing it, and so the pair's: no
/// guessed length prefixes to fill in afterwards.
fn key_value(out: &mut Vec<u8>, tag: u32, key: &str, value: &Value) {
    let Some(value_len) = scalar_len(value) else {
        message(out, tag, Width::Short, |out| {
            string(out, 1, key);
            message(out, 2, Width::Short, |out| any_value(out, value));
        });
        return;
    };
    let key_len = if key.is_empty() {
        0
    } else {
        1 + encoded_len_varint(key.len() as u64) + key.len()
    };
    let pair_len = key_len + 1 + encoded_len_varint(value_len as u64) + value_len;
    field_key(out, tag, WireType::LengthDelimited);
    put_varint(out, pair_len as u64);
    string(out, 1, key);
    field_key(out, 2, WireType::LengthDelimited);
    put_varint(out, value_len as u64);
    any_value(out, value);
}

/// The length of a one-value `AnyValue`; `None` for arrays.
#[inline]
fn scalar_len(value: &Value) -> Option<usize> {
    match value {
        Value::String(value) => {
            let len = value.as_str().len();
            Some(1 + encoded_len_varint(len as u64) + len)
        }
        Value::Bool(_) => Some(2),
        Value::I64(value) => Some(1 + encoded_len_varint(value.cast_unsigned())),
        Value::F64(_) => Some(9),
        _ => None,
    }
}

/// The one field of an `AnyValue` set. A oneof field is written even when it holds its
/// type's default (`false`, 0, ""), unlike a plain field.
#[inline]
fn any_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::String(value) => string_value(out, value),
        Value::Bool(value) => bool_value(out, *value),
        Value::I64(value) => int_value(out, *value),
        Value::F64(value) => double_value(out, *value),
        Value::Array(array) => message(out, 5, Width::Short, |out| array_value(out, array)),
        // A kind of value this code predates: an empty AnyValue, where opentelemetry-proto
        // would panic.
        _ => {}
    }
}

/// `ArrayValue`: each element an `AnyValue` in field 1.
fn array_value(out: &mut Vec<u8>, array: &Array) {
    fn each<T>(out: &mut Vec<u8>, values: &[T], write: impl Fn(&mut Vec<u8>, &T)) {
        for value in values {
            message(out, 1, Width::Short, |out| write(out, value));
        }
    }
    match array {
        Array::Bool(values) => each(out, values, |out, value| bool_value(out, *value)),
        Array::I64(values) => each(out, values, |out, value| int_value(out, *value)),
        Array::F64(values) => each(out, values, |out, value| double_value(out, *value)),
        Array::String(values) => each(out, values, string_value),
        // See `any_value`: an empty array.
        _ => {}
    }
}

#[inline]
fn string_value(out: &mut Vec<u8>, value: &StringValue) {
    let value = value.as_str();
    field_key(out, 1, WireType::LengthDelimited);
    put_varint(out, value.len() as u64);
    out.extend_from_slice(value.as_bytes());
}

#[inline]
fn bool_value(out: &mut Vec<u8>, value: bool) {
    field_key(out, 2, WireType::Varint);
    put_varint(out, u64::from(value));
}

/// An int64: negative values are ten-byte varints of their two's complement.
#[inline]
fn int_value(out: &mut Vec<u8>, value: i64) {
    field_key(out, 3, WireType::Varint);
    put_varint(out, value.cast_unsigned());
}

#[inline]
fn double_value(out: &mut Vec<u8>, value: f64) {
    field_key(out, 4, WireType::SixtyFourBit);
    out.extend_from_slice(&value.to_le_bytes());
}

/// `Span.SpanKind`.
fn span_kind(kind: &SpanKind) -> u32 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

/// The W3C trace flags, plus `SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK` (0x100) and, for a
/// remote parent or link, `SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK` (0x200).
fn flags(trace_flags: TraceFlags, remote: bool) -> u32 {
    u32::from(trace_flags.to_u8()) | 0x100 | if remote { 0x200 } else { 0 }
}

/// Nanoseconds since the Unix epoch; 0 (left out) before it.
fn unix_nanos(time: SystemTime) -> u64 {
    // Truncated as opentelemetry-proto's `to_nanos` does: u64 nanoseconds last until 2554.
    #[allow(clippy::cast_possible_truncation)]
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}

/// The scopes `group_spans_by_resource_and_scope` would put in one `ScopeSpans`:
/// `InstrumentationScope`'s `==`, which sorts copies of the attributes, only when the
/// cheap comparisons leave a doubt.
fn same_scope(a: &InstrumentationScope, b: &InstrumentationScope) -> bool {
    a.name() == b.name()
        && a.version() == b.version()
        && a.schema_url() == b.schema_url()
        && (a.attributes().eq(b.attributes()) || a == b)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use opentelemetry::KeyValue;
    use opentelemetry::trace::{SpanContext, TraceId};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use prost::Message as _;

    use super::*;

    const TRACE: u128 = 0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c;

    fn at(nanos: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(nanos)
    }

    fn context(span: u64, flags: TraceFlags, remote: bool, state: TraceState) -> SpanContext {
        SpanContext::new(
            TraceId::from(TRACE),
            SpanId::from(span),
            flags,
            remote,
            state,
        )
    }

    fn span_data(
        name: &'static str,
        kind: SpanKind,
        (span, parent): (u64, u64),
        scope: &InstrumentationScope,
        attributes: Vec<KeyValue>,
    ) -> SpanData {
        SpanData {
            span_context: context(span, TraceFlags::SAMPLED, false, TraceState::NONE),
            parent_span_id: SpanId::from(parent),
            parent_span_is_remote: false,
            span_kind: kind,
            name: name.into(),
            start_time: at(1_700_000_000_123_456_789),
            end_time: at(1_700_000_000_124_000_000),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: scope.clone(),
        }
    }

    /// Every kind of attribute value, the defaults a oneof still writes (`false`, 0, ""),
    /// a negative int64 (a ten-byte varint) and a value longer than a one-byte length.
    fn every_value() -> Vec<KeyValue> {
        vec![
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("empty", ""),
            KeyValue::new("http.response.status_code", 200),
            KeyValue::new("zero", 0),
            KeyValue::new("negative", -42),
            KeyValue::new("ratio", 0.25),
            KeyValue::new("yes", true),
            KeyValue::new("no", false),
            KeyValue::new("user_agent.original", "x".repeat(300)),
            KeyValue::new("", "a value without a key"),
            KeyValue::new("bools", Value::Array(Array::Bool(vec![true, false]))),
            KeyValue::new("ints", Value::Array(Array::I64(vec![1, -1, i64::MAX]))),
            KeyValue::new("floats", Value::Array(Array::F64(vec![1.5, -0.0]))),
            KeyValue::new(
                "strings",
                Value::Array(Array::String(vec!["a".into(), "".into()])),
            ),
            KeyValue::new("no_values", Value::Array(Array::I64(Vec::new()))),
        ]
    }

    /// A `redis` scope with these attributes.
    fn redis_scope(attributes: [(&'static str, &'static str); 2]) -> InstrumentationScope {
        InstrumentationScope::builder("redis")
            .with_version("1.8.1")
            .with_schema_url("https://opentelemetry.io/schemas/1.30.0")
            .with_attributes(attributes.map(|(key, value)| KeyValue::new(key, value)))
            .build()
    }

    /// A SERVER span under a remote parent, with a trace state, every kind of value, an
    /// error, events, links and every dropped count.
    fn server_span(scope: &InstrumentationScope) -> SpanData {
        let state =
            TraceState::from_key_value([("vendor", "a1"), ("congo", "t61rcWkgMzE")]).unwrap();
        let mut server = span_data(
            "POST /v1/cart/{user_id}",
            SpanKind::Server,
            (0x1111, 0xb7ad_6b71_6920_3331),
            scope,
            every_value(),
        );
        server.span_context = context(0x1111, TraceFlags::SAMPLED, false, state.clone());
        server.parent_span_is_remote = true;
        server.dropped_attributes_count = 3;
        server.status = Status::error("redis timed out");
        server.events.events = vec![
            Event::new(
                "exception",
                at(1_700_000_000_123_500_000),
                vec![
                    KeyValue::new("exception.type", "Timeout"),
                    KeyValue::new("exception.escaped", false),
                ],
                1,
            ),
            Event::new("no time, no attributes", UNIX_EPOCH, Vec::new(), 0),
        ];
        server.events.dropped_count = 2;
        server.links.links = vec![
            Link::new(
                context(0x7777, TraceFlags::SAMPLED, true, state),
                vec![KeyValue::new("link.reason", "retry")],
                4,
            ),
            Link::new(
                context(0x8888, TraceFlags::default(), false, TraceState::NONE),
                Vec::new(),
                0,
            ),
        ];
        server.links.dropped_count = 5;
        server
    }

    /// Three scopes interleaved (one of them twice, its attributes in another order); a
    /// request tree; a root; every kind of span and status.
    fn varied_batch() -> Vec<SpanData> {
        let service = InstrumentationScope::builder("cart-service").build();
        let redis = redis_scope([("library.kind", "database"), ("library.language", "rust")]);
        let redis_again = redis_scope([("library.language", "rust"), ("library.kind", "database")]);
        let cache = redis_scope([("library.kind", "cache"), ("library.language", "rust")]);
        let mut internal = span_data(
            "cart.add_item",
            SpanKind::Internal,
            (0x2222, 0x1111),
            &service,
            Vec::new(),
        );
        internal.status = Status::Ok;
        let client = span_data(
            "EVALSHA",
            SpanKind::Client,
            (0x3333, 0x2222),
            &redis,
            vec![
                KeyValue::new("db.system.name", "redis"),
                KeyValue::new("server.port", 6379),
            ],
        );
        let mut root = span_data(
            "publish",
            SpanKind::Producer,
            (0x4444, 0),
            &service,
            Vec::new(),
        );
        root.span_context = context(0x4444, TraceFlags::default(), false, TraceState::NONE);
        root.start_time = UNIX_EPOCH;
        let consumer = span_data(
            "consume",
            SpanKind::Consumer,
            (0x5555, 0x4444),
            &redis_again,
            Vec::new(),
        );
        let cached = span_data(
            "GET",
            SpanKind::Client,
            (0x6666, 0x4444),
            &cache,
            Vec::new(),
        );
        vec![
            server_span(&service),
            client,
            internal,
            root,
            cached,
            consumer,
        ]
    }

    fn resource() -> Resource {
        Resource::builder_empty()
            .with_schema_url(
                [
                    KeyValue::new("service.name", "cart-service"),
                    KeyValue::new("k8s.pod.name", "cart-0"),
                    KeyValue::new("replicas", 3),
                ],
                "https://opentelemetry.io/schemas/1.30.0",
            )
            .build()
    }

    fn ours(resource: &Resource, batch: &[SpanData]) -> Vec<u8> {
        let mut out = Vec::new();
        RequestEncoder::new(resource).encode(batch, &mut out);
        out
    }

    /// What opentelemetry-otlp's tonic exporter sends for the batch.
    fn theirs(resource: &Resource, batch: &[SpanData]) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(
                batch.to_vec(),
                &ResourceAttributesWithSchema::from(resource),
            ),
        }
    }

    #[test]
    fn a_varied_batch_encodes_as_opentelemetry_proto_and_prost_do() {
        let (resource, batch) = (resource(), varied_batch());

        let ours = ours(&resource, &batch);

        let theirs = theirs(&resource, &batch);
        let decoded = ExportTraceServiceRequest::decode(&ours[..]).unwrap();
        assert_eq!(decoded, theirs, "decoded, our request differs");
        assert_eq!(decoded.resource_spans[0].scope_spans.len(), 3);
        assert_eq!(&ours[..], &theirs.encode_to_vec()[..], "the bytes differ");
    }

    #[test]
    fn every_length_prefix_width_is_written_as_prost_writes_it() {
        let resource = resource();
        let scope = InstrumentationScope::builder("cart-service").build();
        // Under 128 bytes: one byte where two were set aside for a span.
        let tiny = span_data("", SpanKind::Internal, (1, 0), &scope, Vec::new());
        // Over 16 KiB: three bytes for a span.
        let large = span_data(
            "large",
            SpanKind::Internal,
            (2, 1),
            &scope,
            vec![KeyValue::new("blob", "y".repeat(20_000))],
        );
        // Over 2 MiB: four bytes for the span, the scope's spans and the request.
        let huge = span_data(
            "huge",
            SpanKind::Internal,
            (3, 1),
            &scope,
            vec![KeyValue::new("blob", "z".repeat(3 << 20))],
        );
        for batch in [vec![], vec![tiny.clone()], vec![tiny, large, huge]] {
            let ours = ours(&resource, &batch);

            assert_eq!(
                &ours[..],
                &theirs(&resource, &batch).encode_to_vec()[..],
                "{} spans",
                batch.len()
            );
        }
    }

    #[test]
    fn an_encoder_used_again_writes_each_batch_as_a_new_one_would() {
        let (resource, batch) = (resource(), varied_batch());
        let mut encoder = RequestEncoder::new(&resource);
        let mut out = Vec::new();
        encoder.encode(&batch, &mut out);
        let first_len = out.len();

        encoder.encode(&batch[2..], &mut out);

        assert_eq!(&out[..first_len], &ours(&resource, &batch)[..]);
        assert_eq!(&out[first_len..], &ours(&resource, &batch[2..])[..]);
    }

    #[test]
    fn without_a_resource_the_request_has_an_empty_one() {
        let empty = Resource::builder_empty().build();
        let batch = varied_batch();

        let ours = ours(&empty, &batch);

        assert_eq!(&ours[..], &theirs(&empty, &batch).encode_to_vec()[..]);
    }
}
