//! Assertions on `/stress` in the chart: off unless a value set turns it on (the kind and
//! e2e sets do, for the HPA demo and the e2e scale-up), its memory budget, and a token that
//! only ever arrives from a Secret.

use k8s_openapi::api::core::v1::Container;

use super::{env_value, render, render_set};

/// The Secret name and key `STRESS_TOKEN` is read from, if any.
fn token_source(container: &Container) -> Option<(String, String)> {
    let env = container.env.iter().flatten();
    let token = env.into_iter().find(|e| e.name == "STRESS_TOKEN")?;
    assert_eq!(token.value, None, "STRESS_TOKEN must not be a literal");
    let key_ref = token.value_from.as_ref()?.secret_key_ref.as_ref()?;
    Some((key_ref.name.clone(), key_ref.key.clone()))
}

#[test]
fn stress_is_off_by_default_with_no_token() {
    let rendered = render_set("default", &[]);
    let container = rendered.api_container();

    assert_eq!(env_value(container, "STRESS_ENABLED"), Some("false"));
    assert_eq!(
        env_value(container, "STRESS_MAX_TOTAL_MEMORY_MB"),
        Some("128")
    );
    assert_eq!(token_source(container), None);
}

#[test]
fn kind_and_e2e_values_turn_stress_on_within_their_memory_limit() {
    for set in ["kind", "e2e"] {
        let rendered = render_set(set, &[]);
        let container = rendered.api_container();

        assert_eq!(
            env_value(container, "STRESS_ENABLED"),
            Some("true"),
            "{set}"
        );
        assert_eq!(
            env_value(container, "STRESS_MAX_TOTAL_MEMORY_MB"),
            Some("64"),
            "{set}"
        );
        assert_eq!(
            token_source(container),
            None,
            "{set}: the xtask's load has no token"
        );
    }
}

#[test]
fn the_stress_token_comes_from_the_named_secret() {
    let rendered = render_set(
        "default",
        &[
            ("config.stress.enabled", "true"),
            ("config.stress.token.existingSecret", "stress-auth"),
            ("config.stress.token.existingSecretKey", "token"),
        ],
    );

    assert_eq!(
        token_source(rendered.api_container()),
        Some(("stress-auth".to_owned(), "token".to_owned()))
    );
}

#[test]
fn a_per_request_memory_cap_over_the_total_fails_naming_the_values() {
    let error = render(
        &[],
        &[
            ("config.stress.enabled", "true"),
            ("config.stress.maxMemoryMb", "256"),
        ],
    )
    .map(|_| ())
    .expect_err("helm accepted maxMemoryMb over maxTotalMemoryMb");

    let message = format!("{error:#}");
    assert!(
        message.contains("config.stress.maxMemoryMb (256)")
            && message.contains("config.stress.maxTotalMemoryMb (128)"),
        "{message}"
    );
}
