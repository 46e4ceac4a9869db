//! What a Redis connection is and how one is opened: to one server (a `MultiplexedConnection`)
//! or to a cluster (a redis-rs `ClusterConnection`, one multiplexed connection to each node,
//! routing each command by its key's slot), with the TCP settings and TLS files of the
//! configuration. Plain TCP and Unix sockets, each cluster node's included, are
//! [`Coalescing`]; a `rediss://` connection verifies the server's certificate and name
//! against the public roots or `REDIS_CA_FILE`, and presents the client certificate when
//! one is configured.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::{ClusterConnection, Connect};
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::io::tcp::socket2;
use redis::io::tcp::{TcpSettings, socket2::TcpKeepalive};
use redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, Cmd, ConnectionAddr, ConnectionInfo,
    IntoConnectionInfo, Pipeline, RedisFuture, RedisResult, TlsCertificates, Value,
};
use tokio::io::{AsyncRead, AsyncWrite};

use super::coalesce::Coalescing;
use crate::config::{RedisConfig, RedisMode};

/// Attempts redis-rs makes for a cluster command whose node failed, after the first.
const CLUSTER_RETRIES: u32 = 3;

/// What the supervisor connects to.
#[derive(Debug)]
pub(super) enum Target {
    Standalone {
        info: ConnectionInfo,
        client: Client,
        config: AsyncConnectionConfig,
    },
    Cluster(ClusterClient),
}

/// A connection to Redis, as commands see it: to one server, or to a cluster, where each
/// command goes to the node that serves its key's slot.
#[derive(Clone)]
pub enum Connection {
    Standalone(MultiplexedConnection),
    Cluster(ClusterConnection<CoalescedNode>),
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Standalone(_) => "Connection::Standalone",
            Self::Cluster(_) => "Connection::Cluster",
        })
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Standalone(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Standalone(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Standalone(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}

impl Connection {
    /// Whether Redis answers: PING; in a cluster, every slot has a primary and the
    /// connection reaches each primary (redis-rs's own fan-out PING skips a primary it has
    /// no connection to, so it cannot tell).
    pub async fn ping(&mut self) -> RedisResult<()> {
        let cluster = match self {
            Self::Standalone(connection) => {
                return redis::cmd("PING").query_async(connection).await;
            }
            Self::Cluster(cluster) => cluster,
        };
        let slots = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(cluster)
            .await?;
        for (host, port) in primaries(slots)? {
            let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
            cluster.route_command(redis::cmd("PING"), routing).await?;
        }
        Ok(())
    }
}

/// The primaries of a `CLUSTER SLOTS` reply, or an error when a slot has none.
fn primaries(reply: Value) -> RedisResult<Vec<(String, u16)>> {
    let unexpected = || {
        redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "CLUSTER SLOTS answered something else than ranges of slots",
        ))
    };
    let Value::Array(ranges) = reply else {
        return Err(unexpected());
    };
    let mut covered = 0_u32;
    let mut primaries = Vec::new();
    for range in ranges {
        let Value::Array(range) = range else {
            return Err(unexpected());
        };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(primary))) =
            (range.first(), range.get(1), range.get(2))
        else {
            return Err(unexpected());
        };
        let (Some(host), Some(Value::Int(port))) = (primary.first(), primary.get(1)) else {
            return Err(unexpected());
        };
        let host: String = redis::from_redis_value_ref(host).map_err(|_| unexpected())?;
        let port = u16::try_from(*port).map_err(|_| unexpected())?;
        covered += u32::try_from(end - start + 1).map_err(|_| unexpected())?;
        if !primaries.contains(&(host.clone(), port)) {
            primaries.push((host, port));
        }
    }
    if covered < 16384 {
        return Err(redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ClusterDown),
            "slots without a primary",
            format!("{} of 16384 slots have none", 16384 - covered),
        )));
    }
    Ok(primaries)
}

/// A cluster node's connection: a `MultiplexedConnection` over a [`Coalescing`] socket,
/// like the standalone one. Our own type only because redis-rs opens a cluster's node
/// connections through its `Connect` trait, and its own implementation writes unbuffered.
#[derive(Debug, Clone)]
pub struct CoalescedNode(MultiplexedConnection);

impl ConnectionLike for CoalescedNode {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.0.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.0.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

impl Connect for CoalescedNode {
    fn connect_with_config<'a, T>(info: T, config: AsyncConnectionConfig) -> RedisFuture<'a, Self>
    where
        T: IntoConnectionInfo + Send + 'a,
    {
        Box::pin(async move {
            let info = info.into_connection_info()?;
            let connection = match info.addr() {
                ConnectionAddr::Tcp(..) => {
                    // Without a bound, a node whose address no longer answers (a deleted
                    // pod's IP) holds this for the kernel's SYN retries, over a minute, while
                    // redis-rs's slot refresh holds every other request waiting on it.
                    let timeout =
                        Duration::from_millis(NODE_CONNECT_TIMEOUT_MS.load(Ordering::Relaxed));
                    tokio::time::timeout(timeout, open_tcp(&info, &config))
                        .await
                        .map_err(|_| {
                            std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
                        })??
                }
                _ => {
                    Client::open(info)?
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?
                }
            };
            Ok(Self(connection))
        })
    }
}

/// `REDIS_CONNECT_TIMEOUT_MS` for the cluster nodes' TCP connects. A static because
/// redis-rs hands `Connect` the timeout inside a config whose fields are private; one
/// process serves one configuration.
static NODE_CONNECT_TIMEOUT_MS: AtomicU64 = AtomicU64::new(1000);

/// The TCP settings every connection uses: keepalive and `TCP_USER_TIMEOUT` catch peers
/// that vanished without a reset.
fn tcp_settings() -> TcpSettings {
    let keepalive = TcpKeepalive::new()
        .with_time(Duration::from_secs(10))
        .with_interval(Duration::from_secs(5))
        .with_retries(3);
    TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(keepalive)
        .set_user_timeout(Duration::from_secs(10))
}

/// The TLS files of the configuration, when there are any.
fn certificates(redis: &RedisConfig) -> Option<TlsCertificates> {
    let client_tls = redis
        .client_cert_file
        .as_ref()
        .zip(redis.client_key_file.as_ref())
        .map(|(certificate, key)| ClientTlsConfig {
            client_cert: certificate.contents().to_vec(),
            client_key: key.contents().to_vec(),
        });
    let root_cert = redis.ca_file.as_ref().map(|ca| ca.contents().to_vec());
    (client_tls.is_some() || root_cert.is_some()).then_some(TlsCertificates {
        client_tls,
        root_cert,
    })
}

/// What to connect to, as the configuration says.
pub(super) fn target(redis: &RedisConfig) -> RedisResult<Target> {
    let tcp = tcp_settings();
    match redis.mode {
        RedisMode::Standalone => {
            let info = redis.url().clone().set_tcp_settings(tcp);
            let client = match certificates(redis) {
                Some(certificates) => Client::build_with_tls(info.clone(), certificates)?,
                None => Client::open(info.clone())?,
            };
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(redis.connect_timeout))
                .set_response_timeout(Some(redis.response_timeout));
            Ok(Target::Standalone {
                info,
                client,
                config,
            })
        }
        RedisMode::Cluster => {
            // Redirections (MOVED, ASK) are followed at once; a node that fails is retried
            // a few times, shortly, within twice the response timeout all told, so a
            // request for a failed primary's slots ends in a 503 rather than waiting out the
            // failover.
            NODE_CONNECT_TIMEOUT_MS.store(
                u64::try_from(redis.connect_timeout.as_millis()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
            let mut builder = ClusterClientBuilder::new(redis.urls.clone())
                .connection_timeout(redis.connect_timeout)
                .response_timeout(redis.response_timeout)
                .overall_response_timeout(Some(redis.response_timeout * 2))
                .retries(CLUSTER_RETRIES)
                .min_retry_wait(10)
                .max_retry_wait(200)
                .tcp_settings(tcp);
            if let Some(certificates) = certificates(redis) {
                builder = builder.certs(certificates);
            }
            builder.build().map(Target::Cluster)
        }
    }
}

/// Opens a connection. Plain TCP and Unix sockets get [`Coalescing`] writes; TLS goes
/// through redis-rs's own connector (rustls holds its records in a buffer of its own).
pub(super) async fn open(target: &Target) -> RedisResult<Connection> {
    let (info, client, config) = match target {
        Target::Standalone {
            info,
            client,
            config,
        } => (info, client, config),
        Target::Cluster(client) => {
            // How redis-rs takes a node connection type of the caller's.
            let connection = client
                .get_async_generic_connection::<CoalescedNode>()
                .await?;
            return Ok(Connection::Cluster(connection));
        }
    };
    let connection = match info.addr() {
        ConnectionAddr::Tcp(..) => open_tcp(info, config).await?,
        ConnectionAddr::Unix(path) => {
            let stream = tokio::net::UnixStream::connect(path).await?;
            multiplexed(info, config, stream).await?
        }
        _ => {
            client
                .get_multiplexed_async_connection_with_config(config)
                .await?
        }
    };
    Ok(Connection::Standalone(connection))
}

/// A TCP connection to `info` with its TCP settings, over a [`Coalescing`] socket.
async fn open_tcp(
    info: &ConnectionInfo,
    config: &AsyncConnectionConfig,
) -> RedisResult<MultiplexedConnection> {
    let ConnectionAddr::Tcp(host, port) = info.addr() else {
        unreachable!("open_tcp is called for TCP addresses only")
    };
    let stream = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
    let settings = info.tcp_settings();
    stream.set_nodelay(settings.nodelay())?;
    let socket = socket2::SockRef::from(&stream);
    if let Some(keepalive) = settings.keepalive() {
        socket.set_tcp_keepalive(keepalive)?;
    }
    socket.set_tcp_user_timeout(settings.user_timeout())?;
    multiplexed(info, config, stream).await
}

async fn multiplexed<S>(
    info: &ConnectionInfo,
    config: &AsyncConnectionConfig,
    stream: S,
) -> RedisResult<MultiplexedConnection>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (connection, driver) = MultiplexedConnection::new_with_config(
        info.redis_settings(),
        Coalescing::new(stream),
        config.clone(),
    )
    .await?;
    // The task ends by itself once every handle to the connection is dropped.
    tokio::spawn(driver);
    Ok(connection)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Instant;

    use redis::io::tcp::socket2::{Domain, Socket, Type};

    use super::*;

    /// A loopback address where connects hang, as for a node whose IP vanished: a listener
    /// with a backlog of one, filled and never accepted, so the kernel drops further SYNs.
    fn black_hole() -> (Socket, Vec<std::net::TcpStream>, SocketAddr) {
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        listener
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        listener.listen(0).unwrap();
        let address = listener.local_addr().unwrap().as_socket().unwrap();
        let filled = (0..2)
            .filter_map(|_| {
                std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200)).ok()
            })
            .collect();
        (listener, filled, address)
    }

    #[tokio::test]
    async fn a_cluster_node_that_never_answers_the_connect_fails_within_the_connect_timeout() {
        let (_listener, _filled, address) = black_hole();
        NODE_CONNECT_TIMEOUT_MS.store(300, Ordering::Relaxed);
        let started = Instant::now();

        let result = tokio::time::timeout(
            Duration::from_secs(10),
            CoalescedNode::connect_with_config(
                format!("redis://{address}"),
                AsyncConnectionConfig::new(),
            ),
        )
        .await;

        let took = started.elapsed();
        assert!(
            matches!(result, Ok(Err(ref error)) if error.is_timeout()),
            "the connect did not time out: {result:?}"
        );
        assert!(took < Duration::from_secs(2), "the connect took {took:?}");
    }
}
