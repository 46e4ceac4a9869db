//! Everything that speaks Redis: the connection ([`connection`]), the Lua scripts that do
//! every read-then-write atomically, and the typed cart operations handlers call.
//!
//! Data model: a cart is the hash `cart:{<user_id>}` (field product id,
//! value quantity); an idempotency record is the hash `idem:{<user_id>}:<key>`. Both of a
//! user's keys share the hash tag `{<user_id>}`, so every script touches one cluster slot.

mod client;
mod coalesce;
mod connection;

use std::sync::LazyLock;
use std::time::Duration;

use redis::{AsyncCommands, Cmd, ErrorKind, Script, ServerErrorKind, Value};

use crate::config::Config;
use crate::domain::{Id, IdempotencyKey};

pub use client::{CoalescedNode, Connection};
pub use connection::RedisConnection;

/// How long a finished request's response is kept for replay.
pub const IDEMPOTENCY_RECORD_TTL: Duration = Duration::from_hours(24);

static ADD_ITEM: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/add_item.lua")));
static SET_ITEM: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/set_item.lua")));

/// A Redis failure, as handlers see it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No live connection: Redis is down or being reconnected to.
    #[error("not connected to redis")]
    NotConnected,
    /// A command failed or timed out.
    #[error("redis command failed: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis holds something this service never writes.
    #[error("unexpected data in redis: {0}")]
    Corrupt(String),
    /// The write was applied on the primary, but fewer replicas than `REDIS_WAIT_REPLICAS`
    /// confirmed it in `REDIS_WAIT_TIMEOUT_MS`: it may be lost in a failover.
    #[error("the write reached {acknowledged} of {wanted} replicas in time")]
    NotReplicated { acknowledged: i64, wanted: u8 },
}

/// The caps and lifetimes every write obeys.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_items: u32,
    pub max_quantity: u32,
    /// Seconds; 0 means carts never expire.
    pub ttl_seconds: u64,
}

impl Limits {
    #[must_use]
    pub fn from_config(config: &Config) -> Self {
        Self {
            max_items: config.cart.max_items,
            max_quantity: config.cart.max_quantity,
            ttl_seconds: config.cart.ttl.as_secs(),
        }
    }
}

/// What an add did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// The line now holds this many units.
    Total(u32),
    /// The line holds `current` units and the add would pass the per-line cap; nothing changed.
    QuantityCap { current: u32 },
    /// The cart already holds the most distinct products allowed; nothing changed.
    ItemCap,
    /// The Idempotency-Key's request already ran; nothing changed, replay its stored result.
    Replay { status: u16, quantity: u32 },
    /// The Idempotency-Key was used with another request; nothing changed.
    KeyReused,
}

/// An Idempotency-Key and the fingerprint of the request that carries it.
#[derive(Debug, Clone, Copy)]
pub struct Idempotency<'a> {
    pub key: &'a IdempotencyKey,
    pub fingerprint: &'a str,
}

/// How many replicas a write must reach before it is answered, and for how long to wait.
#[derive(Debug, Clone, Copy)]
pub struct Replication {
    pub replicas: u8,
    pub timeout: Duration,
}

impl Replication {
    /// `None` when writes do not wait (`REDIS_WAIT_REPLICAS=0`).
    #[must_use]
    pub fn from_config(config: &Config) -> Option<Self> {
        let redis = &config.redis;
        (redis.wait_replicas > 0).then_some(Self {
            replicas: redis.wait_replicas,
            timeout: redis.wait_timeout,
        })
    }
}

/// The typed cart operations. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    redis: RedisConnection,
    limits: Limits,
    replication: Option<Replication>,
}

impl Store {
    #[must_use]
    pub fn new(redis: RedisConnection, limits: Limits) -> Self {
        Self {
            redis,
            limits,
            replication: None,
        }
    }

    /// Makes every write wait for replicas as `replication` says.
    #[must_use]
    pub fn with_replication(mut self, replication: Option<Replication>) -> Self {
        self.replication = replication;
        self
    }

    #[must_use]
    pub fn limits(&self) -> Limits {
        self.limits
    }

    #[must_use]
    pub fn connection(&self) -> &RedisConnection {
        &self.redis
    }

    /// Adds `quantity` units of `product`, capped per line and per cart, refreshing the TTL.
    /// With an Idempotency-Key, looking the key up, the add and storing its result are one
    /// atomic step: whatever fails, a retry finds the stored result or nothing.
    pub async fn add_item(
        &self,
        user: &Id,
        product: &Id,
        quantity: u32,
        idempotency: Option<Idempotency<'_>>,
    ) -> Result<Added, StoreError> {
        let cart = cart_key(user);
        let mut call = match idempotency {
            Some(Idempotency { key, .. }) => {
                evalsha(&ADD_ITEM, &[&cart, &idempotency_key(user, key)])
            }
            None => evalsha(&ADD_ITEM, &[&cart]),
        };
        call.arg(product.as_str())
            .arg(quantity)
            .arg(self.limits.max_quantity)
            .arg(self.limits.max_items)
            .arg(self.limits.ttl_seconds);
        if let Some(Idempotency { fingerprint, .. }) = idempotency {
            call.arg(fingerprint).arg(IDEMPOTENCY_RECORD_TTL.as_secs());
        }
        let (reply, acknowledged) = self.write(&ADD_ITEM, call).await?;
        let reply: Vec<i64> = redis::from_redis_value(reply)
            .map_err(|e| StoreError::Corrupt(format!("add_item replied {e}")))?;
        // A refusal changed nothing, so it needs no replica; anything else may be a change.
        let changed = !matches!(*reply.as_slice(), [-1 | -2 | -4, _]);
        if changed {
            self.check_replicated(acknowledged)?;
        }
        match *reply.as_slice() {
            [1, total] => Ok(Added::Total(to_u32(total)?)),
            [-1, current] => Ok(Added::QuantityCap {
                current: to_u32(current)?,
            }),
            [-2, _] => Ok(Added::ItemCap),
            [2, status, quantity] => Ok(Added::Replay {
                status: u16::try_from(status)
                    .map_err(|_| StoreError::Corrupt(format!("stored status {status}")))?,
                quantity: to_u32(quantity)?,
            }),
            [-4, _] => Ok(Added::KeyReused),
            _ => Err(StoreError::Corrupt(format!("add_item returned {reply:?}"))),
        }
    }

    /// Sets a line to exactly `quantity` (0 removes it). `None` when a new line would pass
    /// the item cap.
    pub async fn set_item(
        &self,
        user: &Id,
        product: &Id,
        quantity: u32,
    ) -> Result<Option<u32>, StoreError> {
        let mut call = evalsha(&SET_ITEM, &[&cart_key(user)]);
        call.arg(product.as_str())
            .arg(quantity)
            .arg(self.limits.max_items)
            .arg(self.limits.ttl_seconds);
        let (reply, acknowledged) = self.write(&SET_ITEM, call).await?;
        let result: i64 = redis::from_redis_value(reply)
            .map_err(|e| StoreError::Corrupt(format!("set_item replied {e}")))?;
        if result == -2 {
            return Ok(None);
        }
        self.check_replicated(acknowledged)?;
        to_u32(result).map(Some)
    }

    /// The cart's lines, sorted by product id.
    pub async fn get_cart(&self, user: &Id) -> Result<Vec<(String, u32)>, StoreError> {
        let key = cart_key(user);
        let reply: redis::Value = self
            .redis
            .run("HGETALL", |mut conn| async move { conn.hgetall(key).await })
            .await?;
        // Converted outside `run`: redis-rs counts a conversion error as a broken connection.
        let mut lines = cart_lines(reply)?;
        lines.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(lines)
    }

    /// Deletes the whole cart.
    pub async fn clear(&self, user: &Id) -> Result<(), StoreError> {
        let mut call = redis::cmd("DEL");
        call.arg(cart_key(user));
        let (_, acknowledged) = self.write_command("DEL", call, None).await?;
        self.check_replicated(acknowledged)
    }

    /// Runs a script that writes: its reply, and how many replicas confirmed the write
    /// when writes wait for them.
    async fn write(
        &self,
        script: &'static Script,
        call: Cmd,
    ) -> Result<(Value, Option<i64>), StoreError> {
        self.write_command("EVALSHA", call, Some(script)).await
    }

    /// Runs `call`, followed by `WAIT` in the same round trip (and, in a cluster, on the
    /// same node, as both go in one pipeline) when writes wait for replicas. A script Redis
    /// does not know yet (NOSCRIPT: a fresh or restarted node) is loaded and run again.
    async fn write_command(
        &self,
        command: &'static str,
        call: Cmd,
        script: Option<&'static Script>,
    ) -> Result<(Value, Option<i64>), StoreError> {
        let replication = self.replication;
        self.redis
            .run(command, |mut conn| async move {
                let mut pipeline = redis::pipe();
                pipeline.add_command(call);
                if let Some(Replication { replicas, timeout }) = replication {
                    pipeline
                        .cmd("WAIT")
                        .arg(replicas)
                        .arg(timeout_millis(timeout));
                }
                let mut reply = match (pipeline.query_async::<Vec<Value>>(&mut conn).await, script)
                {
                    (Err(error), Some(script)) if is_noscript(&error) => {
                        load(&mut conn, script).await?;
                        pipeline.query_async::<Vec<Value>>(&mut conn).await?
                    }
                    (reply, _) => reply?,
                };
                // The pipeline's replies: the command's, then WAIT's when it was sent.
                let acknowledged = match replication.map(|_| reply.pop()) {
                    None => None,
                    Some(Some(Value::Int(acknowledged))) => Some(acknowledged),
                    Some(other) => {
                        return Err(redis::RedisError::from((
                            ErrorKind::UnexpectedReturnType,
                            "WAIT did not answer a number",
                            format!("{other:?}"),
                        )));
                    }
                };
                let value = reply.pop().ok_or_else(|| {
                    redis::RedisError::from((
                        ErrorKind::UnexpectedReturnType,
                        "empty pipeline reply",
                    ))
                })?;
                Ok((value, acknowledged))
            })
            .await
    }

    /// An error when writes wait for replicas and fewer than asked confirmed this one.
    fn check_replicated(&self, acknowledged: Option<i64>) -> Result<(), StoreError> {
        match (self.replication, acknowledged) {
            (Some(Replication { replicas, .. }), Some(acknowledged))
                if acknowledged < i64::from(replicas) =>
            {
                Err(StoreError::NotReplicated {
                    acknowledged,
                    wanted: replicas,
                })
            }
            _ => Ok(()),
        }
    }

    /// `PING` with the connection's response timeout.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.redis
            .run("PING", |mut conn| async move { conn.ping().await })
            .await
    }
}

/// `EVALSHA <sha> <number of keys> <keys>`, to which the caller adds the arguments.
fn evalsha(script: &Script, keys: &[&str]) -> Cmd {
    let mut call = redis::cmd("EVALSHA");
    call.arg(script.get_hash()).arg(keys.len()).arg(keys);
    call
}

fn is_noscript(error: &redis::RedisError) -> bool {
    error.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

/// Loads `script` (in a cluster, on every node).
async fn load(conn: &mut Connection, script: &Script) -> redis::RedisResult<()> {
    script.prepare_invoke().load_async(conn).await.map(drop)
}

fn timeout_millis(timeout: Duration) -> u64 {
    u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)
}

/// The Redis key of a user's cart.
#[must_use]
pub fn cart_key(user: &Id) -> String {
    format!("cart:{{{}}}", user.as_str())
}

/// The Redis key of a user's idempotency record for `key`.
#[must_use]
pub fn idempotency_key(user: &Id, key: &IdempotencyKey) -> String {
    format!("idem:{{{}}}:{}", user.as_str(), key.as_str())
}

/// The lines of an HGETALL reply (RESP2 array or RESP3 map), each product id's bytes
/// moved into its `String`.
///
/// By hand rather than through redis-rs's `FromRedisValue` for pairs, which spent about
/// 6 000 instructions on a 20-line cart going through `&str` for every quantity (callgrind).
fn cart_lines(reply: redis::Value) -> Result<Vec<(String, u32)>, StoreError> {
    use redis::Value;
    let line = |product, quantity| match (product, quantity) {
        (Value::BulkString(product), Value::BulkString(quantity)) => {
            let quantity = parse_quantity(&quantity).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "quantity {:?} is not a number",
                    String::from_utf8_lossy(&quantity)
                ))
            })?;
            let product = String::from_utf8(product)
                .map_err(|_| StoreError::Corrupt("a product id is not UTF-8".into()))?;
            Ok((product, quantity))
        }
        other => Err(StoreError::Corrupt(format!("HGETALL replied {other:?}"))),
    };
    match reply {
        Value::Array(fields) => {
            let mut fields = fields.into_iter();
            let mut lines = Vec::with_capacity(fields.len() / 2);
            while let Some(product) = fields.next() {
                let quantity = fields.next().ok_or_else(|| {
                    StoreError::Corrupt("HGETALL replied an odd number of fields".into())
                })?;
                lines.push(line(product, quantity)?);
            }
            Ok(lines)
        }
        Value::Map(pairs) => pairs.into_iter().map(|(p, q)| line(p, q)).collect(),
        other => Err(StoreError::Corrupt(format!("HGETALL replied {other:?}"))),
    }
}

/// A quantity as Redis stores it: decimal digits of a `u32`.
fn parse_quantity(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0_u32, |number, &digit| {
        if digit.is_ascii_digit() {
            number.checked_mul(10)?.checked_add(u32::from(digit - b'0'))
        } else {
            None
        }
    })
}

fn to_u32(value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("quantity {value} out of range")))
}

#[cfg(test)]
mod tests {
    use redis::Value;

    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn quantities_are_the_decimal_digits_of_a_u32() {
        assert_eq!(parse_quantity(b"0"), Some(0));
        assert_eq!(parse_quantity(b"42"), Some(42));
        assert_eq!(parse_quantity(b"4294967295"), Some(u32::MAX));
        for bad in [
            &b""[..],
            b"4294967296",
            b"-1",
            b"+1",
            b"1.5",
            b" 1",
            b"many",
        ] {
            assert_eq!(parse_quantity(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hgetall_replies_become_lines_in_resp2_and_resp3() {
        let array = Value::Array(vec![bulk("p-2"), bulk("5"), bulk("p-1"), bulk("7")]);
        let map = Value::Map(vec![(bulk("p-2"), bulk("5")), (bulk("p-1"), bulk("7"))]);
        for reply in [array, map] {
            assert_eq!(
                cart_lines(reply).unwrap(),
                [("p-2".to_owned(), 5), ("p-1".to_owned(), 7)]
            );
        }
        assert!(cart_lines(Value::Array(vec![])).unwrap().is_empty());
    }

    #[test]
    fn replies_this_service_never_writes_are_corrupt() {
        let replies = [
            Value::Array(vec![bulk("p-1")]),
            Value::Array(vec![bulk("p-1"), bulk("many")]),
            Value::Array(vec![bulk("p-1"), Value::Int(1)]),
            Value::Array(vec![Value::BulkString(vec![0xff]), bulk("1")]),
            Value::Map(vec![(bulk("p-1"), Value::Nil)]),
            Value::Int(3),
        ];
        for reply in replies {
            let shown = format!("{reply:?}");
            assert!(
                matches!(cart_lines(reply), Err(StoreError::Corrupt(_))),
                "{shown}"
            );
        }
    }
}
