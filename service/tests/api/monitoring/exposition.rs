//! A Prometheus text exposition read the way the tests need it: the `# TYPE` and
//! `# HELP` of each family and the name of each sample.

use std::collections::{BTreeMap, BTreeSet};

/// The `# TYPE` and `# HELP` lines and the sample names of a Prometheus text exposition.
#[derive(Debug, Default)]
pub struct Exposition {
    pub types: BTreeMap<String, String>,
    pub helps: BTreeMap<String, String>,
    pub samples: BTreeSet<String>,
    lines: Vec<String>,
}

impl Exposition {
    pub fn parse(text: &str) -> Self {
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
    pub fn family_of(&self, sample: &str) -> Option<String> {
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
    pub fn bucket_bounds(&self, bucket: &str) -> BTreeSet<String> {
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
