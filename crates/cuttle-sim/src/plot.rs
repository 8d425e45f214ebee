//! The `--plot` picture: queue length and utilization over time, one line per strategy,
//! as a hand-written SVG (no plotting dependency for two line charts). Values are averaged
//! over equal time buckets, weighted by how long each value held, so a busy week reads as
//! a curve rather than thousands of spikes. It only draws; it never changes a number.

use std::fmt::Write as _;

use crate::engine::{Outcome, Sample};

const WIDTH: f64 = 960.0;
const PANEL_HEIGHT: f64 = 260.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 180.0;
const TOP: f64 = 40.0;
const GAP: f64 = 70.0;
const BUCKETS: usize = 300;
/// One colour per strategy, in report order; the last (grey) is the greedy yardstick.
const COLOURS: [&str; 6] = [
    "#d62728", "#ff7f0e", "#1f77b4", "#2ca02c", "#9467bd", "#7f7f7f",
];

/// Time-weighted averages of `value` over `BUCKETS` equal buckets of [from, to).
fn bucket_averages(
    samples: &[Sample],
    from: i64,
    to: i64,
    value: impl Fn(&Sample) -> f64,
) -> Vec<f64> {
    let span = (to - from).max(1) as f64;
    let width = span / BUCKETS as f64;
    let mut sums = vec![0.0; BUCKETS];
    for (i, sample) in samples.iter().enumerate() {
        // A sample's value holds until the next sample (the last one until `to`).
        let start = (sample.at_ms - from) as f64;
        let end = samples
            .get(i + 1)
            .map_or(span, |next| (next.at_ms - from) as f64);
        let v = value(sample);
        if end <= start || v == 0.0 {
            continue;
        }
        let first = ((start / width) as usize).min(BUCKETS - 1);
        let last = ((end / width) as usize).min(BUCKETS - 1);
        for (b, sum) in sums.iter_mut().enumerate().take(last + 1).skip(first) {
            let lo = start.max(b as f64 * width);
            let hi = end.min((b + 1) as f64 * width);
            if hi > lo {
                *sum += v * (hi - lo);
            }
        }
    }
    sums.into_iter().map(|s| s / width).collect()
}

/// A "nice" step for about `target` ticks over `max`.
fn nice_step(max: f64, target: f64) -> f64 {
    let raw = (max / target).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    let residual = raw / magnitude;
    let nice = if residual <= 1.0 {
        1.0
    } else if residual <= 2.0 {
        2.0
    } else if residual <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// One panel: axes, ticks, grid and one polyline per series.
fn panel(
    svg: &mut String,
    top: f64,
    title: &str,
    hours: f64,
    y_max: f64,
    series: &[(&str, &str, Vec<f64>)],
) {
    let plot_width = WIDTH - LEFT - RIGHT;
    let bottom = top + PANEL_HEIGHT;
    let x = |h: f64| LEFT + plot_width * h / hours.max(f64::MIN_POSITIVE);
    let y = |v: f64| bottom - PANEL_HEIGHT * v / y_max;
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="{}" font-size="14" font-weight="bold">{title}</text>"#,
        top - 10.0
    );
    // Y ticks and grid.
    let step = nice_step(y_max, 5.0);
    let mut v = 0.0;
    while v <= y_max + step * 1e-9 {
        let yy = y(v);
        let label = if step < 1.0 {
            format!("{v:.1}")
        } else {
            format!("{v:.0}")
        };
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{label}</text>",
            LEFT + plot_width,
            LEFT - 6.0,
            yy + 4.0
        );
        v += step;
    }
    // X ticks in hours (days when long).
    let (unit, per) = if hours > 72.0 {
        ("days", 24.0)
    } else {
        ("hours", 1.0)
    };
    let step = nice_step(hours / per, 8.0);
    let mut t = 0.0;
    while t <= hours / per + step * 1e-9 {
        let xx = x(t * per);
        let _ = writeln!(
            svg,
            "<line x1=\"{xx:.1}\" y1=\"{bottom}\" x2=\"{xx:.1}\" y2=\"{:.1}\" stroke=\"#000\"/>\n<text x=\"{xx:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            bottom + 5.0,
            bottom + 18.0,
            if step < 1.0 {
                format!("{t:.1}")
            } else {
                format!("{t:.0}")
            }
        );
        t += step;
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"middle\">time since first submit ({unit})</text>",
        LEFT + plot_width / 2.0,
        bottom + 34.0
    );
    // Axes.
    let _ = writeln!(
        svg,
        "<line x1=\"{LEFT}\" y1=\"{top}\" x2=\"{LEFT}\" y2=\"{bottom}\" stroke=\"#000\"/>\n<line x1=\"{LEFT}\" y1=\"{bottom}\" x2=\"{:.1}\" y2=\"{bottom}\" stroke=\"#000\"/>",
        LEFT + plot_width
    );
    for (_, colour, values) in series {
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let h = hours * (i as f64 + 0.5) / values.len() as f64;
                format!("{:.1},{:.1}", x(h), y(*v))
            })
            .collect();
        let dash = if *colour == COLOURS[COLOURS.len() - 1] {
            " stroke-dasharray=\"5,3\""
        } else {
            ""
        };
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\"{dash} points=\"{}\"/>",
            points.join(" ")
        );
    }
}

/// The SVG for these outcomes (the greedy one last, drawn dashed).
pub fn svg(outcomes: &[&Outcome]) -> String {
    let from = outcomes
        .iter()
        .filter_map(|o| o.timeline.first().map(|s| s.at_ms))
        .min()
        .unwrap_or(0);
    let to = outcomes
        .iter()
        .filter_map(|o| o.timeline.last().map(|s| s.at_ms))
        .max()
        .unwrap_or(from)
        .max(from + 1);
    let hours = (to - from) as f64 / 3_600_000.0;
    let colour = |i: usize| {
        if i + 1 == outcomes.len() {
            COLOURS[COLOURS.len() - 1]
        } else {
            COLOURS[i % (COLOURS.len() - 1)]
        }
    };
    let queues: Vec<(&str, &str, Vec<f64>)> = outcomes
        .iter()
        .enumerate()
        .map(|(i, o)| {
            (
                o.strategy,
                colour(i),
                bucket_averages(&o.timeline, from, to, |s| f64::from(s.queued)),
            )
        })
        .collect();
    let utilization: Vec<(&str, &str, Vec<f64>)> = outcomes
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let nodes = f64::from(o.nodes.max(1));
            (
                o.strategy,
                colour(i),
                bucket_averages(&o.timeline, from, to, |s| f64::from(s.busy_nodes) / nodes),
            )
        })
        .collect();
    let queue_max = queues
        .iter()
        .flat_map(|(_, _, v)| v.iter().copied())
        .fold(1.0, f64::max);
    let queue_max = (queue_max / nice_step(queue_max, 5.0)).ceil() * nice_step(queue_max, 5.0);
    let height = TOP + 2.0 * PANEL_HEIGHT + GAP + 50.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>"
    );
    panel(&mut svg, TOP, "Queued jobs", hours, queue_max, &queues);
    panel(
        &mut svg,
        TOP + PANEL_HEIGHT + GAP,
        "Utilization (busy nodes / nodes)",
        hours,
        1.0,
        &utilization,
    );
    // Legend.
    let legend_x = WIDTH - RIGHT + 15.0;
    for (i, (name, colour, _)) in queues.iter().enumerate() {
        let yy = TOP + 10.0 + 20.0 * i as f64;
        let label = if i + 1 == queues.len() {
            format!("{name} (upper bound)")
        } else {
            (*name).to_owned()
        };
        let _ = writeln!(
            svg,
            "<line x1=\"{legend_x}\" y1=\"{yy}\" x2=\"{:.1}\" y2=\"{yy}\" stroke=\"{colour}\" stroke-width=\"3\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\">{label}</text>",
            legend_x + 20.0,
            legend_x + 26.0,
            yy + 4.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: i64, queued: u32, busy_nodes: u32) -> Sample {
        Sample {
            at_ms,
            queued,
            busy_nodes,
        }
    }

    #[test]
    fn bucket_averages_weigh_values_by_how_long_they_held() {
        // 0–150: 4 queued; 150–300: 0. Buckets are 1 ms wide (300 buckets over 300 ms).
        let samples = [sample(0, 4, 0), sample(150, 0, 0)];
        let averages = bucket_averages(&samples, 0, 300, |s| f64::from(s.queued));
        assert_eq!(averages.len(), BUCKETS);
        assert_eq!(averages[0], 4.0);
        assert_eq!(averages[149], 4.0);
        assert_eq!(averages[150], 0.0);
        // A value changing mid-bucket is averaged: 600 ms span, 2 ms buckets.
        let samples = [sample(0, 2, 0), sample(1, 6, 0), sample(600, 0, 0)];
        let averages = bucket_averages(&samples, 0, 600, |s| f64::from(s.queued));
        assert_eq!(averages[0], 4.0);
        assert_eq!(averages[1], 6.0);
    }

    #[test]
    fn the_svg_has_both_panels_a_line_per_strategy_and_a_legend() {
        let outcome = |name: &'static str| Outcome {
            strategy: name,
            nodes: 4,
            start_ms: vec![],
            buried: vec![],
            ahead: vec![],
            timeline: vec![
                sample(0, 3, 4),
                sample(7_200_000, 0, 2),
                sample(9_000_000, 0, 0),
            ],
        };
        let (a, b) = (outcome("cuttle"), outcome("greedy"));
        let svg = svg(&[&a, &b]);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("Queued jobs") && svg.contains("Utilization"));
        assert_eq!(
            svg.matches("<polyline").count(),
            4,
            "2 strategies × 2 panels"
        );
        assert!(svg.contains(">cuttle<") && svg.contains("greedy (upper bound)"));
        assert!(svg.contains("stroke-dasharray"));
        assert!(svg.contains("time since first submit (hours)"));
    }
}
