//! Assertions on the TLS files of an external Redis (`externalRedis.tlsSecret`): the Secret's
//! chosen keys mounted read-only, the variables pointing at them, nothing of it by default,
//! and combinations that cannot work refused naming the value.

use k8s_openapi::api::core::v1::{SecretVolumeSource, VolumeMount};

use super::values::assert_rejected;
use super::{Rendered, env_value, render_set};

const DIR: &str = "/etc/cart-service/redis-tls";

fn tls_volume(rendered: &Rendered) -> Option<&SecretVolumeSource> {
    let mut volumes = rendered.api_pod().volumes.iter().flatten();
    let volume = volumes.find(|v| v.name == "redis-tls")?;
    Some(
        volume
            .secret
            .as_ref()
            .expect("redis-tls is a Secret volume"),
    )
}

fn tls_mount(rendered: &Rendered) -> Option<&VolumeMount> {
    let mut mounts = rendered.api_container().volume_mounts.iter().flatten();
    mounts.find(|m| m.name == "redis-tls")
}

/// The keys the volume projects, each to the file of the same name.
fn keys(secret: &SecretVolumeSource) -> Vec<&str> {
    secret
        .items
        .iter()
        .flatten()
        .map(|item| {
            assert_eq!(item.key, item.path, "each key keeps its name");
            item.key.as_str()
        })
        .collect()
}

#[test]
fn the_secrets_ca_and_client_certificate_are_mounted_read_only_and_named_by_the_variables() {
    let rendered = render_set("external-redis", &[]);
    let container = rendered.api_container();

    let secret = tls_volume(&rendered).expect("a redis-tls volume");
    let mount = tls_mount(&rendered).expect("a redis-tls mount");
    assert_eq!(secret.secret_name.as_deref(), Some("managed-redis-tls"));
    assert_eq!(keys(secret), ["ca.crt", "tls.crt", "tls.key"]);
    assert_eq!(secret.default_mode, Some(0o440));
    assert_eq!(secret.optional, None, "a missing Secret must stop the pod");
    assert_eq!(
        (mount.mount_path.as_str(), mount.read_only),
        (DIR, Some(true))
    );
    for (variable, file) in [
        ("REDIS_CA_FILE", "ca.crt"),
        ("REDIS_CLIENT_CERT_FILE", "tls.crt"),
        ("REDIS_CLIENT_KEY_FILE", "tls.key"),
    ] {
        let expected = format!("{DIR}/{file}");
        assert_eq!(
            env_value(container, variable),
            Some(expected.as_str()),
            "{variable}"
        );
    }
    assert!(
        env_value(container, "REDIS_URL").is_some_and(|url| url.starts_with("rediss://")),
        "the files go with a rediss:// URL"
    );
}

#[test]
fn without_a_client_certificate_only_the_ca_is_mounted() {
    let rendered = render_set(
        "external-redis",
        &[("externalRedis.tlsSecret.clientCertificate", "false")],
    );
    let container = rendered.api_container();

    let secret = tls_volume(&rendered).expect("a redis-tls volume");
    assert_eq!(keys(secret), ["ca.crt"]);
    assert_eq!(
        env_value(container, "REDIS_CA_FILE"),
        Some(format!("{DIR}/ca.crt").as_str())
    );
    assert_eq!(env_value(container, "REDIS_CLIENT_CERT_FILE"), None);
    assert_eq!(env_value(container, "REDIS_CLIENT_KEY_FILE"), None);
}

#[test]
fn with_a_client_certificate_and_the_public_roots_the_ca_is_left_out() {
    let rendered = render_set("external-redis", &[("externalRedis.tlsSecret.ca", "false")]);
    let container = rendered.api_container();

    let secret = tls_volume(&rendered).expect("a redis-tls volume");
    assert_eq!(keys(secret), ["tls.crt", "tls.key"]);
    assert_eq!(env_value(container, "REDIS_CA_FILE"), None);
    assert!(env_value(container, "REDIS_CLIENT_KEY_FILE").is_some());
}

#[test]
fn no_tls_secret_means_no_volume_and_no_variables() {
    for set in ["default", "external-redis"] {
        let rendered = render_set(set, &[("externalRedis.tlsSecret.name", "")]);
        let container = rendered.api_container();

        assert!(tls_volume(&rendered).is_none(), "{set}");
        assert!(tls_mount(&rendered).is_none(), "{set}");
        for variable in [
            "REDIS_CA_FILE",
            "REDIS_CLIENT_CERT_FILE",
            "REDIS_CLIENT_KEY_FILE",
        ] {
            assert_eq!(env_value(container, variable), None, "{set}: {variable}");
        }
    }
}

#[test]
fn a_tls_secret_without_a_tls_connection_or_with_nothing_to_mount_is_refused() {
    let secret = ("externalRedis.tlsSecret.name", "redis-tls");

    assert_rejected(&[secret], "externalRedis.tlsSecret.name");
    assert_rejected(
        &[
            secret,
            ("redis.mode", "external"),
            ("externalRedis.host", "redis.example.internal"),
        ],
        "externalRedis.tls",
    );
    assert_rejected(
        &[
            secret,
            ("redis.mode", "external"),
            ("externalRedis.host", "redis.example.internal"),
            ("externalRedis.tls", "true"),
            ("externalRedis.tlsSecret.ca", "false"),
        ],
        "externalRedis.tlsSecret.clientCertificate",
    );
}
