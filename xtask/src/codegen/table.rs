//! The chart README's values table: one row per value, walked from the values schema
//! (key, type and description, from the `Values` doc comments) with the default taken
//! from `values.yaml`, so the table, the schema and the defaults cannot disagree.

use std::fmt::Write as _;

use serde_json::Value;

/// The Markdown table of every value in `schema` (keys sorted, as in the schema), with defaults from `defaults`.
pub fn render(schema: &schemars::Schema, defaults: &Value) -> String {
    let mut rows = Vec::new();
    walk(schema.as_value(), "", defaults, &mut rows);
    let mut table = String::from("| value | type | default | description |\n|---|---|---|---|\n");
    for row in rows {
        let _ = writeln!(
            table,
            "| `{}` | {} | {} | {} |",
            row.key,
            row.kind,
            row.default,
            escape(&row.description)
        );
    }
    table
}

struct Row {
    key: String,
    kind: String,
    default: String,
    description: String,
}

/// Objects with their own properties are opened up; everything else is one row.
fn walk(schema: &Value, key: &str, defaults: &Value, rows: &mut Vec<Row>) {
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            let child = if key.is_empty() {
                name.clone()
            } else {
                format!("{key}.{name}")
            };
            walk(
                property,
                &child,
                defaults.get(name).unwrap_or(&Value::Null),
                rows,
            );
        }
        return;
    }
    rows.push(Row {
        key: key.to_owned(),
        kind: kind(schema),
        default: default(defaults),
        description: schema
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .replace('\n', " "),
    });
}

fn kind(schema: &Value) -> String {
    if let Some(choices) = schema.get("enum").and_then(Value::as_array) {
        let choices: Vec<String> = choices.iter().map(|c| format!("`{}`", plain(c))).collect();
        return format!("one of {}", choices.join(", "));
    }
    let base = match schema.get("type") {
        Some(Value::String(kind)) => kind.clone(),
        Some(Value::Array(kinds)) => kinds.iter().map(plain).collect::<Vec<_>>().join(" or "),
        _ => "object".to_owned(),
    };
    match schema.get("pattern").and_then(Value::as_str) {
        Some(pattern) if pattern.contains("[KMGTPE]i") => "quantity".to_owned(),
        Some(_) => format!("{base} (pattern)"),
        None => base,
    }
}

fn default(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) if text.contains('\n') => "see values.yaml".to_owned(),
        other => format!("`{}`", escape(&other.to_string())),
    }
}

fn plain(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), ToOwned::to_owned)
}

fn escape(text: &str) -> String {
    text.replace('|', "\\|")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nested_values_become_dotted_rows_with_their_defaults() {
        let schema = schemars::Schema::try_from(json!({
            "type": "object",
            "properties": {
                "redis": {"type": "object", "properties": {
                    "enabled": {"type": "boolean", "description": "Run Redis."},
                    "appendfsync": {"type": "string", "enum": ["everysec", "no"], "description": "fsync | policy."}
                }}
            }
        }))
        .unwrap();
        let defaults = json!({"redis": {"enabled": true, "appendfsync": "everysec"}});

        let table = render(&schema, &defaults);

        assert_eq!(
            table,
            "| value | type | default | description |\n|---|---|---|---|\n\
             | `redis.appendfsync` | one of `everysec`, `no` | `\"everysec\"` | fsync \\| policy. |\n\
             | `redis.enabled` | boolean | `true` | Run Redis. |\n"
        );
    }
}
