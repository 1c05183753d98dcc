//! `tokenwave keygen FILE`: a fresh random key for `send` and `receive`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

#[derive(Args)]
pub struct KeygenArgs {
    /// Where to write the key (64 hex digits); copy it to the other end by a safe way.
    file: PathBuf,
}

pub fn run(args: &KeygenArgs) -> Result<()> {
    if args.file.exists() {
        bail!("{} already exists; a key is not overwritten (delete it first if you mean to)", args.file.display());
    }
    let text = tokenwave_live::Key::random().to_hex();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&args.file).with_context(|| format!("cannot create {}", args.file.display()))?;
    writeln!(file, "{text}").with_context(|| format!("cannot write {}", args.file.display()))?;
    Ok(())
}
