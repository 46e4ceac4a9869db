//! A direct connection for tests to arrange and inspect data, beside the service: to a
//! standalone server, or through redis-rs's cluster client to a cluster, behind one type so
//! a test reads the same in both modes.

use cart_service::store::{CoalescedNode, Connection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;

/// A connection to a standalone server or to a cluster: the service's own type, so
/// commands go through `query_async` and redis-rs's `AsyncCommands` as on either alone.
pub type DirectConnection = Connection;

/// A direct connection to `url`: a cluster connection when it is a comma-separated seed
/// list ([`is_cluster_url`]), such as the shared URL under `CART_TEST_REDIS=cluster`, and a
/// plain multiplexed connection otherwise.
pub async fn redis_client(url: &str) -> DirectConnection {
    if is_cluster_url(url) {
        Connection::Cluster(cluster_connection(url.split(',')).await)
    } else {
        let connection = redis::Client::open(url)
            .unwrap_or_else(|e| panic!("redis url {url}: {e}"))
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| panic!("connect to the test redis at {url}: {e}"));
        Connection::Standalone(connection)
    }
}

/// Whether `url` names a cluster: a comma-separated list of seed node URLs.
#[must_use]
pub fn is_cluster_url(url: &str) -> bool {
    url.contains(',')
}

/// A cluster connection through the seed nodes `urls`, with redis-rs's defaults (retries
/// with backoff, slot refresh on MOVED and on a dead node).
pub(crate) async fn cluster_connection<'a>(
    urls: impl IntoIterator<Item = &'a str>,
) -> ClusterConnection<CoalescedNode> {
    let urls: Vec<&str> = urls.into_iter().collect();
    ClusterClient::new(urls.clone())
        .unwrap_or_else(|e| panic!("cluster seed urls {urls:?}: {e}"))
        .get_async_generic_connection()
        .await
        .unwrap_or_else(|e| panic!("connect to the test cluster at {urls:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comma_list_is_a_cluster_and_one_url_is_not() {
        let cases = [
            ("redis://127.0.0.1:7000,redis://127.0.0.1:7001", true),
            ("redis://127.0.0.1:6379", false),
            ("rediss://127.0.0.1:6379", false),
        ];

        let judged: Vec<bool> = cases.iter().map(|(url, _)| is_cluster_url(url)).collect();

        let expected: Vec<bool> = cases.iter().map(|(_, cluster)| *cluster).collect();
        assert_eq!(judged, expected);
    }
}
