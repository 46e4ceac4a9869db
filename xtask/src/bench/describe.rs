//! The `--dry-run` text of `cargo xtask bench`: every program, argument and environment
//! variable a run with these settings would start, in the order it starts them, on the
//! ports a plan shows (a run takes free ones).

use std::fmt::Write as _;
use std::path::Path;

use super::budget::BUDGET_CONNECTIONS;
use super::scenarios::{self, Scenario};
use super::{
    Backend, SERVICE_BINARY, STANDALONE, Settings, build, cluster, loadgen, observe, redis, report,
    scenario_service, service, session,
};
use crate::tools;

impl Settings {
    /// The `--dry-run` text.
    pub(super) fn describe(&self) -> String {
        let mut text = String::from("cargo xtask bench would run:\n");
        let dir = Path::new("<temp dir>");
        let _ = writeln!(text, "  1. {}", build());
        if let Some(revision) = &self.against {
            text.push_str(&revision.describe());
        }
        let _ = writeln!(
            text,
            "  2. {}\n     then pre-fill {} carts of {} lines with HSET (cart:{{g-N}} for `get`, \
             rb:filled:N for HGETALL)",
            redis(6379, dir),
            scenarios::FILLED_CARTS,
            scenarios::LINES_PER_CART
        );
        let _ = writeln!(
            text,
            "  3. {} times: {}\n     timing spawn → GET /readyz 200; then idle RSS",
            session::READY_STARTS,
            service(Path::new(SERVICE_BINARY), 8080, STANDALONE, None)
        );
        let _ = writeln!(
            text,
            "  4. warm-up: each scenario for 1 s at 64 connections"
        );
        let _ = writeln!(
            text,
            "  5. per scenario and connection count (at {BUDGET_CONNECTIONS} connections each \
             wrk/redis-benchmark pair {} times, the median pair kept):",
            session::BUDGET_REPEATS
        );
        for &scenario in self.scenarios.iter().filter(|s| !s.cluster()) {
            if scenario.authenticated() {
                text.push_str(&describe_own_service(
                    scenario,
                    Path::new(SERVICE_BINARY),
                    dir,
                ));
            }
            text.push_str(&self.describe_points(scenario, dir));
        }
        if let Some(binary) = self.other() {
            let _ = writeln!(
                text,
                "     then the same at {BUDGET_CONNECTIONS} connections against a warmed-up \
                 {}",
                service(&binary.path, 8080, STANDALONE, None)
            );
            for &scenario in self.scenarios.iter().filter(|s| s.authenticated()) {
                let _ = writeln!(
                    text,
                    "     and {} on one of its own\n     {}",
                    scenario.name(),
                    scenario_service(&binary.path, 8080, STANDALONE, scenario, dir)
                );
            }
        }
        text.push_str(&self.describe_cluster(dir));
        text.push_str(&self.describe_observability(dir));
        let _ = writeln!(
            text,
            "  7. write {}/<UTC time>.md, .json and .svg",
            self.out.display()
        );
        text
    }

    /// The wrk and redis-benchmark lines of `scenario` at each connection count.
    fn describe_points(&self, scenario: Scenario, dir: &Path) -> String {
        let mut text = String::new();
        let redis_port = if scenario.cluster() {
            cluster::PLAN_PORTS[0]
        } else {
            6379
        };
        for &connections in &self.connections {
            let script = dir.join(format!("{}.lua", scenario.name()));
            let url = format!("http://127.0.0.1:8080{}", scenario.path());
            let _ = writeln!(
                text,
                "     {}",
                loadgen::wrk(&script, &url, connections, self.duration)
            );
            if let Some(load) = scenario.redis_equivalent() {
                let bench =
                    loadgen::redis_benchmark(redis_port, connections, self.redis_requests(), &load);
                let _ = writeln!(text, "     {bench}");
            }
        }
        text
    }

    /// The end of step 5 in the `--dry-run` text: the Redis Cluster and the cluster
    /// scenarios on it, each on a service of its own; empty without them.
    fn describe_cluster(&self, dir: &Path) -> String {
        let chosen: Vec<Scenario> = self
            .scenarios
            .iter()
            .copied()
            .filter(|s| s.cluster())
            .collect();
        if chosen.is_empty() {
            return String::new();
        }
        let mut text = cluster::describe(dir);
        let nodes = Backend::Cluster(&cluster::PLAN_PORTS);
        for scenario in chosen {
            let _ = writeln!(
                text,
                "     {} on a service of its own, checked to read a pre-filled cart from each master{}:\n     {}",
                scenario.name(),
                if scenario.redis_equivalent().is_none() {
                    format!(
                        " (no redis-benchmark equivalent: at {BUDGET_CONNECTIONS} connections wrk \
                         {} times, the median req/s kept)",
                        session::BUDGET_REPEATS
                    )
                } else {
                    String::new()
                },
                scenario_service(Path::new(SERVICE_BINARY), 8080, nodes, scenario, dir)
            );
            text.push_str(&self.describe_points(scenario, dir));
        }
        if let Some(binary) = self.other() {
            let _ = writeln!(
                text,
                "     then each at {BUDGET_CONNECTIONS} connections on a service of its own of \
                 {} (left out if it cannot serve the cluster)",
                binary.label
            );
        }
        text.push_str("     then stop the cluster\n");
        text
    }

    /// Step 6 of the `--dry-run` text: the observability rounds of each binary.
    fn describe_observability(&self, dir: &Path) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "  6. observability, `add` at 64 connections: {} rounds of a baseline and each \
             setting, exporting to\n     {}",
            observe::ROUNDS,
            observe::jaeger_invocation(&tools::PINNED_JAEGER.path(), [4317, 4318, 16686, 16685])
        );
        for binary in self.binaries() {
            let round = observe::round_dir(dir, "N", &binary);
            if binary.label != report::CURRENT {
                let _ = writeln!(
                    text,
                    "     each round then the same for {}, compared with its own baseline\n     {}",
                    binary.label,
                    service(&binary.path, 8080, STANDALONE, None)
                );
            }
            for setting in observe::SETTINGS {
                let _ = writeln!(
                    text,
                    "     {} > {}/{}.stdout",
                    service(
                        &binary.path,
                        8080,
                        STANDALONE,
                        Some((&setting, 4317, &round))
                    ),
                    round.display(),
                    setting.name
                );
            }
        }
        let _ = writeln!(
            text,
            "     then {} such rounds with each service in a cgroup limited to {} CPU (a pod at \
             its limit;\n     the budget judges these), when this machine lets the bench make one, \
             with a baseline\n     after each setting too, each setting compared with the mean \
             of the baselines around it",
            observe::LIMITED_ROUNDS,
            observe::POD_CPU_LIMIT
        );
        text
    }
}

/// The `--dry-run` lines of an authenticated scenario's own service and its tokens.
fn describe_own_service(scenario: Scenario, binary: &Path, dir: &Path) -> String {
    format!(
        "     {name} on a service of its own, checked to refuse a cart GET without a token (401):\n     \
         {service}\n     \
         with a fresh Ed25519 key per run (its public half at AUTH_PUBLIC_KEY_FILE) and, in\n     \
         {name}.lua, an EdDSA token per pre-filled user (sub g-N, 1 h) signed as that service starts\n",
        name = scenario.name(),
        service = scenario_service(binary, 8080, STANDALONE, scenario, dir),
    )
}
