//! The queries of the chart's dashboard and rules, and the metric names in them. The
//! rules file is a Helm template, so it is read as text: its `expr:` values, with Helm
//! actions taken out, are still queries enough to name their metrics.

use std::collections::BTreeSet;

use super::CHART;

/// Every query of the dashboard: panel targets, and the metric of each
/// `label_values(metric, label)` variable.
pub fn dashboard_queries() -> Vec<String> {
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
pub fn rule_queries() -> Vec<String> {
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
pub fn recorded_names() -> BTreeSet<String> {
    rules_file()
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("- record:"))
        .map(|name| without_template_actions(name.trim()))
        .collect()
}

/// The metric names a query selects: identifiers outside label matchers,
/// ranges and strings that are not functions, operators or grouping labels. Helm
/// actions are removed first, so `ratio_rate{{ $window }}` reads as `ratio_rate`.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
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
