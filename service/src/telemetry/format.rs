//! The JSON log line: one object a line, `timestamp` (RFC 3339, UTC), `level`, `target`,
//! `message`, the event's fields, and the request's `trace_id` and `span_id`. Written
//! straight into the line buffer; a criterion benchmark keeps it under a microsecond.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The JSON line format: `timestamp` (RFC 3339, UTC), `level`, `target`, `message`, the
/// event's fields, and `trace_id`/`span_id` when the event happens inside a sampled or
/// unsampled request span. Written straight into the line buffer, without building a map.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        writer.write_str("{\"timestamp\":\"")?;
        write_timestamp(&mut writer, SystemTime::now())?;
        writer.write_str("\",\"level\":\"")?;
        writer.write_str(metadata.level().as_str())?;
        writer.write_str("\",\"target\":")?;
        write_json_str(&mut writer, metadata.target())?;
        let mut fields = JsonFields {
            writer: &mut writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        if let Some((trace_id, span_id)) = super::span::current_ids() {
            writer.write_str(",\"trace_id\":\"")?;
            writer.write_str(hex(&mut [0; 32], &trace_id.to_bytes()))?;
            writer.write_str("\",\"span_id\":\"")?;
            writer.write_str(hex(&mut [0; 16], &span_id.to_bytes()))?;
            writer.write_char('"')?;
        }
        writer.write_str("}\n")
    }
}

struct JsonFields<'a, 'w> {
    writer: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl JsonFields<'_, '_> {
    fn key(&mut self, field: &Field) -> fmt::Result {
        self.writer.write_str(",\"")?;
        write_json_str_body(self.writer, field.name())?;
        self.writer.write_str("\":")
    }

    /// `value`, already valid JSON, after the field's key.
    fn raw(&mut self, field: &Field, value: &str) {
        if self.result.is_ok() {
            self.result = self.key(field).and_then(|()| self.writer.write_str(value));
        }
    }
}

impl Visit for JsonFields<'_, '_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.raw(field, json_float(&mut [0; 40], value));
        } else {
            self.record_str(field, &value.to_string());
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.raw(field, itoa::Buffer::new().format(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.raw(field, itoa::Buffer::new().format(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.raw(field, if value { "true" } else { "false" });
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_ok() {
            self.result = self
                .key(field)
                .and_then(|()| write_json_str(self.writer, value));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_ok() {
            self.result = self.key(field).and_then(|()| {
                self.writer.write_char('"')?;
                write!(Escaped(&mut *self.writer), "{value:?}")?;
                self.writer.write_char('"')
            });
        }
    }
}

/// Writes `now` as RFC 3339 in UTC with nanoseconds (`2026-11-26T01:09:22.726982044Z`).
/// The date and time up to the second are formatted once a second per thread.
fn write_timestamp(writer: &mut impl fmt::Write, now: SystemTime) -> fmt::Result {
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    SECOND.with_borrow_mut(|(cached, prefix)| {
        if *cached != seconds {
            let time = OffsetDateTime::from_unix_timestamp(i64::try_from(seconds).unwrap_or(0))
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
            prefix.clear();
            write!(
                prefix,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                time.year(),
                u8::from(time.month()),
                time.day(),
                time.hour(),
                time.minute(),
                time.second()
            )?;
            *cached = seconds;
        }
        writer.write_str(prefix)
    })?;
    let mut fraction = *b".000000000Z";
    let mut nanos = since_epoch.subsec_nanos();
    for digit in fraction[1..10].iter_mut().rev() {
        *digit = b'0' + u8::try_from(nanos % 10).unwrap_or(0);
        nanos /= 10;
    }
    writer.write_str(std::str::from_utf8(&fraction).unwrap_or(".000000000Z"))
}

/// A finite float as a JSON number that always reads back as a float: `2.000` or `2.0`,
/// not the `2` Display writes (a log pipeline would then type `latency_ms` as an
/// integer). A value of whole thousandths (latencies in milliseconds to the microsecond)
/// is written with three decimals from integers (`1.924`, `2.000`); any other in Debug's
/// shortest round-trip form, which has a `.0` or an exponent.
fn json_float(out: &mut [u8; 40], value: f64) -> &str {
    let thousandths = (value * 1000.0).round();
    #[allow(clippy::float_cmp)] // exactly: only values that are whole thousandths
    if thousandths.abs() < 1e15 && thousandths / 1000.0 == value {
        #[allow(clippy::cast_possible_truncation)] // below 1e15 in magnitude: exact
        let thousandths = thousandths as i64;
        let mut buffer = itoa::Buffer::new();
        let whole = buffer.format((thousandths / 1000).unsigned_abs());
        let fraction = (thousandths % 1000).unsigned_abs();
        let sign = usize::from(thousandths < 0);
        out[0] = b'-';
        out[sign..sign + whole.len()].copy_from_slice(whole.as_bytes());
        let dot = sign + whole.len();
        out[dot] = b'.';
        for (index, digit) in [fraction / 100, fraction / 10 % 10, fraction % 10]
            .into_iter()
            .enumerate()
        {
            out[dot + 1 + index] = b'0' + u8::try_from(digit).unwrap_or(0);
        }
        return std::str::from_utf8(&out[..dot + 4]).unwrap_or("0.0");
    }
    let mut cursor = std::io::Cursor::new(&mut out[..]);
    if std::io::Write::write_fmt(&mut cursor, format_args!("{value:?}")).is_err() {
        return "0.0";
    }
    let len = usize::try_from(cursor.position()).unwrap_or(0);
    std::str::from_utf8(&out[..len]).unwrap_or("0.0")
}

/// `bytes` in lowercase hex, in `out` (twice as long).
pub(crate) fn hex<'a>(out: &'a mut [u8], bytes: &[u8]) -> &'a str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
    std::str::from_utf8(out).unwrap_or_default()
}

/// A writer that escapes what goes through it for the inside of a JSON string.
struct Escaped<'a, W: fmt::Write>(&'a mut W);

impl<W: fmt::Write> fmt::Write for Escaped<'_, W> {
    fn write_str(&mut self, value: &str) -> fmt::Result {
        write_json_str_body(self.0, value)
    }
}

/// Writes `value` as a JSON string, escaping what JSON requires.
pub(crate) fn write_json_str(writer: &mut impl fmt::Write, value: &str) -> fmt::Result {
    writer.write_char('"')?;
    write_json_str_body(writer, value)?;
    writer.write_char('"')
}

/// Writes `value` escaped, without the quotes around it.
fn write_json_str_body(writer: &mut impl fmt::Write, value: &str) -> fmt::Result {
    let mut start = 0;
    for (index, byte) in value.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        writer.write_str(&value[start..index])?;
        if escape.is_empty() {
            write!(writer, "\\u{byte:04x}")?;
        } else {
            writer.write_str(escape)?;
        }
        start = index + 1;
    }
    writer.write_str(&value[start..])
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use opentelemetry::trace::{SpanId, TraceId};

    use super::*;

    fn timestamp(seconds: u64, nanos: u32) -> String {
        let mut out = String::new();
        write_timestamp(&mut out, UNIX_EPOCH + Duration::new(seconds, nanos)).unwrap();
        out
    }

    #[test]
    fn timestamps_are_rfc_3339_utc_with_nanoseconds_also_across_seconds() {
        assert_eq!(
            timestamp(1_795_656_562, 726_982_044),
            "2026-11-26T01:29:22.726982044Z"
        );
        assert_eq!(
            timestamp(1_795_656_562, 5),
            "2026-11-26T01:29:22.000000005Z"
        );
        assert_eq!(
            timestamp(1_795_656_563, 0),
            "2026-11-26T01:29:23.000000000Z",
            "the cached second moves on"
        );
        assert_eq!(timestamp(0, 0), "1970-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn ids_are_written_as_their_w3c_hex() {
        let trace_id = TraceId::from(0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c_u128);
        let span_id = SpanId::from(0x00f0_67aa_0ba9_02b7_u64);
        assert_eq!(
            hex(&mut [0; 32], &trace_id.to_bytes()),
            trace_id.to_string()
        );
        assert_eq!(hex(&mut [0; 16], &span_id.to_bytes()), "00f067aa0ba902b7");
    }

    #[test]
    fn floats_stay_floats_in_json() {
        for (value, written) in [
            (2.0, "2.000"),
            (1.924, "1.924"),
            (0.001, "0.001"),
            (-12.05, "-12.050"),
            (-0.25, "-0.250"),
            (1_234_567.891, "1234567.891"),
            (0.000_1, "0.0001"),
            (1.234_56, "1.23456"),
            (1e21, "1e21"),
            (f64::MAX, "1.7976931348623157e308"),
        ] {
            let text = json_float(&mut [0; 40], value).to_owned();
            assert_eq!(text, written);
            let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert!(parsed.is_f64(), "{text}");
            assert!(
                (parsed.as_f64().unwrap() - value).abs() < f64::EPSILON,
                "{text}"
            );
        }
    }

    #[test]
    fn display_fields_are_escaped_in_place() {
        let mut out = String::new();
        write!(Escaped(&mut out), "{:?}", "say \"hi\"\n").unwrap();
        assert_eq!(out, r#"\"say \\\"hi\\\"\\n\""#);
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut out = String::new();
        write_json_str(&mut out, "a\"b\\c\nd\u{1}é").unwrap();
        assert_eq!(out, r#""a\"b\\c\nd\u0001é""#);
        assert_eq!(
            serde_json::from_str::<String>(&out).unwrap(),
            "a\"b\\c\nd\u{1}é"
        );
    }
}
