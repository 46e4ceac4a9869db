//! The chart of a run, drawn as SVG by plotters: the current binary's throughput and p99
//! latency against concurrency, one solid line per scenario and a dashed one per
//! redis-benchmark command, one Redis's and the cluster's apart (the first point at each
//! level, when two scenarios share the command), with one legend under both panels. The
//! concurrency levels sit evenly along the x axis whatever their values, as in the
//! report's table. A run at one level, where the lines would be a column of dots, gets
//! bars instead ([`super::bars`]).

use std::collections::BTreeMap;

use anyhow::Context;
use plotters::coord::Shift;
use plotters::coord::combinators::BindKeyPoints;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::report::Report;

pub const WIDTH: u32 = 1100;
const PANELS_HEIGHT: u32 = 390;
/// The legend's rows, 20 px apart, and room above and below them.
const LEGEND_ROW: u32 = 20;
const LEGEND_PADDING: u32 = 30;
/// Where the legend's first column starts, and how far apart its columns are: room for
/// `redis-benchmark --cluster HINCRBY`.
const LEGEND_LEFT: i32 = 70;
const LEGEND_COLUMN: i32 = 340;
const LEGEND_COLUMNS: i32 = 3;
pub const FONT: &str = "sans-serif";
/// 12 px text: plotters' SVG backend writes a font's size divided by 1.24.
pub const FONT_SIZE: f64 = 15.0;
/// At most this many values on a value axis, which ends on a round number.
pub const Y_TICKS: usize = 6;
/// Enough for every scenario and redis-benchmark line of a full run (8 and 5).
pub const COLOURS: [RGBColor; 14] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0x17, 0xbe, 0xcf),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x39, 0x3b, 0x79),
    RGBColor(0x63, 0x79, 0x39),
    RGBColor(0x84, 0x3c, 0x39),
    RGBColor(0x7b, 0x41, 0x73),
];
/// Dash and gap of the redis-benchmark lines, in pixels.
const DASH: (i32, i32) = (6, 4);
/// The x axis is an integer one, the kind plotters lets a chart put its own ticks on (one
/// per level): levels are `X_STEP` apart, with `X_PADDING` of room before the first and
/// after the last, so their points are not cut in half by the frame.
const X_STEP: i32 = 100;
const X_PADDING: i32 = 5;

/// The SVG document for `report`.
pub fn chart(report: &Report) -> anyhow::Result<String> {
    let (throughput, latency) = series(report);
    let mut levels: Vec<u32> = report.current_points().map(|p| p.connections).collect();
    levels.sort_unstable();
    levels.dedup();
    if let [level] = levels[..] {
        return super::bars::chart(report, level);
    }

    let rows = u32::try_from(throughput.len())?.div_ceil(LEGEND_COLUMNS.unsigned_abs());
    let legend_height = LEGEND_PADDING + LEGEND_ROW * rows;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, PANELS_HEIGHT + legend_height))
            .into_drawing_area();
        let draw = || -> Result<(), DrawingAreaErrorKind<_>> {
            root.fill(&WHITE)?;
            let (panels, legend_area) = root.split_vertically(PANELS_HEIGHT);
            let (left, right) = panels.split_horizontally(WIDTH / 2);
            panel(&left, "throughput (requests/s)", &throughput, &levels)?;
            panel(&right, "p99 latency (ms)", &latency, &levels)?;
            legend(&legend_area, &throughput)?;
            root.present()
        };
        draw().context("cannot draw the bench chart")?;
    }
    Ok(svg)
}

/// One line of a panel: a label, dashed or not, and (connections, value) points.
#[derive(Debug)]
struct Series {
    label: String,
    dashed: bool,
    points: Vec<(u32, f64)>,
}

/// The throughput and the p99 latency lines, in the same order, so a colour names the
/// same series in both panels and the legend.
fn series(report: &Report) -> (Vec<Series>, Vec<Series>) {
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
            let mode = if redis.cluster { "--cluster " } else { "" };
            let label = format!("redis-benchmark {mode}{}", first_word(&redis.command));
            // `get` and `get-auth` both run HGETALL: one line, not a zigzag between two.
            let drawn = throughput
                .get(&label)
                .is_some_and(|s| s.points.iter().any(|&(c, _)| c == point.connections));
            if !drawn {
                add(&mut throughput, label.clone(), true, redis.rps);
                add(&mut latency, label, true, redis.p99_ms);
            }
        }
    }
    (
        throughput.into_values().collect(),
        latency.into_values().collect(),
    )
}

/// One panel: title, axes with a tick per level and round values up to a round top, the
/// lines and their points.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    series: &[Series],
    levels: &[u32],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0_f64, f64::max);
    let top = nice_ceiling(max);
    let positions: Vec<(u32, i32)> = levels
        .iter()
        .copied()
        .zip((0..).map(|i| i * X_STEP))
        .collect();
    let x = |connections: u32| {
        positions
            .iter()
            .find(|&&(level, _)| level == connections)
            .map_or(0, |&(_, x)| x)
    };
    let last = positions.last().map_or(0, |&(_, x)| x).max(X_STEP);
    let x_range =
        (-X_PADDING..last + X_PADDING).with_key_points(positions.iter().map(|&(_, x)| x).collect());

    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, FONT_SIZE, FontStyle::Bold))
        .margin_top(10)
        .margin_right(20)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range, 0.0..top)?;
    let level_label = |value: &i32| {
        positions
            .iter()
            .find(|&(_, x)| x == value)
            .map(|(level, _)| level.to_string())
            .unwrap_or_default()
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
        .max_light_lines(0)
        .label_style((FONT, FONT_SIZE))
        .axis_desc_style((FONT, FONT_SIZE))
        .x_desc("connections")
        .x_label_formatter(&level_label)
        .y_labels(Y_TICKS)
        .y_label_formatter(&|value| format_tick(*value))
        .draw()?;

    for (line, colour) in series.iter().zip(COLOURS.iter().cycle()) {
        let points: Vec<(i32, f64)> = line.points.iter().map(|&(c, v)| (x(c), v)).collect();
        let style = colour.stroke_width(2);
        if line.dashed {
            chart.draw_series(DashedLineSeries::new(points.clone(), DASH.0, DASH.1, style))?;
        } else {
            chart.draw_series(LineSeries::new(points.clone(), style))?;
        }
        chart.draw_series(
            points
                .into_iter()
                .map(|point| Circle::new(point, 3, colour.filled())),
        )?;
    }
    Ok(())
}

/// A sample of each line and its label, four to a row.
fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    series: &[Series],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let text =
        TextStyle::from((FONT, FONT_SIZE).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for ((line, colour), index) in series.iter().zip(COLOURS.iter().cycle()).zip(0..) {
        let (column, row) = (index % LEGEND_COLUMNS, index / LEGEND_COLUMNS);
        let left = LEGEND_LEFT + LEGEND_COLUMN * column;
        let y = 20 + 20 * row;
        let sample = [(left, y), (left + 24, y)];
        let style = colour.stroke_width(2);
        if line.dashed {
            area.draw(&DashedPathElement::new(sample, DASH.0, DASH.1, style))?;
        } else {
            area.draw(&PathElement::new(sample, style))?;
        }
        area.draw(&Text::new(line.label.as_str(), (left + 30, y), &text))?;
    }
    Ok(())
}

/// 1, 2 or 5 times a power of ten, at least `value` (and at least 1).
pub fn nice_ceiling(value: f64) -> f64 {
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

pub fn format_tick(value: f64) -> String {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use super::*;
    use crate::bench::fixture;

    /// add, get, health, then redis-benchmark HGETALL, HINCRBY, PING: the fixture's series
    /// in the order they take the colours.
    const LABELS: [&str; 6] = [
        "add",
        "get",
        "health",
        "redis-benchmark HGETALL",
        "redis-benchmark HINCRBY",
        "redis-benchmark PING",
    ];

    #[test]
    fn chart_has_both_panels_a_line_per_series_and_the_levels() {
        let svg = chart(&fixture::report()).unwrap();

        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("throughput (requests/s)") && svg.contains("p99 latency (ms)"));
        for level in ["16", "64"] {
            assert_eq!(text_count(&svg, level), 2, "{level} on both x axes");
        }
        for (label, colour) in LABELS.iter().zip(COLOURS) {
            assert_eq!(text_count(&svg, label), 1, "{label} in the legend");
            // Two levels in each of the two panels.
            assert_eq!(
                count(&svg, "<circle", colour, "fill"),
                4,
                "the points of {label}"
            );
            assert!(
                panel_lines(&svg, colour).len() >= 2,
                "a line for {label} in each panel"
            );
        }
    }

    #[test]
    fn scenarios_are_solid_lines_and_redis_benchmark_dashed() {
        let svg = chart(&fixture::report()).unwrap();

        for (label, colour) in LABELS.iter().zip(COLOURS) {
            let lines = panel_lines(&svg, colour);
            if label.starts_with("redis-benchmark") {
                assert!(lines.len() > 2, "{label} is dashed: {lines:?}");
            } else {
                assert_eq!(lines.len(), 2, "{label}: one line in each panel");
                assert!(
                    lines.iter().all(|points| points.len() == 2),
                    "{label} joins its two levels: {lines:?}"
                );
            }
        }
    }

    #[test]
    fn scenarios_sharing_a_redis_benchmark_command_draw_it_once_per_level() {
        let mut report = fixture::report();
        let hgetall = "HGETALL rb:filled:__rand_int__";
        for (connections, rps) in [(16, 36_000.0), (64, 41_000.0)] {
            report.points.push(fixture::point(
                "get-auth",
                connections,
                rps / 3.0,
                Some((hgetall, rps)),
            ));
        }

        let (throughput, latency) = series(&report);

        let line = throughput
            .iter()
            .find(|s| s.label == "redis-benchmark HGETALL")
            .unwrap();
        assert_eq!(
            line.points.iter().map(|p| p.0).collect::<Vec<_>>(),
            [16, 64],
            "{line:?}"
        );
        assert!(
            (line.points[0].1 - 35_000.0).abs() < 1e-9,
            "get's, the first measured: {line:?}"
        );
        assert!(throughput.iter().any(|s| s.label == "get-auth"));
        assert_eq!(latency.len(), throughput.len());
    }

    #[test]
    fn the_clusters_redis_benchmark_lines_are_apart_from_the_one_redis() {
        let mut report = fixture::report();
        report.points.extend(fixture::cluster_points());

        let (throughput, _) = series(&report);
        let svg = chart(&report).unwrap();

        let labels: Vec<&str> = throughput.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "add",
                "add-cluster",
                "add-cluster-wait",
                "get",
                "get-cluster",
                "health",
                "redis-benchmark --cluster HGETALL",
                "redis-benchmark --cluster HINCRBY",
                "redis-benchmark HGETALL",
                "redis-benchmark HINCRBY",
                "redis-benchmark PING",
            ]
        );
        let cluster_hincrby = &throughput[7];
        assert_eq!(cluster_hincrby.points, [(64, 40_000.0), (256, 41_000.0)]);
        for (label, colour) in labels.iter().zip(COLOURS) {
            assert_eq!(text_count(&svg, label), 1, "{label} in the legend");
            assert!(
                count(&svg, "<circle", colour, "fill") >= 2,
                "{label}'s points in both panels"
            );
        }
        assert!(
            svg.contains(r#"height="500""#),
            "four legend rows of three: {}",
            &svg[..200]
        );
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

    /// How many `<text>` elements hold exactly `content` (plotters puts it on a line of
    /// its own).
    fn text_count(svg: &str, content: &str) -> usize {
        svg.matches(&format!("\n{content}\n</text>")).count()
    }

    /// How many `element`s have `colour` as their `attribute`.
    fn count(svg: &str, element: &str, colour: RGBColor, attribute: &str) -> usize {
        svg.lines()
            .filter(|line| line.starts_with(element) && line.contains(&coloured(attribute, colour)))
            .count()
    }

    /// The points of each `<polyline>` stroked in `colour` above the legend: the lines
    /// of the panels, or the dashes of a dashed one.
    fn panel_lines(svg: &str, colour: RGBColor) -> Vec<Vec<(i32, i32)>> {
        let legend_top = i32::try_from(PANELS_HEIGHT).unwrap();
        svg.lines()
            .filter(|line| {
                line.starts_with("<polyline") && line.contains(&coloured("stroke", colour))
            })
            .filter_map(|line| line.split("points=\"").nth(1)?.split('"').next())
            .map(|points| {
                points
                    .split_whitespace()
                    .map(|point| {
                        let (x, y) = point.split_once(',').unwrap();
                        (x.parse().unwrap(), y.parse().unwrap())
                    })
                    .collect::<Vec<(i32, i32)>>()
            })
            .filter(|points| points.iter().all(|&(_, y)| y < legend_top))
            .collect()
    }

    fn coloured(attribute: &str, RGBColor(r, g, b): RGBColor) -> String {
        format!("{attribute}=\"#{r:02X}{g:02X}{b:02X}\"")
    }
}
