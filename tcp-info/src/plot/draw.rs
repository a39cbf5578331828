//! The figure: a title, a strip of TCP states, and four panels sharing the time axis.

use std::ops::Range;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{PlotError, Series};

/// Width of the figure (px).
pub const WIDTH: u32 = 1000;
/// Height of the figure (px).
pub const HEIGHT: u32 = 1100;
/// The panels' captions, top to bottom.
pub const PANEL_TITLES: [&str; 4] = [
    "Throughput",
    "Round-trip time",
    "Congestion window",
    "Retransmits and losses",
];

/// Height of the title block (px).
const HEADER: u32 = 58;
/// Height of the TCP state strip (px).
const STATES: u32 = 42;
/// Width of every panel's y label area, so that all share one x mapping (px).
const Y_AREA: u32 = 78;
/// Right margin of every panel (px).
const RIGHT: u32 = 24;
/// The x axis description.
const TIME_AXIS: &str = "time since the first record (s)";
/// Points up to which each one is also marked with a dot (a line needs two).
const DOTS_UP_TO: usize = 60;

const BLUE_: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREEN_: RGBColor = RGBColor(44, 160, 44);
const RED_: RGBColor = RGBColor(214, 39, 40);
const PURPLE: RGBColor = RGBColor(148, 103, 189);
const BROWN: RGBColor = RGBColor(140, 86, 75);
const GREY: RGBColor = RGBColor(110, 110, 110);

type Area<'b> = DrawingArea<SVGBackend<'b>, Shift>;
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

fn draw_err<E: std::fmt::Display>(e: E) -> PlotError {
    PlotError::Draw(e.to_string())
}

/// Draws the figure of `series` as an SVG document of [`WIDTH`]×[`HEIGHT`] px.
pub fn svg(series: &Series) -> Result<String, PlotError> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let (header, rest) = root.split_vertically(HEADER);
        let (strip, body) = rest.split_vertically(STATES);
        draw_header(&header, series)?;
        let x = 0.0..x_end(series);
        draw_states(&strip, series, x.clone())?;
        let panels = body.split_evenly((4, 1));
        throughput(&panels[0], series, x.clone())?;
        round_trip(&panels[1], series, x.clone())?;
        window(&panels[2], series, x.clone())?;
        losses(&panels[3], series, x)?;
        root.present().map_err(draw_err)?;
    }
    Ok(out)
}

/// The end of the time axis: the last record's time, or 1 s for a single instant.
fn x_end(series: &Series) -> f64 {
    let last = series
        .times_s
        .iter()
        .copied()
        .chain(series.states.iter().map(|s| s.0))
        .chain(std::iter::once(series.duration_s))
        .filter(|t| t.is_finite())
        .fold(0.0_f64, f64::max);
    if last > 0.0 { last * 1.02 } else { 1.0 }
}

/// Text for the title: control characters (possible in a verbatim UUID prefix) are not XML.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

/// A duration in a readable unit.
fn human_duration(s: f64) -> String {
    if s < 1.0 {
        format!("{:.1} ms", s * 1000.0)
    } else if s < 120.0 {
        format!("{s:.2} s")
    } else {
        let total = s.round() as u64;
        format!("{} min {:02} s", total / 60, total % 60)
    }
}

fn draw_header(area: &Area<'_>, s: &Series) -> Result<(), PlotError> {
    let title = match &s.uuid {
        Some(uuid) => format!("Connection {}", printable(uuid)),
        None => format!("Connection with cookie {:X}", s.cookie),
    };
    let ends = match (s.local, s.remote) {
        (Some(l), Some(r)) => format!("local {l}  \u{2194}  remote {r}"),
        _ => String::from("addresses unknown"),
    };
    let facts = format!(
        "{ends}   \u{b7}   start {}   \u{b7}   duration {}   \u{b7}   {} records, {} with tcp_info",
        s.start.to_utc(),
        human_duration(s.duration_s),
        s.snapshots,
        s.len()
    );
    area.draw(&Text::new(
        title,
        (12, 8),
        ("sans-serif", 20).into_font().style(FontStyle::Bold),
    ))
    .map_err(draw_err)?;
    area.draw(&Text::new(facts, (12, 34), ("sans-serif", 14)))
        .map_err(draw_err)?;
    Ok(())
}

/// The strip under the title: each state change as a tick and its name.
fn draw_states(area: &Area<'_>, s: &Series, x: Range<f64>) -> Result<(), PlotError> {
    let mut chart = ChartBuilder::on(area)
        .margin_left(10)
        .margin_right(RIGHT)
        .y_label_area_size(Y_AREA)
        .build_cartesian_2d(x, 0.0..1.0)
        .map_err(draw_err)?;
    chart
        .plotting_area()
        .draw(&Rectangle::new(
            [(chart.x_range().start, 0.0), (chart.x_range().end, 1.0)],
            GREY.mix(0.06).filled(),
        ))
        .map_err(draw_err)?;
    area.draw(&Text::new(
        "TCP state",
        (12, 14),
        ("sans-serif", 13).into_font().color(&GREY),
    ))
    .map_err(draw_err)?;
    let style = ("sans-serif", 12).into_font().color(&BLACK);
    let end = chart.x_range().end;
    for (i, (t, name)) in s.states.iter().enumerate() {
        // Alternate rows so that names of close changes do not overlap; names near the right
        // end go left of their tick.
        let y = if i % 2 == 0 { 0.95 } else { 0.45 };
        let (style, dx) = if *t > end * 0.85 {
            (style.pos(Pos::new(HPos::Right, VPos::Top)), -4)
        } else {
            (style.clone(), 4)
        };
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(*t, 0.0), (*t, 1.0)],
                GREY.stroke_width(2),
            )))
            .map_err(draw_err)?;
        chart
            .draw_series(std::iter::once(
                EmptyElement::at((*t, y)) + Text::new(name.clone(), (dx, 2), style),
            ))
            .map_err(draw_err)?;
    }
    Ok(())
}

/// The largest finite value of `values`, with headroom for the legend; 1 when none is above 0.
fn y_top(values: impl Iterator<Item = f64>) -> f64 {
    let max = values.filter(|v| v.is_finite()).fold(0.0_f64, f64::max);
    if max > 0.0 { max * 1.5 } else { 1.0 }
}

/// An axis label: no trailing zeros (`20`, `2.5`, `0.125`).
fn tick(v: f64) -> String {
    let text = format!("{v:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.into()
    }
}

/// A panel's chart: caption, axes with units, light grid, and the state changes as dashed
/// vertical lines.
fn panel<'a, 'b>(
    area: &'a Area<'b>,
    s: &Series,
    caption: &str,
    unit: &str,
    x: Range<f64>,
    y_max: f64,
) -> Result<Chart<'a, 'b>, PlotError> {
    let mut chart = ChartBuilder::on(area)
        .caption(
            caption,
            ("sans-serif", 17).into_font().style(FontStyle::Bold),
        )
        .margin_left(10)
        .margin_right(RIGHT)
        .margin_top(4)
        .margin_bottom(4)
        .x_label_area_size(40)
        .y_label_area_size(Y_AREA)
        .build_cartesian_2d(x, 0.0..y_max)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc(TIME_AXIS)
        .y_desc(unit)
        .x_labels(12)
        .y_labels(6)
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .light_line_style(BLACK.mix(0.05))
        .bold_line_style(BLACK.mix(0.12))
        .axis_desc_style(("sans-serif", 13))
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(draw_err)?;
    for (t, _) in &s.states {
        chart
            .draw_series(DashedLineSeries::new(
                vec![(*t, 0.0), (*t, y_max)],
                4,
                4,
                GREY.mix(0.7).stroke_width(1),
            ))
            .map_err(draw_err)?;
    }
    Ok(chart)
}

/// Runs of consecutive present values as `(t, v)` points; a gap (`None`) breaks the line.
fn runs(times: &[f64], values: &[Option<f64>]) -> Vec<Vec<(f64, f64)>> {
    let mut out = vec![Vec::new()];
    for (t, v) in times.iter().zip(values) {
        match v {
            Some(v) if v.is_finite() && t.is_finite() => {
                if let Some(run) = out.last_mut() {
                    run.push((*t, *v));
                }
            }
            _ => {
                if out.last().is_some_and(|r| !r.is_empty()) {
                    out.push(Vec::new());
                }
            }
        }
    }
    out
}

/// How a line is drawn.
#[derive(Debug, Clone, Copy)]
enum Line {
    Solid,
    Dashed,
}

/// Draws one series (broken at gaps) with its legend entry.
fn line<'a, 'b: 'a>(
    chart: &mut Chart<'a, 'b>,
    times: &[f64],
    values: &[Option<f64>],
    color: RGBColor,
    kind: Line,
    width: u32,
    label: &str,
) -> Result<(), PlotError> {
    let style = color.stroke_width(width);
    let runs = runs(times, values);
    for (i, run) in runs.iter().enumerate() {
        let annotation = match kind {
            Line::Solid => chart.draw_series(LineSeries::new(run.iter().copied(), style)),
            Line::Dashed => {
                chart.draw_series(DashedLineSeries::new(run.iter().copied(), 8, 4, style))
            }
        }
        .map_err(draw_err)?;
        if i == 0 {
            annotation.label(label).legend(move |(x, y)| match kind {
                Line::Solid => PathElement::new(vec![(x, y), (x + 22, y)], style),
                Line::Dashed => PathElement::new(vec![(x, y), (x + 8, y)], style),
            });
        }
    }
    if times.len() <= DOTS_UP_TO {
        chart
            .draw_series(
                runs.iter()
                    .flatten()
                    .map(|p| Circle::new(*p, 3, color.filled())),
            )
            .map_err(draw_err)?;
    }
    Ok(())
}

fn legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>) -> Result<(), PlotError> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(draw_err)
}

fn all(values: &[f64]) -> Vec<Option<f64>> {
    values.iter().copied().map(Some).collect()
}

/// How far above the typical measured rate (the 75th percentile of the non-zero sending and
/// receiving rates) a line may reach before the panel is scaled to that rate instead: lines
/// above are cut at the top, and their legend says so. On loopback and veth the kernel's
/// delivery rate can be a thousand times the real throughput, and a rate measured over a
/// millisecond between two records is a spike of the same kind; either would flatten the
/// lines that matter.
const HEADROOM: f64 = 4.0;

/// The throughput panel's scale: the largest value drawn, and where lines are cut if they are.
fn throughput_scale(s: &Series) -> (f64, Option<f64>) {
    let values = |v: &[Option<f64>]| -> Vec<f64> {
        v.iter()
            .flatten()
            .copied()
            .filter(|v| v.is_finite())
            .collect()
    };
    let mut measured: Vec<f64> = values(&s.send_mbps)
        .into_iter()
        .chain(values(&s.recv_mbps))
        .filter(|v| *v > 0.0)
        .collect();
    let largest = [&s.send_mbps, &s.recv_mbps, &s.delivery_mbps]
        .into_iter()
        .flat_map(|v| values(v))
        .fold(0.0_f64, f64::max);
    if measured.is_empty() {
        return (largest, None);
    }
    measured.sort_by(f64::total_cmp);
    let typical = measured[(measured.len() - 1) * 3 / 4];
    let cap = typical * HEADROOM;
    if largest > cap {
        (cap, Some(cap))
    } else {
        (largest, None)
    }
}

/// `values` cut at `cap`, and `label` saying so if any was.
fn cut(values: &[Option<f64>], cap: Option<f64>, label: &str) -> (Vec<Option<f64>>, String) {
    let Some(cap) = cap.filter(|cap| values.iter().flatten().any(|v| v > cap)) else {
        return (values.to_vec(), label.to_owned());
    };
    let values = values.iter().map(|v| v.map(|v| v.min(cap))).collect();
    (values, format!("{label}, cut at {} Mbit/s", tick(cap)))
}

fn throughput(area: &Area<'_>, s: &Series, x: Range<f64>) -> Result<(), PlotError> {
    let (largest, cap) = throughput_scale(s);
    let top = y_top(std::iter::once(largest));
    let mut chart = panel(area, s, PANEL_TITLES[0], "Mbit/s", x, top)?;
    let t = &s.times_s;
    let lines = [
        (
            &s.send_mbps,
            BLUE_,
            Line::Solid,
            1,
            "sending: \u{394}bytes_acked/\u{394}t",
        ),
        (
            &s.recv_mbps,
            ORANGE,
            Line::Solid,
            1,
            "receiving: \u{394}bytes_received/\u{394}t",
        ),
        (
            &s.delivery_mbps,
            GREEN_,
            Line::Dashed,
            2,
            "delivery_rate (kernel)",
        ),
    ];
    for (values, color, kind, width, label) in lines {
        let (values, label) = cut(values, cap, label);
        line(&mut chart, t, &values, color, kind, width, &label)?;
    }
    legend(&mut chart)
}

fn round_trip(area: &Area<'_>, s: &Series, x: Range<f64>) -> Result<(), PlotError> {
    let upper: Vec<f64> = s
        .rtt_ms
        .iter()
        .zip(&s.rttvar_ms)
        .map(|(r, v)| r + v)
        .collect();
    let top = y_top(
        upper
            .iter()
            .copied()
            .chain(s.min_rtt_ms.iter().flatten().copied()),
    );
    let mut chart = panel(area, s, PANEL_TITLES[1], "ms", x, top)?;
    // The band rtt ± rttvar: upper edge forward, lower edge back.
    let band: Vec<(f64, f64)> = s
        .times_s
        .iter()
        .zip(&upper)
        .map(|(t, u)| (*t, *u))
        .chain(
            s.times_s
                .iter()
                .zip(s.rtt_ms.iter().zip(&s.rttvar_ms))
                .rev()
                .map(|(t, (r, v))| (*t, (r - v).max(0.0))),
        )
        .filter(|(t, v)| t.is_finite() && v.is_finite())
        .collect();
    let fill = BLUE_.mix(0.18).filled();
    chart
        .draw_series(std::iter::once(Polygon::new(band, fill)))
        .map_err(draw_err)?
        .label("rtt \u{b1} rttvar")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 22, y + 5)], fill));
    line(
        &mut chart,
        &s.times_s,
        &all(&s.rtt_ms),
        BLUE_,
        Line::Solid,
        2,
        "rtt (smoothed)",
    )?;
    line(
        &mut chart,
        &s.times_s,
        &s.min_rtt_ms,
        RED_,
        Line::Dashed,
        2,
        "min_rtt",
    )?;
    legend(&mut chart)
}

fn window(area: &Area<'_>, s: &Series, x: Range<f64>) -> Result<(), PlotError> {
    let top = y_top(
        s.snd_cwnd
            .iter()
            .copied()
            .chain(s.snd_ssthresh.iter().flatten().copied()),
    );
    let mut chart = panel(area, s, PANEL_TITLES[2], "segments", x, top)?;
    line(
        &mut chart,
        &s.times_s,
        &all(&s.snd_cwnd),
        BLUE_,
        Line::Solid,
        2,
        "snd_cwnd",
    )?;
    line(
        &mut chart,
        &s.times_s,
        &s.snd_ssthresh,
        ORANGE,
        Line::Dashed,
        2,
        "snd_ssthresh (absent while infinite)",
    )?;
    legend(&mut chart)
}

fn losses(area: &Area<'_>, s: &Series, x: Range<f64>) -> Result<(), PlotError> {
    let top = y_top(
        [&s.total_retrans, &s.lost, &s.retrans]
            .into_iter()
            .flat_map(|v| v.iter().copied()),
    );
    let mut chart = panel(area, s, PANEL_TITLES[3], "segments", x, top)?;
    let t = &s.times_s;
    line(
        &mut chart,
        t,
        &all(&s.total_retrans),
        RED_,
        Line::Solid,
        2,
        "total_retrans (cumulative)",
    )?;
    line(
        &mut chart,
        t,
        &all(&s.lost),
        PURPLE,
        Line::Solid,
        2,
        "lost (now)",
    )?;
    line(
        &mut chart,
        t,
        &all(&s.retrans),
        BROWN,
        Line::Dashed,
        2,
        "retrans (in flight now)",
    )?;
    legend(&mut chart)
}

#[cfg(test)]
mod tests {
    use super::super::series::tests::{Point, meta, null_line, snapshot};
    use super::*;
    use crate::wire::inet_diag::state;

    fn sample() -> Series {
        let mut records = vec![meta("host_1_00000000000003E8", 0)];
        for i in 0..100_u32 {
            records.push(snapshot(&Point {
                ms: i64::from(i) * 10,
                state: state::ESTABLISHED,
                acked: u64::from(i) * 100_000,
                received: u64::from(i) * 1000,
                delivery: 10_000_000,
                rtt: 2000 + i * 10,
                rttvar: 300,
                min_rtt: 1800,
                cwnd: 10 + i,
                ssthresh: if i < 50 {
                    super::super::INFINITE_SSTHRESH
                } else {
                    60
                },
                total_retrans: i / 10,
                lost: i % 3,
                retrans: i % 2,
            }));
        }
        records.push(null_line(1005, state::TIME_WAIT));
        Series::from_records(&records).unwrap()
    }

    #[test]
    fn lines_far_above_the_typical_measured_rate_are_cut_not_scaled_to() {
        let mut s = sample();
        // As measured, the rates are of one order: nothing is cut.
        let (_, cap) = throughput_scale(&s);
        assert_eq!(cap, None);
        assert!(!svg(&s).unwrap().contains("cut at"));
        // A loopback-like delivery estimate, a thousand times the real rate, and one spike
        // of the sending rate: the panel keeps the typical rate readable and says what is cut.
        for v in s.delivery_mbps.iter_mut().flatten() {
            *v *= 1000.0;
        }
        let typical = s.send_mbps[50].unwrap();
        s.send_mbps[10] = Some(typical * 100.0);
        let (largest, cap) = throughput_scale(&s);
        let cap = cap.unwrap();
        assert!(
            cap >= typical && cap <= typical * HEADROOM * 1.01,
            "{cap} vs {typical}"
        );
        assert!((largest - cap).abs() < 1e-9);
        let text = svg(&s).unwrap();
        let label = format!("cut at {} Mbit/s", tick(cap));
        assert_eq!(
            text.matches(&label).count(),
            2,
            "the delivery rate and the sending rate"
        );
        // The data behind the picture is unchanged.
        assert!(s.delivery_mbps.iter().flatten().any(|v| *v > cap));
        assert_eq!(s.send_mbps[10], Some(typical * 100.0));
    }

    #[test]
    fn svg_has_the_panels_title_and_states() {
        let text = svg(&sample()).unwrap();
        assert!(text.starts_with("<svg"), "{}", &text[..80]);
        assert!(text.trim_end().ends_with("</svg>"));
        assert!(text.contains(&format!("width=\"{WIDTH}\"")));
        assert!(text.contains(&format!("height=\"{HEIGHT}\"")));
        for needle in PANEL_TITLES.iter().chain(&[
            "Connection host_1_00000000000003E8",
            "local 10.0.0.1:443",
            "ESTABLISHED",
            "TIME_WAIT",
            "Mbit/s",
            "segments",
            "snd_ssthresh",
            TIME_AXIS,
        ]) {
            assert!(text.contains(needle), "missing {needle}");
        }
    }

    #[test]
    fn degenerate_series_still_draw() {
        let one = Series::from_records(&[snapshot(&Point::default())]).unwrap();
        assert!(svg(&one).unwrap().contains("Connection with cookie 3E8"));
        let tw = Series::from_records(&[null_line(0, state::TIME_WAIT)]).unwrap();
        assert!(svg(&tw).unwrap().contains("TIME_WAIT"));
        let mut odd = sample();
        odd.uuid = Some("bad\u{1}<&>".into());
        odd.rtt_ms[3] = f64::NAN;
        odd.send_mbps[4] = Some(f64::INFINITY);
        let text = svg(&odd).unwrap();
        assert!(text.contains("bad\u{FFFD}&lt;&amp;&gt;"));
        assert!(!text.contains("NaN") && !text.contains("inf\""));
    }

    #[test]
    fn gaps_break_lines() {
        let t = [0.0, 1.0, 2.0, 3.0, 4.0];
        let v = [Some(1.0), None, Some(2.0), Some(3.0), None];
        assert_eq!(
            runs(&t, &v),
            [vec![(0.0, 1.0)], vec![(2.0, 2.0), (3.0, 3.0)], vec![]]
        );
        assert_eq!(runs(&[], &[]), [Vec::<(f64, f64)>::new()]);
    }
}
