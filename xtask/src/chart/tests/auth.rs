//! `auth`: off by default with no `AUTH_*` variable; with `jwt`, the variables the service
//! reads, the PEM key mounted read-only from a `ConfigMap` or `Secret`, a `helm test` that
//! expects a refusal instead of a round trip, and impossible combinations failing `helm
//! template` with the value named.

use k8s_openapi::api::core::v1::Container;

use super::values::assert_rejected;
use super::{Rendered, env_value, render_set};

const JWT: [(&str, &str); 3] = [
    ("auth.mode", "jwt"),
    ("auth.issuer", "https://issuer.example/"),
    ("auth.audience", "cart-service"),
];

/// The `AUTH_*` variables of the cart-service container, in order.
fn auth_variables(container: &Container) -> Vec<&str> {
    container
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .filter(|name| name.starts_with("AUTH_"))
        .collect()
}

/// The names of the rendered `helm test` pods.
fn test_pods(rendered: &Rendered) -> Vec<&str> {
    rendered
        .pods
        .iter()
        .filter_map(|p| p.metadata.name.as_deref())
        .collect()
}

/// `JWT` plus `more`.
fn jwt_with<'a>(more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    JWT.iter().chain(more).copied().collect()
}

#[test]
fn auth_is_off_by_default_and_the_service_gets_no_auth_variable() {
    let rendered = render_set("default", &[]);

    assert!(auth_variables(rendered.api_container()).is_empty());
    let volumes = rendered.api_pod().volumes.iter().flatten();
    assert!(volumes.into_iter().all(|v| v.name != "auth-public-key"));
    assert!(test_pods(&rendered).contains(&"cart-cart-service-test-cart-round-trip"));
}

#[test]
fn jwt_with_a_jwks_url_passes_every_auth_value_to_the_service() {
    let sets = jwt_with(&[
        (
            "auth.jwksUrl",
            "https://issuer.example/.well-known/jwks.json",
        ),
        ("auth.userClaim", "customer_id"),
        ("auth.leewaySeconds", "10"),
        ("networkPolicy.extraEgress[0].ports[0].port", "443"),
    ]);

    let rendered = render_set("default", &sets);

    let api = rendered.api_container();
    assert_eq!(
        auth_variables(api),
        [
            "AUTH_MODE",
            "AUTH_JWKS_URL",
            "AUTH_ISSUER",
            "AUTH_AUDIENCE",
            "AUTH_USER_CLAIM",
            "AUTH_LEEWAY_SECONDS",
            "AUTH_JWKS_REFRESH_SECONDS"
        ]
    );
    assert_eq!(env_value(api, "AUTH_MODE"), Some("jwt"));
    assert_eq!(
        env_value(api, "AUTH_JWKS_URL"),
        Some("https://issuer.example/.well-known/jwks.json")
    );
    assert_eq!(env_value(api, "AUTH_USER_CLAIM"), Some("customer_id"));
    assert_eq!(env_value(api, "AUTH_LEEWAY_SECONDS"), Some("10"));
    let pods = test_pods(&rendered);
    assert!(
        pods.contains(&"cart-cart-service-test-cart-auth"),
        "{pods:?}"
    );
    assert!(
        !pods.contains(&"cart-cart-service-test-cart-round-trip"),
        "{pods:?}"
    );
}

#[test]
fn a_public_key_from_a_secret_or_a_config_map_is_mounted_read_only_as_the_key_file() {
    for (source, name) in [("secret", "idp-key"), ("configMap", "idp-key-cm")] {
        let value = format!("auth.publicKey.{source}");
        let sets = jwt_with(&[(&value, name), ("auth.publicKey.key", "tls.pub")]);

        let rendered = render_set("default", &sets);

        let api = rendered.api_container();
        assert_eq!(
            env_value(api, "AUTH_PUBLIC_KEY_FILE"),
            Some("/etc/cart-service/auth/public-key.pem")
        );
        assert_eq!(env_value(api, "AUTH_JWKS_URL"), None);
        let mount = api
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == "auth-public-key")
            .expect("the key is mounted");
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only),
            ("/etc/cart-service/auth", Some(true))
        );
        let volume = rendered
            .api_pod()
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "auth-public-key")
            .expect("a volume for the key");
        let (found, items) = match (&volume.secret, &volume.config_map) {
            (Some(secret), None) => (secret.secret_name.as_deref(), &secret.items),
            (None, Some(map)) => (Some(map.name.as_str()), &map.items),
            _ => panic!("{source}: neither a Secret nor a ConfigMap: {volume:?}"),
        };
        assert_eq!(found, Some(name));
        let item = &items.as_ref().expect("one item")[0];
        assert_eq!(
            (item.key.as_str(), item.path.as_str()),
            ("tls.pub", "public-key.pem")
        );
    }
}

#[test]
fn impossible_auth_values_fail_helm_with_a_message_naming_the_value() {
    let url = ("auth.jwksUrl", "https://issuer.example/jwks.json");
    let open = ("networkPolicy.enabled", "false");
    let secret = ("auth.publicKey.secret", "idp-key");

    assert_rejected(&jwt_with(&[open]), "auth.jwksUrl");
    assert_rejected(
        &jwt_with(&[url, secret, open]),
        "auth.jwksUrl and auth.publicKey",
    );
    assert_rejected(
        &jwt_with(&[secret, ("auth.publicKey.configMap", "idp-key")]),
        "auth.publicKey.configMap",
    );
    assert_rejected(&[JWT[0], JWT[2], url, open], "auth.issuer");
    assert_rejected(&[JWT[0], JWT[1], url, open], "auth.audience");
    assert_rejected(&jwt_with(&[url]), "networkPolicy.extraEgress");
    assert_rejected(&[url, open], "auth.mode");
}
