//! The chart of a run, as hand-written SVG (a plotting crate would bring fonts and image
//! codecs for two line charts): the current binary's throughput and p99 latency against
//! concurrency, one solid line per scenario and a dashed one per redis-benchmark command.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::report::Report;

const PANEL_WIDTH: f64 = 460.0;
const PANEL_HEIGHT: f64 = 300.0;
const MARGIN_LEFT: f64 = 70.0;
const MARGIN_TOP: f64 = 40.0;
const MARGIN_BOTTOM: f64 = 50.0;
const LEGEND_HEIGHT: f64 = 70.0;
const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f",
];

/// One line of a panel: a label, dashed or not, and (connections, value) points.
#[derive(Debug)]
struct Series {
    label: String,
    dashed: bool,
    points: Vec<(u32, f64)>,
}

/// The SVG document for `report`.
pub fn chart(report: &Report) -> String {
    let mut throughput: BTreeMap<String, Series> = BTreeMap::new();
    let mut latency: BTreeMap<String, Series> = BTreeMap::new();
    for point in report.current_points() {
        let add = |map: &mut BTreeMap<String, Series>, label: String, dashed, value| {
            map.entry(label.clone())
                .or_insert(Series {
                    label,
                    dashed,
                    points: Vec::new(),
                })
                .points
                .push((point.connections, value));
        };
        add(
            &mut throughput,
            point.scenario.clone(),
            false,
            point.service.rps,
        );
        add(
            &mut latency,
            point.scenario.clone(),
            false,
            point.service.p99_ms,
        );
        if let Some(redis) = &point.redis {
            let label = format!("redis-benchmark {}", first_word(&redis.command));
            add(&mut throughput, label.clone(), true, redis.rps);
            add(&mut latency, label, true, redis.p99_ms);
        }
    }
    let mut connections: Vec<u32> = report.current_points().map(|p| p.connections).collect();
    connections.sort_unstable();
    connections.dedup();

    let series: Vec<Series> = throughput.into_values().collect();
    let width = 2.0 * (MARGIN_LEFT + PANEL_WIDTH) + 40.0;
    let height = MARGIN_TOP + PANEL_HEIGHT + MARGIN_BOTTOM + LEGEND_HEIGHT;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
"#
    );
    panel(
        &mut svg,
        0.0,
        "throughput (requests/s)",
        &series,
        &connections,
    );
    let latency: Vec<Series> = latency.into_values().collect();
    let right = MARGIN_LEFT + PANEL_WIDTH + 40.0;
    panel(&mut svg, right, "p99 latency (ms)", &latency, &connections);
    legend(&mut svg, &series, MARGIN_TOP + PANEL_HEIGHT + MARGIN_BOTTOM);
    svg.push_str("</svg>\n");
    svg
}

/// One panel at horizontal offset `left`: axes, ticks, title, lines.
fn panel(svg: &mut String, left: f64, title: &str, series: &[Series], connections: &[u32]) {
    let x0 = left + MARGIN_LEFT;
    let y0 = MARGIN_TOP + PANEL_HEIGHT;
    let max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0_f64, f64::max);
    let top = nice_ceiling(max);
    let x = |c: u32| {
        let index = connections.iter().position(|&k| k == c).unwrap_or(0);
        #[allow(clippy::cast_precision_loss)] // a handful of levels
        let (index, last) = (
            index as f64,
            connections.len().saturating_sub(1).max(1) as f64,
        );
        x0 + 20.0 + index / last * (PANEL_WIDTH - 40.0)
    };
    let y = |v: f64| y0 - v / top * PANEL_HEIGHT;
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle" font-weight="bold">{title}</text>"#,
        x0 + PANEL_WIDTH / 2.0,
        MARGIN_TOP - 15.0
    );
    let _ = writeln!(
        svg,
        r#"<path d="M{x0},{MARGIN_TOP} V{y0} H{}" fill="none" stroke="black"/>"#,
        x0 + PANEL_WIDTH
    );
    for step in 0..=4 {
        let value = top * f64::from(step) / 4.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{x0}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\" stroke=\"#ddd\"/>\n\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            x0 + PANEL_WIDTH,
            x0 - 6.0,
            y(value) + 4.0,
            format_tick(value),
            y = y(value),
        );
    }
    for &c in connections {
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{c}</text>"#,
            x(c),
            y0 + 18.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">connections</text>"#,
        x0 + PANEL_WIDTH / 2.0,
        y0 + 38.0
    );
    for (index, line) in series.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let dash = if line.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let points: Vec<String> = line
            .points
            .iter()
            .map(|&(c, v)| format!("{:.1},{:.1}", x(c), y(v)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>"#,
            points.join(" ")
        );
        for &(c, v) in &line.points {
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#,
                x(c),
                y(v)
            );
        }
    }
}

fn legend(svg: &mut String, series: &[Series], top: f64) {
    for (index, line) in series.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        #[allow(clippy::cast_precision_loss)] // a handful of series
        let (column, row) = ((index % 4) as f64, (index / 4) as f64);
        let (lx, ly) = (MARGIN_LEFT + column * 230.0, top + 10.0 + row * 20.0);
        let dash = if line.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = writeln!(
            svg,
            r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0,
            escape(&line.label)
        );
    }
}

/// 1, 2 or 5 times a power of ten, at least `value` (and at least 1).
fn nice_ceiling(value: f64) -> f64 {
    if value <= 1.0 {
        return 1.0;
    }
    let magnitude = 10_f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&candidate| candidate >= value)
        .unwrap_or(10.0 * magnitude)
}

fn format_tick(value: f64) -> String {
    if value >= 1000.0 {
        format!("{:.0}k", value / 1000.0)
    } else if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

fn first_word(command: &str) -> &str {
    command.split_whitespace().next().unwrap_or(command)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::fixture;

    #[test]
    fn chart_has_both_panels_a_line_per_series_and_the_levels() {
        let svg = chart(&fixture::report());

        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("throughput (requests/s)") && svg.contains("p99 latency (ms)"));
        // add, get, health and HINCRBY, HGETALL, PING: six series in each of two panels.
        assert_eq!(svg.matches("<polyline").count(), 12);
        assert!(svg.contains(">redis-benchmark HINCRBY</text>"));
        assert!(svg.contains(">64</text>"));
    }

    #[test]
    fn axes_end_on_round_numbers() {
        assert!((nice_ceiling(0.4) - 1.0).abs() < f64::EPSILON);
        assert!((nice_ceiling(3.2) - 5.0).abs() < f64::EPSILON);
        assert!((nice_ceiling(41_000.0) - 50_000.0).abs() < f64::EPSILON);
        assert!((nice_ceiling(100.0) - 100.0).abs() < f64::EPSILON);
        assert_eq!(format_tick(12_000.0), "12k");
        assert_eq!(format_tick(2.5), "2.50");
    }
}
