//! `causeway import pgbouncer.ini`: prints the file as commented Causeway
//! TOML on stdout, after checking that it loads; warnings about what is
//! not carried over go to stderr too.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use causeway_config::{ini, Layers};

pub fn run(file: &Path) -> ExitCode {
    let parsed = match ini::read(file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("causeway: cannot import {}:\n{e}", file.display());
            return ExitCode::from(2);
        }
    };
    // The same checks as a start from this file alone.
    let alone = Layers {
        system_file: PathBuf::from("/nonexistent/causeway.toml"),
        files: vec![file.to_path_buf()],
        env_prefix: None,
        overrides: Vec::new(),
    };
    if let Err(e) = causeway_config::load(&alone) {
        eprintln!("causeway: cannot import {}:\n{e}", file.display());
        return ExitCode::from(2);
    }
    for w in parsed.warnings() {
        eprintln!("causeway: warning: {w}");
    }
    print!("{}", parsed.to_toml());
    ExitCode::SUCCESS
}
