//! Output files that appear whole or not at all: everything is written to a temporary file
//! next to the destination and renamed into place only when the job succeeded.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use tempfile::NamedTempFile;

/// A temporary file in `dir` that will have the usual permissions (0666 less the umask) once
/// renamed, not the owner-only mode temporary files get by default.
fn new_temp(dir: &Path) -> std::io::Result<NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".tokenwave-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(dir)
}

/// A destination being written; dropped without [`Output::commit`], it leaves nothing behind.
pub struct Output {
    temp: NamedTempFile,
    /// `None` for standard output.
    path: Option<PathBuf>,
}

impl Output {
    /// Prepares `path` (`-` for standard output), failing early if it cannot be written.
    pub fn create(path: &Path) -> Result<Self> {
        if path == Path::new("-") {
            let temp = new_temp(&std::env::temp_dir()).context("cannot create a temporary file for standard output")?;
            return Ok(Self { temp, path: None });
        }
        if path.is_dir() {
            bail!("{} is a directory; give a file name for the output", path.display());
        }
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if !parent.is_dir() {
            bail!("cannot write {}: directory {} does not exist", path.display(), parent.display());
        }
        let temp = new_temp(parent).with_context(|| format!("cannot create a file in {}", parent.display()))?;
        Ok(Self { temp, path: Some(path.to_path_buf()) })
    }

    /// The file to write to.
    pub fn file(&mut self) -> &mut File {
        self.temp.as_file_mut()
    }

    /// Moves the finished file into place (or copies it to standard output).
    pub fn commit(self) -> Result<()> {
        match self.path {
            Some(path) => {
                self.temp.as_file().sync_all().ok();
                self.temp.persist(&path).with_context(|| format!("cannot write {}", path.display()))?;
            }
            None => {
                let mut file = self.temp.reopen().context("cannot reopen the temporary output")?;
                file.seek(SeekFrom::Start(0))?;
                std::io::copy(&mut file, &mut std::io::stdout().lock()).context("cannot write to standard output")?;
            }
        }
        Ok(())
    }
}
