//! Spectrogram pictures for `eval --plot` (plotters, bitmap backend): one panel per signal,
//! stacked top to bottom — the original first, then each decoded version — with time to
//! the right (one pixel per 16 ms frame) and the 64 log-mel bands of `tokenwave eval`
//! (0–8 kHz, mel scale) upwards, on one shared colour scale. The picture has no text (that
//! would need a font); `eval` names the panels on stderr.

use std::path::Path;

use plotters::prelude::*;

use crate::{Error, LogMel, Result};

/// Height of one panel in pixels (one per mel band × 3) and the gap between panels.
const BAND_PIXELS: u32 = 3;
const GAP: u32 = 6;

/// Writes the log-mel spectrograms of `original` and of each `decoded` signal (named, at
/// `rate` Hz) to the PNG `path`, top to bottom.
pub fn spectrograms(path: &Path, rate: u32, original: &[f32], decoded: &[(String, Vec<f32>)]) -> Result<()> {
    let mel = LogMel::new(rate);
    let mut panels = vec![mel.spectrogram(original)];
    panels.extend(decoded.iter().map(|(_, s)| mel.spectrogram(s)));
    let frames = panels[0].len().max(1);
    let bands = panels[0].first().map_or(64, Vec::len);
    let width = frames as u32;
    let panel_height = bands as u32 * BAND_PIXELS;
    let height = panels.len() as u32 * (panel_height + GAP);
    let top = panels[0].iter().flatten().copied().fold(f64::MIN, f64::max);
    let floor = top - 12.0;
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    let drawing = |e: DrawingAreaErrorKind<_>| Error::Plot(format!("cannot draw {}: {e}", path.display()));
    root.fill(&WHITE).map_err(drawing)?;
    for (p, panel) in panels.iter().enumerate() {
        let y0 = p as u32 * (panel_height + GAP);
        for (x, frame) in panel.iter().enumerate() {
            for (band, &value) in frame.iter().enumerate() {
                let level = ((value - floor) / (top - floor)).clamp(0.0, 1.0);
                for dy in 0..BAND_PIXELS {
                    let y = y0 + (bands - 1 - band) as u32 * BAND_PIXELS + dy;
                    root.draw_pixel((x as i32, y as i32), &heat(level)).map_err(drawing)?;
                }
            }
        }
    }
    root.present().map_err(drawing)?;
    Ok(())
}

/// Black → purple → orange → pale yellow.
fn heat(level: f64) -> RGBColor {
    let stops = [
        (0.0, (0.0, 0.0, 4.0)),
        (0.35, (120.0, 28.0, 109.0)),
        (0.7, (237.0, 105.0, 37.0)),
        (1.0, (252.0, 255.0, 164.0)),
    ];
    let i = stops.iter().rposition(|(at, _)| *at <= level).unwrap_or(0).min(stops.len() - 2);
    let ((a, ca), (b, cb)) = (stops[i], stops[i + 1]);
    let t = (level - a) / (b - a);
    let mix = |x: f64, y: f64| (x + (y - x) * t).round() as u8;
    RGBColor(mix(ca.0, cb.0), mix(ca.1, cb.1), mix(ca.2, cb.2))
}
