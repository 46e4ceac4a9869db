//! `/metrics` as operators meet it: every metric family the service exports has its
//! `# HELP`, and every metric the chart's Grafana dashboard and SLO rules query is one the
//! service really exports (kube-state-metrics' names excepted, by an explicit list), so a
//! renamed metric cannot leave an empty panel or an alert that never fires.

use std::collections::{BTreeMap, BTreeSet};

use cart_test_support::app::{TestApp, spawn_app};
use cart_test_support::redis::unique_user;

/// Metrics the dashboard reads from kube-state-metrics, not from the service.
const KUBE_STATE_METRICS: [&str; 4] = [
    "kube_horizontalpodautoscaler_status_current_replicas",
    "kube_horizontalpodautoscaler_status_desired_replicas",
    "kube_horizontalpodautoscaler_spec_min_replicas",
    "kube_horizontalpodautoscaler_spec_max_replicas",
];

/// Every family the service is meant to export, once each kind of request has been made.
const FAMILIES: [&str; 6] = [
    "http_server_request_duration_seconds",
    "http_server_active_requests",
    "cart_operations_total",
    "redis_command_duration_seconds",
    "log_lines_dropped_total",
    "build_info",
];

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/cart-service");

#[tokio::test]
async fn every_exported_metric_family_has_a_help_line() {
    let app = spawn_app().await;

    let exposition = exercise_and_scrape(&app).await;

    for family in FAMILIES {
        assert!(
            exposition.types.contains_key(family),
            "{family} is not exported"
        );
    }
    for sample in &exposition.samples {
        assert!(
            exposition.family_of(sample).is_some(),
            "{sample} has no # TYPE"
        );
    }
    let undescribed: Vec<&String> = exposition
        .types
        .keys()
        .filter(|family| exposition.helps.get(*family).is_none_or(String::is_empty))
        .collect();
    assert!(undescribed.is_empty(), "no # HELP for {undescribed:?}");
}

#[tokio::test]
async fn every_metric_the_dashboard_and_the_rules_query_is_exported() {
    let app = spawn_app().await;
    let (dashboard, rules) = (dashboard_queries(), rule_queries());
    let recorded = recorded_names();

    let exposition = exercise_and_scrape(&app).await;

    let used: BTreeMap<String, &str> = dashboard
        .iter()
        .map(|q| (q, "dashboard"))
        .chain(rules.iter().map(|q| (q, "rules")))
        .flat_map(|(query, source)| metric_names(query).into_iter().map(move |n| (n, source)))
        .collect();
    assert!(
        used.len() >= FAMILIES.len(),
        "too few names found: {used:?}"
    );
    let unknown: Vec<(&String, &&str)> = used
        .iter()
        .filter(|(name, _)| {
            !exposition.samples.contains(*name)
                && !KUBE_STATE_METRICS.contains(&name.as_str())
                && !recorded.contains(*name)
        })
        .collect();
    assert!(unknown.is_empty(), "queried but not exported: {unknown:?}");
    for name in KUBE_STATE_METRICS {
        assert!(
            used.contains_key(name),
            "{name} is exempt but no query uses it"
        );
    }
}

#[tokio::test]
async fn every_exported_metric_family_is_on_the_dashboard() {
    let app = spawn_app().await;
    let used: BTreeSet<String> = dashboard_queries()
        .iter()
        .flat_map(|q| metric_names(q))
        .collect();

    let exposition = exercise_and_scrape(&app).await;

    let missing: Vec<&String> = exposition
        .types
        .keys()
        .filter(|family| {
            !used
                .iter()
                .any(|name| exposition.family_of(name).as_deref() == Some(family.as_str()))
        })
        .collect();
    assert!(missing.is_empty(), "not on the dashboard: {missing:?}");
}

#[tokio::test]
async fn the_latency_thresholds_the_chart_allows_are_the_exported_bucket_bounds() {
    let app = spawn_app().await;
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{CHART}/values.schema.json")).unwrap(),
    )
    .unwrap();
    let allowed: Vec<f64> = schema
        .pointer("/properties/prometheusRule/properties/slo/properties/latency/properties/thresholdSeconds/enum")
        .and_then(serde_json::Value::as_array)
        .expect("thresholdSeconds has an enum")
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();

    let exposition = exercise_and_scrape(&app).await;

    let bounds: BTreeSet<String> = exposition
        .bucket_bounds("http_server_request_duration_seconds_bucket")
        .into_iter()
        .filter(|le| le != "+Inf")
        .collect();
    let mut exported: Vec<f64> = bounds.iter().map(|le| le.parse().unwrap()).collect();
    exported.sort_by(f64::total_cmp);
    assert_eq!(allowed, exported);
}

/// Makes a request of each kind, so every metric has a sample, then scrapes `/metrics`.
async fn exercise_and_scrape(app: &TestApp) -> Exposition {
    let user = unique_user();
    assert_eq!(app.add(&user, "p-1", 2).await.status(), 200);
    assert_eq!(app.add(&user, "p-1", 0).await.status(), 422);
    app.cart(&user).await;
    let item = app.url(&format!("/v1/cart/{user}/items/p-1"));
    let body = serde_json::json!({"quantity": 3});
    assert_eq!(
        app.client
            .put(&item)
            .json(&body)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(app.client.delete(&item).send().await.unwrap().status(), 204);
    let cart = app.url(&format!("/v1/cart/{user}"));
    assert_eq!(app.client.delete(&cart).send().await.unwrap().status(), 204);
    for path in [
        "/healthz",
        "/livez",
        "/readyz",
        "/openapi.json",
        "/no-such-route",
    ] {
        app.get(path).await;
    }
    let stress = app.url("/stress?cpu_iterations=1");
    app.client.post(&stress).send().await.unwrap();

    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    Exposition::parse(&response.text().await.unwrap())
}

/// The `# TYPE` and `# HELP` lines and the sample names of a Prometheus text exposition.
#[derive(Debug, Default)]
struct Exposition {
    types: BTreeMap<String, String>,
    helps: BTreeMap<String, String>,
    samples: BTreeSet<String>,
    lines: Vec<String>,
}

impl Exposition {
    fn parse(text: &str) -> Self {
        let mut exposition = Self::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
                exposition.types.insert(name.to_owned(), kind.to_owned());
            } else if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                exposition
                    .helps
                    .insert(name.to_owned(), help.trim().to_owned());
            } else if !line.starts_with('#') {
                let end = line.find(['{', ' ']).unwrap_or(line.len());
                exposition.samples.insert(line[..end].to_owned());
                exposition.lines.push(line.to_owned());
            }
        }
        exposition
    }

    /// The family a sample name belongs to: itself, or a histogram's or summary's
    /// `_bucket`, `_sum` and `_count` series.
    fn family_of(&self, sample: &str) -> Option<String> {
        if self.types.contains_key(sample) {
            return Some(sample.to_owned());
        }
        ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            let base = sample.strip_suffix(suffix)?;
            matches!(self.types.get(base)?.as_str(), "histogram" | "summary")
                .then(|| base.to_owned())
        })
    }

    /// The `le` values of the samples named `bucket`.
    fn bucket_bounds(&self, bucket: &str) -> BTreeSet<String> {
        self.lines
            .iter()
            .filter(|line| line.starts_with(&format!("{bucket}{{")))
            .filter_map(|line| {
                let rest = &line[line.find("le=\"")? + 4..];
                Some(rest[..rest.find('"')?].to_owned())
            })
            .collect()
    }
}

/// Every query of the dashboard: panel targets, and the metric of each
/// `label_values(metric, label)` variable.
fn dashboard_queries() -> Vec<String> {
    fn walk(value: &serde_json::Value, queries: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value.as_str()) {
                        ("expr", Some(expr)) => queries.push(expr.to_owned()),
                        ("query" | "definition", Some(query))
                            if query.starts_with("label_values(") =>
                        {
                            let args = &query["label_values(".len()..];
                            let metric = args.rsplit_once(',').map_or("", |(metric, _)| metric);
                            queries.push(metric.to_owned());
                        }
                        _ => walk(value, queries),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|item| walk(item, queries)),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(format!("{CHART}/dashboards/cart-service.json")).unwrap();
    let mut queries = Vec::new();
    walk(&serde_json::from_str(&text).unwrap(), &mut queries);
    assert!(
        queries.len() >= 10,
        "too few dashboard queries: {queries:?}"
    );
    queries
}

/// The rules file of the chart: a Helm template, so read as text.
fn rules_file() -> String {
    std::fs::read_to_string(format!("{CHART}/rules/cart-service-slo.yaml")).unwrap()
}

/// Every `expr:` of the rules file: a one-line value, or the more-indented lines of a block.
fn rule_queries() -> Vec<String> {
    let text = rules_file();
    let lines: Vec<&str> = text.lines().collect();
    let mut queries = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let Some(value) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let indent = line.len() - line.trim_start().len();
        if matches!(value.trim(), "|" | ">" | "|-" | ">-") {
            let block = lines[index + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent);
            queries.push(block.copied().collect::<Vec<_>>().join("\n"));
        } else {
            queries.push(value.trim().to_owned());
        }
    }
    assert!(queries.len() >= 4, "too few rule expressions: {queries:?}");
    queries
}

/// The names the rules record, with Helm actions (`{{ $window }}`) removed.
fn recorded_names() -> BTreeSet<String> {
    rules_file()
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("- record:"))
        .map(|name| without_template_actions(name.trim()))
        .collect()
}

/// The metric names a query selects: identifiers outside label matchers,
/// ranges and strings that are not functions, operators or grouping labels. Helm
/// actions are removed first, so `ratio_rate{{ $window }}` reads as `ratio_rate`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: [&str; 25] = [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "atan2",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
        "by",
        "without",
        "ignoring",
    ];
    const LABEL_LISTS: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = without_template_actions(expr).chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            i = past_string(&chars, i);
        } else if c == '{' {
            i = past_closing(&chars, i, '}');
        } else if c == '[' {
            i = past_closing(&chars, i, ']');
        } else if c.is_ascii_digit() || c == '$' || c == '.' {
            // Numbers, durations and Grafana variables.
            i += 1;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || "_.${}".contains(chars[i]))
            {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..]
                .iter()
                .position(|c| !c.is_whitespace())
                .map(|p| i + p);
            let opens = next.is_some_and(|n| chars[n] == '(');
            if LABEL_LISTS.contains(&word.as_str()) && opens {
                i = past_closing(&chars, next.unwrap_or(i), ')');
            } else if !opens && !KEYWORDS.contains(&word.to_lowercase().as_str()) {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

fn without_template_actions(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        rest = rest[start..]
            .find("}}")
            .map_or("", |end| &rest[start + end + 2..]);
    }
    out + rest
}

/// The index after the string that starts at `open`.
fn past_string(chars: &[char], open: usize) -> usize {
    let quote = chars[open];
    let mut i = open + 1;
    while i < chars.len() && chars[i] != quote {
        i += if chars[i] == '\\' && quote != '`' {
            2
        } else {
            1
        };
    }
    i + 1
}

/// The index after the `close` that ends the bracket at `open`, skipping strings.
fn past_closing(chars: &[char], open: usize, close: char) -> usize {
    let mut i = open + 1;
    let mut depth = 1;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => {
                i = past_string(chars, i);
                continue;
            }
            c if c == chars[open] => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    i
}

#[test]
fn metric_names_skips_functions_labels_ranges_strings_and_variables() {
    let expr = r#"histogram_quantile(0.99, sum by (le, command) (rate(redis_command_duration_seconds_bucket{namespace="$namespace", route="/v1/{user_id}"}[$__rate_interval])))
        / on (job) group_left () cart_service:ratio_rate{{ $window }} > (14.4 * (1 - 99.9 / 100)) and up offset 5m"#;

    let names = metric_names(expr);

    let expected: BTreeSet<String> = [
        "redis_command_duration_seconds_bucket",
        "cart_service:ratio_rate",
        "up",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(names, expected);
}
