//! The validated values of the cart domain: identifiers, quantities and idempotency keys.
//!
//! Parsing into these types is the one place input is checked; everything past a handler's
//! first lines holds values that are known to be well-formed.

/// A value that is not valid where it was given: the field it is for and why, which the
/// HTTP edge answers as a 422 problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl Invalid {
    fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// Longest identifier accepted, in bytes.
pub const MAX_ID_LEN: usize = 64;
/// Longest Idempotency-Key accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// A user or product identifier: 1 to 64 bytes of `[A-Za-z0-9._:@-]`.
///
/// The alphabet keeps ids safe inside Redis hash tags (`{` and `}` never occur) and in
/// URLs without escaping.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(String);

impl Id {
    /// Validates `value` as the identifier named `field` (used in the 422 message).
    pub fn parse(field: &str, value: String) -> Result<Self, Invalid> {
        if value.is_empty() || value.len() > MAX_ID_LEN {
            return Err(Invalid::new(
                field,
                format!("must be 1 to {MAX_ID_LEN} bytes long"),
            ));
        }
        if !value.bytes().all(is_id_byte) {
            return Err(Invalid::new(
                field,
                "may contain only letters, digits and . _ : @ -",
            ));
        }
        Ok(Self(value))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    #[must_use]
    pub fn into_string(self) -> String {
        self.0
    }
}

/// A quantity checked against `1..=max` (or `0..=max` where zero means "remove").
pub fn quantity(value: i64, allow_zero: bool, max: u32) -> Result<u32, Invalid> {
    let min = i64::from(!allow_zero);
    match u32::try_from(value) {
        Ok(q) if value >= min && q <= max => Ok(q),
        _ => Err(Invalid::new(
            "quantity",
            format!("must be between {min} and {max}"),
        )),
    }
}

/// An `Idempotency-Key` header value: 1 to 255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &[u8]) -> Result<Self, Invalid> {
        if raw.is_empty()
            || raw.len() > MAX_IDEMPOTENCY_KEY_LEN
            || !raw.iter().all(u8::is_ascii_graphic)
        {
            return Err(Invalid::new(
                "Idempotency-Key",
                format!("must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"),
            ));
        }
        // Every byte is ASCII, so this cannot fail; the fallback keeps it total.
        Ok(Self(String::from_utf8_lossy(raw).into_owned()))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What identifies an add request for idempotency: the same key must come with the same
/// product and quantity. The user is already part of the record's Redis key.
///
/// It is the canonical request itself rather than a digest: it is at most 76 bytes, so a
/// hash would save nothing and could collide.
#[must_use]
pub fn add_fingerprint(product: &Id, quantity: u32) -> String {
    format!("{}\n{quantity}", product.as_str())
}

fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_the_documented_alphabet() {
        Id::parse("user_id", "aZ09._:@-".into()).unwrap();
        Id::parse("user_id", "x".repeat(MAX_ID_LEN)).unwrap();
    }

    #[test]
    fn ids_reject_empty_long_and_foreign_bytes() {
        for bad in ["", "a b", "a/b", "{x}", "é", "a\u{0}"] {
            assert!(
                Id::parse("user_id", bad.into()).is_err(),
                "{bad:?} was accepted"
            );
        }
        assert!(Id::parse("user_id", "x".repeat(MAX_ID_LEN + 1)).is_err());
    }

    #[test]
    fn quantity_bounds() {
        assert_eq!(quantity(1, false, 999).unwrap(), 1);
        assert_eq!(quantity(999, false, 999).unwrap(), 999);
        assert_eq!(quantity(0, true, 999).unwrap(), 0);
        for bad in [0, -1, 1000, i64::MAX] {
            assert!(quantity(bad, false, 999).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn idempotency_keys_are_visible_ascii() {
        IdempotencyKey::parse(b"abc-123_{x}").unwrap();
        IdempotencyKey::parse(&[b'k'; 255]).unwrap();
        for bad in [&b""[..], b"a b", b"\x7f", &[b'k'; 256]] {
            assert!(IdempotencyKey::parse(bad).is_err());
        }
    }

    #[test]
    fn fingerprint_separates_product_and_quantity() {
        let a = Id::parse("p", "p-1".into()).unwrap();
        let b = Id::parse("p", "p-11".into()).unwrap();
        assert_ne!(add_fingerprint(&a, 12), add_fingerprint(&b, 2));
        assert_eq!(add_fingerprint(&a, 2), add_fingerprint(&a, 2));
    }
}
