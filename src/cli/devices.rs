//! `tokenwave devices`: the audio devices --output-device can name.

use anyhow::Result;
use serde_json::json;
use tokenwave::audio::output_devices;

use super::Global;

pub fn run(global: &Global) -> Result<()> {
    let outputs = output_devices()?;
    if global.json {
        let list: Vec<_> =
            outputs.iter().map(|d| json!({ "id": d.id, "name": d.name, "default": d.is_default })).collect();
        println!("{}", json!({ "outputs": list }));
        return Ok(());
    }
    println!("output devices (pass the id to --output-device; * = default):");
    for device in &outputs {
        println!("{} {:<12} {}", if device.is_default { "*" } else { " " }, device.id, device.name);
    }
    Ok(())
}
