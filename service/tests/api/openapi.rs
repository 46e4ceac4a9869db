//! `/openapi.json` says exactly what this instance accepts: identifier patterns and
//! lengths, and the bounds that come from its configuration. (schemathesis, run by
//! `cargo xtask api-fuzz`, holds every route to the document; these tests hold the parts a
//! fuzzer cannot see, such as a bound that depends on the configuration.)

use cart_test_support::app::spawn_app_with;
use cart_test_support::redis::shared_redis_url;

#[tokio::test]
async fn configured_bounds_are_the_documented_maxima() {
    let app = spawn_app_with(&shared_redis_url(), |config| {
        config.cart.max_quantity = 7;
        config.stress.enabled = true;
        config.stress.max_cpu_iterations = 30;
        config.stress.max_memory_mb = 3;
    })
    .await;

    let doc: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();

    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["AddItemRequest"]["properties"]["quantity"]["maximum"],
        7
    );
    assert_eq!(
        schemas["SetItemRequest"]["properties"]["quantity"]["maximum"],
        7
    );
    let stress = doc["paths"]["/stress"]["post"]["parameters"]
        .as_array()
        .unwrap();
    let maximum = |name: &str| {
        stress
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["schema"]["maximum"].clone())
    };
    assert_eq!(maximum("cpu_iterations"), Some(30.into()), "{stress:?}");
    assert_eq!(maximum("memory_mb"), Some(3.into()), "{stress:?}");
}
