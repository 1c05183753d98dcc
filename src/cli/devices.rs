//! `tokenwave devices`: the audio devices --input-device and --output-device can name.

use anyhow::Result;
use serde_json::json;
use tokenwave_live::{DeviceInfo, input_devices, output_devices};

use super::Global;

pub fn run(global: &Global) -> Result<()> {
    let (inputs, outputs) = (input_devices()?, output_devices()?);
    if global.json {
        let list = |devices: &[DeviceInfo]| -> Vec<serde_json::Value> {
            devices.iter().map(|d| json!({ "id": d.id, "name": d.name, "default": d.is_default })).collect()
        };
        outln!("{}", json!({ "inputs": list(&inputs), "outputs": list(&outputs) }));
        return Ok(());
    }
    for (title, devices) in [("input", &inputs), ("output", &outputs)] {
        outln!("{title} devices (pass the id to --{title}-device; * = default):");
        for device in devices {
            outln!("{} {:<12} {}", if device.is_default { "*" } else { " " }, device.id, device.name);
        }
    }
    Ok(())
}
