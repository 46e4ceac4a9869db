//! The steps that put the release on the cluster: the image built and loaded, the
//! namespace made fresh under the restricted Pod Security Standard, the chart installed
//! and its own `helm test`. External programs (docker, helm, the load command) run
//! through xshell; the namespace is kube-rs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, ListParams, LogParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, ResourceExt};
use xshell::Shell;

use super::VALUES;
use crate::cluster::Release;
use crate::cluster::connect::Kubeconfigs;
use crate::command::Invocation;
use crate::deploy::helm_install;
use crate::docker::{require_buildx, require_docker_engine};
use crate::flags;
use crate::image::Build;

/// The image's user: distroless `nonroot`, which the chart's security context expects.
pub const IMAGE_USER: &str = "65532:65532";

/// Builds the image (unless `--no-build`) and checks what the chart relies on.
pub fn image(sh: &Shell, flags: &flags::E2e, build: &Build) -> anyhow::Result<String> {
    require_docker_engine(sh)?;
    if !flags.no_build {
        build_image(sh, flags.build_with.as_deref(), build)?;
    }
    let tag = &build.tag;
    let inspected = sh
        .cmd("docker")
        .args([
            "image",
            "inspect",
            "--format",
            "{{.Config.User}} {{.Size}}",
            tag,
        ])
        .quiet()
        .read()
        .with_context(|| format!("docker image inspect {tag} failed: is the image built?"))?;
    let (user, size) = inspected.split_once(' ').unwrap_or((&inspected, "0"));
    if user != IMAGE_USER {
        bail!(
            "image {tag} runs as {user:?}, not {IMAGE_USER}: the chart's runAsUser would not match"
        );
    }
    let megabytes = size.parse::<f64>().unwrap_or(0.0) / 1e6;
    Ok(format!("{tag}, {megabytes:.1} MB, user {user}"))
}

/// `docker build` of the image, under `wrapper`'s words when given (`testbed with-net`).
pub fn build_image(sh: &Shell, wrapper: Option<&str>, build: &Build) -> anyhow::Result<()> {
    require_buildx(sh)?;
    for step in build.steps() {
        if let crate::plan::Step::Run(docker) = step {
            let invocation = wrapped(wrapper, &docker);
            println!("==> {invocation}");
            invocation.to_cmd(sh).run().context("docker build failed")?;
        }
    }
    Ok(())
}

/// Loads every image the release runs into the nodes: with `--load-with` (image names
/// appended), or `kind load docker-image` when the context is a kind cluster's.
pub fn load(
    sh: &Shell,
    flags: &flags::E2e,
    build: &Build,
    release: &Release,
) -> anyhow::Result<String> {
    let invocation = if let Some(command) = &flags.load_with {
        let images = rendered_images(sh, release, build)?;
        let mut words = command.split_whitespace();
        let program = words.next().context("--load-with is empty")?;
        Invocation::new(program).args(words).args(images)
    } else {
        let context = match &release.context {
            Some(context) => context.clone(),
            // The same files the client was built from, found as kubectl finds them.
            None => Kubeconfigs::from_env()
                .read()
                .ok()
                .and_then(|config| config.current_context)
                .unwrap_or_default(),
        };
        let Some(cluster) = context.strip_prefix("kind-") else {
            bail!(
                "context {context:?} is not a kind cluster's: pass --load-with with the command that \
                 loads images into its nodes (the image names are appended), for example \
                 `--load-with '../shared/testbed/testbed load-image'`"
            );
        };
        // kind nodes pull third-party images themselves; only ours exists nowhere else.
        Invocation::new("kind").args(["load", "docker-image", &build.tag, "--name", cluster])
    };
    println!("==> {invocation}");
    invocation
        .to_cmd(sh)
        .run()
        .context("loading the images failed")?;
    Ok(format!(
        "{} image(s)",
        invocation.args.iter().filter(|a| a.contains(':')).count()
    ))
}

/// Deletes the namespace if it is there, then creates it with the restricted Pod Security
/// Standard enforced, so every pod of the chart is admitted under it.
pub async fn namespace(client: &Client, name: &str) -> anyhow::Result<String> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let removed = if namespaces.get_opt(name).await?.is_some() {
        delete_namespace(client, name).await?;
        " (an old one deleted first)"
    } else {
        ""
    };
    let namespace: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": name,
            "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/warn": "restricted",
                "pod-security.kubernetes.io/audit": "restricted",
            },
        },
    }))?;
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .with_context(|| format!("cannot create namespace {name}"))?;
    Ok(format!("{name}, enforce=restricted{removed}"))
}

/// Deletes the namespace and waits until it is gone.
pub async fn delete_namespace(client: &Client, name: &str) -> anyhow::Result<String> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let Some(existing) = namespaces.get_opt(name).await? else {
        return Ok(format!("namespace {name} was not there"));
    };
    let uid = existing.uid().unwrap_or_default();
    namespaces
        .delete(name, &DeleteParams::default())
        .await
        .with_context(|| format!("cannot delete namespace {name}"))?;
    tokio::time::timeout(
        Duration::from_mins(5),
        await_condition(namespaces, name, conditions::is_deleted(&uid)),
    )
    .await
    .with_context(|| format!("namespace {name} still there after 300s"))??;
    Ok(format!("namespace {name} deleted"))
}

/// `helm upgrade --install --wait` with the e2e values and the image built.
pub fn install(sh: &Shell, release: &Release, build: &Build) -> anyhow::Result<String> {
    let helm = helm_install(
        release,
        &[VALUES.to_owned()],
        Some(build.repository_and_tag()),
    )
    .args(["--wait", "--timeout", "5m"]);
    println!("==> {helm}");
    helm.to_cmd(sh)
        .run()
        .context("helm upgrade --install failed")?;
    Ok(format!("release {} in {}", release.name, release.namespace))
}

/// `helm test`; when it fails, the logs of the test pods that failed (the passed ones are
/// deleted by their hook policy, which is also why `helm test --logs` cannot be used).
pub async fn helm_test(sh: &Shell, client: &Client, release: &Release) -> anyhow::Result<String> {
    let mut helm = Invocation::new("helm").args([
        "test",
        &release.name,
        "--namespace",
        &release.namespace,
        "--timeout",
        "3m",
    ]);
    if let Some(context) = &release.context {
        helm = helm.args(["--kube-context", context]);
    }
    println!("==> {helm}");
    if helm.to_cmd(sh).run().is_ok() {
        return Ok("every test pod succeeded".to_owned());
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), &release.namespace);
    let selector = release.component_selector("test");
    for pod in pods
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
    {
        let name = pod.name_any();
        let logs = pods
            .logs(&name, &LogParams::default())
            .await
            .unwrap_or_default();
        println!("==> logs of test pod {name}:\n{logs}");
    }
    bail!("helm test failed: the logs of its failed pods are above")
}

/// The images the release runs, from `helm template` with the same values as the install.
fn rendered_images(sh: &Shell, release: &Release, build: &Build) -> anyhow::Result<Vec<String>> {
    let (repository, tag) = build.repository_and_tag();
    let set = [("image.repository", repository), ("image.tag", tag)];
    // The chart's oldest Kubernetes, as the chart checks render it: Helm's own default is older.
    let template = crate::chart::template(
        Path::new("helm"),
        &release.name,
        &release.namespace,
        &[PathBuf::from(VALUES)],
        &set,
    );
    let rendered = template
        .to_cmd(sh)
        .quiet()
        .read()
        .with_context(|| format!("`{template}` failed"))?;
    Ok(images_in(&rendered))
}

/// Every `image:` of rendered manifests, once each, sorted.
fn images_in(manifests: &str) -> Vec<String> {
    let images: BTreeSet<String> = manifests
        .lines()
        .filter_map(|line| {
            line.trim_start()
                .trim_start_matches("- ")
                .strip_prefix("image:")
        })
        .map(|image| image.trim().trim_matches('"').to_owned())
        .filter(|image| !image.is_empty())
        .collect();
    images.into_iter().collect()
}

/// `docker build ...` run under a wrapper's words (`testbed with-net docker build ...`).
fn wrapped(wrapper: Option<&str>, invocation: &Invocation) -> Invocation {
    let Some(wrapper) = wrapper else {
        return invocation.clone();
    };
    let mut words = wrapper.split_whitespace();
    let Some(program) = words.next() else {
        return invocation.clone();
    };
    let mut outer = Invocation::new(program)
        .args(words)
        .args([invocation.program.clone()])
        .args(invocation.args.clone());
    outer.env.clone_from(&invocation.env);
    outer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_in_lists_each_rendered_image_once() {
        let manifests = "containers:\n  - name: a\n    image: cart-service:e2e\n  - image: \"busybox:1.37\"\n\
                         initContainers:\n      image: busybox:1.37\n# image: commented:out is not a key\n";

        assert_eq!(images_in(manifests), ["busybox:1.37", "cart-service:e2e"]);
    }

    #[test]
    fn a_build_wrapper_goes_in_front_of_docker_and_keeps_its_environment() {
        let docker = Invocation::new("docker")
            .args(["build", "."])
            .env("DOCKER_BUILDKIT", "1");

        let shown = wrapped(Some("../shared/testbed/testbed with-net"), &docker).to_string();

        assert_eq!(
            shown,
            "DOCKER_BUILDKIT=1 ../shared/testbed/testbed with-net docker build ."
        );
        assert_eq!(wrapped(None, &docker), docker);
    }
}
