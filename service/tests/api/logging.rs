//! Logs of the real binary: JSON lines on stdout and in the rotating `LOG_FILE`, which is
//! flushed on shutdown; an unwritable `LOG_FILE` degrades to stdout with one warning; a
//! stalled stdout costs lines, counted, not memory, and does not stop the file; dropped
//! spans are reported; a Redis outage is logged once per interval, not once per request.

use std::time::Duration;

use cart_service::error::UNAVAILABLE_LOG_INTERVAL;
use cart_test_support::cart_service_bin;
use cart_test_support::poll::{eventually, never};
use cart_test_support::process::Service;
use cart_test_support::redis::{RedisServer, unique_user};

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The value of the counter `name` (no labels) at the service's `/metrics`.
async fn counter(service: &Service, name: &str) -> u64 {
    let metrics = reqwest::get(service.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn log_file_gets_the_same_json_lines_and_is_flushed_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let log_file = dir.path().join("app").join("cart-service.log");
    let mut service = Service::start(
        cart_service_bin!(),
        &[("LOG_FILE", log_file.to_str().unwrap())],
    )
    .await;
    let user = unique_user();

    let response = reqwest::Client::new()
        .post(service.url(&format!("/v1/cart/{user}")))
        .json(&serde_json::json!({"product_id": "p-1", "quantity": 1}))
        .send()
        .await
        .unwrap();
    service.terminate();
    let (status, _) = service.wait_exit(Duration::from_secs(10)).await;

    assert_eq!(response.status(), 200);
    assert!(status.success(), "{}", service.log());
    let files: Vec<_> = std::fs::read_dir(log_file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("cart-service.log")
        })
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let lines = json_lines(&std::fs::read_to_string(&files[0]).unwrap());
    let access = lines
        .iter()
        .find(|l| l["target"] == "access" && l["route"] == "/v1/cart/{user_id}")
        .unwrap_or_else(|| panic!("no access line in the file: {lines:?}"));
    assert_eq!(access["status"], 200);
    assert!(
        access["trace_id"].as_str().is_some_and(|t| t.len() == 32),
        "{access}"
    );
    assert_eq!(
        lines.last().unwrap()["message"],
        "shutdown complete",
        "the last lines were flushed, the request's before the shutdown's: {lines:?}"
    );
    let stdout = json_lines(&service.log());
    assert!(
        stdout.iter().any(|l| l["trace_id"] == access["trace_id"]),
        "stdout has the same line"
    );
}

#[tokio::test]
async fn an_unwritable_log_file_degrades_to_stdout_with_one_warning() {
    let service = Service::start(
        cart_service_bin!(),
        &[("LOG_FILE", "/proc/cart-service/cart-service.log")],
    )
    .await;

    let response = reqwest::get(service.url("/livez")).await.unwrap();

    assert_eq!(response.status(), 200);
    let warnings = || -> Vec<serde_json::Value> {
        json_lines(&service.log())
            .into_iter()
            .filter(|l| {
                l["level"] == "WARN"
                    && l["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("LOG_FILE"))
            })
            .collect()
    };
    // Lines reach stdout in batches, within a tenth of a second.
    eventually(
        Duration::from_secs(5),
        "the LOG_FILE warning reaches stdout",
        || async { !warnings().is_empty() },
    )
    .await;
    // Any second warning would have come with the first.
    never(
        Duration::from_millis(300),
        "a second LOG_FILE warning reaches stdout",
        || async { warnings().len() > 1 },
    )
    .await;
    assert_eq!(warnings().len(), 1, "{}", service.log());
}

/// Spans the SDK's batch processor had to drop (its queue full) are reported in a warning
/// (its own, once, with the total at shutdown), so an operator sees traces are incomplete.
#[tokio::test]
async fn dropped_spans_are_logged_as_a_warning() {
    let service = Service::start(
        cart_service_bin!(),
        &[
            ("OTEL_TRACES_SAMPLER", "always_on"),
            // Nothing listens there; the batch is only due in a minute anyway.
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "1"),
            ("OTEL_BSP_SCHEDULE_DELAY", "60000"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    for _ in 0..5 {
        let response = client
            .post(service.url(&format!("/v1/cart/{}", unique_user())))
            .json(&serde_json::json!({"product_id": "p-1", "quantity": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    let started = std::time::Instant::now();
    let warning = loop {
        let log = service.log();
        if let Some(line) = json_lines(&log).into_iter().find(|line| {
            line["target"] == "opentelemetry_sdk"
                && line["name"] == "BatchSpanProcessor.SpanDroppingStarted"
                && line["level"] == "WARN"
        }) {
            break line;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no dropped-span warning: {log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        warning["message"].as_str().unwrap().contains("dropped"),
        "{warning}"
    );
}

/// A stdout nobody reads (a stalled log collector) costs log lines, counted in
/// `log_lines_dropped_total`, never requests or memory: the writer's queue holds at most
/// 16 384 lines and then drops.
#[tokio::test]
async fn a_stalled_stdout_drops_lines_instead_of_holding_them() {
    const REQUESTS: u64 = 64_000;
    const CONCURRENCY: u64 = 16;
    let service =
        Service::start_with_stalled_stdout(cart_service_bin!(), &[("RUST_LOG", "info")]).await;
    let client = reqwest::Client::new();

    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (client, url) = (client.clone(), service.url("/livez"));
        senders.spawn(async move {
            for _ in 0..REQUESTS / CONCURRENCY {
                let response = client.get(&url).send().await.unwrap();
                assert_eq!(response.status(), 200);
            }
        });
    }
    while let Some(sent) = senders.join_next().await {
        sent.unwrap();
    }

    let dropped = counter(&service, "log_lines_dropped_total").await;
    assert!(
        (10_000..REQUESTS).contains(&dropped),
        "{dropped} of {REQUESTS} access lines dropped{}",
        service.log()
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", service.pid())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {status}"));
    assert!(peak_kib < 64 * 1024, "peak RSS {peak_kib} KiB");
}

/// The log shipper reads `LOG_FILE`: a stdout nobody reads must not stop it. (With one
/// writer thread for both, the file stopped with stdout after a few hundred lines.)
#[tokio::test]
async fn a_stalled_stdout_does_not_stop_the_log_file() {
    const REQUESTS: usize = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let log_file = dir.path().join("cart-service.log");
    let service = Service::start_with_stalled_stdout(
        cart_service_bin!(),
        &[
            ("RUST_LOG", "info"),
            ("LOG_FILE", log_file.to_str().unwrap()),
        ],
    )
    .await;
    let client = reqwest::Client::new();

    for _ in 0..REQUESTS {
        let response = client.get(service.url("/livez")).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }

    let started = std::time::Instant::now();
    loop {
        let text: String = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
            .collect();
        let access = json_lines(&text)
            .iter()
            .filter(|line| line["target"] == "access" && line["route"] == "/livez")
            .count();
        if access == REQUESTS {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{access} of {REQUESTS} access lines reached the log file{}",
            service.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// During a Redis outage every request fails: the first failure is logged, the rest are
/// counted into one line per interval instead of a line each.
#[tokio::test]
async fn a_redis_outage_logs_its_first_failure_then_a_count_per_interval() {
    let mut redis = RedisServer::start();
    let service = Service::start(cart_service_bin!(), &[("REDIS_URL", &redis.url())]).await;
    redis.kill();
    let client = reqwest::Client::new();
    let cart = service.url(&format!("/v1/cart/{}", unique_user()));
    let outage_lines = || -> Vec<serde_json::Value> {
        json_lines(&service.log())
            .into_iter()
            .filter(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("redis unavailable"))
            })
            .collect()
    };

    for _ in 0..50 {
        let response = client.get(&cart).send().await.unwrap();
        assert_eq!(response.status(), 503);
    }
    eventually(
        Duration::from_secs(5),
        "the first failure is logged",
        || async { !outage_lines().is_empty() },
    )
    .await;
    never(
        Duration::from_millis(300),
        "a second outage line within the interval",
        || async { outage_lines().len() > 1 },
    )
    .await;
    assert_eq!(outage_lines()[0]["failed_requests_not_logged"], 0);

    tokio::time::sleep(UNAVAILABLE_LOG_INTERVAL).await;
    let response = client.get(&cart).send().await.unwrap();
    assert_eq!(response.status(), 503);
    eventually(
        Duration::from_secs(5),
        "the next interval's line carries the count",
        || async { outage_lines().len() == 2 },
    )
    .await;
    assert_eq!(
        outage_lines()[1]["failed_requests_not_logged"],
        49,
        "{}",
        service.log()
    );
}
