//! Hand-written SVG charts for the HTML report: line charts with interval
//! bands and a marked point, grouped bars with whiskers, histograms and heat
//! maps. Output is inline SVG (no namespace URL, no external references) in
//! which every piece of text is escaped.

use std::fmt::Write;

/// Escapes text for HTML and SVG content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Colours of series, in order; chosen to stay apart for colour-blind readers.
pub const PALETTE: [&str; 8] = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#7f7f7f", "#000000"];

/// The colour of the `i`th series.
pub fn color(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

const W: f64 = 640.0;
const H: f64 = 340.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 80.0;

/// Shortest decimal form that shows `x` at a useful precision.
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    let a = x.abs();
    if a >= 1000.0 || (a - a.round()).abs() < 1e-9 {
        format!("{x:.0}")
    } else if a >= 100.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else if a >= 0.1 {
        format!("{x:.3}")
    } else {
        // Three significant digits, so that 0.000103 kWh is not "0.000".
        let decimals = (2.0 - a.log10().floor()).clamp(3.0, 12.0) as usize;
        format!("{x:.decimals$}")
    }
}

/// A tick label: [`fmt_num`] without trailing zeros.
fn fmt_tick(x: f64) -> String {
    let s = fmt_num(x);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Round tick positions covering `[lo, hi]` (about `n` of them).
pub fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo || n == 0 {
        return vec![lo];
    }
    let raw = (hi - lo) / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let start = (lo / step).ceil() * step;
    let mut ticks = Vec::new();
    let mut t = start;
    while t <= hi + step * 1e-9 && ticks.len() < 50 {
        ticks.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    ticks
}

/// Grows a range to round ends; zero-width ranges get some room.
fn nice_range(lo: f64, hi: f64, from_zero: bool) -> (f64, f64) {
    let (mut lo, mut hi) = if lo.is_finite() && hi.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    if from_zero {
        lo = lo.min(0.0);
    }
    if hi - lo < 1e-12 {
        hi = lo + if lo.abs() > 0.0 { lo.abs() * 0.5 } else { 1.0 };
    }
    let ticks = nice_ticks(lo, hi, 5);
    let step = if ticks.len() > 1 { ticks[1] - ticks[0] } else { hi - lo };
    let lo2 = (lo / step).floor() * step;
    let hi2 = (hi / step).ceil() * step;
    (lo2, if hi2 > lo2 { hi2 } else { lo2 + step })
}

struct Frame {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
    /// The x axis is in powers of two (`x0`, `x1` > 0).
    xlog: bool,
}

impl Frame {
    fn px(&self, x: f64) -> f64 {
        let t = if self.xlog {
            (x.max(1e-12).log2() - self.x0.log2()) / (self.x1.log2() - self.x0.log2())
        } else {
            (x - self.x0) / (self.x1 - self.x0)
        };
        LEFT + t * (W - LEFT - RIGHT)
    }
    fn py(&self, y: f64) -> f64 {
        H - BOTTOM - (y - self.y0) / (self.y1 - self.y0) * (H - TOP - BOTTOM)
    }
}

fn open_svg(s: &mut String, id: &str, title: &str, w: f64, h: f64) {
    let _ = write!(
        s,
        r#"<svg class="chart" id="{id}" role="img" aria-labelledby="{id}-title" viewBox="0 0 {w} {h}" width="{w}" height="{h}"><title id="{id}-title">{t}</title><rect class="bg" x="0" y="0" width="{w}" height="{h}"/><text class="chart-title" x="{cx}" y="22" text-anchor="middle">{t}</text>"#,
        id = esc(id),
        t = esc(title),
        cx = w / 2.0,
    );
}

fn axes(s: &mut String, f: &Frame, x_label: &str, y_label: &str, x_ticks: bool) {
    let yt = nice_ticks(f.y0, f.y1, 5);
    for t in &yt {
        let y = f.py(*t);
        let _ = write!(
            s,
            r#"<line class="grid" x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}"/><text class="tick" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            fmt_tick(*t)
        );
    }
    if x_ticks {
        let ticks = if f.xlog {
            let (a, b) = (f.x0.log2().floor() as i32, f.x1.log2().ceil() as i32);
            (a..=b).map(|e| 2f64.powi(e)).filter(|t| *t >= f.x0 * 0.999 && *t <= f.x1 * 1.001).collect()
        } else {
            nice_ticks(f.x0, f.x1, 6)
        };
        for t in ticks {
            let x = f.px(t);
            let _ = write!(
                s,
                r#"<line class="tickmark" x1="{x:.1}" x2="{x:.1}" y1="{}" y2="{}"/><text class="tick" x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#,
                H - BOTTOM,
                H - BOTTOM + 5.0,
                H - BOTTOM + 18.0,
                fmt_tick(t)
            );
        }
    }
    let _ = write!(
        s,
        r#"<line class="axis" x1="{LEFT}" x2="{}" y1="{b}" y2="{b}"/><line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{b}"/>"#,
        W - RIGHT,
        b = H - BOTTOM,
    );
    let _ = write!(
        s,
        r#"<text class="axis-label x-label" x="{}" y="{}" text-anchor="middle">{}</text><text class="axis-label y-label" x="{}" y="{}" text-anchor="middle" transform="rotate(-90 {} {})">{}</text>"#,
        LEFT + (W - LEFT - RIGHT) / 2.0,
        H - BOTTOM + 42.0,
        esc(x_label),
        18.0,
        TOP + (H - TOP - BOTTOM) / 2.0,
        18.0,
        TOP + (H - TOP - BOTTOM) / 2.0,
        esc(y_label)
    );
}

/// Average width of a legend character at 11 px, on the generous side so
/// that a label never runs past the box.
const CHAR_W: f64 = 6.6;

/// Lays the legend out in rows below the x-axis label, inside the chart's
/// box: labels are cut to fit the width, rows wrap. Returns the markup and
/// the height the chart must have to hold it.
fn legend(names: &[(String, &'static str)], markers: bool) -> (String, f64) {
    let (x_start, x_end) = (12.0, W - 12.0);
    let max_chars = ((x_end - x_start - 30.0) / CHAR_W).floor() as usize;
    let mut s = String::from(r#"<g class="legend-box">"#);
    let mut x = x_start;
    let mut y = H - BOTTOM + 62.0;
    for (i, (name, c)) in names.iter().enumerate() {
        let mut label: String = name.chars().take(max_chars).collect();
        if name.chars().count() > max_chars {
            label.pop();
            label.push('…');
        }
        let width = 28.0 + CHAR_W * label.chars().count() as f64;
        if x + width > x_end && x > x_start {
            x = x_start;
            y += 15.0;
        }
        if markers {
            let _ = write!(
                s,
                r#"<line x1="{x:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="{c}" stroke-width="2"/>{}"#,
                x + 20.0,
                y - 4.0,
                y - 4.0,
                marker(i, x + 10.0, y - 4.0, c)
            );
        } else {
            let _ = write!(s, r#"<rect x="{:.1}" y="{:.1}" width="10" height="10" fill="{c}"/>"#, x + 5.0, y - 9.0);
        }
        let _ = write!(
            s,
            r#"<text class="legend" x="{:.1}" y="{y:.1}"><title>{}</title>{}</text>"#,
            x + 24.0,
            esc(name),
            esc(&label)
        );
        x += width + 8.0;
    }
    s.push_str("</g>");
    (s, (y + 10.0).max(H))
}

/// A point marker of series `i`: circle, square, triangle, diamond,
/// inverted triangle or cross, so that series differ in shape as well as
/// colour.
pub fn marker(i: usize, x: f64, y: f64, c: &str) -> String {
    let r = 4.0;
    match i % 6 {
        0 => format!(r#"<circle class="marker" cx="{x:.1}" cy="{y:.1}" r="{r}" fill="{c}"/>"#),
        1 => format!(
            r#"<rect class="marker" x="{:.1}" y="{:.1}" width="{}" height="{}" fill="{c}"/>"#,
            x - r,
            y - r,
            2.0 * r,
            2.0 * r
        ),
        2 => format!(
            r#"<path class="marker" d="M{x:.1},{:.1}L{:.1},{:.1}L{:.1},{:.1}Z" fill="{c}"/>"#,
            y - r - 1.0,
            x + r + 1.0,
            y + r,
            x - r - 1.0,
            y + r
        ),
        3 => format!(
            r#"<path class="marker" d="M{x:.1},{:.1}L{:.1},{y:.1}L{x:.1},{:.1}L{:.1},{y:.1}Z" fill="{c}"/>"#,
            y - r - 1.0,
            x + r + 1.0,
            y + r + 1.0,
            x - r - 1.0
        ),
        4 => format!(
            r#"<path class="marker" d="M{x:.1},{:.1}L{:.1},{:.1}L{:.1},{:.1}Z" fill="{c}"/>"#,
            y + r + 1.0,
            x + r + 1.0,
            y - r,
            x - r - 1.0,
            y - r
        ),
        _ => format!(
            r#"<path class="marker" d="M{:.1},{:.1}L{:.1},{:.1}M{:.1},{:.1}L{:.1},{:.1}" stroke="{c}" stroke-width="2.5" fill="none"/>"#,
            x - r,
            y - r,
            x + r,
            y + r,
            x - r,
            y + r,
            x + r,
            y - r
        ),
    }
}

/// Labels inside a plot that must not overlap: each one placed is moved
/// down (or up, at the bottom) by a line until it is clear of the others.
#[derive(Default)]
struct Labels {
    boxes: Vec<(f64, f64, f64, f64)>,
    svg: String,
}

impl Labels {
    /// Width of a 12 px semibold label.
    fn width(text: &str) -> f64 {
        7.4 * text.chars().count() as f64
    }

    fn place(&mut self, x: f64, y: f64, anchor: &str, text: &str) {
        let w = Self::width(text);
        let x0 = if anchor == "end" { x - w } else { x };
        let clash = |y: f64, boxes: &[(f64, f64, f64, f64)]| {
            boxes.iter().any(|b| x0 < b.1 && x0 + w > b.0 && y - 11.0 < b.3 && y + 2.0 > b.2)
        };
        let mut ty = y;
        for step in 0..12 {
            let down = y + 13.0 * step as f64;
            let up = y - 13.0 * step as f64;
            if down <= H - BOTTOM - 3.0 && !clash(down, &self.boxes) {
                ty = down;
                break;
            }
            if up >= TOP + 10.0 && !clash(up, &self.boxes) {
                ty = up;
                break;
            }
        }
        self.boxes.push((x0, x0 + w, ty - 11.0, ty + 2.0));
        let _ = write!(
            self.svg,
            r#"<text class="mark-label" x="{x:.1}" y="{ty:.1}" text-anchor="{anchor}">{}</text>"#,
            esc(text)
        );
    }
}

/// Lines with more points than this are drawn without point markers.
const MAX_MARKERS: usize = 24;

/// One line of a [`LineChart`].
#[derive(Debug, Clone, Default)]
pub struct LineSeries {
    pub name: String,
    /// (x, y), drawn in x order.
    pub points: Vec<(f64, f64)>,
    /// (x, lo, hi): a shaded 95 % interval band.
    pub band: Vec<(f64, f64, f64)>,
    /// A marked point (x, y, label), e.g. the knee.
    pub mark: Option<(f64, f64, String)>,
    /// A dashed horizontal line (y, label), e.g. the saturation throughput.
    pub hline: Option<(f64, String)>,
}

/// A chart of lines against a numeric x axis.
#[derive(Debug, Clone, Default)]
pub struct LineChart {
    pub id: String,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<LineSeries>,
    /// Start the y axis at zero.
    pub y_from_zero: bool,
    /// Powers of two along x (concurrency 1, 2, 4, ...), where every x > 0.
    pub x_log2: bool,
}

impl LineChart {
    pub fn render(&self) -> String {
        let xs = self.series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
        let ys = self.series.iter().flat_map(|s| {
            s.points
                .iter()
                .map(|p| p.1)
                .chain(s.band.iter().flat_map(|b| [b.1, b.2]))
                .chain(s.hline.iter().map(|h| h.0))
        });
        let (xmin, xmax) = min_max(xs);
        let xlog = self.x_log2 && xmin > 0.0 && xmax > xmin;
        let (ymin, ymax) = min_max(ys);
        let (x0, x1) = if xmax > xmin { (xmin, xmax) } else { (xmin - 1.0, xmax + 1.0) };
        let (y0, y1) = nice_range(ymin, ymax, self.y_from_zero);
        let f = Frame { x0, x1, y0, y1, xlog };
        let names: Vec<(String, &'static str)> =
            self.series.iter().enumerate().map(|(i, s)| (s.name.clone(), color(i))).collect();
        let (legend_svg, h) = legend(&names, true);
        let mut s = String::new();
        open_svg(&mut s, &self.id, &self.title, W, h);
        axes(&mut s, &f, &self.x_label, &self.y_label, true);
        let mut labels = Labels::default();
        for (i, se) in self.series.iter().enumerate() {
            let c = color(i);
            if se.band.len() >= 2 {
                let mut b = se.band.clone();
                b.sort_by(|a, b| a.0.total_cmp(&b.0));
                let mut d = String::new();
                for (k, (x, _, hi)) in b.iter().enumerate() {
                    let _ = write!(d, "{}{:.1},{:.1} ", if k == 0 { "M" } else { "L" }, f.px(*x), f.py(*hi));
                }
                for (x, lo, _) in b.iter().rev() {
                    let _ = write!(d, "L{:.1},{:.1} ", f.px(*x), f.py(*lo));
                }
                let _ = write!(s, r#"<path class="band" d="{}Z" fill="{c}" fill-opacity="0.18" stroke="none"/>"#, d);
            } else {
                for (x, lo, hi) in &se.band {
                    let _ = write!(
                        s,
                        r#"<line class="whisker" x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}" stroke="{c}"/>"#,
                        f.py(*lo),
                        f.py(*hi),
                        x = f.px(*x)
                    );
                }
            }
            if let Some((y, label)) = &se.hline {
                let py = f.py(*y);
                let _ = write!(
                    s,
                    r#"<line class="saturation" data-series="{}" x1="{LEFT}" x2="{:.1}" y1="{py:.1}" y2="{py:.1}" stroke="{c}" stroke-width="1.5" stroke-dasharray="6 4"/>"#,
                    esc(&se.name),
                    W - RIGHT,
                );
                labels.place(LEFT + 6.0, (py - 4.0).max(TOP + 10.0), "start", label);
            }
            let mut pts = se.points.clone();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let path: Vec<String> = pts.iter().map(|(x, y)| format!("{:.1},{:.1}", f.px(*x), f.py(*y))).collect();
            let _ = write!(
                s,
                r#"<polyline class="line" data-series="{}" data-points="{}" points="{}" fill="none" stroke="{c}" stroke-width="2"/>"#,
                esc(&se.name),
                pts.len(),
                path.join(" ")
            );
            // Long timelines are lines only: a marker per sample would hide them.
            let markers = if pts.len() <= MAX_MARKERS { &pts[..] } else { &[][..] };
            for (x, y) in markers {
                let _ = write!(
                    s,
                    r#"<g class="point">{}<title>{}: {} at {}</title></g>"#,
                    marker(i, f.px(*x), f.py(*y), c),
                    esc(&se.name),
                    fmt_num(*y),
                    fmt_num(*x)
                );
            }
            if let Some((x, y, label)) = &se.mark {
                let (px, py) = (f.px(*x), f.py(*y));
                let w = Labels::width(label);
                let (tx, anchor) = if px + 12.0 + w > W - RIGHT { (px - 12.0, "end") } else { (px + 12.0, "start") };
                let _ = write!(
                    s,
                    r#"<g class="knee" data-series="{}" data-x="{}"><circle cx="{px:.1}" cy="{py:.1}" r="8" fill="none" stroke="{c}" stroke-width="2"/><line x1="{px:.1}" x2="{px:.1}" y1="{py:.1}" y2="{:.1}" stroke="{c}" stroke-dasharray="4 3"/></g>"#,
                    esc(&se.name),
                    x,
                    H - BOTTOM,
                );
                labels.place(tx, (py + 4.0).clamp(TOP + 10.0, H - BOTTOM - 4.0), anchor, label);
            }
        }
        s.push_str(&labels.svg);
        s.push_str(&legend_svg);
        s.push_str("</svg>");
        s
    }
}

fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)))
}

/// One group of bars (e.g. `p50`) across the categories of a [`BarChart`].
#[derive(Debug, Clone, Default)]
pub struct BarGroup {
    pub name: String,
    /// One value per category; `None` leaves a gap.
    pub values: Vec<Option<f64>>,
    /// Optional (lo, hi) whiskers, one per category.
    pub whiskers: Vec<Option<(f64, f64)>>,
}

/// Grouped vertical bars: categories along x, one bar per group in each.
#[derive(Debug, Clone, Default)]
pub struct BarChart {
    pub id: String,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub categories: Vec<String>,
    pub groups: Vec<BarGroup>,
    /// Shown in the plot area when every value is zero or missing.
    pub empty_note: Option<String>,
}

impl BarChart {
    pub fn render(&self) -> String {
        let vals = self
            .groups
            .iter()
            .flat_map(|g| g.values.iter().flatten().copied().chain(g.whiskers.iter().flatten().map(|w| w.1)));
        let (_, ymax) = min_max(vals);
        let (y0, y1) = nice_range(0.0, if ymax.is_finite() { ymax } else { 1.0 }, true);
        let n = self.categories.len().max(1) as f64;
        let f = Frame { x0: 0.0, x1: n, y0, y1, xlog: false };
        let mut s = String::new();
        axes(&mut s, &f, &self.x_label, &self.y_label, false);
        let gcount = self.groups.len().max(1) as f64;
        let slot = (W - LEFT - RIGHT) / n;
        let bar_w = (slot * 0.8 / gcount).min(40.0);
        let max_label = self.categories.iter().map(|c| c.chars().count().min(28)).max().unwrap_or(0);
        for (ci, cat) in self.categories.iter().enumerate() {
            let center = LEFT + slot * (ci as f64 + 0.5);
            let label: String = cat.chars().take(28).collect();
            // Crowded labels alternate between two rows.
            let crowded = slot < 6.5 * max_label as f64 + 8.0;
            let row = if crowded && ci % 2 == 1 { 28.0 } else { 15.0 };
            let _ = write!(
                s,
                r#"<text class="tick cat" x="{center:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                H - BOTTOM + row,
                esc(&label)
            );
            for (gi, g) in self.groups.iter().enumerate() {
                let x = center - bar_w * gcount / 2.0 + bar_w * gi as f64;
                if let Some(Some(v)) = g.values.get(ci) {
                    let top = f.py(*v);
                    let _ = write!(
                        s,
                        r#"<rect class="bar" x="{x:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} · {}: {}</title></rect>"#,
                        (bar_w - 2.0).max(1.0),
                        (H - BOTTOM - top).max(0.0),
                        color(gi),
                        esc(cat),
                        esc(&g.name),
                        fmt_num(*v)
                    );
                }
                if let Some(Some((lo, hi))) = g.whiskers.get(ci) {
                    let xm = x + (bar_w - 2.0) / 2.0;
                    let _ = write!(
                        s,
                        r#"<path class="whisker" d="M{:.1},{:.1}H{:.1}M{xm:.1},{:.1}V{:.1}M{:.1},{:.1}H{:.1}" stroke="{WHISKER}" fill="none"/>"#,
                        xm - 4.0,
                        f.py(*hi),
                        xm + 4.0,
                        f.py(*hi),
                        f.py(*lo),
                        xm - 4.0,
                        f.py(*lo),
                        xm + 4.0,
                    );
                }
            }
        }
        let all_zero = self.groups.iter().all(|g| g.values.iter().all(|v| v.is_none_or(|x| x == 0.0)));
        if let (true, Some(note)) = (all_zero, &self.empty_note) {
            let _ = write!(
                s,
                r#"<text class="empty-note" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                LEFT + (W - LEFT - RIGHT) / 2.0,
                TOP + (H - TOP - BOTTOM) / 2.0,
                esc(note)
            );
        }
        let names: Vec<(String, &'static str)> =
            self.groups.iter().enumerate().map(|(i, g)| (g.name.clone(), color(i))).collect();
        let (lg, h) = legend(&names, false);
        let mut out = String::new();
        open_svg(&mut out, &self.id, &self.title, W, h);
        out.push_str(&s);
        out.push_str(&lg);
        out.push_str("</svg>");
        out
    }
}

/// Overlaid histograms on shared bins (one step line per series).
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    pub id: String,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// Raw samples per named series.
    pub series: Vec<(String, Vec<f64>)>,
    pub bins: usize,
}

impl Histogram {
    /// Bin edges and, per series, the share of its samples (percent) per bin.
    /// The range runs from 0 to the largest series' 99th percentile, so one
    /// stall does not flatten the picture; samples beyond go in the last bin.
    pub fn binned(&self) -> (Vec<f64>, Vec<Vec<f64>>) {
        let bins = self.bins.max(1);
        let mut hi: f64 = 0.0;
        for (_, v) in &self.series {
            let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
            v.sort_by(f64::total_cmp);
            if let Some(p) = fleetbench_core::stats::percentile_sorted(&v, 99.0) {
                hi = hi.max(p);
            }
        }
        if hi <= 0.0 {
            hi = 1.0;
        }
        let width = hi / bins as f64;
        let edges: Vec<f64> = (0..=bins).map(|i| i as f64 * width).collect();
        let shares = self
            .series
            .iter()
            .map(|(_, v)| {
                let mut counts = vec![0usize; bins];
                let mut n = 0usize;
                for x in v.iter().filter(|x| x.is_finite()) {
                    let i = ((x / width).floor().max(0.0) as usize).min(bins - 1);
                    counts[i] += 1;
                    n += 1;
                }
                counts.iter().map(|c| if n == 0 { 0.0 } else { 100.0 * *c as f64 / n as f64 }).collect()
            })
            .collect();
        (edges, shares)
    }

    pub fn render(&self) -> String {
        let (edges, shares) = self.binned();
        let ymax = shares.iter().flatten().copied().fold(0.0, f64::max);
        let (y0, y1) = nice_range(0.0, ymax, true);
        let f = Frame { x0: edges[0], x1: *edges.last().unwrap_or(&1.0), y0, y1, xlog: false };
        let mut s = String::new();
        axes(&mut s, &f, &self.x_label, &self.y_label, true);
        let single = self.series.len() == 1;
        for (si, share) in shares.iter().enumerate() {
            let c = color(si);
            if single {
                for (i, v) in share.iter().enumerate() {
                    let (xa, xb) = (f.px(edges[i]), f.px(edges[i + 1]));
                    let top = f.py(*v);
                    let _ = write!(
                        s,
                        r#"<rect class="bar" x="{xa:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{c}"><title>{}–{}: {:.1} %</title></rect>"#,
                        (xb - xa - 1.0).max(0.5),
                        (H - BOTTOM - top).max(0.0),
                        fmt_num(edges[i]),
                        fmt_num(edges[i + 1]),
                        v
                    );
                }
            } else {
                let mut d = format!("M{:.1},{:.1}", f.px(edges[0]), f.py(0.0));
                for (i, v) in share.iter().enumerate() {
                    let _ =
                        write!(d, " L{:.1},{:.1} L{:.1},{:.1}", f.px(edges[i]), f.py(*v), f.px(edges[i + 1]), f.py(*v));
                }
                let _ = write!(d, " L{:.1},{:.1}", f.px(edges[edges.len() - 1]), f.py(0.0));
                let _ = write!(s, r#"<path class="step" d="{d}" fill="none" stroke="{c}" stroke-width="2"/>"#);
            }
        }
        let names: Vec<(String, &'static str)> =
            self.series.iter().enumerate().map(|(i, (n, _))| (n.clone(), color(i))).collect();
        let (lg, h) = legend(&names, false);
        let mut out = String::new();
        open_svg(&mut out, &self.id, &self.title, W, h);
        out.push_str(&s);
        out.push_str(&lg);
        out.push_str("</svg>");
        out
    }
}

const WHISKER: &str = "rgb(51,51,51)";

/// A ranked row: name, value, optional (lo, hi) interval.
pub type RankRow = (String, f64, Option<(f64, f64)>);

/// Horizontal bars with interval whiskers, best first (the arena leaderboard).
#[derive(Debug, Clone, Default)]
pub struct RankChart {
    pub id: String,
    pub title: String,
    pub x_label: String,
    /// (name, value, optional (lo, hi)).
    pub rows: Vec<RankRow>,
}

impl RankChart {
    pub fn render(&self) -> String {
        let row_h = 26.0;
        let left = 200.0;
        let h = TOP + row_h * self.rows.len().max(1) as f64 + 60.0;
        let (_, vmax) = min_max(self.rows.iter().flat_map(|r| [r.1, r.2.map_or(r.1, |w| w.1)]));
        let (x0, x1) = nice_range(0.0, if vmax.is_finite() { vmax } else { 1.0 }, true);
        let px = |x: f64| left + (x - x0) / (x1 - x0) * (W - left - RIGHT);
        let mut s = String::new();
        open_svg(&mut s, &self.id, &self.title, W, h);
        let base = TOP + row_h * self.rows.len().max(1) as f64;
        for t in nice_ticks(x0, x1, 5) {
            let x = px(t);
            let _ = write!(
                s,
                r#"<line class="grid" x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{base:.1}"/><text class="tick" x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                base + 16.0,
                fmt_tick(t)
            );
        }
        for (i, (name, v, ci)) in self.rows.iter().enumerate() {
            let y = TOP + row_h * i as f64;
            let label: String = name.chars().take(30).collect();
            let _ = write!(
                s,
                r#"<text class="tick cat" x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect class="bar" x="{left}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                left - 8.0,
                y + row_h * 0.65,
                esc(&label),
                y + 4.0,
                (px(*v) - left).max(0.0),
                row_h - 8.0,
                color(i),
                esc(name),
                fmt_num(*v)
            );
            if let Some((lo, hi)) = ci {
                let ym = y + row_h / 2.0;
                let _ = write!(
                    s,
                    r#"<path class="whisker" d="M{:.1},{ym:.1}H{:.1}M{:.1},{:.1}V{:.1}M{:.1},{:.1}V{:.1}" stroke="rgb(34,34,34)" fill="none"/>"#,
                    px(*lo),
                    px(*hi),
                    px(*lo),
                    ym - 5.0,
                    ym + 5.0,
                    px(*hi),
                    ym - 5.0,
                    ym + 5.0
                );
            }
        }
        let _ = write!(
            s,
            r#"<line class="axis" x1="{left}" x2="{:.1}" y1="{base:.1}" y2="{base:.1}"/><text class="axis-label x-label" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text></svg>"#,
            W - RIGHT,
            left + (W - left - RIGHT) / 2.0,
            base + 40.0,
            esc(&self.x_label)
        );
        s
    }
}

/// A grid of coloured cells: rows × columns, value in each (the arena's
/// scenario × backend table).
#[derive(Debug, Clone, Default)]
pub struct HeatMap {
    pub id: String,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub rows: Vec<String>,
    pub cols: Vec<String>,
    /// `values[row][col]`, `None` for no data.
    pub values: Vec<Vec<Option<f64>>>,
    /// The value range the colour scale spans.
    pub scale: (f64, f64),
    /// A second line under each column's name (e.g. its overall interval).
    pub col_notes: Vec<String>,
    /// `cell_ci[row][col]`: an interval shown under the cell's value (and in
    /// its tooltip); empty for none.
    pub cell_ci: Vec<Vec<Option<(f64, f64)>>>,
}

impl HeatMap {
    pub fn render(&self) -> String {
        // Room on the left for the longest scenario name, within limits.
        let longest = self.rows.iter().map(|r| r.chars().count()).max().unwrap_or(8).min(34);
        let left = (16.0 + CHAR_W * longest as f64).clamp(100.0, 16.0 + CHAR_W * 34.0);
        let row_chars = ((left - 16.0) / CHAR_W).floor() as usize;
        let top = if self.col_notes.is_empty() { 50.0 } else { 66.0 };
        let with_ci = !self.cell_ci.is_empty();
        let cell_h = if with_ci { 34.0 } else { 26.0 };
        let cols = self.cols.len().max(1) as f64;
        let cell_w = ((W - left - RIGHT) / cols).min(120.0);
        // Intervals under the values where the cells are wide enough.
        let ci_in_cell = with_ci && cell_w >= 70.0;
        let col_chars = ((cell_w - 4.0) / CHAR_W).floor().max(3.0) as usize;
        let h = top + cell_h * self.rows.len().max(1) as f64 + 70.0;
        let mut s = String::new();
        open_svg(&mut s, &self.id, &self.title, W, h);
        for (ci, c) in self.cols.iter().enumerate() {
            let label: String = c.chars().take(col_chars).collect();
            let _ = write!(
                s,
                r#"<text class="tick cat" x="{:.1}" y="{:.1}" text-anchor="middle"><title>{}</title>{}</text>"#,
                left + cell_w * (ci as f64 + 0.5),
                if self.col_notes.is_empty() { top - 6.0 } else { top - 20.0 },
                esc(c),
                esc(&label)
            );
            if let Some(n) = self.col_notes.get(ci) {
                let _ = write!(
                    s,
                    r#"<text class="tick col-note" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                    left + cell_w * (ci as f64 + 0.5),
                    top - 6.0,
                    esc(&n.chars().take(col_chars).collect::<String>())
                );
            }
        }
        let (lo, hi) = self.scale;
        for (ri, r) in self.rows.iter().enumerate() {
            let y = top + cell_h * ri as f64;
            let label: String = r.chars().take(row_chars).collect();
            let _ = write!(
                s,
                r#"<text class="tick cat" x="{:.1}" y="{:.1}" text-anchor="end"><title>{}</title>{}</text>"#,
                left - 8.0,
                y + cell_h * 0.65,
                esc(r),
                esc(&label)
            );
            for ci in 0..self.cols.len() {
                let x = left + cell_w * ci as f64;
                let v = self.values.get(ri).and_then(|row| row.get(ci)).copied().flatten();
                let (fill, ink, text) = match v {
                    Some(v) => {
                        let t = if hi > lo { ((v - lo) / (hi - lo)).clamp(0.0, 1.0) } else { 0.5 };
                        let ink = if t < 0.6 { "#ffffff" } else { "#1d2733" };
                        (heat_color(t), ink, format!("{v:.1}"))
                    }
                    None => ("#eeeeee".to_string(), "#1d2733", "–".to_string()),
                };
                let iv = self.cell_ci.get(ri).and_then(|row| row.get(ci)).copied().flatten();
                let ci_text = iv.map(|(a, b)| format!("[{a:.0}, {b:.0}]"));
                let tip = match &ci_text {
                    Some(c) => format!("{text} {c} (95 % interval)"),
                    None => text.clone(),
                };
                let value_y = if ci_in_cell && ci_text.is_some() { y + 15.0 } else { y + cell_h * 0.6 };
                let _ = write!(
                    s,
                    r#"<rect class="cell" x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{fill}" stroke="white"><title>{} × {}: {}</title></rect><text class="cell-value" x="{:.1}" y="{value_y:.1}" text-anchor="middle" style="fill:{ink}">{}</text>"#,
                    cell_w,
                    cell_h,
                    esc(r),
                    esc(&self.cols[ci]),
                    tip,
                    x + cell_w / 2.0,
                    text
                );
                if let (true, Some(c)) = (ci_in_cell, &ci_text) {
                    let _ = write!(
                        s,
                        r#"<text class="cell-ci" x="{:.1}" y="{:.1}" text-anchor="middle" style="fill:{ink};font-size:9px">{c}</text>"#,
                        x + cell_w / 2.0,
                        y + 28.0
                    );
                }
            }
        }
        let base = top + cell_h * self.rows.len().max(1) as f64;
        let _ = write!(
            s,
            r#"<text class="axis-label x-label" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text class="axis-label y-label" x="14" y="{:.1}">{}</text></svg>"#,
            left + cell_w * cols / 2.0,
            base + 30.0,
            esc(&self.x_label),
            top - 6.0,
            esc(&self.y_label)
        );
        s
    }
}

/// Horizontal bars on a log scale with a label at each bar's end (the
/// batch-job plan: cost and wall time per backend, "12× the cheapest").
#[derive(Debug, Clone, Default)]
pub struct LogBars {
    pub id: String,
    pub title: String,
    pub x_label: String,
    /// (name, value > 0, label at the bar's end).
    pub rows: Vec<(String, f64, String)>,
}

impl LogBars {
    pub fn render(&self) -> String {
        let (row_h, left, right) = (26.0, 190.0, 170.0);
        let rows: Vec<&(String, f64, String)> = self.rows.iter().filter(|r| r.1.is_finite() && r.1 > 0.0).collect();
        let h = TOP + row_h * rows.len().max(1) as f64 + 60.0;
        let (lo, hi) = min_max(rows.iter().map(|r| r.1));
        let (d0, d1) = if lo.is_finite() {
            let a = lo.log10().floor();
            let b = hi.log10().ceil();
            (a, if b > a { b } else { a + 1.0 })
        } else {
            (0.0, 1.0)
        };
        let px = |v: f64| left + (v.log10() - d0) / (d1 - d0) * (W - left - right);
        let mut s = String::new();
        open_svg(&mut s, &self.id, &self.title, W, h);
        let base = TOP + row_h * rows.len().max(1) as f64;
        let mut e = d0;
        while e <= d1 + 1e-9 {
            let t = 10f64.powf(e);
            let x = px(t);
            let _ = write!(
                s,
                r#"<line class="grid" x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{base:.1}"/><text class="tick" x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                base + 16.0,
                fmt_tick(t)
            );
            e += 1.0;
        }
        for (i, (name, v, label)) in rows.iter().enumerate() {
            let y = TOP + row_h * i as f64;
            let short: String = name.chars().take(26).collect();
            let end = px(*v);
            let _ = write!(
                s,
                r#"<text class="tick cat" x="{:.1}" y="{:.1}" text-anchor="end"><title>{}</title>{}</text><rect class="bar" x="{left}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect><text class="bar-label" x="{:.1}" y="{:.1}">{}</text>"#,
                left - 8.0,
                y + row_h * 0.65,
                esc(name),
                esc(&short),
                y + 4.0,
                (end - left).max(1.0),
                row_h - 8.0,
                color(i),
                esc(name),
                fmt_num(*v),
                end + 6.0,
                y + row_h * 0.65,
                esc(label)
            );
        }
        let _ = write!(
            s,
            r#"<line class="axis" x1="{left}" x2="{:.1}" y1="{base:.1}" y2="{base:.1}"/><text class="axis-label x-label" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text></svg>"#,
            W - right,
            left + (W - left - right) / 2.0,
            base + 40.0,
            esc(&self.x_label)
        );
        s
    }
}

/// Energy past the meter as a flow: the IT energy the meter saw grows by
/// the facility overhead (PUE), transmission losses and the generator's
/// losses into the fuel burnt; every kWh of it ends as heat.
#[derive(Debug, Clone, Default)]
pub struct EnergyFlow {
    pub id: String,
    pub title: String,
    /// IT, facility, delivered and fuel kWh, in that order.
    pub it_kwh: f64,
    pub facility_kwh: f64,
    pub delivered_kwh: f64,
    pub fuel_kwh: f64,
    pub heat_kwh: f64,
    pub co2_kg: f64,
    pub pue: f64,
}

impl EnergyFlow {
    pub fn render(&self) -> String {
        let h = 330.0;
        let base = 250.0;
        let max_h = 170.0;
        let stages = [
            ("IT (metered)", self.it_kwh),
            ("facility", self.facility_kwh),
            ("delivered", self.delivered_kwh),
            ("fuel", self.fuel_kwh),
        ];
        let top = stages.iter().map(|s| s.1).fold(0.0, f64::max).max(1e-12);
        let hh = |v: f64| (v / top * max_h).max(1.0);
        let xs = [60.0, 220.0, 380.0, 540.0];
        let bw = 40.0;
        let losses =
            [format!("overhead, PUE {}", fmt_num(self.pue)), "transmission".to_string(), "generation".to_string()];
        let mut s = String::new();
        open_svg(&mut s, &self.id, &self.title, W, h);
        for (i, (name, v)) in stages.iter().enumerate() {
            let (x, ht) = (xs[i], hh(*v));
            if i > 0 {
                // The energy carried from the stage before...
                let prev = hh(stages[i - 1].1);
                let _ = write!(
                    s,
                    r#"<path class="flow" d="M{:.1},{:.1}L{x:.1},{:.1}L{x:.1},{base:.1}L{:.1},{base:.1}Z" fill="{}" fill-opacity="0.25"/>"#,
                    xs[i - 1] + bw,
                    base - prev,
                    base - prev,
                    xs[i - 1] + bw,
                    color(0)
                );
                // ...and what this stage adds on top: the loss.
                let loss = v - stages[i - 1].1;
                let _ = write!(
                    s,
                    r#"<rect class="loss" x="{x:.1}" y="{:.1}" width="{bw}" height="{:.1}" fill="{}"/><text class="tick" x="{:.1}" y="{:.1}" text-anchor="middle">+{} kWh</text><text class="tick" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                    base - ht,
                    (ht - prev).max(0.0),
                    color(1),
                    (xs[i - 1] + bw + x) / 2.0,
                    base + 18.0,
                    fmt_num(loss),
                    (xs[i - 1] + bw + x) / 2.0,
                    base + 32.0,
                    esc(&losses[i - 1])
                );
            }
            let carried = if i > 0 { hh(stages[i - 1].1) } else { ht };
            let _ = write!(
                s,
                r#"<rect class="stage" x="{x:.1}" y="{:.1}" width="{bw}" height="{carried:.1}" fill="{}"><title>{}: {} kWh</title></rect><text class="mark-label" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text class="tick" x="{:.1}" y="{:.1}" text-anchor="middle">{} kWh</text>"#,
                base - carried,
                color(0),
                name,
                fmt_num(*v),
                x + bw / 2.0,
                base - ht - 20.0,
                name,
                x + bw / 2.0,
                base - ht - 7.0,
                fmt_num(*v)
            );
        }
        let _ = write!(
            s,
            r#"<text class="axis-label" x="{:.1}" y="{:.1}" text-anchor="middle">heat released: {} kWh · CO2: {} kg</text></svg>"#,
            W / 2.0,
            h - 14.0,
            fmt_num(self.heat_kwh),
            fmt_num(self.co2_kg)
        );
        s
    }
}

/// A named point: (name, x, y, optional (lo, hi) of y).
pub type ScatterPoint = (String, f64, f64, Option<(f64, f64)>);

/// Named points with optional vertical intervals (the arena's score against
/// dollars per incident).
#[derive(Debug, Clone, Default)]
pub struct Scatter {
    pub id: String,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub points: Vec<ScatterPoint>,
}

impl Scatter {
    pub fn render(&self) -> String {
        let (_, xmax) = min_max(self.points.iter().map(|p| p.1));
        let (ymin, ymax) =
            min_max(self.points.iter().flat_map(|p| [p.2, p.3.map_or(p.2, |c| c.0), p.3.map_or(p.2, |c| c.1)]));
        let (x0, x1) = nice_range(0.0, if xmax.is_finite() { xmax * 1.1 } else { 1.0 }, true);
        let (y0, y1) = nice_range(ymin.min(0.0), ymax.max(100.0), true);
        let f = Frame { x0, x1, y0, y1, xlog: false };
        let names: Vec<(String, &'static str)> =
            self.points.iter().enumerate().map(|(i, p)| (p.0.clone(), color(i))).collect();
        let (lg, h) = legend(&names, true);
        let mut s = String::new();
        open_svg(&mut s, &self.id, &self.title, W, h);
        axes(&mut s, &f, &self.x_label, &self.y_label, true);
        for (i, (name, x, y, ci)) in self.points.iter().enumerate() {
            let c = color(i);
            if let Some((lo, hi)) = ci {
                let _ = write!(
                    s,
                    r#"<line class="whisker" x1="{px:.1}" x2="{px:.1}" y1="{:.1}" y2="{:.1}" stroke="{c}"/>"#,
                    f.py(*lo),
                    f.py(*hi),
                    px = f.px(*x)
                );
            }
            let _ = write!(
                s,
                r#"<g class="point">{}<title>{}: {} at {}</title></g>"#,
                marker(i, f.px(*x), f.py(*y), c),
                esc(name),
                fmt_num(*y),
                fmt_num(*x)
            );
        }
        s.push_str(&lg);
        s.push_str("</svg>");
        s
    }
}

/// The styles an SVG chart needs when it stands alone (a file beside
/// `report.md`) rather than inside the HTML page that styles it.
const STANDALONE_CSS: &str = ".bg{fill:#fff}.chart-title{font:600 15px sans-serif;fill:#1d2733}.axis{stroke:#444;stroke-width:1}.grid{stroke:#eceff2;stroke-width:1}.tickmark{stroke:#444}.tick,.legend,.cell-value,.bar-label{font:11px sans-serif;fill:#333}.axis-label{font:12px sans-serif;fill:#222}.mark-label{font:600 12px sans-serif;fill:#222}.empty-note{font:14px sans-serif;fill:#5b6773}";

/// A chart as a standalone SVG file: the namespace and its styles added.
pub fn standalone(svg: &str) -> String {
    let body = svg.strip_prefix("<svg ").unwrap_or(svg);
    let Some(end) = body.find('>') else { return svg.to_string() };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" {}><style>{STANDALONE_CSS}</style>{}\n",
        &body[..end],
        &body[end + 1..]
    )
}

/// A colour-blind safe sequential scale (viridis): dark purple (0)
/// through teal to yellow (1).
fn heat_color(t: f64) -> String {
    const STOPS: [(f64, f64, f64); 5] =
        [(68.0, 1.0, 84.0), (59.0, 82.0, 139.0), (33.0, 145.0, 140.0), (94.0, 201.0, 98.0), (253.0, 231.0, 37.0)];
    let t = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let i = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |x: f64, y: f64| (x + (y - x) * f).round() as u8;
    format!("#{:02x}{:02x}{:02x}", mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(esc("<script>\"x\"&'y'"), "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;");
    }

    #[test]
    fn small_numbers_keep_three_significant_digits() {
        assert_eq!(fmt_num(0.31), "0.310");
        assert_eq!(fmt_num(0.05), "0.0500");
        assert_eq!(fmt_num(0.000102626), "0.000103");
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(42.5), "42.50");
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        let t = nice_ticks(0.0, 97.0, 5);
        assert_eq!(t.first().copied(), Some(0.0));
        assert!(t.last().copied().unwrap_or(0.0) >= 80.0);
        assert!(t.windows(2).all(|w| ((w[1] - w[0]) - 20.0).abs() < 1e-9));
    }

    #[test]
    fn legends_wrap_and_cut_names_to_stay_inside_the_box() {
        let names: Vec<(String, &'static str)> =
            (0..6).map(|i| (format!("backend {i} {}", "x".repeat(120)), color(i))).collect();
        let (svg, h) = legend(&names, true);
        assert!(h >= H - BOTTOM + 62.0 + 5.0 * 15.0, "six long names take six rows: {h}");
        for (i, _) in svg.match_indices("<text class=\"legend\" x=\"") {
            let rest = &svg[i + 24..];
            let x: f64 = rest[..rest.find('"').unwrap()].parse().unwrap();
            let shown = &rest[rest.find("</title>").unwrap() + 8..rest.find("</text>").unwrap()];
            assert!(shown.ends_with('…'), "{shown}");
            assert!(x + CHAR_W * shown.chars().count() as f64 <= W, "label at {x} runs past the box");
        }
    }

    #[test]
    fn histogram_shares_sum_to_100() {
        let h = Histogram {
            series: vec![("a".into(), (0..100).map(|i| i as f64).collect())],
            bins: 10,
            ..Default::default()
        };
        let (edges, shares) = h.binned();
        assert_eq!(edges.len(), 11);
        let total: f64 = shares[0].iter().sum();
        assert!((total - 100.0).abs() < 1e-9);
    }
}
