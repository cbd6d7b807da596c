//! Running the `casulo` binary from tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use std::sync::OnceLock;

/// Path of the `casulo` binary, building it (debug) once per process.
/// `CASULO_BIN=<path>` uses a prebuilt binary instead.
pub fn casulo_bin() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os("CASULO_BIN") {
            return PathBuf::from(p);
        }
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| manifest_dir.join("../target"));
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "casulo", "--manifest-path"])
            .arg(manifest_dir.join("../Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target_dir)
            .status()
            .expect("spawn cargo to build casulo");
        assert!(status.success(), "building casulo failed");
        target_dir.join("debug/casulo")
    })
    .clone()
}

/// One runtime invocation's result.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 when killed).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `<runtime> --root <root> <args…>` with stdin from /dev/null and stdout/stderr
/// in temporary files (not pipes: a container created by `create` keeps the runtime's
/// stdio open, so reading a pipe to its end would wait for the container).
pub fn runtime(bin: &Path, root: &Path, args: &[&str]) -> Run {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let base = std::env::temp_dir().join(format!("casulo-out-{}-{n}", std::process::id()));
    let (out_p, err_p) = (base.with_extension("out"), base.with_extension("err"));
    let out = std::fs::File::create(&out_p).expect("stdout file");
    let err = std::fs::File::create(&err_p).expect("stderr file");
    let status = Command::new(bin)
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .expect("spawn the runtime");
    let read = |p: &Path| {
        let s = std::fs::read_to_string(p).unwrap_or_default();
        let _ = std::fs::remove_file(p);
        s
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: read(&out_p),
        stderr: read(&err_p),
    }
}
