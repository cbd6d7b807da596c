//! Runs a container from an OCI bundle with the casulo-core library, the way an
//! embedder would: create, start, wait for the process, delete.
//!
//! ```sh
//! cargo run -p casulo-core --example run_bundle -- /path/to/bundle [ID] [STATE_ROOT]
//! ```
//!
//! Needs root. The container's process inherits this program's stdio (a config with
//! `process.terminal: true` needs a console socket and is not handled here). The exit
//! status is the container process's (128+N when signal N killed it).

use std::path::PathBuf;
use std::process::ExitCode;

use casulo_core::{CreateOptions, Error, Runtime};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(bundle) = args.next().map(PathBuf::from) else {
        eprintln!("usage: run_bundle BUNDLE [ID] [STATE_ROOT]");
        return ExitCode::from(2);
    };
    let id = args
        .next()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| format!("run-bundle-{}", std::process::id()));
    let root = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/casulo-example"));
    match run(&root, &bundle, &id) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(255)),
        Err(e) => {
            eprintln!("run_bundle: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Create, start, wait, delete; the container is deleted whatever happens after create.
fn run(root: &std::path::Path, bundle: &std::path::Path, id: &str) -> Result<i32, Error> {
    let rt = Runtime::new(root).with_logger(casulo_core::Logger::new(|level, msg| {
        eprintln!("run_bundle: {level:?}: {msg}")
    }));
    let opts = CreateOptions {
        bundle: bundle.to_path_buf(),
        refuse_unprotected_exe: true,
        ..Default::default()
    };
    let container = match rt.create(id, &opts) {
        // A config whose init container processes can see (CVE-2019-5736): re-execute
        // this program from a protected copy of itself (does not return), then retry.
        Err(Error::UnprotectedExe) => {
            casulo_core::exe::ensure_protected()?;
            rt.create(id, &opts)?
        }
        r => r?,
    };
    let result = rt
        .start(id)
        .and_then(|()| container.wait().map_err(Error::from));
    let deleted = rt.delete(id, true);
    let code = result?;
    deleted?;
    Ok(code)
}
