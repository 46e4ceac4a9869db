//! `POST /stress`: the work it reports, its limits (per request, running at once, memory
//! held together), the query it accepts, its token, and that abandoned work (deadline
//! passed, client gone) stops and frees its permits.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::io::AsyncWriteExt as _;

use cart_service::config::StressToken;
use cart_test_support::app::{TestApp, assert_problem, spawn_app_with};
use cart_test_support::cart_service_bin;
use cart_test_support::poll::eventually;
use cart_test_support::process::Service;
use cart_test_support::redis::shared_redis_url;

/// Enough iterations to keep a debug build busy for far longer than any test waits.
const FOREVER: &str = "/stress?cpu_iterations=5000";

#[tokio::test]
async fn stress_reports_the_work_done() {
    let app = spawn_app_with(&shared_redis_url(), |c| c.pod.name = "cart-1".into()).await;

    let response = post(&app, "/stress?cpu_iterations=3&memory_mb=2").await;

    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["cpu_iterations"], 3);
    assert_eq!(body["primes_found"], 3 * 3732);
    assert_eq!(body["memory_mb"], 2);
    assert_eq!(body["pod"], "cart-1");
    assert!(
        body["duration_ms"].is_u64() && body["node"].is_string(),
        "{body}"
    );
}

#[tokio::test]
async fn stress_out_of_range_is_422_and_not_a_number_is_400_naming_the_parameter() {
    let app = spawn_app_with(&shared_redis_url(), |c| {
        c.stress.max_cpu_iterations = 10;
        c.stress.max_memory_mb = 4;
    })
    .await;

    let over = post(&app, "/stress?cpu_iterations=11").await;
    let memory = post(&app, "/stress?cpu_iterations=1&memory_mb=5").await;
    let negative = post(&app, "/stress?cpu_iterations=-1").await;
    let garbage = post(&app, "/stress?cpu_iterations=lots").await;

    for response in [over, negative] {
        let body = assert_problem(response, 422).await;
        assert_eq!(body["errors"][0]["field"], "cpu_iterations", "{body}");
        assert_eq!(
            body["detail"], "cpu_iterations: must be from 0 to 10 (STRESS_MAX_CPU_ITERATIONS)",
            "{body}"
        );
    }
    let body = assert_problem(memory, 422).await;
    assert_eq!(body["errors"][0]["field"], "memory_mb", "{body}");
    let body = assert_problem(garbage, 400).await;
    assert_eq!(
        body["detail"],
        "cpu_iterations: must be a whole number from 0 to 10 (STRESS_MAX_CPU_ITERATIONS)"
    );
}

#[tokio::test]
async fn stress_with_an_unknown_parameter_is_422_naming_it() {
    let app = spawn_app_with(&shared_redis_url(), |_| {}).await;

    let response = post(&app, "/stress?cpu=5").await;

    let body = assert_problem(response, 422).await;
    assert_eq!(body["errors"][0]["field"], "cpu", "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("cpu") && detail.contains("cpu_iterations"),
        "{detail}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_beyond_its_concurrency_is_429() {
    let app = spawn_app_with(&shared_redis_url(), |c| c.stress.max_concurrency = 1).await;

    let responses = join_all((0..4).map(|_| post(&app, "/stress?cpu_iterations=300"))).await;

    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    let saturated = responses.into_iter().find(|r| r.status() == 429).unwrap();
    assert!(saturated.headers().contains_key("retry-after"));
    assert_problem(saturated, 429).await;
}

#[tokio::test]
async fn stress_disabled_is_404() {
    let app = spawn_app_with(&shared_redis_url(), |c| c.stress.enabled = false).await;

    let response = post(&app, "/stress?cpu_iterations=1").await;

    assert_problem(response, 404).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_memory_past_the_total_budget_is_429_while_another_request_holds_it() {
    let app = spawn_app_with(&shared_redis_url(), |c| {
        c.stress.max_memory_mb = 16;
        c.stress.max_total_memory_mb = 16;
        c.http.request_timeout = Duration::from_mins(1);
    })
    .await;
    let holder = hold(&app, "/stress?cpu_iterations=5000&memory_mb=16").await;
    // Watched in the state: a probing request would race the holder for the budget.
    eventually(
        Duration::from_secs(10),
        "the holder holds the budget",
        || async { app.state.stress_memory.available_permits() == 0 },
    )
    .await;

    let saturated = post(&app, "/stress?cpu_iterations=0&memory_mb=1").await;
    let without_memory = post(&app, "/stress?cpu_iterations=0").await;

    let body = assert_problem(saturated, 429).await;
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("memory_mb=1") && detail.contains("STRESS_MAX_TOTAL_MEMORY_MB"),
        "{detail}"
    );
    assert_eq!(
        without_memory.status(),
        200,
        "only the memory budget is used up"
    );
    drop(holder);
    eventually(
        Duration::from_secs(2),
        "the budget is free once the holder's client has gone",
        || async {
            post(&app, "/stress?cpu_iterations=0&memory_mb=1")
                .await
                .status()
                == 200
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_stops_at_the_request_deadline_and_frees_its_permit() {
    let app = spawn_app_with(&shared_redis_url(), |c| {
        c.stress.max_concurrency = 1;
        c.http.request_timeout = Duration::from_millis(500);
    })
    .await;
    let started = Instant::now();

    let response = post(&app, FOREVER).await;
    let answered = started.elapsed();

    assert_problem(response, 503).await;
    assert!(answered < Duration::from_secs(2), "503 after {answered:?}");
    // The abandoned work stops within one iteration; before, it held the only permit for
    // the rest of its 5000 iterations and every request meanwhile was 429.
    let waited = eventually(Duration::from_secs(1), "the next request runs", || async {
        post(&app, "/stress?cpu_iterations=1").await.status() == 200
    })
    .await;
    assert!(waited < Duration::from_secs(1), "{waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_stops_when_its_client_goes_away_and_frees_its_permit() {
    let app = spawn_app_with(&shared_redis_url(), |c| {
        c.stress.max_concurrency = 1;
        c.http.request_timeout = Duration::from_mins(1);
    })
    .await;
    let holder = hold(&app, FOREVER).await;
    // Watched in the state: a probing request would race the held one for the permit.
    eventually(Duration::from_secs(10), "the held request runs", || async {
        app.state.stress_permits.available_permits() == 0
    })
    .await;
    assert_eq!(post(&app, "/stress?cpu_iterations=0").await.status(), 429);

    drop(holder);

    eventually(
        Duration::from_secs(2),
        "a request runs once the client of the running one has gone",
        || async { post(&app, "/stress?cpu_iterations=0").await.status() == 200 },
    )
    .await;
}

#[tokio::test]
async fn stress_with_a_token_needs_the_bearer_header() {
    let app = spawn_app_with(&shared_redis_url(), |c| {
        c.stress.token = Some(StressToken::new("s3cret-token"));
    })
    .await;
    let request = || app.client.post(app.url("/stress?cpu_iterations=1"));

    let missing = request().send().await.unwrap();
    let wrong = request().bearer_auth("s3cret-tokeN").send().await.unwrap();
    let right = request().bearer_auth("s3cret-token").send().await.unwrap();

    for response in [missing, wrong] {
        let challenge = response.headers().get("www-authenticate");
        let challenge = challenge.and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(challenge.starts_with("Bearer "), "{challenge:?}");
        let body = assert_problem(response, 401).await;
        assert!(!body.to_string().contains("s3cret"), "{body}");
    }
    assert_eq!(right.status(), 200);
}

/// One `POST /stress?memory_mb=64` grows the process's peak RSS by the 64 MiB it asks for,
/// not by a multiple of it, and the memory goes back once the request is done.
#[tokio::test]
async fn stress_memory_uses_what_it_asks_for_and_gives_it_back() {
    const MIB: u64 = 1024;
    let service = Service::start(
        cart_service_bin!(),
        &[
            ("STRESS_MAX_MEMORY_MB", "64"),
            ("STRESS_MAX_TOTAL_MEMORY_MB", "64"),
            ("REQUEST_TIMEOUT_MS", "120000"),
        ],
    )
    .await;
    let before = kib(service.pid(), "VmRSS:");

    let response = reqwest::Client::new()
        .post(service.url("/stress?cpu_iterations=0&memory_mb=64"))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200, "{}", service.log());
    let growth = kib(service.pid(), "VmHWM:").saturating_sub(before);
    assert!(
        (60 * MIB..=96 * MIB + 8 * MIB).contains(&growth),
        "peak RSS grew by {} MiB for memory_mb=64",
        growth / MIB
    );
    eventually(
        Duration::from_secs(5),
        "the RSS is back within 8 MiB of where it was",
        || async { kib(service.pid(), "VmRSS:") <= before + 8 * MIB },
    )
    .await;
}

/// POSTs to `path` with no body.
async fn post(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .send()
        .await
        .expect("POST reaches the service")
}

/// Sends `POST path` on a connection of its own and leaves it waiting for the answer;
/// dropping the stream is the client going away.
async fn hold(app: &TestApp, path: &str) -> tokio::net::TcpStream {
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// A `kB` line of `/proc/<pid>/status`.
fn kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status:\n{status}"))
}
