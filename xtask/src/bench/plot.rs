//! The SVG plots of `docs/benchmarks/`: per-step cost by checkpoint store (ours, the reference,
//! LangGraph) and how the `foreach` fan-out grows with its children (time and peak memory).

use std::path::Path;

use plotters::prelude::*;

use super::Results;

const OURS: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const CLI: RGBColor = RGBColor(0x7f, 0xb8, 0xe0);
const REFERENCE: RGBColor = RGBColor(0xd6, 0x27, 0x28);
const LANGGRAPH: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);

fn err(e: impl std::fmt::Display) -> String {
    format!("plot: {e}")
}

/// One bar: label, median, colour.
type Bar = (String, f64, RGBColor);

/// The bars of the per-step plot, in the order they are drawn (top first).
pub(crate) fn step_bars(r: &Results) -> Vec<Bar> {
    let rows: [(&str, &str, RGBColor); 14] = [
        ("no checkpoints — ours", "loop.none", OURS),
        ("no saver — LangGraph", "lg.loop.none", LANGGRAPH),
        ("in memory — ours", "loop.memory", OURS),
        ("in memory — reference", "ref.loop.memory", REFERENCE),
        ("in memory — LangGraph", "lg.loop.memory", LANGGRAPH),
        (
            "in memory — ours, whole CLI process",
            "cli.loop.memory",
            CLI,
        ),
        ("local files — ours (fsync)", "loop.file", OURS),
        (
            "local files — reference (no fsync)",
            "ref.loop.file",
            REFERENCE,
        ),
        ("SQLite — ours", "loop.sqlite", OURS),
        ("SQLite — LangGraph", "lg.loop.sqlite", LANGGRAPH),
        ("Redis — ours", "loop.redis", OURS),
        ("PostgreSQL — ours", "loop.postgres", OURS),
        ("SQLite — ours, whole CLI process", "cli.loop.sqlite", CLI),
        (
            "PostgreSQL — ours, whole CLI process",
            "cli.loop.postgres",
            CLI,
        ),
    ];
    rows.iter()
        .filter_map(|(label, key, color)| r.get(key).map(|v| ((*label).to_owned(), v, *color)))
        .collect()
}

/// Horizontal bars of µs per state step, log scale.
pub(crate) fn per_step(r: &Results, path: &Path) -> Result<(), String> {
    let bars = step_bars(r);
    let height = 120 + 34 * bars.len().max(1) as u32;
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let lowest = bars.iter().map(|b| b.1).fold(1.0f64, f64::min).max(1e-3);
    let highest = bars.iter().map(|b| b.1).fold(10.0f64, f64::max);
    let x_min = 10f64.powf(lowest.log10().floor() - 0.2);
    // Room on the right for the labels written after each bar.
    let x_max = 10f64.powf(highest.log10().ceil() + 2.5);
    let n = bars.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption("µs per state step (median, log scale)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(8)
        .build_cartesian_2d((x_min..x_max).log_scale(), -0.5f64..n - 0.5)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_desc("µs per step")
        .x_label_formatter(&|x| format!("{x}"))
        .draw()
        .map_err(err)?;
    let row = |i: usize| n - 1.0 - i as f64;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, value, color))| {
            Rectangle::new(
                [(x_min, row(i) - 0.35), (*value, row(i) + 0.35)],
                color.filled(),
            )
        }))
        .map_err(err)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (label, value, _))| {
            Text::new(
                format!("{label}: {} µs", super::report::num(*value)),
                (*value * 1.15, row(i) + 0.2),
                ("sans-serif", 14).into_font(),
            )
        }))
        .map_err(err)?;
    root.present().map_err(err)
}

/// The points of one fan-out line: (children, value) for the sizes measured.
fn points(r: &Results, prefix: &str, suffix: &str) -> Vec<(f64, f64)> {
    [100.0, 1000.0, 10_000.0]
        .iter()
        .filter_map(|n| r.get(&format!("{prefix}.{n}{suffix}")).map(|v| (*n, v)))
        .collect()
}

/// Two panels: µs per child and peak RSS against the number of children, log-scaled.
pub(crate) fn fanout(r: &Results, path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (left, right) = root.split_horizontally(500);
    let lines = [
        ("ours", "fanout", OURS),
        ("ours, whole CLI process", "cli.fanout", CLI),
        ("reference", "ref.fanout", REFERENCE),
    ];
    // The §10 targets: 20 µs per child, 200 MB (190.7 MiB) for 10 000 children.
    for (area, suffix, caption, unit, target, legend) in [
        (
            &left,
            "",
            "µs per child (median)",
            "µs per child",
            (20.0, "target ≤ 20 µs"),
            SeriesLabelPosition::MiddleRight,
        ),
        (
            &right,
            ".rss_mib",
            "peak RSS of the process (MiB)",
            "MiB",
            (200e6 / 1_048_576.0, "target < 200 MB"),
            SeriesLabelPosition::LowerRight,
        ),
    ] {
        let all: Vec<f64> = lines
            .iter()
            .flat_map(|(_, p, _)| points(r, p, suffix))
            .map(|(_, v)| v)
            .collect();
        let low = all.iter().copied().fold(target.0, f64::min);
        let high = all.iter().copied().fold(target.0, f64::max);
        let (low, high) = if low.is_finite() && high > 0.0 {
            (low.max(1e-3) / 2.0, high * 2.0)
        } else {
            (1.0, 10.0)
        };
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d((50f64..20_000f64).log_scale(), (low..high).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("children (log scale)")
            .y_desc(unit)
            .x_label_formatter(&|x| format!("{x}"))
            .y_labels(6)
            .y_label_formatter(&|y| super::report::num(*y))
            .draw()
            .map_err(err)?;
        let grey = RGBColor(0x88, 0x88, 0x88);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(50.0, target.0), (20_000.0, target.0)],
                6,
                4,
                grey.stroke_width(1),
            ))
            .map_err(err)?
            .label(target.1)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey));
        for (label, prefix, color) in lines {
            let data = points(r, prefix, suffix);
            if data.is_empty() {
                continue;
            }
            chart
                .draw_series(LineSeries::new(data.clone(), color.stroke_width(2)))
                .map_err(err)?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart
                .draw_series(data.iter().map(|p| Circle::new(*p, 4, color.filled())))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(legend)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_are_svg_with_the_measured_bars() {
        let mut r = Results::default();
        r.extend("loop.memory", [2.5, 2.4, 2.6]);
        r.extend("ref.loop.memory", [250.0]);
        r.extend("fanout.100", [10.0]);
        r.extend("fanout.10000", [17.0]);
        r.extend("fanout.10000.rss_mib", [80.0]);
        r.extend("ref.fanout.100", [1600.0]);
        let bars = step_bars(&r);
        assert_eq!(bars.len(), 2);
        assert_eq!(bars[0].0, "in memory — ours");
        let dir = std::env::temp_dir().join(format!("xtask-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        per_step(&r, &dir.join("a.svg")).expect("per-step plot");
        fanout(&r, &dir.join("b.svg")).expect("fan-out plot");
        let a = std::fs::read_to_string(dir.join("a.svg")).expect("a.svg");
        let b = std::fs::read_to_string(dir.join("b.svg")).expect("b.svg");
        std::fs::remove_dir_all(&dir).expect("cleanup");
        assert!(
            a.starts_with("<svg") && a.contains("in memory — reference: 250 µs"),
            "{a}"
        );
        assert!(b.starts_with("<svg") && b.contains("reference"), "{b}");
    }
}
