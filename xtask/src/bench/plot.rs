//! SVG line plots of a figure against N (or P), one line per collector (median, with a min–max
//! bar).

use std::path::Path;

use plotters::prelude::*;

/// One collector's points: (x, median, min, max).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// Points in increasing x.
    pub points: Vec<(f64, f64, f64, f64)>,
}

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the plot: {e}")
}

/// The labels of a plot.
#[derive(Debug, Clone, Copy)]
pub struct Labels<'a> {
    /// The caption.
    pub title: &'a str,
    /// The x axis.
    pub x: &'a str,
    /// The y axis.
    pub y: &'a str,
}

/// Draws `series` into an SVG at `path`.
pub fn line_plot(path: &Path, labels: Labels<'_>, series: &[Series]) -> anyhow::Result<()> {
    let x_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let y_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.3.max(p.1)))
        .fold(0.0_f64, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(labels.title, ("sans-serif", 22))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max * 1.05, 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(labels.x)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc(labels.y)
        .draw()
        .map_err(err)?;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                s.points.iter().map(|p| (p.0, p.1)),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(s.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(
                s.points
                    .iter()
                    .map(|p| Circle::new((p.0, p.1), 4, color.filled())),
            )
            .map_err(err)?;
        chart
            .draw_series(
                s.points
                    .iter()
                    .map(|p| PathElement::new(vec![(p.0, p.2), (p.0, p.3)], color)),
            )
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_svg_with_every_series() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cpu.svg");
        let series = vec![
            Series {
                name: "tcp-info-sweep".into(),
                points: vec![(0.0, 1.0, 0.9, 1.1), (20_000.0, 9.0, 8.0, 10.0)],
            },
            Series {
                name: "ss-baseline".into(),
                points: vec![(0.0, 5.0, 5.0, 5.0), (20_000.0, 90.0, 80.0, 95.0)],
            },
        ];
        let labels = Labels {
            title: "CPU against N",
            x: "idle connections (N)",
            y: "CPU % of one core",
        };
        line_plot(&p, labels, &series).unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        for needle in [
            "tcp-info-sweep",
            "ss-baseline",
            "CPU against N",
            "idle connections (N)",
            "<circle",
            "<polyline",
        ] {
            assert!(svg.contains(needle), "missing {needle}");
        }
        // Empty input still gives a valid (empty) chart rather than an error.
        line_plot(&dir.path().join("empty.svg"), labels, &[]).unwrap();
    }
}
