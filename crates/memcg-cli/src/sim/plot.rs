//! `report.svg`: panels of line series stacked vertically, drawn with
//! plotters' SVG backend (no font rasterizer: SVG text is laid out by the
//! viewer, so plotters' estimate of text sizes is enough).
//!
//! Log axes are drawn as linear axes over the logarithm of the values,
//! labelled with the values themselves; points at or below 0 are left out
//! there. Byte axes take `log2`, so that their ticks fall on powers of two
//! (`64 KiB`, `1 MiB`); the others `log10`.
//!
//! Imports go one way: [`super::report`] draws through [`render`], and this
//! module knows nothing of reports (its labels' units come from
//! [`super::units`]).

use std::path::Path;

use plotters::prelude::*;

use super::units::{human_bytes, human_ns};

/// One chart of the plot.
pub(crate) struct Panel {
    pub(crate) title: String,
    pub(crate) x_label: String,
    pub(crate) y_unit: Unit,
    pub(crate) log_x: bool,
    pub(crate) log_y: bool,
    pub(crate) series: Vec<Series>,
}

/// A named line.
pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) points: Vec<(f64, f64)>,
}

impl Series {
    pub(crate) fn new(name: &str, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            points,
        }
    }
}

/// What the y values are, for their labels.
#[derive(Clone, Copy)]
pub(crate) enum Unit {
    Count,
    Bytes,
    Nanos,
}

impl Unit {
    fn label(self, v: f64) -> String {
        match self {
            Unit::Count if v > 0.0 && v < 1.0 => format!("{v:.1}"),
            Unit::Count => format!("{v:.0}"),
            Unit::Bytes => human_bytes(v).replace(".0 ", " "),
            Unit::Nanos => human_ns(v),
        }
    }

    /// The base of a log axis of this unit.
    fn log_base(self) -> f64 {
        match self {
            Unit::Bytes => 2.0,
            Unit::Count | Unit::Nanos => 10.0,
        }
    }
}

const COLORS: [RGBColor; 5] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
];

/// Draw `panels` under `title` into the SVG file `path`.
pub(crate) fn render(path: &Path, title: &str, panels: &[Panel]) -> Result<(), String> {
    let height = 360 * panels.len().max(1) as u32 + 40;
    let root = SVGBackend::new(path, (960, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root
        .titled(title, ("sans-serif", 22))
        .map_err(|e| e.to_string())?;
    for (area, panel) in root
        .split_evenly((panels.len().max(1), 1))
        .iter()
        .zip(panels)
    {
        draw_panel(area, panel).map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn draw_panel(area: &Area<'_>, panel: &Panel) -> Result<(), Box<dyn std::error::Error>> {
    // Linear byte axes count in the binary unit of their largest value, so
    // that the ticks fall on round numbers of it.
    let largest = panel
        .series
        .iter()
        .flat_map(|s| &s.points)
        .map(|p| p.1.abs())
        .fold(0.0, f64::max);
    let (scale, unit) = match panel.y_unit {
        Unit::Bytes if !panel.log_y => [(1.0, "B"), (1024.0, "KiB"), (1048576.0, "MiB")]
            .into_iter()
            .rev()
            .find(|&(scale, _)| largest >= scale)
            .unwrap_or((1.0, "B")),
        _ => (1.0, ""),
    };
    // x axes count things; a log y axis takes its unit's base.
    let (x_base, y_base) = (10.0, panel.y_unit.log_base());
    let tx = |v: f64| if panel.log_x { log(v, x_base) } else { Some(v) };
    let ty = |v: f64| {
        if panel.log_y {
            log(v, y_base)
        } else {
            Some(v / scale)
        }
    };
    let lines: Vec<Vec<(f64, f64)>> = panel
        .series
        .iter()
        .map(|s| {
            s.points
                .iter()
                .filter_map(|&(x, y)| Some((tx(x)?, ty(y)?)))
                .collect()
        })
        .collect();
    // Every x counts for the x axis, even where y has no place on a log axis.
    let xs = panel
        .series
        .iter()
        .flat_map(|s| &s.points)
        .filter_map(|p| tx(p.0));
    let x_range = range(xs, panel.log_x, 0.0);
    // On a log axis: a fifth of a decade, or one power of two.
    let headroom = match (panel.log_y, y_base == 2.0) {
        (true, true) => 1.0,
        (true, false) => 0.2,
        (false, _) => 0.5,
    };
    let y_range = range(lines.iter().flatten().map(|p| p.1), panel.log_y, headroom);
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 16))
        .margin(10)
        .margin_right(40)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(x_range.clone(), y_range.clone())?;
    let x_fmt = |v: &f64| {
        if panel.log_x {
            format!("{:.0}", x_base.powf(*v))
        } else {
            format!("{v:.0}")
        }
    };
    let y_fmt = |v: &f64| {
        if panel.log_y {
            panel.y_unit.label(y_base.powf(*v))
        } else if !unit.is_empty() {
            format!("{v} {unit}")
        } else {
            panel.y_unit.label(*v)
        }
    };
    // A tick per decade; per power of two, plotters keeps every other.
    let ticks = |r: &std::ops::Range<f64>, log: bool, base: f64| {
        if !log {
            6
        } else if base == 2.0 {
            ((r.end - r.start) / 2.0).ceil() as usize + 1
        } else {
            (r.end - r.start).round() as usize + 1
        }
    };
    chart
        .configure_mesh()
        .x_desc(panel.x_label.as_str())
        .x_labels(ticks(&x_range, panel.log_x, x_base))
        .y_labels(ticks(&y_range, panel.log_y, y_base))
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for (i, (series, points)) in panel.series.iter().zip(lines).enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(series.name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        // Log-log panels rise to the right; the others plateau at the left.
        .position(if panel.log_x {
            SeriesLabelPosition::UpperLeft
        } else {
            SeriesLabelPosition::UpperRight
        })
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    Ok(())
}

fn log(v: f64, base: f64) -> Option<f64> {
    (v > 0.0).then(|| v.log(base))
}

/// An axis' range over `values`: whole powers of the base, with `headroom`
/// (in powers) around the data on a log axis; from 0 on a linear one, with
/// `headroom` (a fraction of the span) above the data for the legend.
fn range(values: impl Iterator<Item = f64>, log: bool, headroom: f64) -> std::ops::Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    if log {
        let (lo, hi) = ((lo - headroom).floor(), (hi + headroom).ceil());
        lo..hi.max(lo + 1.0)
    } else {
        let lo = lo.min(0.0);
        let hi = if hi > lo {
            hi + (hi - lo) * headroom
        } else {
            lo + 1.0
        };
        lo..hi
    }
}
