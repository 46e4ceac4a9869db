//! The `cargo xtask` command line, in one place: one subcommand per task, each documented
//! here, so `cargo xtask --help` is the index of what the project automates. The tasks
//! themselves live in modules named after them.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Project automation for cart-service.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
pub struct Xtask {
    #[command(subcommand)]
    pub task: Task,
}

/// The tasks.
#[derive(Debug, Subcommand)]
pub enum Task {
    /// Run cart-service locally against a throwaway redis-server; Ctrl-C stops both.
    Dev(Dev),
    /// Run what CI runs (the steps are listed from the plan the runner uses).
    #[command(about = crate::ci::about())]
    Ci(Ci),
    /// Build the cart-service image with docker, tagged with the crate version and git sha.
    Image(Image),
    /// Create a kind cluster, load the image, install metrics-server and the chart, wait until ready.
    KindUp(KindUp),
    /// Delete the kind cluster that kind-up created.
    KindDown(KindDown),
    /// helm upgrade --install the chart into the current kubeconfig context, then wait until ready.
    Deploy(Deploy),
    /// Port-forward to the release with kube-rs and run k6 with scripts/k6-load-test.js.
    K6(K6),
    /// Drive /stress and print the HorizontalPodAutoscaler live until it reaches max replicas.
    HpaDemo(HpaDemo),
    /// Build the image and prove the whole deployment on a real cluster: chart, probes, logs, traces, k6, HPA, rollouts, Redis persistence.
    E2e(E2e),
    /// docker compose up the unmodified docker-compose.yml, round-trip a cart, find its log line and trace, then down -v.
    ComposeSmoke(ComposeSmoke),
    /// Write the generated files: values.schema.json, the chart README's values table, k8s/.
    Gen(Gen),
    /// Install the pinned tools under target/tools (the list comes from `tools::PINNED`).
    #[command(about = crate::tools::about())]
    Tools(Tools),
    /// Check the Helm chart over every ci/*-values.yaml set: lint, validate or checkov.
    Chart(Chart),
    /// Run schemathesis (every check, all phases, in a time budget) against a live cart-service and a throwaway Redis.
    ApiFuzz(ApiFuzz),
    /// Load-test a release build with wrk beside redis-benchmark; write target/bench/ reports.
    Bench(Bench),
}

/// `cargo xtask gen`: values.schema.json and the README values table from the `Values`
/// types, and `k8s/cart-service.yaml` rendered from the chart.
#[derive(Debug, Args)]
pub struct Gen {
    /// Write nothing; fail, naming the files, if any generated file is out of date.
    #[arg(long)]
    pub check: bool,
}

/// `cargo xtask tools`: install what is missing or outdated of the pinned tools
/// (`cargo xtask ci` installs each one before the first step that needs it).
#[derive(Debug, Args)]
pub struct Tools {
    /// Reinstall every pinned tool, even those already at their pinned version.
    #[arg(long)]
    pub force: bool,
    /// Print the install commands, and run nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `cargo xtask chart <check>`: one of the chart checks CI runs.
#[derive(Debug, Args)]
pub struct Chart {
    #[command(subcommand)]
    pub check: ChartCheck,
    /// Print the commands, and run nothing.
    #[arg(long, global = true)]
    pub dry_run: bool,
}

/// The chart checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum ChartCheck {
    /// helm lint --strict with each ci values file.
    Lint,
    /// Render each ci values file and validate it strictly against Kubernetes 1.29 and the newest
    /// schemas (kubernetes-validate); check the rendered alerting rules and run their unit tests (promtool).
    Validate,
    /// Render each ci values file and run checkov's Kubernetes checks; any failed check fails.
    Checkov,
}

/// `cargo xtask dev`: start a private redis-server on a free loopback port, then
/// `cargo run` the service against it.
#[derive(Debug, Args)]
pub struct Dev {
    /// Port the service listens on, on 127.0.0.1.
    #[arg(long, default_value_t = 8080, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// Also run the pinned Jaeger v2 (`cargo xtask tools` builds it) and send it every
    /// trace; its UI is on <http://127.0.0.1:16686>.
    #[arg(long)]
    pub jaeger: bool,
    /// Print the programs, arguments and environment that would run, and run nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `cargo xtask api-fuzz`: the OpenAPI document held to the live service by schemathesis.
#[derive(Debug, Args)]
pub struct ApiFuzz {
    /// Seconds schemathesis may spend; fuzzing and the stateful phase repeat until it is spent.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(10..=3600))]
    pub max_time: u32,
    /// Print the programs, arguments and environment that would run, and run nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `cargo xtask ci`: formatting, lints, tests and the chart checks, each step reported,
/// all steps run.
#[derive(Debug, Args)]
pub struct Ci {
    /// Print the steps that would run, and run nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `cargo xtask image`: `docker build` of the Dockerfile.
#[derive(Debug, Args)]
pub struct Image {
    /// Image reference to build; default `cart-service:<crate version>-<git sha>`.
    #[arg(long)]
    pub tag: Option<String>,
    /// Print the programs, arguments and environment that would run, and run nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `cargo xtask kind-up`: a local cluster running the chart, ready for `k6` and `hpa-demo`.
#[derive(Debug, Args)]
pub struct KindUp {
    /// kind cluster name; its kubeconfig context is `kind-<name>`.
    #[arg(long, default_value = "cart")]
    pub name: String,
    /// Load the image already built (`--tag`, or the default tag) instead of building it.
    #[arg(long)]
    pub no_build: bool,
    /// Image reference to build and load; default `cart-service:<crate version>-<git sha>`.
    #[arg(long)]
    pub tag: Option<String>,
    /// Seconds to wait for the workloads to become ready.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Print the programs, arguments and environment that would run, and run nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `cargo xtask kind-down`: delete the kind cluster, if it exists.
#[derive(Debug, Args)]
pub struct KindDown {
    /// kind cluster name.
    #[arg(long, default_value = "cart")]
    pub name: String,
    /// Print the programs, arguments and environment that would run, and run nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Which Helm release the cluster tasks act on.
#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// Helm release name.
    #[arg(long, default_value = "cart")]
    pub release: String,
    /// Namespace of the release.
    #[arg(long, default_value = "cart")]
    pub namespace: String,
    /// kubeconfig context; default the current one.
    #[arg(long)]
    pub context: Option<String>,
}

/// `cargo xtask deploy`: the chart into whatever cluster kubeconfig points at.
#[derive(Debug, Args)]
pub struct Deploy {
    #[command(flatten)]
    pub target: ReleaseArgs,
    /// Extra values files for helm, in order (repeatable).
    #[arg(long = "values", short = 'f')]
    pub values: Vec<String>,
    /// Image reference to deploy (`repository:tag`); default the chart's.
    #[arg(long)]
    pub image: Option<String>,
    /// Seconds to wait for the workloads to become ready.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Print the programs, arguments and environment that would run, and run nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `cargo xtask k6`: load-test the release through a kube-rs port-forward.
#[derive(Debug, Args)]
pub struct K6 {
    #[command(flatten)]
    pub target: ReleaseArgs,
    /// Constant virtual users (with --duration); default the script's ramp, which pushes the HPA to max.
    #[arg(long, requires = "duration")]
    pub vus: Option<u32>,
    /// How long the constant load lasts, in k6 syntax (30s, 5m); needs --vus.
    #[arg(long, requires = "vus")]
    pub duration: Option<String>,
    /// Local port the port-forward listens on (127.0.0.1).
    #[arg(long, default_value_t = 18080)]
    pub local_port: u16,
    /// Print the programs, arguments and environment that would run, and run nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `cargo xtask hpa-demo`: CPU load through /stress while the HPA table prints.
#[derive(Debug, Args)]
pub struct HpaDemo {
    #[command(flatten)]
    pub target: ReleaseArgs,
    /// Stress requests in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// `cpu_iterations` of each /stress request (about 1 ms of CPU each).
    #[arg(long, default_value_t = 2000)]
    pub cpu_iterations: u32,
    /// Seconds of load before giving up on reaching max replicas.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Seconds to keep watching after the load stops, for the scale-down to begin.
    #[arg(long, default_value_t = 360)]
    pub cooldown: u64,
    /// Print the plan, and run nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `cargo xtask e2e`: the deployment story on whatever cluster `KUBECONFIG` (or `--context`)
/// and Docker engine (`DOCKER_HOST`) it is given: kind after `kind-up`, or any other.
#[derive(Debug, Args)]
pub struct E2e {
    /// Helm release name.
    #[arg(long, default_value = "e2e")]
    pub release: String,
    /// Namespace, created fresh (deleted first if it exists) with Pod Security `restricted` enforced.
    #[arg(long, default_value = "cart-e2e")]
    pub namespace: String,
    /// kubeconfig context; default the current one.
    #[arg(long)]
    pub context: Option<String>,
    /// Image reference to build and load; default `cart-service:<crate version>-<git sha>`.
    #[arg(long)]
    pub tag: Option<String>,
    /// Use the image `--tag` names as it is, without building it.
    #[arg(long)]
    pub no_build: bool,
    /// Command words to run `docker build` under, such as `testbed with-net` where builds need an uplink.
    #[arg(long, value_name = "COMMAND")]
    pub build_with: Option<String>,
    /// Command that loads images into the cluster's nodes; the image names are appended
    /// (`testbed load-image`). Default: `kind load docker-image` for a `kind-*` context.
    #[arg(long, value_name = "COMMAND")]
    pub load_with: Option<String>,
    /// Steps to skip, comma-separated (see the summary's names).
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
    /// Leave the namespace and release in place at the end (they are kept after a failure anyway).
    #[arg(long)]
    pub keep: bool,
    /// Print the steps, and run nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `cargo xtask compose-smoke`: the laptop stack for real, with images already present.
#[derive(Debug, Args)]
pub struct ComposeSmoke {
    /// The compose project name, so a stack you already run is left alone.
    #[arg(long, default_value = "cart-smoke")]
    pub project: String,
    /// Build `cart-service:dev` first even when it exists.
    #[arg(long)]
    pub build: bool,
    /// Command words to run `docker build` under, such as `testbed with-net`.
    #[arg(long, value_name = "COMMAND")]
    pub build_with: Option<String>,
    /// Print the steps, and run nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `cargo xtask bench`: the release build under wrk, beside redis-benchmark on the same
/// Redis in the same run, plus startup, memory and observability costs.
#[derive(Debug, Args)]
pub struct Bench {
    /// Seconds of load per scenario and concurrency level.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub duration: u64,
    /// Connection counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [16, 64, 256],
          value_parser = clap::value_parser!(u32).range(2..=10_000))]
    pub connections: Vec<u32>,
    /// Scenarios to run, comma-separated; default all.
    #[arg(long, value_delimiter = ',', value_enum, default_values_t = Scenario::ALL)]
    pub scenario: Vec<Scenario>,
    /// Directory the Markdown, JSON and SVG reports go to.
    #[arg(long, default_value = "target/bench")]
    pub out: std::path::PathBuf,
    /// Evaluate the performance budget of issue 6 and fail on a miss.
    #[arg(long)]
    pub check: bool,
    /// Also build the service at this git revision (a commit, tag, branch or `HEAD~3`)
    /// and measure it beside the current one, so a change's before and after land in one
    /// report; the budget still judges only the current binary.
    #[arg(long, value_name = "REV")]
    pub against: Option<String>,
    /// Print the programs, arguments and environment that would run, and run nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// One kind of bench traffic; what each sends is in `bench/scenarios.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Scenario {
    /// POST /v1/cart/{user} over 10 000 users × 100 products.
    Add,
    /// GET of carts holding 20 lines.
    Get,
    /// The k6 journey's mix: add, add, get, clear.
    Journey,
    /// GET /livez: the HTTP stack's ceiling, no Redis.
    Health,
    // Last, as the run measures them: after the others, each on a service started for it alone.
    /// GET of the same carts with `AUTH_MODE=jwt`, each with its user's token (Ed25519-signed).
    GetAuth,
    /// `add` with `REDIS_MODE=cluster`, against a local Redis Cluster (3 masters, 3 replicas).
    AddCluster,
    /// `get` with `REDIS_MODE=cluster`, of the same carts filled into that cluster.
    GetCluster,
    /// `add-cluster` with `REDIS_WAIT_REPLICAS=1`: each write waits for its replica.
    AddClusterWait,
}

impl Scenario {
    pub const ALL: [Self; 8] = [
        Self::Add,
        Self::Get,
        Self::Journey,
        Self::Health,
        Self::GetAuth,
        Self::AddCluster,
        Self::GetCluster,
        Self::AddClusterWait,
    ];
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Xtask::command().debug_assert();
    }

    #[test]
    fn dev_listens_on_8080_unless_told_otherwise() {
        let default = Xtask::parse_from(["cargo xtask", "dev"]);
        let chosen = Xtask::parse_from(["cargo xtask", "dev", "--port", "9000", "--dry-run"]);

        assert!(matches!(
            default.task,
            Task::Dev(Dev {
                port: 8080,
                dry_run: false,
                jaeger: false,
            })
        ));
        assert!(matches!(
            chosen.task,
            Task::Dev(Dev {
                port: 9000,
                dry_run: true,
                jaeger: false,
            })
        ));
    }

    /// The one-line help of `subcommand`.
    fn about(subcommand: &str) -> String {
        Xtask::command()
            .find_subcommand(subcommand)
            .and_then(|task| task.get_about().map(ToString::to_string))
            .unwrap_or_default()
    }

    #[test]
    fn ci_help_names_every_step_the_runner_runs() {
        let help = about("ci");

        let missing: Vec<&str> = crate::ci::plan()
            .iter()
            .map(|step| step.name)
            .filter(|name| !help.contains(name))
            .collect();

        assert!(missing.is_empty(), "ci --help misses {missing:?}: {help}");
    }

    #[test]
    fn tools_help_names_every_pinned_tool_with_its_version() {
        let help = about("tools");

        let missing: Vec<&str> = crate::tools::PINNED
            .iter()
            .filter(|tool| !help.contains(&format!("{} {}", tool.name, tool.version)))
            .map(|tool| tool.name)
            .collect();

        assert!(
            missing.is_empty(),
            "tools --help misses {missing:?}: {help}"
        );
    }

    #[test]
    fn dev_rejects_port_zero() {
        let result = Xtask::try_parse_from(["cargo xtask", "dev", "--port", "0"]);

        assert!(result.is_err());
    }
}
