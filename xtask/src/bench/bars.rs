//! The chart of a run at one concurrency, where lines against concurrency would be a
//! column of dots: a row of horizontal bars for each scenario, its throughput in one panel
//! and its p99 latency in the other, the service's bar solid and its redis-benchmark
//! equivalent's outlined right under it, in the scenario's colour. Scenarios sort by name,
//! so a variant (`add-cluster`, `add-cluster-wait`) sits under the scenario it varies.

use anyhow::Context;
use plotters::coord::Shift;
use plotters::coord::combinators::BindKeyPoints;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::report::{Point, Report};
use super::svg::{COLOURS, FONT, FONT_SIZE, WIDTH, Y_TICKS, format_tick, nice_ceiling};

/// A scenario's row in y units: a gap, its redis-benchmark's bar, the service's, a gap.
const ROW: i32 = 10;
/// A row's height in pixels, and the room for a panel's title and value axis.
const ROW_PX: u32 = 44;
const PANEL_FRAME_PX: u32 = 90;
const LEGEND_PX: u32 = 50;
/// Room for the scenarios' names left of the bars.
const NAMES_PX: u32 = 140;
/// The legend's samples: neither a scenario's colour.
const NEUTRAL: RGBColor = RGBColor(0x55, 0x55, 0x55);

/// The SVG document for `report`, whose current points are all at `connections`.
pub fn chart(report: &Report, connections: u32) -> anyhow::Result<String> {
    let mut points: Vec<&Point> = report.current_points().collect();
    points.sort_by(|a, b| a.scenario.cmp(&b.scenario));
    let panels_height = PANEL_FRAME_PX + ROW_PX * u32::try_from(points.len())?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, panels_height + LEGEND_PX))
            .into_drawing_area();
        let draw = || -> Result<(), DrawingAreaErrorKind<_>> {
            root.fill(&WHITE)?;
            let (panels, legend_area) = root.split_vertically(panels_height);
            let (left, right) = panels.split_horizontally(WIDTH / 2);
            let throughput = format!("throughput at {connections} connections (requests/s)");
            panel(&left, &throughput, &points, |p| {
                (p.service.rps, p.redis.as_ref().map(|r| r.rps))
            })?;
            let latency = format!("p99 latency at {connections} connections (ms)");
            panel(&right, &latency, &points, |p| {
                (p.service.p99_ms, p.redis.as_ref().map(|r| r.p99_ms))
            })?;
            legend(&legend_area)?;
            root.present()
        };
        draw().context("cannot draw the bench chart")?;
    }
    Ok(svg)
}

/// One panel: a row for each of `points`, top to bottom, named on the left, with the
/// service's value and its redis-benchmark's as `values` gives them.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    points: &[&Point],
    values: impl Fn(&Point) -> (f64, Option<f64>),
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let max = points
        .iter()
        .map(|p| {
            let (service, redis) = values(p);
            service.max(redis.unwrap_or(0.0))
        })
        .fold(0.0_f64, f64::max);
    let rows = i32::try_from(points.len()).unwrap_or(i32::MAX);
    // The first point's row on top.
    let base = |row: i32| (rows - 1 - row) * ROW;
    let centres: Vec<i32> = (0..rows).map(|row| base(row) + ROW / 2).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, FONT_SIZE, FontStyle::Bold))
        .margin_top(10)
        .margin_right(20)
        .x_label_area_size(30)
        .y_label_area_size(NAMES_PX)
        .build_cartesian_2d(
            0.0..nice_ceiling(max),
            (0..rows * ROW).with_key_points(centres.clone()),
        )?;
    let name = |y: &i32| {
        centres
            .iter()
            .zip(points)
            .find(|&(centre, _)| centre == y)
            .map(|(_, point)| point.scenario.clone())
            .unwrap_or_default()
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
        .max_light_lines(0)
        .label_style((FONT, FONT_SIZE))
        .y_label_formatter(&name)
        .x_labels(Y_TICKS)
        .x_label_formatter(&|value| format_tick(*value))
        .draw()?;
    for ((row, point), colour) in (0..).zip(points).zip(COLOURS.iter().cycle()) {
        let (service, redis) = values(point);
        let bottom = base(row);
        chart.draw_series([Rectangle::new(
            [(0.0, bottom + 5), (service, bottom + 9)],
            colour.filled(),
        )])?;
        if let Some(redis) = redis {
            chart.draw_series([Rectangle::new(
                [(0.0, bottom + 1), (redis, bottom + 5)],
                colour.stroke_width(2),
            )])?;
        }
    }
    Ok(())
}

/// What a solid and an outlined bar stand for.
fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let text =
        TextStyle::from((FONT, FONT_SIZE).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    let entries = [
        (true, "the service under wrk"),
        (
            false,
            "its redis-benchmark equivalent (--cluster for the cluster scenarios)",
        ),
    ];
    for ((filled, label), left) in entries.into_iter().zip([70, 330]) {
        let style = if filled {
            NEUTRAL.filled()
        } else {
            NEUTRAL.stroke_width(2)
        };
        area.draw(&Rectangle::new([(left, 18), (left + 24, 30)], style))?;
        area.draw(&Text::new(label, (left + 32, 24), &text))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use super::*;
    use crate::bench::fixture;

    /// The fixture's points at 64 connections and the cluster's beside them.
    fn one_level() -> Report {
        let mut report = fixture::report();
        report.points.extend(fixture::cluster_points());
        report.points.retain(|p| p.connections == 64);
        report
    }

    #[test]
    fn a_run_at_one_level_draws_a_row_of_bars_for_each_scenario_sorted_by_name() {
        let report = one_level();

        let svg = super::super::svg::chart(&report).unwrap();

        assert!(
            svg.contains("throughput at 64 connections (requests/s)"),
            "bars: {svg}"
        );
        let names = [
            "add",
            "add-cluster",
            "add-cluster-wait",
            "get",
            "get-cluster",
            "health",
        ];
        for (name, colour) in names.iter().zip(COLOURS) {
            let label = format!("\n{name}\n</text>");
            assert_eq!(
                svg.matches(&label).count(),
                2,
                "{name} named in both panels"
            );
            let filled = rects(&svg, &format!("fill=\"{}\"", hex(colour)));
            let outlined = rects(&svg, &format!("stroke=\"{}\"", hex(colour)));
            assert_eq!(filled, 2, "{name}'s service bar in each panel");
            let equivalent = usize::from(*name != "add-cluster-wait");
            assert_eq!(outlined, 2 * equivalent, "{name}'s redis-benchmark bars");
        }
        assert!(svg.contains("its redis-benchmark equivalent"));
    }

    #[test]
    fn runs_at_several_levels_keep_their_lines() {
        let svg = super::super::svg::chart(&fixture::report()).unwrap();

        assert!(svg.contains("throughput (requests/s)"));
        assert!(!svg.contains("connections (requests/s)"));
    }

    /// How many `<rect>` elements carry `attribute`.
    fn rects(svg: &str, attribute: &str) -> usize {
        svg.lines()
            .filter(|line| line.starts_with("<rect") && line.contains(attribute))
            .count()
    }

    fn hex(RGBColor(r, g, b): RGBColor) -> String {
        format!("#{r:02X}{g:02X}{b:02X}")
    }
}
