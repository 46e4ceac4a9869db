//! The JSON log line: one object a line, `timestamp` (RFC 3339, UTC), `level`, `target`,
//! `message`, the event's fields, and the request's `trace_id` and `span_id`. Written
//! straight into the line buffer; a criterion benchmark keeps it under a microsecond.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};

/// The layer that writes JSON lines: `timestamp` (RFC 3339, UTC), `level`, `target`,
/// `message`, the event's fields, and `trace_id`/`span_id` when the event happens inside
/// a sampled or unsampled request span. Each line is formatted into a buffer of this
/// thread's and handed to `W`'s writer whole, in one write.
///
/// A layer of its own rather than a `FormatEvent` in tracing-subscriber's fmt layer,
/// which passes every piece through a `dyn fmt::Write` and keeps per-span state these
/// lines never read: the access line took 4 600 instructions there (callgrind, README
/// "What the profiles showed").
#[derive(Debug)]
pub struct JsonLayer<W> {
    make_writer: W,
}

impl<W> JsonLayer<W> {
    /// Lines go to the writers `make_writer` makes, one per line.
    pub fn new(make_writer: W) -> Self {
        Self { make_writer }
    }
}

impl<S, W> Layer<S> for JsonLayer<W>
where
    S: Subscriber,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        thread_local! {
            static LINE: RefCell<String> = const { RefCell::new(String::new()) };
        }
        let write = |line: &mut String| {
            line.clear();
            format_line(line, event, SystemTime::now());
            // Like the fmt layer: a line that cannot be written has nowhere to be reported.
            let _ = self
                .make_writer
                .make_writer_for(event.metadata())
                .write_all(line.as_bytes());
        };
        // Should this thread's buffer be in use (tracing drops events dispatched while one
        // is), a line gets a buffer of its own rather than a panic.
        let reused = LINE
            .try_with(|line| line.try_borrow_mut().map(|mut line| write(&mut line)))
            .is_ok_and(|written| written.is_ok());
        if !reused {
            write(&mut String::new());
        }
    }
}

/// Appends the event's JSON line, newline included, to `line`.
fn format_line(line: &mut String, event: &Event<'_>, now: SystemTime) {
    let metadata = event.metadata();
    line.push_str("{\"timestamp\":\"");
    write_timestamp(line, now);
    line.push_str("\",\"level\":\"");
    line.push_str(metadata.level().as_str());
    line.push_str("\",\"target\":");
    push_json_str(line, metadata.target());
    event.record(&mut JsonFields { line });
    if let Some((trace_id, span_id)) = super::span::current_ids() {
        line.push_str(",\"trace_id\":\"");
        push_hex(line, &trace_id.to_bytes());
        line.push_str("\",\"span_id\":\"");
        push_hex(line, &span_id.to_bytes());
        line.push('"');
    }
    line.push_str("}\n");
}

/// The event's fields, each `,"name":value`.
struct JsonFields<'a> {
    line: &'a mut String,
}

impl JsonFields<'_> {
    fn key(&mut self, field: &Field) {
        self.line.push_str(",\"");
        push_json_str_body(self.line, field.name());
        self.line.push_str("\":");
    }

    /// `value`, already valid JSON, after the field's key.
    fn raw(&mut self, field: &Field, value: &str) {
        self.key(field);
        self.line.push_str(value);
    }
}

impl Visit for JsonFields<'_> {
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
        self.key(field);
        push_json_str(self.line, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        self.line.push('"');
        // Writing into a `String` cannot fail.
        write!(Escaped(&mut *self.line), "{value:?}").unwrap_or(());
        self.line.push('"');
    }
}

/// Writes `now` as RFC 3339 in UTC with nanoseconds (`2026-11-26T01:09:22.726982044Z`).
/// The date and time up to the second are formatted once a second per thread.
fn write_timestamp(line: &mut String, now: SystemTime) {
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
            // Writing into a `String` cannot fail.
            write!(
                prefix,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                time.year(),
                u8::from(time.month()),
                time.day(),
                time.hour(),
                time.minute(),
                time.second()
            )
            .unwrap_or(());
            *cached = seconds;
        }
        line.push_str(prefix);
    });
    let mut fraction = *b".000000000Z";
    let mut nanos = since_epoch.subsec_nanos();
    for digit in fraction[1..10].iter_mut().rev() {
        *digit = b'0' + u8::try_from(nanos % 10).unwrap_or(0);
        nanos /= 10;
    }
    line.push_str(std::str::from_utf8(&fraction).unwrap_or_default());
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

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// `bytes` in lowercase hex, into `out` (twice as long).
pub(crate) fn hex(out: &mut [u8], bytes: &[u8]) {
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX_DIGITS[usize::from(byte >> 4)];
        pair[1] = HEX_DIGITS[usize::from(byte & 0xf)];
    }
}

/// Appends `bytes` (an id: up to 16 of them) in lowercase hex, in one push: a push per
/// digit cost about 8 instructions each, checking the 32 digits are text about 1.
fn push_hex(out: &mut String, bytes: &[u8]) {
    let mut digits = [0; 32];
    let digits = &mut digits[..(bytes.len() * 2).min(32)];
    hex(digits, bytes);
    out.push_str(std::str::from_utf8(digits).unwrap_or_default());
}

/// A writer that escapes what goes through it for the inside of a JSON string.
struct Escaped<'a>(&'a mut String);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, value: &str) -> fmt::Result {
        push_json_str_body(self.0, value);
        Ok(())
    }
}

/// Appends `value` as a JSON string, escaped as `serde_json` escapes it.
pub(crate) fn push_json_str(out: &mut String, value: &str) {
    out.push('"');
    push_json_str_body(out, value);
    out.push('"');
}

/// Whether any byte of `bytes` is one a JSON string escapes, tested a word at a time:
/// a byte below 0x20, or equal to `"` or `\\`, sets its high bit in the word's mask
/// (bytes from 0x80 up never do: the `!word` term clears their high bit).
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let zero_byte = |word: u64| word.wrapping_sub(ONES) & !word & HIGHS;
    let (words, rest) = bytes.as_chunks::<8>();
    words.iter().any(|word| {
        let word = u64::from_ne_bytes(*word);
        let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
        control
            | zero_byte(word ^ (ONES * u64::from(b'"')))
            | zero_byte(word ^ (ONES * u64::from(b'\\')))
            != 0
    }) || rest.iter().any(|&byte| ESCAPED[usize::from(byte)])
}

/// The bytes a JSON string escapes: control characters, `"` and `\\`.
const ESCAPED: [bool; 256] = {
    let mut escaped = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        escaped[byte] = true;
        byte += 1;
    }
    escaped[b'"' as usize] = true;
    escaped[b'\\' as usize] = true;
    escaped
};

/// Appends `value` escaped, without the quotes around it. A value with nothing to escape
/// (nearly every one) is found so eight bytes at a time and copied whole; otherwise runs
/// of bytes that need no escape are found by a plain scan and copied whole.
fn push_json_str_body(out: &mut String, value: &str) {
    if !needs_escape(value.as_bytes()) {
        out.push_str(value);
        return;
    }
    let bytes = value.as_bytes();
    let mut start = 0;
    while let Some(offset) = bytes[start..]
        .iter()
        .position(|&byte| ESCAPED[usize::from(byte)])
    {
        let index = start + offset;
        out.push_str(&value[start..index]);
        let byte = bytes[index];
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            _ => {
                out.push_str("\\u00");
                push_hex(out, &[byte]);
            }
        }
        start = index + 1;
    }
    out.push_str(&value[start..]);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use opentelemetry::trace::{SpanId, TraceId};

    use super::*;

    fn timestamp(seconds: u64, nanos: u32) -> String {
        let mut out = String::new();
        write_timestamp(&mut out, UNIX_EPOCH + Duration::new(seconds, nanos));
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
        let mut out = String::new();
        push_hex(&mut out, &trace_id.to_bytes());
        assert_eq!(out, trace_id.to_string());
        let mut out = [0; 16];
        hex(&mut out, &span_id.to_bytes());
        assert_eq!(&out, b"00f067aa0ba902b7");
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

    /// The lines a [`JsonLayer`] writes while `log` runs.
    fn lines_of(log: impl FnOnce()) -> Vec<serde_json::Value> {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::layer::SubscriberExt as _;

        #[derive(Clone, Default)]
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Shared {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let shared = Shared::default();
        let writer = shared.clone();
        let subscriber =
            tracing_subscriber::registry().with(JsonLayer::new(move || writer.clone()));
        tracing::subscriber::with_default(subscriber, log);
        let bytes = shared.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    #[test]
    fn each_event_is_one_json_line_with_its_fields() {
        let lines = lines_of(|| {
            tracing::warn!(target: "access", message = "request", route = "/v1/cart/{user_id}",
                status = 404_u16, latency_ms = 1.5, retried = false, shard = -3_i64,
                cause = ?"a \"quoted\" cause");
        });
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["target"], "access");
        assert_eq!(line["message"], "request");
        assert_eq!(line["route"], "/v1/cart/{user_id}");
        assert_eq!(line["status"], 404);
        assert_eq!(line["latency_ms"], 1.5);
        assert_eq!(line["retried"], false);
        assert_eq!(line["shard"], -3);
        assert_eq!(line["cause"], "\"a \\\"quoted\\\" cause\"");
        assert!(line.get("trace_id").is_none(), "no request, no trace id");
    }

    #[test]
    fn an_event_logged_while_a_line_is_formatted_does_not_break_the_line() {
        struct Noisy;
        impl fmt::Debug for Noisy {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                tracing::info!(message = "from inside Debug");
                f.write_str("noisy")
            }
        }
        let lines = lines_of(|| tracing::info!(message = "outer", value = ?Noisy));
        // tracing drops events dispatched from inside a dispatch; the line survives it.
        let messages: Vec<_> = lines.iter().map(|line| line["message"].clone()).collect();
        assert_eq!(messages, ["outer"]);
        assert_eq!(lines[0]["value"], "noisy");
    }

    #[test]
    fn every_byte_that_needs_an_escape_is_found_at_every_place_in_a_word() {
        let special = (0u8..0x20).chain([b'"', b'\\']);
        for byte in special {
            for len in 1..=17 {
                for at in 0..len {
                    let mut value = vec![b'a'; len];
                    value[at] = byte;
                    let value = String::from_utf8(value).unwrap();
                    let mut out = String::new();
                    push_json_str(&mut out, &value);
                    assert_eq!(out, serde_json::to_string(&value).unwrap(), "{value:?}");
                }
            }
        }
        // Neighbours of the special bytes, and bytes from 0x80 up, pass unescaped.
        let plain = "\u{7f}!#[]^_`ÿé€😀 ~ \u{20}";
        let padded = format!("{plain}{plain}{plain}");
        assert!(!needs_escape(padded.as_bytes()));
        let mut out = String::new();
        push_json_str_body(&mut out, &padded);
        assert_eq!(out, padded);
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut out = String::new();
        push_json_str(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(out, r#""a\"b\\c\nd\u0001é""#);
        assert_eq!(
            serde_json::from_str::<String>(&out).unwrap(),
            "a\"b\\c\nd\u{1}é"
        );
    }
}
