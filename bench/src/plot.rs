//! The latency distributions as one PNG: the cumulative distribution of every series of the
//! attach, detach and scale measurements, on a log time axis.

use std::fs;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::results::{Results, Series};

const FONT: &str = "sans-serif";

/// Distinct, dark enough on white: one per series of a panel.
const COLORS: [RGBColor; 13] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
    RGBColor(90, 90, 90),
    RGBColor(188, 189, 34),
    RGBColor(0, 0, 0),
    RGBColor(0, 0, 139),
    RGBColor(0, 100, 0),
];
/// Width of the legend column at the right of each panel.
const LEGEND_WIDTH: u32 = 470;

/// Draws `results` into `out` with the TrueType font at `font` (no system font lookup).
pub fn draw(results: &Results, font: &Path, out: &Path) -> Result<()> {
    let bytes = fs::read(font).with_context(|| format!("read font {}", font.display()))?;
    // The font table keeps a 'static reference; one font for the life of the process.
    plotters::style::register_font(FONT, FontStyle::Normal, Box::leak(bytes.into_boxed_slice()))
        .map_err(|_| anyhow!("{} is not a TrueType/OpenType font", font.display()))?;
    let root = BitMapBackend::new(out, (1600, 1650)).into_drawing_area();
    root.fill(&WHITE)?;
    let m = &results.machine;
    let root = root.titled(
        &format!(
            "Latency distributions, {} samples per series, interleaved ({} cores, kernel {})",
            results.samples, m.nproc, m.kernel
        ),
        (FONT, 26),
    )?;
    let panels = root.split_evenly((3, 1));
    let scale: Vec<Series> = results
        .scale
        .iter()
        .flat_map(|l| [l.hook.clone(), l.floor.clone()])
        .collect();
    for ((area, title), series) in panels
        .iter()
        .zip([
            "Attach: one fresh netns onto a bridge, one address",
            "Detach",
            "Scale: attach with containers already attached (weave-hook and the floor)",
        ])
        .zip([&results.attach, &results.detach, &scale])
    {
        if !series.is_empty() {
            cdf_panel(area, title, series)?;
        }
    }
    root.present()
        .with_context(|| format!("write {}", out.display()))?;
    Ok(())
}

/// 1-2-5 ticks from `lo` to `hi`: a log axis with labels between the powers of ten.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi {
        for step in [1.0, 2.0, 5.0] {
            let t = decade * step;
            if (lo..=hi).contains(&t) {
                ticks.push(t);
            }
        }
        decade *= 10.0;
    }
    ticks
}

fn cdf_panel(
    area: &DrawingArea<BitMapBackend, Shift>,
    title: &str,
    series: &[Series],
) -> Result<()> {
    let (width, _) = area.dim_in_pixel();
    let (plot, legend) = area.split_horizontally(width.saturating_sub(LEGEND_WIDTH));
    let all = series.iter().flat_map(|s| s.ms.iter().copied());
    let lo = all.clone().fold(f64::MAX, f64::min) * 0.8;
    let hi = all.fold(0.0, f64::max) * 1.25;
    let mut chart = ChartBuilder::on(&plot)
        .caption(title, (FONT, 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (lo..hi).log_scale().with_key_points(ticks(lo, hi)),
            0f64..1f64,
        )?;
    chart
        .configure_mesh()
        .x_label_formatter(&|v| format!("{v}"))
        .x_desc("milliseconds (log scale)")
        .y_desc("fraction of samples ≤ x")
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .draw()?;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut sorted = s.ms.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len() as f64;
        let points = sorted
            .into_iter()
            .enumerate()
            .map(|(k, ms)| (ms, (k + 1) as f64 / n));
        chart.draw_series(LineSeries::new(points, color.stroke_width(2)))?;
        // The legend: a line of the series' colour and its name, one row each.
        let y = 60 + 24 * i as i32;
        legend.draw(&PathElement::new(
            vec![(0, y), (28, y)],
            color.stroke_width(3),
        ))?;
        legend.draw(&Text::new(s.name.clone(), (36, y - 8), (FONT, 15)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ticks;

    #[test]
    fn ticks_are_one_two_five_within_the_range() {
        assert_eq!(ticks(0.4, 60.0), vec![0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0]);
        assert_eq!(ticks(12.0, 130.0), vec![20.0, 50.0, 100.0]);
    }
}
