//! Typed assertions on the rendered chart: each test renders a value set with the pinned
//! Helm (`helm template`), deserializes every document into its k8s-openapi type, and
//! asserts one property of the result. A missing Helm fails them with a message naming
//! it and saying how to install it; nothing is skipped.

mod auth;
mod monitoring;
mod network;
mod redis_cluster;
mod redis_cluster_network;
mod redis_modes;
mod redis_tls;
mod stress;
mod values;
mod workloads;

use std::path::PathBuf;

use anyhow::Context;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Pod, PodSpec, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde::Deserialize as _;
use serde::de::DeserializeOwned;
use xshell::Shell;

use super::{ci_values_files, set_name, template};
use crate::tools::PINNED_HELM;

/// Every document of one render, each in its k8s-openapi type.
#[derive(Debug, Default)]
pub struct Rendered {
    pub deployments: Vec<Deployment>,
    pub stateful_sets: Vec<StatefulSet>,
    pub services: Vec<Service>,
    pub hpas: Vec<HorizontalPodAutoscaler>,
    pub pdbs: Vec<PodDisruptionBudget>,
    pub network_policies: Vec<NetworkPolicy>,
    pub pods: Vec<Pod>,
    pub jobs: Vec<Job>,
    pub secrets: Vec<Secret>,
    pub config_maps: Vec<ConfigMap>,
    pub service_accounts: Vec<ServiceAccount>,
    /// The Prometheus Operator's objects, which k8s-openapi has no types for.
    pub service_monitors: Vec<CustomResource>,
    pub prometheus_rules: Vec<CustomResource>,
}

/// A custom resource: its metadata typed, its spec as JSON.
#[derive(Debug, serde::Deserialize)]
pub struct CustomResource {
    pub metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    pub spec: serde_json::Value,
}

impl Rendered {
    /// The workload named `name` among the Deployments.
    pub fn deployment(&self, suffix: &str) -> &Deployment {
        self.deployments
            .iter()
            .find(|d| d.metadata.name.as_deref() == Some(&format!("cart-cart-service{suffix}")))
            .unwrap_or_else(|| panic!("no Deployment cart-cart-service{suffix}"))
    }

    /// The cart-service Deployment's pod spec.
    pub fn api_pod(&self) -> &PodSpec {
        pod_spec_of(self.deployment(""))
    }

    /// The cart-service container of the cart-service Deployment.
    pub fn api_container(&self) -> &Container {
        self.api_pod()
            .containers
            .iter()
            .find(|c| c.name == "cart-service")
            .expect("a cart-service container")
    }

    /// Every pod spec of the render, named by its owner.
    pub fn pod_specs(&self) -> Vec<(String, &PodSpec)> {
        let name = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            meta.name.clone().unwrap_or_default()
        };
        let mut specs = Vec::new();
        for d in &self.deployments {
            specs.push((name(&d.metadata), pod_spec_of(d)));
        }
        for s in &self.stateful_sets {
            let spec = s.spec.template.spec.as_ref();
            specs.push((name(&s.metadata), spec.expect("statefulset pod spec")));
        }
        for p in &self.pods {
            specs.push((name(&p.metadata), p.spec.as_ref().expect("pod spec")));
        }
        for j in &self.jobs {
            let spec = j.spec.as_ref().and_then(|s| s.template.spec.as_ref());
            specs.push((name(&j.metadata), spec.expect("job pod spec")));
        }
        specs
    }
}

pub fn pod_spec_of(deployment: &Deployment) -> &PodSpec {
    deployment
        .spec
        .template
        .spec
        .as_ref()
        .expect("deployment has a pod spec")
}

/// Every container of a pod spec, init (and native sidecar) containers included.
pub fn all_containers(spec: &PodSpec) -> impl Iterator<Item = &Container> {
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
}

/// The value of an env var with a literal value.
pub fn env_value<'a>(container: &'a Container, name: &str) -> Option<&'a str> {
    container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.as_deref())
}

/// Renders `ci/<set>-values.yaml` plus `sets`, typed; panics with Helm's message on failure.
pub fn render_set(set: &str, sets: &[(&str, &str)]) -> Rendered {
    let file = ci_values_files()
        .expect("ci values files")
        .into_iter()
        .find(|f| set_name(f) == set)
        .unwrap_or_else(|| panic!("no ci/{set}-values.yaml"));
    let yaml = render(&[file], sets).unwrap_or_else(|error| panic!("{error:#}"));
    typed(&yaml).unwrap_or_else(|error| panic!("{error:#}"))
}

/// Every ci value set, rendered and typed, with its name.
pub fn render_every_set() -> Vec<(String, Rendered)> {
    ci_values_files()
        .expect("ci values files")
        .iter()
        .map(|file| (set_name(file), render_set(&set_name(file), &[])))
        .collect()
}

/// Renders the chart with the pinned Helm; the error carries Helm's message.
pub fn render(values_files: &[PathBuf], sets: &[(&str, &str)]) -> anyhow::Result<String> {
    let sh = Shell::new()?;
    sh.change_dir(crate::workspace_root());
    let helm = PINNED_HELM.require()?;
    let invocation = template(&helm, "cart", "cart", values_files, sets);
    let output = invocation.to_cmd(&sh).quiet().ignore_status().output()?;
    if !output.status.success() {
        anyhow::bail!(
            "`{invocation}` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// Deserializes every document into its type; an unknown kind is an error.
fn typed(yaml: &str) -> anyhow::Result<Rendered> {
    fn push<T: DeserializeOwned>(list: &mut Vec<T>, doc: serde_json::Value) -> anyhow::Result<()> {
        list.push(serde_json::from_value(doc)?);
        Ok(())
    }
    let mut rendered = Rendered::default();
    for document in serde_norway::Deserializer::from_str(yaml) {
        let doc = serde_json::Value::deserialize(document).context("rendered YAML is invalid")?;
        if doc.is_null() {
            continue;
        }
        let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
        let r = &mut rendered;
        match kind.as_str() {
            "Deployment" => push(&mut r.deployments, doc),
            "StatefulSet" => push(&mut r.stateful_sets, doc),
            "Service" => push(&mut r.services, doc),
            "HorizontalPodAutoscaler" => push(&mut r.hpas, doc),
            "PodDisruptionBudget" => push(&mut r.pdbs, doc),
            "NetworkPolicy" => push(&mut r.network_policies, doc),
            "Pod" => push(&mut r.pods, doc),
            "Job" => push(&mut r.jobs, doc),
            "Secret" => push(&mut r.secrets, doc),
            "ConfigMap" => push(&mut r.config_maps, doc),
            "ServiceAccount" => push(&mut r.service_accounts, doc),
            "ServiceMonitor" => push(&mut r.service_monitors, doc),
            "PrometheusRule" => push(&mut r.prometheus_rules, doc),
            other => anyhow::bail!("rendered a {other:?} the typed assertions do not know"),
        }
        .with_context(|| format!("a rendered {kind} does not deserialize"))?;
    }
    Ok(rendered)
}
