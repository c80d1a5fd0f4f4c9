//! Figures → SVG, drawn by `plotters`' SVG backend.
//!
//! Text is written as SVG `<text>` elements and laid out by plotters' built-in estimate (the
//! `ttf` feature is off), so drawing needs no font files, no fontconfig and no system library;
//! the viewer's fonts render the text. Heatmaps are laid out in pixels (cells, tick labels,
//! colour bar), line and bar charts use plotters' chart builder for axes, ticks and grids.
//! Legends and category labels are drawn as plotters elements where plotters' own placement
//! would overlap the plot (rotated labels, legends outside the plotting area).
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;

use super::format::{figure_label, fmt_num};
use super::model::{BarChart, Colormap, Figure, GridHeatmaps, Heatmap, LinePlot, Panel};
use super::ReportError;

type DrawResult<T> = Result<T, Box<dyn std::error::Error>>;
type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Colour-bar steps: a heatmap's SVG has one `<rect>` per non-missing cell, one per step,
/// one for the background and one for the colour bar's frame.
pub const COLORBAR_STEPS: usize = 64;

/// Font family of every text element.
const FAMILY: &str = "sans-serif";
/// Tick-label, axis-title and figure-title sizes in CSS pixels.
const TICK_PX: f64 = 11.0;
const AXIS_PX: f64 = 12.0;
const TITLE_PX: f64 = 14.0;
/// Average glyph width of a sans-serif font, in ems (for layout estimates).
const CHAR_EM: f64 = 0.62;
/// Longest tick label (in characters) before it is cut with an ellipsis.
const MAX_LABEL_CHARS: usize = 18;

/// Categorical palette (Tableau 10), distinguishable in colour and fairly in greyscale.
const PALETTE: [RGBColor; 10] = [
    RGBColor(0x4E, 0x79, 0xA7),
    RGBColor(0xE1, 0x57, 0x59),
    RGBColor(0x59, 0xA1, 0x4F),
    RGBColor(0xF2, 0x8E, 0x2B),
    RGBColor(0xB0, 0x7A, 0xA1),
    RGBColor(0x76, 0xB7, 0xB2),
    RGBColor(0xED, 0xC9, 0x48),
    RGBColor(0x9C, 0x75, 0x5F),
    RGBColor(0xFF, 0x9D, 0xA7),
    RGBColor(0xBA, 0xB0, 0xAC),
];
const INK: RGBColor = RGBColor(0x22, 0x22, 0x22);
const MUTED: RGBColor = RGBColor(0x88, 0x88, 0x88);
const GRID_LINE: RGBColor = RGBColor(0xE4, 0xE4, 0xE4);

/// Draws `figure` as a standalone SVG document.
pub fn figure_svg(figure: &Figure) -> Result<String, ReportError> {
    let r = match figure {
        Figure::Heatmap(h) => heatmap_svg(h),
        Figure::GridHeatmaps(g) => grid_svg(g),
        Figure::Lines(l) => lines_svg(l),
        Figure::Bars(b) => bars_svg(b),
    };
    r.map_err(|e| ReportError::Plot {
        figure: figure.id().to_string(),
        message: e.to_string(),
    })
}

/// A font whose SVG `font-size` is `px` (plotters divides the size by 1.24).
fn font(px: f64) -> FontDesc<'static> {
    FontDesc::new(FontFamily::Name(FAMILY), px * 1.24, FontStyle::Normal)
}

fn text_w(s: &str, px: f64) -> i32 {
    (s.chars().count() as f64 * px * CHAR_EM).ceil() as i32
}

// One call per label with every text option spelled out at the call site reads better in the
// figure code than a style struct built for each label.
#[allow(clippy::too_many_arguments)]
fn draw_text(
    area: &Area,
    s: &str,
    (x, y): (i32, i32),
    px: f64,
    color: &RGBColor,
    pos: Pos,
    rotate: bool,
    bold: bool,
) -> DrawResult<()> {
    let mut f = font(px);
    if bold {
        f = f.style(FontStyle::Bold);
    }
    let mut style = f.color(color).pos(pos);
    if rotate {
        style = style.transform(FontTransform::Rotate270);
    }
    area.draw(&Text::new(s.to_string(), (x, y), style))?;
    Ok(())
}

fn finish(root: Area) -> DrawResult<()> {
    root.present()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Colour maps

fn stops(map: Colormap) -> &'static [(u8, u8, u8)] {
    match map {
        Colormap::Viridis => &[
            (68, 1, 84),
            (71, 44, 122),
            (59, 81, 139),
            (44, 113, 142),
            (33, 144, 141),
            (39, 173, 129),
            (92, 200, 99),
            (170, 220, 50),
            (253, 231, 37),
        ],
        Colormap::Blues => &[
            (247, 251, 255),
            (222, 235, 247),
            (198, 219, 239),
            (158, 202, 225),
            (107, 174, 214),
            (66, 146, 198),
            (33, 113, 181),
            (8, 81, 156),
            (8, 48, 107),
        ],
        Colormap::RedYellowGreen => &[
            (165, 0, 38),
            (215, 48, 39),
            (244, 109, 67),
            (253, 174, 97),
            (254, 224, 139),
            (255, 255, 191),
            (217, 239, 139),
            (166, 217, 106),
            (102, 189, 99),
            (26, 152, 80),
            (0, 104, 55),
        ],
        Colormap::Greys => &[
            (255, 255, 255),
            (240, 240, 240),
            (217, 217, 217),
            (189, 189, 189),
            (150, 150, 150),
            (115, 115, 115),
            (82, 82, 82),
            (37, 37, 37),
            (0, 0, 0),
        ],
    }
}

/// The colour of `t` ∈ [0, 1] (clamped) on `map`.
pub fn color_at(map: Colormap, t: f64) -> RGBColor {
    let s = stops(map);
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let f = t * (s.len() - 1) as f64;
    let i = (f.floor() as usize).min(s.len() - 2);
    let u = f - i as f64;
    let lerp = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * u).round() as u8;
    RGBColor(
        lerp(s[i].0, s[i + 1].0),
        lerp(s[i].1, s[i + 1].1),
        lerp(s[i].2, s[i + 1].2),
    )
}

/// `c` drawn at `alpha` over white.
fn fade(c: RGBColor, alpha: f64) -> RGBColor {
    let mix = |x: u8| (255.0 - (255.0 - f64::from(x)) * alpha.clamp(0.0, 1.0)).round() as u8;
    RGBColor(mix(c.0), mix(c.1), mix(c.2))
}

fn ink_on(c: &RGBColor) -> RGBColor {
    let lum = 0.2126 * c.0 as f64 + 0.7152 * c.1 as f64 + 0.0722 * c.2 as f64;
    if lum > 140.0 {
        INK
    } else {
        WHITE
    }
}

/// (lo, hi) of the finite values, widened when they coincide; explicit bounds win.
fn value_range<'a>(
    values: impl Iterator<Item = &'a f64>,
    vmin: Option<f64>,
    vmax: Option<f64>,
) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for &v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    let lo = vmin.unwrap_or(lo);
    let hi = vmax.unwrap_or(hi);
    if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, lo + 0.5)
    }
}

/// Decimal places that show steps of `step` with two significant digits.
fn decimals_for(step: f64) -> usize {
    if !(step.is_finite() && step > 0.0) {
        return 2;
    }
    ((-step.log10()).ceil() + 1.0).clamp(0.0, 6.0) as usize
}

// ---------------------------------------------------------------------------------------------
// Heatmaps (a single heatmap is a grid with one untitled panel)

struct GridSpec<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    x_labels: &'a [String],
    y_labels: &'a [String],
    /// Per panel: title, values and (possibly empty) per-cell sample counts.
    panels: Vec<(&'a str, &'a [f64], &'a [usize])>,
    color_label: &'a str,
    vmin: Option<f64>,
    vmax: Option<f64>,
    colormap: Colormap,
    annotate: bool,
    columns: usize,
}

fn heatmap_svg(h: &Heatmap) -> DrawResult<String> {
    draw_grid(&GridSpec {
        title: &h.title,
        x_label: &h.x_label,
        y_label: &h.y_label,
        x_labels: &h.x_labels,
        y_labels: &h.y_labels,
        panels: vec![("", &h.values, &[])],
        color_label: &h.color_label,
        vmin: h.vmin,
        vmax: h.vmax,
        colormap: h.colormap,
        annotate: h.annotate,
        columns: 1,
    })
}

fn grid_svg(g: &GridHeatmaps) -> DrawResult<String> {
    let columns = g.columns.unwrap_or(g.panels.len().min(4)).max(1);
    draw_grid(&GridSpec {
        title: &g.title,
        x_label: &g.x_label,
        y_label: &g.y_label,
        x_labels: &g.x_labels,
        y_labels: &g.y_labels,
        panels: g
            .panels
            .iter()
            .map(|Panel { title, values, counts }| (title.as_str(), values.as_slice(), counts.as_slice()))
            .collect(),
        color_label: &g.color_label,
        vmin: g.vmin,
        vmax: g.vmax,
        colormap: g.colormap,
        annotate: g.annotate,
        columns,
    })
}

fn draw_grid(spec: &GridSpec) -> DrawResult<String> {
    let nx = spec.x_labels.len();
    let ny = spec.y_labels.len();
    let npanels = spec.panels.len();
    let cols = spec.columns.min(npanels).max(1);
    let rows = npanels.div_ceil(cols);
    let titled_panels = spec.panels.iter().any(|(t, _, _)| !t.is_empty());
    // Opacity by sample count: the fullest cell of the figure is opaque, an emptier one fades.
    let max_count = spec.panels.iter().flat_map(|(_, _, c)| c.iter()).copied().max().unwrap_or(0);

    let (vlo, vhi) = value_range(
        spec.panels.iter().flat_map(|(_, v, _)| v.iter()),
        spec.vmin,
        spec.vmax,
    );
    let tick_dec = decimals_for((vhi - vlo) / 4.0);

    let xl: Vec<String> = spec
        .x_labels
        .iter()
        .map(|s| figure_label(s, MAX_LABEL_CHARS))
        .collect();
    let yl: Vec<String> = spec
        .y_labels
        .iter()
        .map(|s| figure_label(s, MAX_LABEL_CHARS))
        .collect();
    let max_xl = xl.iter().map(|s| text_w(s, TICK_PX)).max().unwrap_or(0);
    let max_yl = yl.iter().map(|s| text_w(s, TICK_PX)).max().unwrap_or(0);

    // Cell size: fill about 640 × 360 px per panel row, within readable bounds.
    let per_row_cells = (nx * cols) as f64;
    let mut cell_w = (640.0 / per_row_cells).clamp(12.0, 48.0) as i32;
    let mut cell_h = (360.0 / (ny * rows) as f64).clamp(14.0, 32.0) as i32;
    if spec.annotate {
        let counted = if max_count > 0 { format!(" ({max_count})") } else { String::new() };
        let widest = text_w(&format!("{}{counted}", fmt_num(-vhi.abs().max(vlo.abs()), tick_dec)), TICK_PX) + 6;
        cell_w = cell_w.max(widest);
        cell_h = cell_h.max(18);
    }
    // Wide enough that panel titles do not run into each other.
    let widest_title = spec.panels.iter().map(|(t, _, _)| text_w(t, AXIS_PX)).max().unwrap_or(0);
    cell_w = cell_w.max((widest_title + 6 + nx as i32 - 1) / (nx as i32).max(1));
    // Horizontal x labels when they all fit in a cell, else rotated (read bottom to top).
    let rotate_x = max_xl > cell_w - 4;
    let xlab_h = if rotate_x {
        max_xl + 8
    } else {
        (TICK_PX * 1.6) as i32
    };

    let pad = 10;
    let gap = 18;
    let title_h = if spec.title.is_empty() { 0 } else { 26 };
    let ytitle_w = if spec.y_label.is_empty() { 0 } else { 20 };
    let xtitle_h = if spec.x_label.is_empty() { 0 } else { 22 };
    let ptitle_h = if titled_panels { 20 } else { 0 };
    let ylab_w = max_yl + 8;
    let panel_w = nx as i32 * cell_w;
    let panel_h = ny as i32 * cell_h;
    let row_h = ptitle_h + panel_h + xlab_h;

    let left = pad + ytitle_w + ylab_w;
    let top = pad + title_h;
    let grid_w = cols as i32 * panel_w + (cols as i32 - 1) * gap;
    let grid_h = rows as i32 * row_h + (rows as i32 - 1) * gap;

    // Colour bar to the right of the grid.
    let cb_gap = 18;
    let cb_bar_w = 14;
    let cb_tick_w = text_w(&fmt_num(-vhi.abs().max(vlo.abs()), tick_dec), TICK_PX) + 8;
    let cb_title_w = if spec.color_label.is_empty() { 0 } else { 22 };
    let cb_x = left + grid_w + cb_gap;
    let cb_top = top + ptitle_h;
    let cb_h = (rows as i32 * row_h - ptitle_h - xlab_h).clamp(100, 400);
    let width = cb_x + cb_bar_w + cb_tick_w + cb_title_w + pad;
    let height = (top + grid_h + xtitle_h + pad).max(cb_top + cb_h + pad + xtitle_h);
    let width = width.max(left + text_w(spec.title, TITLE_PX) - ylab_w + pad);

    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (width as u32, height as u32)).into_drawing_area();
        root.fill(&WHITE)?;
        let center = Pos::new(HPos::Center, VPos::Center);
        if !spec.title.is_empty() {
            draw_text(
                &root,
                spec.title,
                (left + grid_w / 2, pad + 8),
                TITLE_PX,
                &INK,
                center,
                false,
                true,
            )?;
        }
        if !spec.y_label.is_empty() {
            draw_text(
                &root,
                spec.y_label,
                (pad + 8, top + grid_h / 2),
                AXIS_PX,
                &INK,
                center,
                true,
                false,
            )?;
        }
        if !spec.x_label.is_empty() {
            draw_text(
                &root,
                spec.x_label,
                (left + grid_w / 2, top + grid_h + xtitle_h / 2 + 2),
                AXIS_PX,
                &INK,
                center,
                false,
                false,
            )?;
        }
        let span = vhi - vlo;
        for (p, (ptitle, values, counts)) in spec.panels.iter().enumerate() {
            let (r, c) = ((p / cols) as i32, (p % cols) as i32);
            let x0 = left + c * (panel_w + gap);
            let y0 = top + r * (row_h + gap) + ptitle_h;
            if !ptitle.is_empty() {
                draw_text(
                    &root,
                    ptitle,
                    (x0 + panel_w / 2, y0 - ptitle_h / 2),
                    AXIS_PX,
                    &INK,
                    center,
                    false,
                    true,
                )?;
            }
            let mut cells = Vec::new();
            let mut missing = Vec::new();
            for iy in 0..ny {
                for ix in 0..nx {
                    let v = values[iy * nx + ix];
                    let (cx, cy) = (x0 + ix as i32 * cell_w, y0 + iy as i32 * cell_h);
                    if v.is_finite() {
                        let mut col = color_at(spec.colormap, (v - vlo) / span);
                        let count = counts.get(iy * nx + ix).copied();
                        if let (Some(c), true) = (count, max_count > 0) {
                            col = fade(col, 0.25 + 0.75 * c as f64 / max_count as f64);
                        }
                        cells.push(((cx, cy), col, v, count));
                    } else {
                        missing.push((cx, cy));
                    }
                }
            }
            for &((cx, cy), col, _, _) in &cells {
                root.draw(&Rectangle::new(
                    [(cx, cy), (cx + cell_w, cy + cell_h)],
                    col.filled(),
                ))?;
            }
            // Missing cells stay blank with a thin diagonal, so they differ from the scale's end.
            for &(cx, cy) in &missing {
                root.draw(&PathElement::new(
                    vec![(cx + 2, cy + cell_h - 2), (cx + cell_w - 2, cy + 2)],
                    MUTED.stroke_width(1),
                ))?;
            }
            if spec.annotate {
                for &((cx, cy), col, v, count) in &cells {
                    draw_text(
                        &root,
                        &match count {
                            Some(c) => format!("{} ({c})", fmt_num(v, tick_dec)),
                            None => fmt_num(v, tick_dec),
                        },
                        (cx + cell_w / 2, cy + cell_h / 2),
                        TICK_PX,
                        &ink_on(&col),
                        center,
                        false,
                        false,
                    )?;
                }
            }
            // Frame.
            root.draw(&PathElement::new(
                vec![
                    (x0, y0),
                    (x0 + panel_w, y0),
                    (x0 + panel_w, y0 + panel_h),
                    (x0, y0 + panel_h),
                    (x0, y0),
                ],
                MUTED.stroke_width(1),
            ))?;
            // y tick labels on the first column only (shared axis).
            if c == 0 {
                for (iy, s) in yl.iter().enumerate() {
                    let y = y0 + iy as i32 * cell_h + cell_h / 2;
                    draw_text(
                        &root,
                        s,
                        (x0 - 5, y),
                        TICK_PX,
                        &INK,
                        Pos::new(HPos::Right, VPos::Center),
                        false,
                        false,
                    )?;
                }
            }
            // x tick labels under every panel.
            for (ix, s) in xl.iter().enumerate() {
                let x = x0 + ix as i32 * cell_w + cell_w / 2;
                if rotate_x {
                    draw_text(
                        &root,
                        s,
                        (x, y0 + panel_h + 5),
                        TICK_PX,
                        &INK,
                        Pos::new(HPos::Right, VPos::Center),
                        true,
                        false,
                    )?;
                } else {
                    draw_text(
                        &root,
                        s,
                        (x, y0 + panel_h + 4),
                        TICK_PX,
                        &INK,
                        Pos::new(HPos::Center, VPos::Top),
                        false,
                        false,
                    )?;
                }
            }
        }
        // Colour bar: COLORBAR_STEPS rectangles, high values on top.
        let step_h = cb_h as f64 / COLORBAR_STEPS as f64;
        for i in 0..COLORBAR_STEPS {
            let t = (i as f64 + 0.5) / COLORBAR_STEPS as f64;
            let ya = cb_top + cb_h - ((i + 1) as f64 * step_h).round() as i32;
            let yb = cb_top + cb_h - (i as f64 * step_h).round() as i32;
            root.draw(&Rectangle::new(
                [(cb_x, ya), (cb_x + cb_bar_w, yb)],
                color_at(spec.colormap, t).filled(),
            ))?;
        }
        root.draw(&Rectangle::new(
            [(cb_x, cb_top), (cb_x + cb_bar_w, cb_top + cb_h)],
            MUTED.stroke_width(1),
        ))?;
        for k in 0..=4 {
            let v = vlo + span * k as f64 / 4.0;
            let y = cb_top + cb_h - (cb_h as f64 * k as f64 / 4.0).round() as i32;
            root.draw(&PathElement::new(
                vec![(cb_x + cb_bar_w, y), (cb_x + cb_bar_w + 3, y)],
                INK.stroke_width(1),
            ))?;
            draw_text(
                &root,
                &fmt_num(v, tick_dec),
                (cb_x + cb_bar_w + 5, y),
                TICK_PX,
                &INK,
                Pos::new(HPos::Left, VPos::Center),
                false,
                false,
            )?;
        }
        if !spec.color_label.is_empty() {
            let x = cb_x + cb_bar_w + cb_tick_w + cb_title_w / 2;
            draw_text(
                &root,
                spec.color_label,
                (x, cb_top + cb_h / 2),
                AXIS_PX,
                &INK,
                center,
                true,
                false,
            )?;
        }
        finish(root)?;
    }
    Ok(svg)
}

// ---------------------------------------------------------------------------------------------
// Legends (drawn to the right of the plotting area)

enum Swatch {
    Line,
    Box,
}

fn legend_width(names: &[&str]) -> i32 {
    names.iter().map(|n| text_w(n, TICK_PX)).max().unwrap_or(0) + 44
}

fn draw_legend(
    root: &Area,
    (x, y): (i32, i32),
    entries: &[(&str, RGBColor)],
    swatch: Swatch,
) -> DrawResult<()> {
    for (i, (name, color)) in entries.iter().enumerate() {
        let yy = y + i as i32 * 18;
        match swatch {
            Swatch::Line => {
                root.draw(&PathElement::new(
                    vec![(x, yy), (x + 22, yy)],
                    color.stroke_width(2),
                ))?;
                root.draw(&Circle::new((x + 11, yy), 3, color.filled()))?;
            }
            Swatch::Box => {
                root.draw(&Rectangle::new(
                    [(x + 4, yy - 6), (x + 18, yy + 6)],
                    color.filled(),
                ))?;
            }
        }
        draw_text(
            root,
            name,
            (x + 28, yy),
            TICK_PX,
            &INK,
            Pos::new(HPos::Left, VPos::Center),
            false,
            false,
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Line plots

/// Runs of consecutive indices where every `cols[k][i]` is finite.
fn finite_runs(n: usize, cols: &[&[f64]]) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let mut start = None;
    for i in 0..=n {
        let ok = i < n && cols.iter().all(|c| c[i].is_finite());
        match (ok, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push(s..i);
                start = None;
            }
            _ => {}
        }
    }
    runs
}

/// Axis tick label: integers without decimals, others without trailing zeros.
fn tick_label(v: &f64) -> String {
    if !v.is_finite() {
        return String::new();
    }
    let s = format!("{:.6}", v);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

fn padded(lo: f64, hi: f64, frac: f64) -> (f64, f64) {
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    if hi > lo {
        let p = (hi - lo) * frac;
        (lo - p, hi + p)
    } else {
        (lo - 0.5, hi + 0.5)
    }
}

fn extent<'a>(vals: impl Iterator<Item = &'a f64>) -> (f64, f64) {
    vals.filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        })
}

fn lines_svg(l: &LinePlot) -> DrawResult<String> {
    let has_y2 = l.series.iter().any(|s| s.secondary);
    let legend_names: Vec<String> = l
        .series
        .iter()
        .map(|s| {
            if s.secondary && has_y2 {
                format!("{} (right axis)", s.name)
            } else {
                s.name.clone()
            }
        })
        .collect();
    let legend_w = legend_width(&legend_names.iter().map(String::as_str).collect::<Vec<_>>());
    let plot_w = 640;
    let width = plot_w + legend_w;
    let height = 420;

    let (x_lo, x_hi) = extent(l.series.iter().flat_map(|s| s.x.iter()));
    let (x_lo, x_hi) = if x_hi > x_lo {
        (x_lo, x_hi)
    } else {
        padded(x_lo, x_hi, 0.0)
    };
    let y_extent = |secondary: bool| {
        extent(
            l.series
                .iter()
                .filter(|s| s.secondary == secondary)
                .flat_map(|s| {
                    s.y.iter()
                        .chain(s.band_lo.iter().flatten())
                        .chain(s.band_hi.iter().flatten())
                }),
        )
    };
    let (y_lo, y_hi) = l.y_range.unwrap_or_else(|| {
        let (a, b) = y_extent(false);
        padded(a, b, 0.05)
    });
    let (y2_lo, y2_hi) = l.y2_range.unwrap_or_else(|| {
        let (a, b) = y_extent(true);
        padded(a, b, 0.05)
    });

    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (width as u32, height as u32)).into_drawing_area();
        root.fill(&WHITE)?;
        let (plot_area, _) = root.split_horizontally(plot_w);
        let mut builder = ChartBuilder::on(&plot_area);
        builder
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(60);
        if has_y2 {
            builder.right_y_label_area_size(60);
        }
        if !l.title.is_empty() {
            builder.caption(&l.title, font(TITLE_PX).style(FontStyle::Bold));
        }
        let mut chart = builder
            .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)?
            .set_secondary_coord(x_lo..x_hi, y2_lo..y2_hi);
        chart
            .configure_mesh()
            .x_desc(l.x_label.as_str())
            .y_desc(l.y_label.as_str())
            .x_label_formatter(&tick_label)
            .y_label_formatter(&tick_label)
            .label_style(font(TICK_PX).color(&INK))
            .axis_desc_style(font(AXIS_PX).color(&INK))
            .bold_line_style(GRID_LINE)
            .max_light_lines(0)
            .axis_style(MUTED)
            .draw()?;
        if has_y2 {
            chart
                .configure_secondary_axes()
                .y_desc(l.y2_label.as_deref().unwrap_or(""))
                .y_label_formatter(&tick_label)
                .label_style(font(TICK_PX).color(&INK))
                .axis_desc_style(font(AXIS_PX).color(&INK))
                .axis_style(MUTED)
                .draw()?;
        }
        let mut entries = Vec::new();
        for (k, s) in l.series.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            entries.push((legend_names[k].as_str(), color));
            let n = s.x.len();
            // Band first, under the line.
            if let (Some(lo), Some(hi)) = (&s.band_lo, &s.band_hi) {
                for run in finite_runs(n, &[&s.x, lo, hi]) {
                    let mut pts: Vec<(f64, f64)> = run.clone().map(|i| (s.x[i], hi[i])).collect();
                    pts.extend(run.rev().map(|i| (s.x[i], lo[i])));
                    let poly = Polygon::new(pts, color.mix(0.18).filled());
                    if s.secondary {
                        chart.draw_secondary_series(std::iter::once(poly))?;
                    } else {
                        chart.draw_series(std::iter::once(poly))?;
                    }
                }
            }
            let style = color.stroke_width(2);
            let markers = n <= 60;
            for run in finite_runs(n, &[&s.x, &s.y]) {
                let pts: Vec<(f64, f64)> = run.map(|i| (s.x[i], s.y[i])).collect();
                let dots: Vec<_> = if markers {
                    pts.iter()
                        .map(|&p| Circle::new(p, 3, color.filled()))
                        .collect()
                } else {
                    Vec::new()
                };
                if s.secondary {
                    chart.draw_secondary_series(LineSeries::new(pts, style))?;
                    chart.draw_secondary_series(dots)?;
                } else {
                    chart.draw_series(LineSeries::new(pts, style))?;
                    chart.draw_series(dots)?;
                }
            }
        }
        let top = if l.title.is_empty() { 20 } else { 46 };
        draw_legend(&root, (plot_w + 4, top), &entries, Swatch::Line)?;
        finish(root)?;
    }
    Ok(svg)
}

// ---------------------------------------------------------------------------------------------
// Grouped bar charts

fn bars_svg(b: &BarChart) -> DrawResult<String> {
    let nc = b.categories.len();
    let ns = b.series.len();
    let names: Vec<&str> = b.series.iter().map(|s| s.name.as_str()).collect();
    let legend_w = legend_width(&names);
    let plot_w = (120 + nc as i32 * (ns as i32 * 22 + 24)).clamp(360, 760);
    let width = plot_w + legend_w;

    let labels: Vec<String> = b
        .categories
        .iter()
        .map(|s| figure_label(s, MAX_LABEL_CHARS))
        .collect();
    let max_lab = labels.iter().map(|s| text_w(s, TICK_PX)).max().unwrap_or(0);
    let approx_cat_w = (plot_w - 90) / nc.max(1) as i32;
    let rotate = max_lab > approx_cat_w - 6;
    let xlab_h = if rotate { max_lab + 10 } else { 20 };
    let x_area = xlab_h + if b.x_label.is_empty() { 4 } else { 22 };
    let height = 360 + x_area;

    let (y_lo, y_hi) = b.y_range.unwrap_or_else(|| {
        let mut lo: f64 = 0.0;
        let mut hi: f64 = 0.0;
        for s in &b.series {
            for (i, &v) in s.values.iter().enumerate() {
                if !v.is_finite() {
                    continue;
                }
                let e = s
                    .errors
                    .as_ref()
                    .map(|e| e[i])
                    .filter(|e| e.is_finite())
                    .unwrap_or(0.0)
                    .abs();
                lo = lo.min(v - e);
                hi = hi.max(v + e);
            }
        }
        if hi > lo {
            let p = (hi - lo) * 0.06;
            (
                if lo < 0.0 { lo - p } else { lo },
                if hi > 0.0 { hi + p } else { hi },
            )
        } else {
            (0.0, 1.0)
        }
    });
    let base = 0f64.clamp(y_lo, y_hi);

    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (width as u32, height as u32)).into_drawing_area();
        root.fill(&WHITE)?;
        let (plot_area, _) = root.split_horizontally(plot_w);
        let mut builder = ChartBuilder::on(&plot_area);
        builder
            .margin(12)
            .x_label_area_size(x_area)
            .y_label_area_size(60);
        if !b.title.is_empty() {
            builder.caption(&b.title, font(TITLE_PX).style(FontStyle::Bold));
        }
        let mut chart = builder.build_cartesian_2d(0f64..nc as f64, y_lo..y_hi)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .x_desc(b.x_label.as_str())
            .y_desc(b.y_label.as_str())
            .y_label_formatter(&tick_label)
            .label_style(font(TICK_PX).color(&INK))
            .axis_desc_style(font(AXIS_PX).color(&INK))
            .bold_line_style(GRID_LINE)
            .max_light_lines(0)
            .axis_style(MUTED)
            .draw()?;
        let group = 0.8;
        let w = group / ns.max(1) as f64;
        let mut entries = Vec::new();
        for (j, s) in b.series.iter().enumerate() {
            let color = PALETTE[j % PALETTE.len()];
            entries.push((s.name.as_str(), color));
            let xs = |i: usize| i as f64 + (1.0 - group) / 2.0 + j as f64 * w;
            chart.draw_series(
                s.values
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| v.is_finite())
                    .map(|(i, &v)| {
                        Rectangle::new(
                            [(xs(i) + w * 0.05, base), (xs(i) + w * 0.95, v)],
                            color.filled(),
                        )
                    }),
            )?;
            if let Some(errs) = &s.errors {
                // Whisker and caps, one polyline per bar.
                let cap = w * 0.18;
                chart.draw_series(
                    s.values
                        .iter()
                        .zip(errs)
                        .enumerate()
                        .filter(|(_, (v, e))| v.is_finite() && e.is_finite() && **e != 0.0)
                        .map(|(i, (&v, &e))| {
                            let (x, lo, hi) = (xs(i) + w / 2.0, v - e.abs(), v + e.abs());
                            PathElement::new(
                                vec![
                                    (x - cap, lo),
                                    (x + cap, lo),
                                    (x, lo),
                                    (x, hi),
                                    (x - cap, hi),
                                    (x + cap, hi),
                                ],
                                INK.stroke_width(1),
                            )
                        }),
                )?;
            }
        }
        // Category labels, centred under each group.
        for (i, s) in labels.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(i as f64 + 0.5, y_lo));
            if rotate {
                draw_text(
                    &root,
                    s,
                    (x, y + 6),
                    TICK_PX,
                    &INK,
                    Pos::new(HPos::Right, VPos::Center),
                    true,
                    false,
                )?;
            } else {
                draw_text(
                    &root,
                    s,
                    (x, y + 5),
                    TICK_PX,
                    &INK,
                    Pos::new(HPos::Center, VPos::Top),
                    false,
                    false,
                )?;
            }
        }
        let top = if b.title.is_empty() { 20 } else { 46 };
        draw_legend(&root, (plot_w + 4, top), &entries, Swatch::Box)?;
        finish(root)?;
    }
    Ok(svg)
}
