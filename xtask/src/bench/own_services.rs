//! The scenarios that run on a service of their own, each started with the variables the
//! scenario needs and checked to do what they say before it is measured: `get-auth`
//! (`AUTH_MODE=jwt`, checked to refuse a cart without a token) against the run's one
//! Redis, and the cluster scenarios (`REDIS_MODE=cluster`, checked to read a pre-filled
//! cart from each master) against a Redis Cluster started and filled for them and
//! stopped after them. An `--against` revision from before a feature is left out of its
//! scenarios; the current binary failing a check fails the run.

use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, bail};
use xshell::Shell;

use super::budget::BUDGET_CONNECTIONS;
use super::cluster::{self, Cluster};
use super::jwt::Issuer;
use super::processes::{free_port, http_get};
use super::report::{CURRENT, Point};
use super::scenarios::{self, Scenario};
use super::session::{Running, labelled, measure_points, script, start, warm_up};
use super::{Backend, Binary, Settings};
use crate::command::Invocation;

/// Each chosen authenticated scenario on a service of `binary` of its own, started with
/// the scenario's `AUTH_*` variables, its script written with tokens `issuer` signs just
/// now so their hour starts with it. A service that answers without a token is an error
/// for the current binary; an `--against` revision from before authentication is only
/// left out of the scenario, since its figures would be plain `get`'s.
pub fn authenticated(
    sh: &Shell,
    settings: &Settings,
    binary: &Binary,
    redis_port: u16,
    dir: &Path,
    issuer: &Issuer,
    connections: &[u32],
) -> anyhow::Result<Vec<Point>> {
    let mut points = Vec::new();
    for &scenario in settings.scenarios.iter().filter(|s| s.authenticated()) {
        let tokens = scenarios::bearer_tokens(|user| issuer.token(user))?;
        std::fs::write(script(dir, scenario), scenario.wrk_script(&tokens))?;
        let port = free_port()?;
        let invocation = super::scenario_service(
            &binary.path,
            port,
            Backend::Standalone(redis_port),
            scenario,
            dir,
        );
        let Some(service) = checked(
            sh,
            binary,
            scenario,
            &invocation,
            port,
            refuses_without_token,
        )?
        else {
            continue;
        };
        points.extend(measured(
            sh,
            settings,
            service,
            redis_port,
            dir,
            scenario,
            connections,
        )?);
    }
    Ok(points)
}

/// The chosen cluster scenarios: a Redis Cluster started and filled for them, each on a
/// service of its own of the current binary at every concurrency and, with `--against`,
/// of the other revision's at the budget's; the cluster stopped after.
pub fn cluster(sh: &Shell, settings: &Settings, dir: &Path) -> anyhow::Result<Vec<Point>> {
    println!(
        "==> starting a Redis Cluster of {} redis-servers and filling it",
        cluster::NODES
    );
    let cluster = Cluster::start(sh, dir)?;
    let sample = cluster.fill(sh)?;
    let mut points = on_cluster_services(
        sh,
        settings,
        &Binary::current(),
        &cluster,
        &sample,
        dir,
        &settings.connections,
    )?;
    if let Some(other) = settings.other()
        && settings.connections.contains(&BUDGET_CONNECTIONS)
    {
        let theirs = on_cluster_services(
            sh,
            settings,
            &other,
            &cluster,
            &sample,
            dir,
            &[BUDGET_CONNECTIONS],
        )?;
        points.extend(labelled(theirs, &other));
    }
    cluster.stop()?;
    Ok(points)
}

/// Each chosen cluster scenario on a service of `binary` of its own, started with
/// `REDIS_MODE=cluster`, every node a seed, and the scenario's variables. A service that
/// cannot read the `sample` carts, one on each master, is an error for the current binary;
/// an `--against` revision from before cluster mode (which does not start, or reads one
/// node) is only left out of the scenario.
fn on_cluster_services(
    sh: &Shell,
    settings: &Settings,
    binary: &Binary,
    cluster: &Cluster,
    sample: &[u32],
    dir: &Path,
    connections: &[u32],
) -> anyhow::Result<Vec<Point>> {
    let mut points = Vec::new();
    for &scenario in settings.scenarios.iter().filter(|s| s.cluster()) {
        let port = free_port()?;
        let nodes = Backend::Cluster(cluster.ports());
        let invocation = super::scenario_service(&binary.path, port, nodes, scenario, dir);
        let read_all = |port| reads_every_master(port, sample);
        let Some(service) = checked(sh, binary, scenario, &invocation, port, read_all)? else {
            continue;
        };
        let seed = cluster.ports()[0];
        points.extend(measured(
            sh,
            settings,
            service,
            seed,
            dir,
            scenario,
            connections,
        )?);
    }
    Ok(points)
}

/// `binary`'s service for `scenario`, started and passed through `check`; `None` when an
/// `--against` revision fails the check (it is left out of the scenario, and says so), an
/// error when the current binary does.
fn checked(
    sh: &Shell,
    binary: &Binary,
    scenario: Scenario,
    invocation: &Invocation,
    port: u16,
    check: impl FnOnce(u16) -> anyhow::Result<()>,
) -> anyhow::Result<Option<Running>> {
    let started = start(sh, invocation, port, Stdio::null()).and_then(|(service, _)| {
        check(port)?;
        Ok(service)
    });
    match started {
        Ok(service) => Ok(Some(service)),
        Err(error) if binary.label != CURRENT => {
            println!(
                "==> {} not measured for the {} binary: {error:#}",
                scenario.name(),
                binary.label
            );
            Ok(None)
        }
        Err(error) => Err(error.context(format!(
            "{} on the {} binary",
            scenario.name(),
            binary.label
        ))),
    }
}

/// `scenario` measured on its own `service` (warmed up first) at `connections`, then the
/// service stopped.
fn measured(
    sh: &Shell,
    settings: &Settings,
    mut service: Running,
    redis_port: u16,
    dir: &Path,
    scenario: Scenario,
    connections: &[u32],
) -> anyhow::Result<Vec<Point>> {
    warm_up(sh, &service, &[scenario], dir)?;
    let points = measure_points(
        sh,
        settings,
        &mut service,
        redis_port,
        dir,
        &[scenario],
        connections,
    )?;
    service.process.stop()?;
    Ok(points)
}

/// Fails unless the service on `port` answers each of the `sample` carts (one on each
/// master) with its pre-filled lines, which proves it reads the whole cluster.
fn reads_every_master(port: u16, sample: &[u32]) -> anyhow::Result<()> {
    for cart in sample {
        let path = format!("/v1/cart/g-{cart}");
        let (status, body) =
            http_get(port, &path).with_context(|| format!("GET {path} on 127.0.0.1:{port}"))?;
        let lines = body.matches("\"product_id\"").count();
        if status != 200 || lines != scenarios::LINES_PER_CART as usize {
            bail!(
                "GET {path} answered {status} with {lines} lines, not 200 with {}: the service \
                 does not read every master of the redis cluster",
                scenarios::LINES_PER_CART
            );
        }
    }
    Ok(())
}

/// Fails unless the service on `port` answers a cart request without a token with 401,
/// which proves it checks tokens.
fn refuses_without_token(port: u16) -> anyhow::Result<()> {
    let path = "/v1/cart/g-0";
    let (status, _) = http_get(port, path)
        .with_context(|| format!("GET {path} without a token on 127.0.0.1:{port}"))?;
    if status != 401 {
        bail!(
            "GET {path} without a token answered {status}, not 401: the service does not check \
             tokens with AUTH_MODE=jwt"
        );
    }
    Ok(())
}
