//! The usage chart: requests and credits per UTC day as two bar charts in one SVG,
//! drawn on the server with `plotters` (SVG backend only, its built-in text layout: no
//! fonts are read). The SVG holds shapes and date labels only: no script, no links.

use chrono::NaiveDate;
use plotters::prelude::*;

pub const WIDTH: u32 = 720;
pub const HEIGHT: u32 = 400;

/// One bar per day, oldest first.
pub struct Day {
    pub day: NaiveDate,
    pub requests: i64,
    pub credits: i64,
}

/// The chart's SVG text. `days` must not be empty.
pub fn svg(days: &[Day]) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (top, bottom) = root.split_vertically(HEIGHT / 2);
        let first = days[0].day;
        let requests: Vec<i64> = days.iter().map(|d| d.requests).collect();
        let credits: Vec<i64> = days.iter().map(|d| d.credits).collect();
        // Colours with at least 4.5:1 contrast on white.
        panel(
            &top,
            "Requests per day",
            first,
            &requests,
            RGBColor(11, 92, 173),
        )?;
        panel(
            &bottom,
            "Credits per day",
            first,
            &credits,
            RGBColor(154, 52, 18),
        )?;
        root.present().map_err(|e| e.to_string())?;
    }
    // A title names the image for assistive technology when opened on its own.
    if let Some(open) = out.find("<svg") {
        if let Some(end) = out[open..].find('>') {
            out.insert_str(
                open + end + 1,
                "\n<title>Requests and credits per day</title>",
            );
        }
    }
    Ok(out)
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    first: NaiveDate,
    values: &[i64],
    colour: RGBColor,
) -> Result<(), String> {
    let n = values.len() as f64;
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..n, 0i64..(max + max / 10 + 1))
        .map_err(|e| e.to_string())?;
    let label = |x: &f64| {
        let d = first + chrono::Days::new(x.max(0.0) as u64);
        d.format("%b %d").to_string()
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(7)
        .x_label_formatter(&label)
        .y_labels(5)
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(
            values
                .iter()
                .enumerate()
                .filter(|(_, v)| **v > 0)
                .map(|(i, v)| {
                    let x = i as f64;
                    Rectangle::new([(x + 0.15, 0), (x + 0.85, *v)], colour.filled())
                }),
        )
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_is_svg_with_bars_and_no_script() {
        let first = NaiveDate::from_ymd_opt(2026, 9, 1).unwrap();
        let days: Vec<Day> = (0..90)
            .map(|i| Day {
                day: first + chrono::Days::new(i),
                requests: if i == 89 { 3 } else { 0 },
                credits: if i == 89 { 8 } else { 0 },
            })
            .collect();
        let svg = svg(&days).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        assert!(svg.contains("<title>Requests and credits per day</title>"));
        assert!(svg.contains("Requests per day") && svg.contains("Credits per day"));
        assert!(!svg.to_lowercase().contains("script"));
        assert!(svg.contains("<rect"));
    }
}
