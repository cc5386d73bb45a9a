//! Plain SVG charts written by the benchmark (no plotting dependency).

use std::fmt::Write;

const W: f64 = 720.0;
const H: f64 = 360.0;
const L: f64 = 70.0;
const R: f64 = 20.0;
const T: f64 = 40.0;
const B: f64 = 50.0;
const COLORS: [&str; 6] = [
    "#2f6fde", "#e0603a", "#2a9d6f", "#9b59b6", "#c9a227", "#555",
];

fn frame(out: &mut String, title: &str, xlabel: &str, ylabel: &str) {
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{cx}" y="22" text-anchor="middle" font-size="15" font-weight="bold">{title}</text>
<line x1="{L}" y1="{yb}" x2="{xr}" y2="{yb}" stroke="#333"/><line x1="{L}" y1="{T}" x2="{L}" y2="{yb}" stroke="#333"/>
<text x="{cx}" y="{xl}" text-anchor="middle">{xlabel}</text>
<text x="16" y="{cy}" text-anchor="middle" transform="rotate(-90 16 {cy})">{ylabel}</text>
"##,
        cx = (L + W - R) / 2.0,
        cy = (T + H - B) / 2.0,
        yb = H - B,
        xr = W - R,
        xl = H - 12.0,
    );
}

/// Five labelled horizontal grid lines from 0 to `top`, `decimals` after the point.
fn y_grid(out: &mut String, top: f64, decimals: usize, y: impl Fn(f64) -> f64) {
    for i in 0..=4 {
        let v = top * f64::from(i) / 4.0;
        let _ = write!(
            out,
            r##"<text x="{0}" y="{1}" text-anchor="end">{v:.decimals$}</text><line x1="{L}" y1="{2}" x2="{3}" y2="{2}" stroke="#eee"/>"##,
            L - 6.0,
            y(v) + 4.0,
            y(v),
            W - R
        );
    }
}

/// Latency CDFs (x: milliseconds, log scale; y: fraction of messages), one line per series.
pub fn latency_cdf(series: &[(String, Vec<(f64, f64)>)]) -> String {
    let mut out = String::new();
    frame(
        &mut out,
        "Publish → deliver latency (CDF)",
        "latency, ms (log scale)",
        "fraction of messages",
    );
    let (lo, hi) = (0.01f64, 10_000.0f64);
    let x = |ms: f64| {
        L + (ms.clamp(lo, hi).log10() - lo.log10()) / (hi.log10() - lo.log10()) * (W - L - R)
    };
    let y = |f: f64| (H - B) - f * (H - T - B);
    for d in [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0] {
        let _ = write!(
            out,
            r##"<line x1="{0}" y1="{1}" x2="{0}" y2="{2}" stroke="#ddd"/><text x="{0}" y="{3}" text-anchor="middle">{d}</text>"##,
            x(d),
            T,
            H - B,
            H - B + 16.0
        );
    }
    for f in [0.0, 0.5, 0.9, 1.0] {
        let _ = write!(
            out,
            r##"<text x="{0}" y="{1}" text-anchor="end">{f}</text>"##,
            L - 6.0,
            y(f) + 4.0
        );
    }
    for (i, (name, pts)) in series.iter().enumerate() {
        let xy = pts.iter().map(|(us, f)| (x(us / 1000.0), y(*f)));
        line(&mut out, i, name, xy);
    }
    out.push_str("</svg>\n");
    out
}

/// Series `i`'s line through the plot points `xy`, and its name in the legend; returns
/// its colour.
fn line(
    out: &mut String,
    i: usize,
    name: &str,
    xy: impl Iterator<Item = (f64, f64)>,
) -> &'static str {
    let c = COLORS[i % COLORS.len()];
    let path: Vec<String> = xy.map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let _ = write!(
        out,
        r##"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/><text x="{}" y="{}" fill="{c}">{name}</text>"##,
        path.join(" "),
        L + 10.0,
        T + 16.0 + 15.0 * i as f64
    );
    c
}

/// CPU per delivered frame against connection count, with the bare-write baseline.
pub fn cpu_per_frame(points: &[(String, f64, f64, Option<f64>)]) -> String {
    let mut out = String::new();
    frame(
        &mut out,
        "Gateway CPU per delivered frame",
        "scenario (connections)",
        "µs of CPU per frame",
    );
    let max = points
        .iter()
        .map(|p| p.2.max(p.3.unwrap_or(0.0)))
        .fold(1.0f64, f64::max)
        * 1.15;
    let n = points.len().max(1) as f64;
    let slot = (W - L - R) / n;
    let y = |v: f64| (H - B) - v / max * (H - T - B);
    y_grid(&mut out, max, 1, y);
    for (i, (name, conns, us, bare)) in points.iter().enumerate() {
        let x0 = L + slot * i as f64 + slot * 0.15;
        let bw = slot * 0.3;
        let _ = write!(
            out,
            r##"<rect x="{x0:.1}" y="{0:.1}" width="{bw:.1}" height="{1:.1}" fill="{2}"/>"##,
            y(*us),
            (H - B) - y(*us),
            COLORS[0]
        );
        if let Some(b) = bare {
            let _ = write!(
                out,
                r##"<rect x="{0:.1}" y="{1:.1}" width="{bw:.1}" height="{2:.1}" fill="{3}"/>"##,
                x0 + bw,
                y(*b),
                (H - B) - y(*b),
                COLORS[1]
            );
        }
        let _ = write!(
            out,
            r##"<text x="{0:.1}" y="{1}" text-anchor="middle">{name} ({conns})</text>"##,
            x0 + bw,
            H - B + 16.0
        );
    }
    let _ = write!(
        out,
        r##"<text x="{0}" y="{1}" fill="{2}">gateway</text><text x="{0}" y="{3}" fill="{4}">bare socket write</text>"##,
        W - R - 130.0,
        T + 10.0,
        COLORS[0],
        T + 25.0,
        COLORS[1]
    );
    out.push_str("</svg>\n");
    out
}

/// Values against connection count (x: log scale), one line per series, every point
/// marked and labelled; `goal` draws a dashed horizontal line.
pub fn by_connections(
    title: &str,
    ylabel: &str,
    series: &[(String, Vec<(f64, f64)>)],
    goal: Option<(f64, &str)>,
) -> String {
    let mut out = String::new();
    frame(&mut out, title, "connections (log scale)", ylabel);
    let xs = series.iter().flat_map(|(_, p)| p.iter().map(|p| p.0));
    let (lo, hi) = xs.fold((f64::MAX, 1.0f64), |(lo, hi), x| {
        (lo.min(x.max(1.0)), hi.max(x))
    });
    let lo = lo.min(hi);
    // Half a decade of room either side, so that a single point sits in the middle.
    let (lo, hi) = (lo.log10() - 0.25, hi.log10() + 0.25);
    let x = |c: f64| L + (c.max(1.0).log10() - lo) / (hi - lo) * (W - L - R);
    let top = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|p| p.1))
        .chain(goal.map(|g| g.0))
        .fold(1.0f64, f64::max);
    // Room above the highest point for the legend (one line per series) and its label.
    let legend = 30.0 + 15.0 * series.len() as f64;
    let top = top / (1.0 - legend / (H - T - B));
    let y = |v: f64| (H - B) - v / top * (H - T - B);
    y_grid(&mut out, top, 0, y);
    let mut ticks: Vec<f64> = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|p| p.0))
        .collect();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    for c in ticks {
        let _ = write!(
            out,
            r##"<line x1="{0:.1}" y1="{T}" x2="{0:.1}" y2="{1}" stroke="#ddd"/><text x="{0:.1}" y="{2}" text-anchor="middle">{c:.0}</text>"##,
            x(c),
            H - B,
            H - B + 16.0
        );
    }
    if let Some((v, label)) = goal {
        let _ = write!(
            out,
            r##"<line x1="{L}" y1="{0:.1}" x2="{1}" y2="{0:.1}" stroke="#c00" stroke-dasharray="6 4"/><text x="{2}" y="{3:.1}" fill="#c00">{label}</text>"##,
            y(v),
            W - R,
            L + 4.0,
            y(v) - 4.0
        );
    }
    for (i, (name, pts)) in series.iter().enumerate() {
        let c = line(&mut out, i, name, pts.iter().map(|(cx, v)| (x(*cx), y(*v))));
        for (cx, v) in pts {
            let _ = write!(
                out,
                r##"<circle cx="{0:.1}" cy="{1:.1}" r="3.5" fill="{c}"/><text x="{2:.1}" y="{3:.1}" fill="{c}" font-size="10">{v:.1}</text>"##,
                x(*cx),
                y(*v),
                x(*cx) + 5.0,
                y(*v) - 5.0
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `(cx, cy)` of every point marker, in the order drawn.
    fn markers(svg: &str) -> Vec<(f64, f64)> {
        svg.split("<circle ")
            .skip(1)
            .map(|c| {
                let attr = |k: &str| -> f64 {
                    let at = c.find(&format!("{k}=\"")).unwrap() + k.len() + 2;
                    c[at..at + c[at..].find('"').unwrap()].parse().unwrap()
                };
                (attr("cx"), attr("cy"))
            })
            .collect()
    }

    #[test]
    fn points_by_connections_go_right_with_connections_and_up_with_value() {
        let svg = by_connections(
            "t",
            "µs",
            &[
                ("gateway".into(), vec![(1_000.0, 12.0), (15_000.0, 10.0)]),
                ("bare".into(), vec![(1_000.0, 9.0), (15_000.0, 11.0)]),
            ],
            Some((100.0, "goal")),
        );
        let m = markers(&svg);
        assert_eq!(m.len(), 4);
        assert!(m[0].0 < m[1].0, "more connections further right: {m:?}");
        assert_eq!(m[0].0, m[2].0, "same connection count, same x");
        assert!(
            m[0].1 < m[2].1,
            "12 µs above 9 µs (SVG y grows down): {m:?}"
        );
        assert!(m[1].1 > m[3].1, "10 µs below 11 µs: {m:?}");
        assert!(svg.contains(">goal<") && svg.contains(">15000<"), "{svg}");
        assert_eq!(svg.matches("<polyline").count(), 2);
        let legend_bottom = T + 16.0 + 15.0 * 2.0;
        assert!(
            m.iter().all(|p| p.1 > legend_bottom),
            "no point under the legend: {m:?}"
        );
    }

    #[test]
    fn a_single_point_stays_inside_the_plot() {
        let svg = by_connections("t", "ms", &[("p99".into(), vec![(50.0, 3.0)])], None);
        let m = markers(&svg);
        assert_eq!(m.len(), 1);
        assert!(m[0].0 > L && m[0].0 < W - R, "{m:?}");
        assert!(m[0].1 > T && m[0].1 < H - B, "{m:?}");
    }
}
