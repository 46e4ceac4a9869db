//! Readiness of a release's workloads, as `kubectl rollout status` judges it: the
//! controller has seen the newest spec, and every desired replica is updated and ready.
//! The conditions are plain functions over k8s-openapi objects, so tests can feed them
//! objects; `wait_for_release` lists the release's workloads and waits on each with
//! `kube::runtime::wait::await_condition`.

use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::ListParams;
use kube::runtime::wait::await_condition;
use kube::{Api, Client, ResourceExt};

use super::Release;

/// A Deployment is ready when its newest generation is observed and every desired replica
/// is updated, ready and available.
pub fn deployment_ready(deployment: Option<&Deployment>) -> bool {
    let Some(deployment) = deployment else {
        return false;
    };
    let (spec, Some(status)) = (&deployment.spec, &deployment.status) else {
        return false;
    };
    let desired = spec.replicas.unwrap_or(1);
    observed(deployment.metadata.generation, status.observed_generation)
        && status.updated_replicas.unwrap_or(0) >= desired
        && status.ready_replicas.unwrap_or(0) >= desired
        && status.available_replicas.unwrap_or(0) >= desired
        // Old pods still terminating or unavailable mean the rollout is not over.
        && status.replicas.unwrap_or(0) <= desired
}

/// A `StatefulSet` is ready when its newest generation is observed, every desired replica is
/// ready and, for rolling updates, on the update revision.
pub fn statefulset_ready(statefulset: Option<&StatefulSet>) -> bool {
    let Some(statefulset) = statefulset else {
        return false;
    };
    let (spec, Some(status)) = (&statefulset.spec, &statefulset.status) else {
        return false;
    };
    let desired = spec.replicas.unwrap_or(1);
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|strategy| strategy.type_.as_deref())
        .is_none_or(|kind| kind == "RollingUpdate");
    let revision_current = !rolling
        || (status.updated_replicas.unwrap_or(0) >= desired
            && status.current_revision == status.update_revision);
    observed(statefulset.metadata.generation, status.observed_generation)
        && status.ready_replicas.unwrap_or(0) >= desired
        && revision_current
}

/// Waits until every `Deployment` and `StatefulSet` labelled with the release is ready; fails
/// when there are none (nothing was installed) or the timeout passes, naming what was not ready.
pub async fn wait_for_release(
    client: Client,
    release: &Release,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &release.namespace);
    let statefulsets: Api<StatefulSet> = Api::namespaced(client, &release.namespace);
    let params = ListParams::default().labels(&release.selector());
    let deployment_names = names(deployments.list(&params).await, "Deployments", release)?;
    let statefulset_names = names(statefulsets.list(&params).await, "StatefulSets", release)?;
    if deployment_names.is_empty() {
        bail!(
            "no Deployment labelled {} in namespace {}: is the release installed?",
            release.selector(),
            release.namespace
        );
    }
    let wait_all = async {
        for name in &statefulset_names {
            println!("==> waiting for StatefulSet {name}");
            await_condition(statefulsets.clone(), name, statefulset_ready)
                .await
                .with_context(|| format!("cannot watch StatefulSet {name}"))?;
        }
        for name in &deployment_names {
            println!("==> waiting for Deployment {name}");
            await_condition(deployments.clone(), name, deployment_ready)
                .await
                .with_context(|| format!("cannot watch Deployment {name}"))?;
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(timeout, wait_all)
        .await
        .with_context(|| {
            format!(
                "not ready after {}s: see `kubectl -n {} get pods,events`",
                timeout.as_secs(),
                release.namespace
            )
        })??;
    println!("==> every workload of release {} is ready", release.name);
    Ok(())
}

fn observed(generation: Option<i64>, observed: Option<i64>) -> bool {
    match (generation, observed) {
        (Some(generation), Some(observed)) => observed >= generation,
        (None, _) => true,
        (Some(_), None) => false,
    }
}

fn names<K: kube::Resource + Clone>(
    listed: kube::Result<kube::core::ObjectList<K>>,
    kind: &str,
    release: &Release,
) -> anyhow::Result<Vec<String>> {
    let list =
        listed.with_context(|| format!("cannot list {kind} in namespace {}", release.namespace))?;
    Ok(list.items.iter().map(ResourceExt::name_any).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::needless_pass_by_value)] // tests: panic on failure; json! literals
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cluster::mock;

    fn deployment(generation: i64, status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "cart-cart-service", "generation": generation},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": status,
        }))
        .unwrap()
    }

    fn statefulset(status: serde_json::Value) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "cart-cart-service-redis", "generation": 1},
            "spec": {"replicas": 1, "selector": {}, "template": {}, "serviceName": "redis"},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn deployment_with_every_replica_updated_and_ready_is_ready() {
        let ready = deployment(
            3,
            json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2}),
        );

        assert!(deployment_ready(Some(&ready)));
    }

    #[test]
    fn deployment_is_not_ready_while_its_new_spec_is_unobserved_or_pods_are_missing() {
        let unobserved = deployment(
            4,
            json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2}),
        );
        let one_ready = deployment(
            3,
            json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 1, "availableReplicas": 1}),
        );
        let old_pod_left = deployment(
            3,
            json!({"observedGeneration": 3, "replicas": 3, "updatedReplicas": 2, "readyReplicas": 3, "availableReplicas": 3}),
        );

        assert!(!deployment_ready(Some(&unobserved)));
        assert!(!deployment_ready(Some(&one_ready)));
        assert!(!deployment_ready(Some(&old_pod_left)));
        assert!(!deployment_ready(None));
    }

    #[test]
    fn statefulset_is_ready_once_its_pod_is_ready_on_the_update_revision() {
        let ready = statefulset(
            json!({"observedGeneration": 1, "replicas": 1, "readyReplicas": 1,
            "updatedReplicas": 1, "currentRevision": "r2", "updateRevision": "r2"}),
        );
        let old_revision = statefulset(
            json!({"observedGeneration": 1, "replicas": 1, "readyReplicas": 1,
            "updatedReplicas": 0, "currentRevision": "r1", "updateRevision": "r2"}),
        );
        let starting = statefulset(
            json!({"observedGeneration": 1, "replicas": 1, "readyReplicas": 0,
            "updatedReplicas": 1, "currentRevision": "r2", "updateRevision": "r2"}),
        );

        assert!(statefulset_ready(Some(&ready)));
        assert!(!statefulset_ready(Some(&old_revision)));
        assert!(!statefulset_ready(Some(&starting)));
    }

    #[tokio::test]
    async fn wait_for_release_returns_once_every_listed_workload_is_ready() {
        let ready_deployment = deployment(
            1,
            json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2}),
        );
        let ready_statefulset = statefulset(
            json!({"observedGeneration": 1, "replicas": 1, "readyReplicas": 1,
            "updatedReplicas": 1, "currentRevision": "r1", "updateRevision": "r1"}),
        );
        let (client, requests) = mock::client(vec![
            (
                "/apis/apps/v1/namespaces/cart/deployments",
                mock::list(&[ready_deployment]),
            ),
            (
                "/apis/apps/v1/namespaces/cart/statefulsets",
                mock::list(&[ready_statefulset]),
            ),
        ]);

        wait_for_release(client, &mock::release(), Duration::from_secs(5))
            .await
            .unwrap();

        let seen = requests.lock().unwrap().clone();
        assert!(
            seen.iter().any(|uri| uri.contains("deployments?")
                && uri.contains("labelSelector=app.kubernetes.io%2Finstance%3Dcart")),
            "{seen:?}"
        );
    }

    #[tokio::test]
    async fn wait_for_release_without_a_deployment_says_the_release_is_missing() {
        let (client, _) = mock::client(vec![
            (
                "/apis/apps/v1/namespaces/cart/deployments",
                mock::list::<Deployment>(&[]),
            ),
            (
                "/apis/apps/v1/namespaces/cart/statefulsets",
                mock::list::<StatefulSet>(&[]),
            ),
        ]);

        let error = wait_for_release(client, &mock::release(), Duration::from_secs(5))
            .await
            .unwrap_err()
            .to_string();

        assert_eq!(
            error,
            "no Deployment labelled app.kubernetes.io/instance=cart in namespace cart: is the release installed?"
        );
    }
}
