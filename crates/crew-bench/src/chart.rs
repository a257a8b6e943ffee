//! The worker sweep as a chart: events/s against partner workers (log x),
//! the ideal `workers × batch / latency` line, the cores kept busy on a
//! second axis, and the point where the curve flattens. SVG and PNG, drawn
//! with plotters.
//!
//! Text is laid out (and, in the PNG, rasterized) with a vendored subset of
//! DejaVu Sans (`fonts/`, printable ASCII and a few symbols), so that the
//! chart looks the same on a machine without fonts; the SVG names the
//! `sans-serif` family and the viewer draws its text.

use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::sweep::Sweep;

/// Width and height of the chart, in pixels.
pub const SIZE: (u32, u32) = (1000, 620);

/// The fill of the measured points; the SVG has one circle of this colour
/// per point and no other.
pub const POINT_COLOR: RGBColor = RGBColor(0, 114, 178);

/// The family the vendored font is registered under (and the SVG names).
const FAMILY: &str = "sans-serif";

/// DejaVu Sans, subset to printable ASCII and `×–≈µ·≤≥→` (see
/// `fonts/README.md`).
static FONT: &[u8] = include_bytes!("../fonts/DejaVuSans-subset.ttf");

const IDEAL_COLOR: RGBColor = RGBColor(150, 150, 150);
const CORES_COLOR: RGBColor = RGBColor(0, 158, 115);
const FLAT_COLOR: RGBColor = RGBColor(213, 94, 0);

/// What can go wrong drawing a chart.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// There is nothing to draw.
    #[error("the sweep has no points to draw")]
    Empty,
    /// The vendored font did not parse.
    #[error("the vendored font could not be loaded")]
    Font,
    /// plotters failed.
    #[error("drawing the chart: {0}")]
    Draw(String),
    /// The PNG encoder failed.
    #[error("encoding the PNG: {0}")]
    Png(#[from] png::EncodingError),
}

fn draw_error(e: impl std::fmt::Display) -> ChartError {
    ChartError::Draw(e.to_string())
}

/// Registers the vendored font once per process (plotters keeps a global
/// font table).
fn register_font() -> Result<(), ChartError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        [FontStyle::Normal, FontStyle::Bold]
            .into_iter()
            .all(|style| plotters::style::register_font(FAMILY, style, FONT).is_ok())
    });
    if ok {
        Ok(())
    } else {
        Err(ChartError::Font)
    }
}

/// The chart as an SVG document.
pub fn svg(sweep: &Sweep) -> Result<String, ChartError> {
    register_font()?;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        draw(&root, sweep)?;
        root.present().map_err(draw_error)?;
    }
    Ok(out)
}

/// The chart as a PNG image (8-bit RGB).
pub fn png(sweep: &Sweep) -> Result<Vec<u8>, ChartError> {
    register_font()?;
    let (w, h) = SIZE;
    let mut pixels = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, SIZE).into_drawing_area();
        draw(&root, sweep)?;
        root.present().map_err(draw_error)?;
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&pixels)?;
    writer.finish()?;
    Ok(out)
}

/// `12345.0` as `12k`, `1234567.0` as `1.23M`.
fn compact(rate: f64) -> String {
    if rate >= 1e6 {
        format!("{:.2}M", rate / 1e6)
    } else if rate >= 1e4 {
        format!("{:.0}k", rate / 1e3)
    } else if rate >= 1e3 {
        format!("{:.1}k", rate / 1e3)
    } else {
        format!("{rate:.0}")
    }
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, sweep: &Sweep) -> Result<(), ChartError>
where
    DB::ErrorType: 'static,
{
    let points: Vec<(f64, f64, f64)> = sweep
        .points
        .iter()
        .map(|p| (p.workers as f64, p.rate() / 1e3, p.cores_busy()))
        .collect();
    if points.is_empty() {
        return Err(ChartError::Empty);
    }
    root.fill(&WHITE).map_err(draw_error)?;
    let (width, height) = root.dim_in_pixel();
    let (header, rest) = root.split_vertically(66);
    let (main, footer) = rest.split_vertically(height.saturating_sub(66 + 28));
    let centre = i32::try_from(width / 2).unwrap_or(0);
    // Title and subtitle drawn by hand rather than as plotters' caption: a
    // bold caption is centred with the regular face's width, and an SVG
    // viewer's bold face is wider, so a long one ran off both edges.
    header
        .draw(&Text::new(
            "More workers, more events per pod",
            (centre, 12),
            TextStyle::from((FAMILY, 24).into_font().style(FontStyle::Bold))
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .map_err(draw_error)?;
    header
        .draw(&Text::new(
            sweep.setup_line(),
            (centre, 44),
            TextStyle::from((FAMILY, 15).into_font())
                .color(&BLACK.mix(0.75))
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .map_err(draw_error)?;

    let min_w = points.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let max_w = points.iter().map(|p| p.0).fold(0.0, f64::max);
    let (x0, x1) = (min_w / 1.4, max_w * 1.4);
    let peak = points.iter().map(|p| p.1).fold(0.0, f64::max);
    let y_max = if peak > 0.0 { peak * 1.3 } else { 1.0 };
    let cores_max = points
        .iter()
        .map(|p| p.2)
        .fold(sweep.machine.cpus as f64, f64::max)
        .ceil()
        .max(1.0);

    let o = &sweep.options;
    let mut chart = ChartBuilder::on(&main)
        .margin(18)
        .x_label_area_size(52)
        .y_label_area_size(78)
        .right_y_label_area_size(70)
        .build_cartesian_2d(
            (x0..x1)
                .log_scale()
                .with_key_points(points.iter().map(|p| p.0).collect()),
            0f64..y_max,
        )
        .map_err(draw_error)?
        // Twice the cores: the cores line stays in the lower half, under
        // the events curve it explains, instead of crossing it.
        .set_secondary_coord((x0..x1).log_scale(), 0f64..cores_max * 2.0);

    chart
        .configure_mesh()
        .x_desc("workers in the partner-call pool (log scale)")
        .y_desc("events delivered per second (thousands)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        // Thousands with a decimal when the axis is that fine, so a low-rate
        // sweep does not label 0, 0, 1, 2, 2.
        .y_label_formatter(&|v| {
            if y_max < 10.0 {
                format!("{v:.1}")
            } else {
                format!("{v:.0}")
            }
        })
        .axis_desc_style((FAMILY, 17))
        .label_style((FAMILY, 15))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.08))
        .draw()
        .map_err(draw_error)?;
    chart
        .configure_secondary_axes()
        .y_desc("cores busy (CPU-seconds per second)")
        .y_label_formatter(&|v| format!("{v:.1}"))
        .axis_desc_style((FAMILY, 17).into_font().color(&CORES_COLOR))
        .label_style((FAMILY, 15).into_font().color(&CORES_COLOR))
        .draw()
        .map_err(draw_error)?;

    // The ideal line is straight in linear x; sampled in log x, and cut
    // where it leaves the chart.
    let per_worker = o.ideal_rate(1) / 1e3;
    let x_end = x1.min(y_max / per_worker);
    if x_end > x0 {
        let steps = 80;
        let ratio = (x_end / x0).ln();
        let ideal = (0..=steps).map(|i| {
            let x = x0 * (ratio * f64::from(i) / f64::from(steps)).exp();
            (x, x * per_worker)
        });
        chart
            .draw_series(DashedLineSeries::new(
                ideal,
                8,
                6,
                IDEAL_COLOR.stroke_width(2),
            ))
            .map_err(draw_error)?
            // `x`, not `×`: plotters' glyph placement drops the left side
            // bearing, which leaves `×` touching the word before it.
            .label(format!(
                "ideal: workers x {} / {} ms",
                o.batch,
                crate::sweep::fmt_ms(o.latency)
            ))
            .legend(|(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], IDEAL_COLOR.stroke_width(2))
            });
    }

    chart
        .draw_secondary_series(LineSeries::new(
            points.iter().map(|p| (p.0, p.2)),
            CORES_COLOR.stroke_width(2),
        ))
        .map_err(draw_error)?
        .label("cores busy (right axis)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], CORES_COLOR.stroke_width(2)));
    chart
        .draw_secondary_series(points.iter().map(|p| {
            Rectangle::new(
                [
                    (p.0 / 1.04, p.2 - cores_max * 0.012),
                    (p.0 * 1.04, p.2 + cores_max * 0.012),
                ],
                CORES_COLOR.filled(),
            )
        }))
        .map_err(draw_error)?;

    chart
        .draw_series(LineSeries::new(
            points.iter().map(|p| (p.0, p.1)),
            POINT_COLOR.stroke_width(3),
        ))
        .map_err(draw_error)?
        .label("measured events/s")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], POINT_COLOR.stroke_width(3)));
    // Above and left of each point: a rising curve leaves that corner empty.
    let label_style = TextStyle::from((FAMILY, 14).into_font())
        .color(&POINT_COLOR)
        .pos(Pos::new(HPos::Right, VPos::Bottom));
    chart
        .draw_series(points.iter().map(|p| {
            EmptyElement::at((p.0, p.1))
                + Circle::new((0, 0), 5, POINT_COLOR.filled())
                + Text::new(compact(p.1 * 1e3), (-6, -6), label_style.clone())
        }))
        .map_err(draw_error)?;

    if let Some(flat) = sweep.flattening() {
        // A ring on the point and a rule down the chart, with the note at
        // the top, above every point (the y range leaves 30% headroom), on
        // the side of the rule with more room.
        let x = flat.workers as f64;
        let right_half = x * x > x0 * x1;
        let (dx, anchor) = if right_half {
            (-8, HPos::Right)
        } else {
            (8, HPos::Left)
        };
        chart
            .draw_series(DashedLineSeries::new(
                [(x, 0.0), (x, y_max)],
                6,
                5,
                FLAT_COLOR.stroke_width(2),
            ))
            .map_err(draw_error)?;
        let note_style = TextStyle::from((FAMILY, 16).into_font().style(FontStyle::Bold))
            .color(&FLAT_COLOR)
            .pos(Pos::new(anchor, VPos::Top));
        chart
            .draw_series(std::iter::once(Circle::new(
                (x, flat.rate() / 1e3),
                11,
                FLAT_COLOR.stroke_width(3),
            )))
            .map_err(draw_error)?;
        chart
            .draw_series(std::iter::once(
                EmptyElement::at((x, y_max))
                    + Text::new(
                        format!(
                            "flattens at {} workers ({}/s)",
                            flat.workers,
                            compact(flat.rate())
                        ),
                        (dx, 8),
                        note_style,
                    ),
            ))
            .map_err(draw_error)?;
    }

    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FAMILY, 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(draw_error)?;

    let m = &sweep.machine;
    let load = m
        .load_average
        .as_deref()
        .map(|l| format!(", load {l}"))
        .unwrap_or_default();
    let note = format!(
        "{} · {} CPUs{load} · {} UTC · {} s per point{}",
        m.cpu_model,
        m.cpus,
        m.date_utc,
        o.window.as_secs_f64(),
        if o.quick { " (quick)" } else { "" }
    );
    footer
        .draw(&Text::new(
            note,
            (centre, 4),
            TextStyle::from((FAMILY, 13).into_font())
                .color(&BLACK.mix(0.6))
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .map_err(draw_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::machine::Machine;
    use crate::sweep::{SweepOptions, SweepPoint};

    fn sweep(rates: &[(usize, u64)]) -> Sweep {
        let window = Duration::from_secs(1);
        Sweep {
            options: SweepOptions::full(),
            machine: Machine::detect(),
            command: None,
            points: rates
                .iter()
                .map(|&(workers, events)| SweepPoint {
                    workers,
                    window_events: events,
                    window,
                    window_cpu: Duration::from_millis(500),
                    calls: events / 50,
                    read: events,
                    delivered: events,
                    dropped: 0,
                    dead_lettered: 0,
                    abandoned: 0,
                    elapsed: window,
                })
                .collect(),
        }
    }

    #[test]
    fn svg_has_one_point_circle_per_point() {
        let s = sweep(&[(1, 2_400), (4, 9_800), (16, 30_000), (64, 31_000)]);
        let svg = svg(&s).expect("an SVG");
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        let fill = format!(
            "fill=\"#{:02X}{:02X}{:02X}\"",
            POINT_COLOR.0, POINT_COLOR.1, POINT_COLOR.2
        );
        let circles = svg
            .split("<circle")
            .skip(1)
            .filter(|c| {
                c.split('>')
                    .next()
                    .is_some_and(|attrs| attrs.contains(&fill))
            })
            .count();
        assert_eq!(circles, s.points.len());
        assert!(svg.contains("flattens at 16 workers"));
    }

    #[test]
    fn png_has_the_signature_and_size() {
        let s = sweep(&[(1, 2_400), (2, 4_900)]);
        let png = png(&s).expect("a PNG");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // IHDR: width and height, big-endian, after the 8-byte signature,
        // the chunk length and the chunk type.
        assert_eq!(&png[16..20], &SIZE.0.to_be_bytes());
        assert_eq!(&png[20..24], &SIZE.1.to_be_bytes());
    }

    #[test]
    fn an_empty_sweep_is_an_error() {
        assert!(matches!(svg(&sweep(&[])), Err(ChartError::Empty)));
    }

    #[test]
    fn compact_rates() {
        assert_eq!(compact(950.0), "950");
        assert_eq!(compact(2_450.0), "2.5k");
        assert_eq!(compact(123_400.0), "123k");
        assert_eq!(compact(1_234_000.0), "1.23M");
    }
}
