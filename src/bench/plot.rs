//! The `--plot FILE` chart of `tilejit bench`: speedup of sparse over dense
//! against sparsity, one line per dtype, M and shape, next to the ideal
//! bytes ratio (dense bytes over stored bytes with one mask bit per
//! element: 1 / ((1 - s) + 1/16) for bf16, 1 / ((1 - s) + 1/8) for int8).
//!
//! Only results whose reference is the dense kernel
//! ([`super::suite::Reference::Dense`]) are drawn. Without any, no file is
//! written and [`PlotOutcome::NothingToDraw`] says why: a chart holding
//! only the reference line would look like a result.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use super::sparse::ideal_speedup;
use super::suite::BenchResult;

/// What [`write_speedup_svg`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum PlotOutcome {
    /// The SVG was written with this many measured lines.
    Written { lines: usize },
    /// Nothing was written, for this reason.
    NothingToDraw(String),
}

/// One measured line: its label and its (sparsity, speedup) points.
type Line = (String, Vec<(f64, f64)>);

/// What makes one line: dtype, M, N, K, threads (also the drawing order).
type LineKey = (String, usize, usize, usize, usize);

/// The measured lines.
fn lines(results: &[BenchResult]) -> Vec<Line> {
    let mut by_key: BTreeMap<LineKey, Vec<(f64, f64)>> = BTreeMap::new();
    for r in results {
        if let Some(speedup) = r.speedup_vs_dense() {
            let i = &r.info;
            by_key.entry((i.dtype.clone(), i.m, i.n, i.k, i.threads)).or_default().push((i.sparsity, speedup));
        }
    }
    by_key
        .into_iter()
        .map(|((dtype, m, n, k, threads), mut points)| {
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            (format!("{dtype} M={m} ({n}x{k}, {threads} thr)"), points)
        })
        .collect()
}

/// Bytes per element of a dtype name, for the reference line: bf16 2,
/// the int8 signedness names 1; others (block formats) have none.
fn elem_bytes(dtype: &str) -> Option<usize> {
    match dtype {
        "bf16" | "f16" => Some(2),
        "u8s8" | "s8s8" | "s8u8" | "u8u8" | "int8" | "s8" | "u8" => Some(1),
        _ => None,
    }
}

/// Draws the speedup chart of `results` to `path` (SVG).
pub fn write_speedup_svg(results: &[BenchResult], path: &Path) -> Result<PlotOutcome, String> {
    let lines = lines(results);
    if lines.is_empty() {
        return Ok(PlotOutcome::NothingToDraw(
            "no sparse result with a dense reference in this run (no sparse case is registered yet, \
             or --filter left none)"
                .into(),
        ));
    }
    let err = |e: &dyn std::fmt::Display| format!("drawing {}: {e}", path.display());
    let x_max = lines.iter().flat_map(|(_, p)| p.iter().map(|p| p.0)).fold(0.5f64, f64::max);
    let x_max = (x_max + 0.05).min(0.99);
    // Reference lines: bf16 always (the format's headline case), int8 too
    // when an int8 line is drawn.
    let mut refs = vec![2usize];
    if results.iter().any(|r| r.speedup_vs_dense().is_some() && elem_bytes(&r.info.dtype) == Some(1)) {
        refs.push(1);
    }
    let measured_max = lines.iter().flat_map(|(_, p)| p.iter().map(|p| p.1)).fold(1.0f64, f64::max);
    let ref_max = refs.iter().map(|&b| ideal_speedup(b, x_max)).fold(1.0f64, f64::max);
    let y_max = measured_max.max(ref_max) * 1.1;

    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("tilejit: sparse over dense speedup", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("sparsity (fraction of zero weights)")
        .y_desc("speedup (dense time / sparse time)")
        .draw()
        .map_err(|e| err(&e))?;
    let xs: Vec<f64> = (0..=200).map(|i| x_max * i as f64 / 200.0).collect();
    for (i, &bytes) in refs.iter().enumerate() {
        let color = if i == 0 { RGBColor(120, 120, 120) } else { RGBColor(190, 190, 190) };
        let label = if bytes == 2 { "ideal, bf16: 1/((1-s)+1/16)" } else { "ideal, int8: 1/((1-s)+1/8)" };
        chart
            .draw_series(LineSeries::new(xs.iter().map(|&s| (s, ideal_speedup(bytes, s))), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .draw_series(LineSeries::new([(0.0, 1.0), (x_max, 1.0)], BLACK.mix(0.3)))
        .map_err(|e| err(&e))?
        .label("break-even")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.3)));
    for (i, (label, points)) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled()))).map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(PlotOutcome::Written { lines: lines.len() })
}
