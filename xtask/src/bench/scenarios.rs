//! The scenarios of `cargo xtask bench`: what each one sends (as a wrk Lua script generated
//! here, so the data set's sizes live in one place), which Redis command is its
//! redis-benchmark equivalent, the data both need in Redis before the load starts, and the
//! variables the service needs on top of the baseline's (`get-auth`'s `AUTH_*`,
//! `add-cluster-wait`'s `REDIS_WAIT_REPLICAS`). The `*-cluster` scenarios send what `add`
//! and `get` send, to a service against the Redis Cluster of [`super::cluster`].
//! The [`Scenario`] enum itself belongs to the command line (`flags.rs`), which parses
//! `--scenario` in builds without the bench feature too.

use std::fmt::Write as _;
use std::path::Path;

use super::jwt;
use super::loadgen::RedisLoad;
pub use crate::flags::Scenario;

/// Users the `add` and `journey` scenarios spread their writes over.
pub const USERS: u32 = 10_000;
/// Products per user in `add` and `journey`.
pub const PRODUCTS: u32 = 100;
/// Carts pre-filled for `get` and `get-auth` (and hashes for redis-benchmark's HGETALL).
pub const FILLED_CARTS: u32 = 1_000;
/// Lines in each pre-filled cart.
pub const LINES_PER_CART: u32 = 20;
/// Replicas each `add-cluster-wait` write waits for: the one each master has.
pub const WAIT_REPLICAS: u8 = 1;

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Get => "get",
            Self::Journey => "journey",
            Self::Health => "health",
            Self::GetAuth => "get-auth",
            Self::AddCluster => "add-cluster",
            Self::GetCluster => "get-cluster",
            Self::AddClusterWait => "add-cluster-wait",
        }
    }

    /// The scenario named `name` in a report, if this bench still has it.
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|scenario| scenario.name() == name)
    }

    /// Whether the service must check bearer tokens for this scenario: it then runs on a
    /// service of its own, started with [`Self::service_env`].
    pub fn authenticated(self) -> bool {
        self == Self::GetAuth
    }

    /// Whether it runs against the Redis Cluster, on a service of its own started with
    /// `REDIS_MODE=cluster` and every node's URL as a seed.
    pub fn cluster(self) -> bool {
        matches!(
            self,
            Self::AddCluster | Self::GetCluster | Self::AddClusterWait
        )
    }

    /// Whether it runs on a service of its own rather than the shared baseline one.
    pub fn own_service(self) -> bool {
        self.authenticated() || self.cluster()
    }

    /// The scenarios a cluster scenario's figures are read beside, at the same concurrency:
    /// the one-Redis scenario sending the same requests, and for `add-cluster-wait` first
    /// `add-cluster`, which differs from it only by the wait.
    pub fn beside(self) -> &'static [Self] {
        match self {
            Self::AddCluster => &[Self::Add],
            Self::GetCluster => &[Self::Get],
            Self::AddClusterWait => &[Self::AddCluster, Self::Add],
            _ => &[],
        }
    }

    /// The variables the service needs for this scenario on top of the baseline's: for
    /// `get-auth`, `AUTH_MODE=jwt` with the run's public key in `dir` (the user claim stays
    /// the default, `sub`); for `add-cluster-wait`, `REDIS_WAIT_REPLICAS` (its timeout
    /// stays the default, 250 ms); none for the others. (Where Redis is, and in which
    /// mode, comes with the Redis the service is started against: [`super::Backend`].)
    pub fn service_env(self, dir: &Path) -> Vec<(&'static str, String)> {
        match self {
            Self::GetAuth => vec![
                ("AUTH_MODE", "jwt".to_owned()),
                (
                    "AUTH_PUBLIC_KEY_FILE",
                    jwt::public_key_path(dir).display().to_string(),
                ),
                ("AUTH_ISSUER", jwt::ISSUER.to_owned()),
                ("AUTH_AUDIENCE", jwt::AUDIENCE.to_owned()),
            ],
            Self::AddClusterWait => vec![("REDIS_WAIT_REPLICAS", WAIT_REPLICAS.to_string())],
            _ => Vec::new(),
        }
    }

    /// The wrk script: a request generator (none for `health`, whose static request is
    /// wrk's fastest path) and the `done()` hook that prints the JSON result line.
    /// `tokens` are the pre-filled carts' users' bearer tokens, `g-0`'s first
    /// ([`bearer_tokens`]): `get-auth` sends each request with its user's; the other
    /// scenarios ignore them.
    pub fn wrk_script(self, tokens: &[String]) -> String {
        let mut script = String::from(SEEDING);
        let body = format!(
            r#"'{{"product_id":"p-' .. (math.random({PRODUCTS}) - 1) .. '","quantity":1}}'"#
        );
        let _ = match self {
            Self::Add | Self::AddCluster | Self::AddClusterWait => write!(
                script,
                r#"wrk.headers["Content-Type"] = "application/json"
function request()
  local path = "/v1/cart/u-" .. (math.random({USERS}) - 1)
  return wrk.format("POST", path, nil, {body})
end
"#
            ),
            Self::Get | Self::GetCluster => write!(
                script,
                r#"function request()
  return wrk.format("GET", "/v1/cart/g-" .. (math.random({FILLED_CARTS}) - 1))
end
"#
            ),
            Self::Journey => write!(
                script,
                r#"wrk.headers["Content-Type"] = "application/json"
local step, path = 0, ""
function request()
  step = step % 4 + 1
  if step == 1 then path = "/v1/cart/j-" .. (math.random({USERS}) - 1) end
  if step <= 2 then return wrk.format("POST", path, nil, {body}) end
  if step == 3 then return wrk.format("GET", path) end
  return wrk.format("DELETE", path)
end
"#
            ),
            Self::GetAuth => write!(
                script,
                r#"local bearer = {{
{}}}
for i, token in ipairs(bearer) do bearer[i] = {{Authorization = "Bearer " .. token}} end
function request()
  local user = math.random({FILLED_CARTS})
  return wrk.format("GET", "/v1/cart/g-" .. (user - 1), bearer[user])
end
"#,
                tokens.iter().fold(String::new(), |mut table, token| {
                    let _ = writeln!(table, "  \"{token}\",");
                    table
                })
            ),
            Self::Health => Ok(()),
        };
        script.push_str(DONE);
        script
    }

    /// The path wrk is pointed at (scripts that build requests override it).
    pub fn path(self) -> &'static str {
        match self {
            Self::Health => "/livez",
            _ => "/",
        }
    }

    /// The redis-benchmark load that does Redis's share of this scenario's work, against
    /// the Redis the scenario's service uses. None for `journey`, a mix of four, and for
    /// `add-cluster-wait`: redis-benchmark sends one command a request, and no command
    /// makes a write wait for its replica (`WAIT` is a second one), so it is read beside
    /// `add-cluster` instead ([`Self::beside`]).
    pub fn redis_equivalent(self) -> Option<RedisLoad> {
        let hincrby = ["HINCRBY", "rb:cart:{__rand_int__}", "p-__rand_int__", "1"];
        match self {
            Self::Add => Some(RedisLoad::standalone(&hincrby, USERS)),
            Self::Get | Self::GetAuth => Some(RedisLoad::standalone(
                &["HGETALL", "rb:filled:__rand_int__"],
                FILLED_CARTS,
            )),
            Self::Health => Some(RedisLoad::standalone(&["PING"], 1)),
            // `{tag}`, which redis-benchmark spells, picks the slot, and so the master.
            Self::AddCluster => Some(RedisLoad::cluster(
                &[
                    "HINCRBY",
                    "rb:cart:{tag}:__rand_int__",
                    "p-__rand_int__",
                    "1",
                ],
                Some(USERS),
            )),
            Self::GetCluster => Some(RedisLoad::cluster(&HGETALL_TAGGED, None)),
            Self::Journey | Self::AddClusterWait => None,
        }
    }
}

/// The cluster's HGETALL: the hash of a slot of the client's master, which
/// [`tagged_fill`] filled.
const HGETALL_TAGGED: [&str; 2] = ["HGETALL", "rb:filled:{tag}"];

/// The redis-benchmark load that fills the hashes the cluster's HGETALL reads, with the
/// lines of a pre-filled cart: an HSET of `rb:filled:{tag}`, which lands in a slot of the
/// client's master. Only redis-benchmark knows which slots' tags it spells, so only it can
/// write them; [`super::cluster`] runs it until a run adds no hash.
pub fn tagged_fill() -> RedisLoad {
    let mut command = vec!["HSET".to_owned(), HGETALL_TAGGED[1].to_owned()];
    command.extend(cart_lines());
    RedisLoad {
        command,
        keys: None,
        cluster: true,
    }
}

/// A bearer token for each pre-filled cart's user, `g-0` first, made by `sign` (in a run,
/// [`Issuer::token`](super::jwt::Issuer::token)).
pub fn bearer_tokens(sign: impl Fn(&str) -> anyhow::Result<String>) -> anyhow::Result<Vec<String>> {
    (0..FILLED_CARTS)
        .map(|cart| sign(&format!("g-{cart}")))
        .collect()
}

/// The Redis commands (RESP-ready argument lists) that pre-fill the data `get`, `get-auth`
/// and the HGETALL benchmark read: `cart:{g-N}` as the service stores carts (the service's
/// data model), and `rb:filled:<12 digits>` as redis-benchmark's `__rand_int__` spells keys.
pub fn prefill_commands() -> Vec<Vec<String>> {
    (0..FILLED_CARTS)
        .flat_map(|cart| {
            [
                format!("cart:{{g-{cart}}}"),
                format!("rb:filled:{cart:012}"),
            ]
        })
        .map(hset)
        .collect()
}

/// The commands that pre-fill the carts `get-cluster` reads, `g-0`'s first: the same
/// `cart:{g-N}` hashes, written through the cluster ([`tagged_fill`] fills redis-benchmark's).
pub fn cart_commands() -> Vec<Vec<String>> {
    (0..FILLED_CARTS)
        .map(|cart| hset(format!("cart:{{g-{cart}}}")))
        .collect()
}

/// `HSET key` with a pre-filled cart's lines.
fn hset(key: String) -> Vec<String> {
    let mut command = vec!["HSET".to_owned(), key];
    command.extend(cart_lines());
    command
}

/// A pre-filled cart's lines as HSET's field-value pairs: `p-00 1` to `p-19 20`.
fn cart_lines() -> impl Iterator<Item = String> {
    (0..LINES_PER_CART).flat_map(|line| [format!("p-{line:02}"), (line + 1).to_string()])
}

/// A seed per wrk thread, so threads do not replay the same sequence.
const SEEDING: &str = r"local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set('thread_id', threads)
end
function init(args)
  math.randomseed(os.time() * 1000 + (thread_id or 0))
end
";

/// Prints one `WRK_JSON {...}` line: counts, error kinds and latency in microseconds.
const DONE: &str = r#"function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%.0f,"duration_us":%.0f,"connect":%.0f,"read":%.0f,"write":%.0f,' ..
    '"status":%.0f,"timeout":%.0f,"p50_us":%.0f,"p99_us":%.0f,"p999_us":%.0f,"max_us":%.0f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
"#;

#[cfg(test)]
mod tests {
    use super::*;

    /// Stand-ins for signed tokens, one per pre-filled cart, that name their user.
    fn tokens() -> Vec<String> {
        bearer_tokens(|user| Ok(format!("token-of-{user}"))).unwrap()
    }

    #[test]
    fn every_script_prints_the_json_line_and_only_health_uses_the_static_request() {
        for scenario in Scenario::ALL {
            let script = scenario.wrk_script(&tokens());

            assert!(script.contains("WRK_JSON {"), "{scenario:?}");
            assert_eq!(
                script.contains("function request()"),
                scenario != Scenario::Health,
                "{scenario:?}"
            );
        }
    }

    #[test]
    fn add_spreads_over_the_documented_users_and_products() {
        let script = Scenario::Add.wrk_script(&[]);

        assert!(
            script.contains(r#""/v1/cart/u-" .. (math.random(10000) - 1)"#),
            "{script}"
        );
        assert!(
            script.contains(r#"'{"product_id":"p-' .. (math.random(100) - 1)"#),
            "{script}"
        );
    }

    #[test]
    fn journey_is_add_add_get_clear() {
        let script = Scenario::Journey.wrk_script(&[]);

        let methods: Vec<&str> = ["\"POST\"", "\"GET\"", "\"DELETE\""]
            .into_iter()
            .filter(|m| script.contains(m))
            .collect();
        assert_eq!(methods.len(), 3, "{script}");
        assert!(script.contains("step % 4 + 1"));
    }

    #[test]
    fn get_auth_sends_each_user_their_own_bearer_token() {
        let script = Scenario::GetAuth.wrk_script(&tokens());

        assert!(
            script.contains("local bearer = {\n  \"token-of-g-0\",\n  \"token-of-g-1\",\n"),
            "g-0's token first, one a line: {script}"
        );
        assert_eq!(
            script.matches("\"token-of-g-").count(),
            FILLED_CARTS as usize
        );
        assert!(
            script.contains(r#"bearer[i] = {Authorization = "Bearer " .. token}"#),
            "{script}"
        );
        assert!(
            script.contains("local user = math.random(1000)")
                && script.contains(r#""/v1/cart/g-" .. (user - 1), bearer[user])"#),
            "the path's user and the token's are the same draw: {script}"
        );
        assert!(
            !Scenario::Get.wrk_script(&tokens()).contains("Bearer"),
            "plain get sends no token"
        );
    }

    #[test]
    fn only_get_auth_starts_the_service_with_jwt_auth_and_the_runs_key() {
        let dir = Path::new("/tmp/run");

        let env = Scenario::GetAuth.service_env(dir);

        assert_eq!(
            env,
            [
                ("AUTH_MODE", "jwt".to_owned()),
                (
                    "AUTH_PUBLIC_KEY_FILE",
                    "/tmp/run/jwt-public-key.pem".to_owned()
                ),
                ("AUTH_ISSUER", "cargo-xtask-bench".to_owned()),
                ("AUTH_AUDIENCE", "cart-service".to_owned()),
            ]
        );
        for scenario in Scenario::ALL {
            assert_eq!(
                scenario
                    .service_env(dir)
                    .iter()
                    .any(|(key, _)| key.starts_with("AUTH_")),
                scenario.authenticated(),
                "{scenario:?}"
            );
        }
        assert_eq!(
            Scenario::GetAuth.redis_equivalent(),
            Scenario::Get.redis_equivalent(),
            "both read the same carts: HGETALL"
        );
    }

    #[test]
    fn there_is_a_bearer_token_for_each_pre_filled_cart_in_order() {
        let tokens = tokens();

        assert_eq!(tokens.len(), FILLED_CARTS as usize);
        assert_eq!(tokens[0], "token-of-g-0");
        assert_eq!(tokens[999], "token-of-g-999");
    }

    #[test]
    fn prefill_writes_twenty_line_carts_for_the_service_and_for_redis_benchmark() {
        let commands = prefill_commands();

        assert_eq!(commands.len(), 2 * FILLED_CARTS as usize);
        assert_eq!(commands[0][1], "cart:{g-0}");
        assert_eq!(commands[1][1], "rb:filled:000000000000");
        assert_eq!(commands[0].len(), 2 + 2 * LINES_PER_CART as usize);
        assert_eq!(commands[0][2..4], ["p-00", "1"]);
    }

    #[test]
    fn journey_has_no_single_redis_equivalent() {
        assert!(Scenario::Journey.redis_equivalent().is_none());
        assert_eq!(
            Scenario::Add.redis_equivalent().unwrap().command[0],
            "HINCRBY"
        );
        assert_eq!(
            Scenario::Get.redis_equivalent().unwrap().command[0],
            "HGETALL"
        );
    }

    #[test]
    fn cluster_scenarios_send_what_add_and_get_send_from_services_of_their_own() {
        for (cluster, standalone) in [
            (Scenario::AddCluster, Scenario::Add),
            (Scenario::GetCluster, Scenario::Get),
            (Scenario::AddClusterWait, Scenario::Add),
        ] {
            assert_eq!(
                cluster.wrk_script(&[]),
                standalone.wrk_script(&[]),
                "{cluster:?}"
            );
            assert!(cluster.cluster() && cluster.own_service(), "{cluster:?}");
            assert_eq!(cluster.beside().last(), Some(&standalone), "{cluster:?}");
        }
        let shared: Vec<Scenario> = Scenario::ALL
            .into_iter()
            .filter(|s| !s.own_service())
            .collect();
        assert_eq!(
            shared,
            [
                Scenario::Add,
                Scenario::Get,
                Scenario::Journey,
                Scenario::Health
            ]
        );
    }

    #[test]
    fn only_add_cluster_wait_makes_each_write_wait_for_a_replica() {
        let dir = Path::new("/tmp/run");

        assert_eq!(
            Scenario::AddClusterWait.service_env(dir),
            [("REDIS_WAIT_REPLICAS", "1".to_owned())]
        );
        assert_eq!(
            Scenario::AddClusterWait.beside(),
            [Scenario::AddCluster, Scenario::Add],
            "the wait alone first, then the whole step from one Redis"
        );
        for scenario in Scenario::ALL {
            assert_eq!(
                scenario
                    .service_env(dir)
                    .iter()
                    .any(|(key, _)| *key == "REDIS_WAIT_REPLICAS"),
                scenario == Scenario::AddClusterWait,
                "{scenario:?}"
            );
        }
    }

    #[test]
    fn cluster_equivalents_are_the_same_commands_on_keys_tagged_for_each_master() {
        let add = Scenario::AddCluster.redis_equivalent().unwrap();
        let get = Scenario::GetCluster.redis_equivalent().unwrap();

        assert!(add.cluster && get.cluster);
        assert_eq!(
            add.command,
            [
                "HINCRBY",
                "rb:cart:{tag}:__rand_int__",
                "p-__rand_int__",
                "1"
            ]
        );
        assert_eq!(add.keys, Some(USERS));
        assert_eq!(get.command, ["HGETALL", "rb:filled:{tag}"]);
        assert_eq!(get.keys, None, "no placeholder for -r to fill");
        assert!(Scenario::AddClusterWait.redis_equivalent().is_none());
        for scenario in Scenario::ALL.into_iter().filter(|s| !s.cluster()) {
            assert!(
                scenario.redis_equivalent().is_none_or(|load| !load.cluster),
                "{scenario:?}"
            );
        }
    }

    #[test]
    fn the_cluster_is_filled_with_the_same_carts_and_the_hashes_its_hgetall_reads() {
        let carts = cart_commands();
        let fill = tagged_fill();

        let standalone: Vec<Vec<String>> = prefill_commands().into_iter().step_by(2).collect();
        assert_eq!(
            carts, standalone,
            "cart:{{g-N}} as in the one Redis, g-0 first"
        );
        assert_eq!(fill.command[..2], ["HSET", "rb:filled:{tag}"]);
        assert_eq!(fill.command[2..], carts[0][2..], "a cart's twenty lines");
        assert!(fill.cluster);
        assert_eq!(
            fill.command[1],
            Scenario::GetCluster.redis_equivalent().unwrap().command[1],
            "what the HGETALL reads"
        );
    }

    #[test]
    fn every_scenario_is_named_in_reports_as_on_the_command_line() {
        use clap::ValueEnum as _;

        for scenario in Scenario::ALL {
            let flag = scenario.to_possible_value().unwrap();

            assert_eq!(flag.get_name(), scenario.name());
            assert_eq!(Scenario::named(scenario.name()), Some(scenario));
        }
        assert_eq!(
            Scenario::named("add-cluster-wait"),
            Some(Scenario::AddClusterWait)
        );
        assert_eq!(Scenario::named("checkout"), None);
    }
}
