//! A small SVG line-chart writer for the benchmark plots: series of
//! (x, median) points with min-max bars, linear or log axes, a legend.
//! Everything plotted comes from the measured samples.

use std::fmt::Write as _;

/// One point: x, median y, and the min/max bar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// x value.
    pub x: f64,
    /// Median.
    pub y: f64,
    /// Smallest run.
    pub lo: f64,
    /// Largest run.
    pub hi: f64,
}

/// A line.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Stroke colour (CSS).
    pub color: String,
    /// Dashed line.
    pub dashed: bool,
    /// Points (any order; drawn sorted by x).
    pub points: Vec<Point>,
}

/// A chart.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    /// Title line.
    pub title: String,
    /// Second line under the title (machine, load, …).
    pub subtitle: String,
    /// x axis label.
    pub x_label: String,
    /// y axis label.
    pub y_label: String,
    /// Logarithmic x axis.
    pub x_log: bool,
    /// Logarithmic y axis.
    pub y_log: bool,
    /// Lines.
    pub series: Vec<Series>,
}

const W: f64 = 760.0;
const H: f64 = 460.0;
const ML: f64 = 80.0;
const MR: f64 = 210.0;
const MT: f64 = 60.0;
const MB: f64 = 60.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Compact number: 10k, 1M, 0.25, 12.5, 1200.
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 && (v / 1e6).fract().abs() < 1e-9 {
        format!("{}M", v / 1e6)
    } else if a >= 1e3 && (v / 1e3).fract().abs() < 1e-9 {
        format!("{}k", v / 1e3)
    } else if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    }
}

/// An axis: maps values to [0, 1] and proposes ticks.
struct Axis {
    log: bool,
    lo: f64,
    hi: f64,
}

impl Axis {
    fn new(vals: &[f64], log: bool) -> Axis {
        let vals: Vec<f64> = vals.iter().cloned().filter(|v| v.is_finite() && (!log || *v > 0.0)).collect();
        let (mut lo, mut hi) = vals.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        if !lo.is_finite() {
            (lo, hi) = (1.0, 10.0);
        }
        if log {
            lo = 10f64.powf(lo.log10().floor());
            hi = 10f64.powf(hi.log10().ceil());
            if hi <= lo {
                hi = lo * 10.0;
            }
        } else {
            lo = lo.min(0.0);
            if hi <= lo {
                hi = lo + 1.0;
            }
            let step = nice_step((hi - lo) / 5.0);
            hi = (hi / step).ceil() * step;
        }
        Axis { log, lo, hi }
    }

    fn frac(&self, v: f64) -> f64 {
        if self.log {
            let v = v.max(self.lo);
            (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        }
    }

    fn ticks(&self) -> Vec<f64> {
        if self.log {
            let mut t = Vec::new();
            let decades = (self.hi.log10() - self.lo.log10()).round() as i32;
            let mut v = self.lo;
            while v <= self.hi * 1.0001 {
                t.push(v);
                if decades <= 2 {
                    for m in [2.0, 5.0] {
                        if v * m < self.hi {
                            t.push(v * m);
                        }
                    }
                }
                v *= 10.0;
            }
            t.sort_by(|a, b| a.total_cmp(b));
            t
        } else {
            let step = nice_step((self.hi - self.lo) / 5.0);
            let mut t = Vec::new();
            let mut v = (self.lo / step).ceil() * step;
            while v <= self.hi + step * 1e-6 {
                t.push(v);
                v += step;
            }
            t
        }
    }
}

fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    let m = raw / p;
    let n = if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    };
    n * p
}

/// Renders the chart as a standalone SVG document.
pub fn render(c: &Chart) -> String {
    let pts: Vec<&Point> = c.series.iter().flat_map(|s| s.points.iter()).collect();
    let xs: Vec<f64> = pts.iter().map(|p| p.x).collect();
    let ys: Vec<f64> = pts.iter().flat_map(|p| [p.y, p.lo, p.hi]).collect();
    let (ax, ay) = (Axis::new(&xs, c.x_log), Axis::new(&ys, c.y_log));
    let (pw, ph) = (W - ML - MR, H - MT - MB);
    let px = |x: f64| ML + ax.frac(x) * pw;
    let py = |y: f64| MT + ph - ay.frac(y) * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{}" y="22" font-size="15" font-weight="bold">{}</text>"#, ML, esc(&c.title));
    let _ = writeln!(s, r##"<text x="{}" y="40" font-size="11" fill="#555">{}</text>"##, ML, esc(&c.subtitle));
    // Grid and ticks.
    for t in ay.ticks() {
        let y = py(t);
        let _ = writeln!(s, r##"<line x1="{ML}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##, ML + pw);
        let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#, ML - 6.0, y + 4.0, fmt_num(t));
    }
    let mut xt = ax.ticks();
    if c.x_log {
        // Label the measured x values rather than every decade.
        let mut v: Vec<f64> = xs.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        v.dedup();
        if !v.is_empty() {
            xt = v;
        }
    }
    for t in xt {
        let x = px(t);
        let _ = writeln!(s, r##"<line x1="{x:.1}" y1="{MT}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/>"##, MT + ph);
        let _ = writeln!(s, r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#, MT + ph + 16.0, fmt_num(t));
    }
    let _ = writeln!(s, r#"<rect x="{ML}" y="{MT}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#);
    let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#, ML + pw / 2.0, H - 18.0, esc(&c.x_label));
    let _ = writeln!(
        s,
        r#"<text transform="translate(18,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        MT + ph / 2.0,
        esc(&format!("{}{}", c.y_label, if c.y_log { " (log scale)" } else { "" }))
    );
    // Series.
    for (i, se) in c.series.iter().enumerate() {
        let mut p: Vec<Point> = se.points.iter().cloned().filter(|p| p.x.is_finite() && p.y.is_finite()).collect();
        p.sort_by(|a, b| a.x.total_cmp(&b.x));
        let dash = if se.dashed { r#" stroke-dasharray="6,4""# } else { "" };
        if p.len() > 1 {
            let path: Vec<String> = p.iter().map(|q| format!("{:.1},{:.1}", px(q.x), py(q.y))).collect();
            let _ = writeln!(s, r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#, path.join(" "), se.color);
        }
        for q in &p {
            let (x, y) = (px(q.x), py(q.y));
            if q.lo.is_finite() && q.hi.is_finite() && q.hi > q.lo {
                let (y1, y2) = (py(q.lo), py(q.hi));
                let _ = writeln!(
                    s,
                    r#"<path d="M{x:.1},{y1:.1}V{y2:.1}M{:.1},{y1:.1}h8M{:.1},{y2:.1}h8" stroke="{}" fill="none"/>"#,
                    x - 4.0,
                    x - 4.0,
                    se.color
                );
            }
            let _ = writeln!(s, r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{}"><title>{}: {}</title></circle>"#, se.color, esc(&se.label), fmt_num(q.y));
        }
        let ly = MT + 14.0 + i as f64 * 20.0;
        let lx = ML + pw + 14.0;
        let _ = writeln!(s, r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="2"{dash}/>"#, lx + 24.0, se.color);
        let _ = writeln!(s, r#"<text x="{}" y="{}">{}</text>"#, lx + 30.0, ly + 4.0, esc(&se.label));
    }
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" font-size="10" fill="#777">dots: medians; bars: min-max</text>"##,
        ML + pw + 14.0,
        MT + 14.0 + c.series.len() as f64 * 20.0 + 10.0
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_points_bars_and_legend() {
        let c = Chart {
            title: "CPU <&>".into(),
            subtitle: "x".into(),
            x_label: "entries".into(),
            y_label: "s".into(),
            x_log: true,
            y_log: true,
            series: vec![
                Series {
                    label: "stock".into(),
                    color: "#c00".into(),
                    dashed: false,
                    points: vec![Point { x: 1e5, y: 1.0, lo: 0.9, hi: 1.2 }, Point { x: 1e4, y: 0.1, lo: 0.1, hi: 0.1 }],
                },
                Series { label: "ours".into(), color: "#06c".into(), dashed: true, points: vec![Point { x: 1e6, y: 0.0, lo: 0.0, hi: 0.0 }] },
            ],
        };
        let s = render(&c);
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n"));
        assert!(s.contains("CPU &lt;&amp;&gt;"));
        assert_eq!(s.matches("<polyline").count(), 1, "one line with two points");
        assert_eq!(s.matches("<circle").count(), 3);
        assert_eq!(s.matches("<path").count(), 1, "one min-max bar");
        assert!(s.contains(">10k<") && s.contains(">100k<") && s.contains(">1M<"), "x ticks at the measured sizes");
        assert!(!s.contains("NaN") && !s.contains("inf"));
    }

    #[test]
    fn numbers_and_linear_ticks() {
        assert_eq!(fmt_num(1e6), "1M");
        assert_eq!(fmt_num(10_000.0), "10k");
        assert_eq!(fmt_num(0.25), "0.25");
        assert_eq!(fmt_num(16.0), "16");
        assert_eq!(fmt_num(1234.4), "1234");
        let a = Axis::new(&[1.0, 16.0], false);
        let t = a.ticks();
        assert_eq!(t.first(), Some(&0.0));
        assert!(*t.last().unwrap() >= 16.0);
        assert_eq!(nice_step(3.2), 5.0);
    }
}
