//! OTLP/gRPC over TLS to a Jaeger whose receiver requires it: certificates from a private
//! CA (`cart_test_support::tls`), the server's for 127.0.0.1, a client certificate Jaeger
//! demands, and gzip. The service trusts the CA only through `OTEL_EXPORTER_OTLP_CERTIFICATE`
//! (it is in no system store), and a second service without the client certificate is
//! refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cart_test_support::poll::never;
use cart_test_support::tls::{Issued, Pki};

use crate::{Jaeger, add_with_traceparent, otel_env, random_hex, span, start_service};

/// A Jaeger configuration overlay: its OTLP/gRPC receiver serves TLS with `server` and
/// requires a client certificate from `pki`'s CA.
fn jaeger_overlay(dir: &Path, pki: &Pki, server: &Issued) -> PathBuf {
    let path = dir.join("jaeger-tls.yaml");
    let yaml = format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        tls:\n          \
         cert_file: {}\n          key_file: {}\n          client_ca_file: {}\n",
        server.cert.display(),
        server.key.display(),
        pki.ca.display()
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_endpoint_with_a_private_ca_client_certificate_and_gzip_gets_the_trace() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), "otlp");
    let server = pki.issue("server", &["127.0.0.1", "localhost"]);
    let client = pki.issue("client", &["cart-service"]);
    let jaeger = Jaeger::start_with(Some(&jaeger_overlay(dir.path(), &pki, &server))).await;
    let endpoint = format!("https://127.0.0.1:{}", jaeger.grpc_port);
    let path = |path: &PathBuf| path.to_str().unwrap().to_owned();
    let mut anonymous_env = otel_env(&endpoint, "grpc", "100");
    anonymous_env.extend([
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", path(&pki.ca)),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip".to_owned()),
    ]);
    let mut env = anonymous_env.clone();
    env.extend([
        ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", path(&client.cert)),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", path(&client.key)),
    ]);
    let service = start_service(&env).await;
    let anonymous = start_service(&anonymous_env).await;
    let (trace_id, parent) = (random_hex(16), random_hex(8));
    let anonymous_trace_id = random_hex(16);

    add_with_traceparent(&anonymous, &anonymous_trace_id, &parent).await;
    let response = add_with_traceparent(&service, &trace_id, &parent).await;

    assert_eq!(response.status(), 200);
    let trace = jaeger.trace(&trace_id, 3).await;
    span(&trace, "POST /v1/cart/{user_id}");
    span(&trace, "cart.add_item");
    span(&trace, "EVALSHA");
    // Both batches were due within 100 ms; the refused one gets more than ten times that.
    never(
        Duration::from_secs(1),
        "jaeger takes spans from a client without a certificate",
        || jaeger.has_trace(&anonymous_trace_id),
    )
    .await;
    assert!(
        !jaeger.has_trace(&anonymous_trace_id).await,
        "jaeger took spans from a client without a certificate: {}",
        anonymous.log()
    );
}
