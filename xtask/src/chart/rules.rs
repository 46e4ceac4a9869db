//! The chart's SLO rules as promtool sees them. The rule groups live in the chart as a
//! templated rules file (`rules/cart-service-slo.yaml`), so promtool can only check what
//! Helm renders: `cargo xtask chart validate` takes the `PrometheusRule`'s `spec` out of the
//! render of `ci/monitoring-values.yaml` into a plain rules file, runs `promtool check
//! rules` on it, and runs the chart's unit tests (`tests/slo-rules.test.yaml`) beside it.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize as _;

use super::CHART;

/// The ci value set whose render carries the `PrometheusRule`.
pub const RULES_SET: &str = "monitoring";

/// The extracted rules file: the name the unit tests' `rule_files` gives.
pub const RULES_FILE: &str = "cart-service-slo.yaml";

/// The promtool unit tests of the rules, relative to the workspace root.
pub fn unit_tests() -> PathBuf {
    PathBuf::from(CHART).join("tests/slo-rules.test.yaml")
}

/// Where the extracted rules and a copy of the unit tests go: promtool reads a test's
/// `rule_files` relative to the test file, so the two sit side by side.
pub fn rules_dir() -> PathBuf {
    crate::workspace_root().join("target/chart/rules")
}

/// Writes the `spec` of the one `PrometheusRule` in the multi-document `render` to `to`.
pub fn extract(render: &Path, to: &Path) -> anyhow::Result<()> {
    let yaml =
        fs::read_to_string(render).with_context(|| format!("cannot read {}", render.display()))?;
    let spec = prometheus_rule_spec(&yaml)
        .with_context(|| format!("no rules to check in {}", render.display()))?;
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let rules = serde_norway::to_string(&spec)?;
    fs::write(to, rules).with_context(|| format!("cannot write {}", to.display()))
}

/// The `spec` of the one `PrometheusRule` among the rendered documents.
fn prometheus_rule_spec(yaml: &str) -> anyhow::Result<serde_json::Value> {
    let mut specs = Vec::new();
    for document in serde_norway::Deserializer::from_str(yaml) {
        let doc = serde_json::Value::deserialize(document).context("rendered YAML is invalid")?;
        if doc["kind"] == "PrometheusRule" {
            specs.push(doc["spec"].clone());
        }
    }
    match specs.len() {
        1 => Ok(specs.remove(0)),
        0 => bail!(
            "the render has no PrometheusRule: ci/{RULES_SET}-values.yaml must set prometheusRule.enabled"
        ),
        n => bail!("the render has {n} PrometheusRules, expected one"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use super::*;

    #[test]
    fn the_spec_of_the_prometheus_rule_is_taken_out_of_the_render() {
        let yaml = "kind: ConfigMap\ndata: {}\n---\n# Source: x\n\
                    apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\n\
                    spec:\n  groups:\n    - name: g\n      rules: []\n";

        let spec = prometheus_rule_spec(yaml).unwrap();

        assert_eq!(
            spec,
            serde_json::json!({"groups": [{"name": "g", "rules": []}]})
        );
    }

    #[test]
    fn a_render_without_a_prometheus_rule_names_the_value_that_enables_it() {
        let error = prometheus_rule_spec("kind: ConfigMap\n")
            .unwrap_err()
            .to_string();

        assert!(error.contains("prometheusRule.enabled"), "{error}");
    }
}
