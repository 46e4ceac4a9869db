//! The binary's command line: `--help` documents every configuration variable, a bad value
//! stops startup with a message naming the variable, and `cart-service healthcheck` (the
//! distroless container health check) reports whether `/livez` answers.
//!
//! Every run starts from an empty environment, so variables set where the tests run cannot
//! change what they see, and has a time limit, so a binary that starts serving by mistake
//! fails the test instead of hanging it.

use std::process::Output;
use std::time::Duration;

use tokio::process::Command;

use cart_test_support::app::spawn_app;
use cart_test_support::port::free_port;
use cart_test_support::redis::RedisServer;

/// The configuration sources: the variables are read from them, so a new field is covered
/// by the help test without editing it.
const CONFIG_SOURCES: [&str; 2] = [
    include_str!("../../src/config.rs"),
    include_str!("../../src/config/store.rs"),
];

#[tokio::test]
async fn help_exits_zero_and_lists_every_configuration_variable() {
    let variables = config_variables();
    assert!(
        [
            "LISTEN_ADDR",
            "REDIS_URL",
            "REDIS_RESPONSE_TIMEOUT_MS",
            "CART_MAX_ITEMS",
            "RUST_LOG",
            "SHUTDOWN_TIMEOUT_SECONDS"
        ]
        .iter()
        .all(|known| variables.contains(known)),
        "reading the variables from config.rs went wrong: {variables:?}"
    );

    let output = run(cart_service().arg("--help")).await;

    let help = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "--help exit status {}: {}",
        output.status,
        stderr(&output)
    );
    for variable in variables {
        assert!(
            help.contains(&format!("[env: {variable}")),
            "--help does not list {variable}:\n{help}"
        );
    }
}

#[tokio::test]
async fn a_bad_value_stops_startup_with_a_message_naming_the_variable() {
    let cases = [
        ("CART_MAX_ITEMS", "0"),
        ("LISTEN_ADDR", "nonsense"),
        ("REDIS_URL", "http://x"),
        ("RUST_LOG", "info,=["),
        ("STRESS_ENABLED", "maybe"),
        ("OTEL_TRACES_SAMPLER", "sometimes"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "zip"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
        ("OTEL_RESOURCE_ATTRIBUTES", "novalue"),
        ("AUTH_MODE", "oauth"),
        ("AUTH_JWKS_URL", "https://issuer.test/jwks.json"),
    ];
    for (variable, value) in cases {
        let output = run(cart_service()
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("REDIS_URL", RedisServer::unused_url())
            .env(variable, value))
        .await;

        let message = stderr(&output);
        assert!(
            !output.status.success() && output.status.code().is_some(),
            "{variable}={value}: exit status {}",
            output.status
        );
        assert!(
            message.contains(variable),
            "{variable}={value}: stderr does not name it: {message}"
        );
    }
}

#[tokio::test]
async fn an_unusable_auth_key_file_stops_startup_with_a_message_naming_it() {
    let not_a_key = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(not_a_key.path(), "not a PEM document").unwrap();

    let output = run(cart_service()
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("REDIS_URL", RedisServer::unused_url())
        .env("AUTH_MODE", "jwt")
        .env("AUTH_PUBLIC_KEY_FILE", not_a_key.path())
        .env("AUTH_ISSUER", "https://issuer.test/")
        .env("AUTH_AUDIENCE", "cart-service"))
    .await;

    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert!(
        message.contains("invalid AUTH_PUBLIC_KEY_FILE")
            && message.contains(&not_a_key.path().display().to_string()),
        "{message}"
    );
}

#[tokio::test]
async fn healthcheck_exits_zero_when_livez_answers() {
    let app = spawn_app().await;

    let output = run(cart_service().args(["healthcheck", "--url", &app.url("/livez")])).await;

    assert!(
        output.status.success(),
        "exit status {}: {}",
        output.status,
        stderr(&output)
    );
}

#[tokio::test]
async fn healthcheck_finds_the_port_in_listen_addr() {
    let app = spawn_app().await;
    let port = app.address.rsplit(':').next().expect("address has a port");

    let output = run(cart_service()
        .arg("healthcheck")
        .env("LISTEN_ADDR", format!("0.0.0.0:{port}")))
    .await;

    assert!(
        output.status.success(),
        "exit status {}: {}",
        output.status,
        stderr(&output)
    );
}

#[tokio::test]
async fn healthcheck_fails_with_a_message_when_nothing_listens() {
    let url = format!("http://127.0.0.1:{}/livez", free_port());

    let output = run(cart_service().args(["healthcheck", "--url", &url])).await;

    let message = stderr(&output);
    assert!(!output.status.success(), "healthcheck of {url} succeeded");
    assert!(
        message.contains(&url),
        "stderr does not name the url: {message:?}"
    );
}

/// `cart-service` with an empty environment.
pub(crate) fn cart_service() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cart-service"));
    command.env_clear().kill_on_drop(true);
    command
}

/// Runs `command` to completion; fails the test if it takes more than 10 s.
pub(crate) async fn run(command: &mut Command) -> Output {
    tokio::time::timeout(Duration::from_secs(10), command.output())
        .await
        .expect("cart-service did not exit within 10 s")
        .expect("run the cart-service binary")
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Every `env = "NAME"` in the configuration source.
fn config_variables() -> Vec<&'static str> {
    CONFIG_SOURCES
        .iter()
        .flat_map(|source| source.split("env = \"").skip(1))
        .filter_map(|rest| rest.split('"').next())
        .collect()
}
