//! Running runtimes and engines as an unprivileged user (issue 16).
//!
//! [`user`] makes the user [`USER`] once per host (idempotent and safe across
//! concurrent test processes: an flock on [`SETUP_LOCK`]): `useradd -m` when missing,
//! and `/etc/subuid`, `/etc/subgid` ranges appended when it has none. A [`Sandbox`] is a
//! directory the user owns with a copy of the casulo binary and an `XDG_RUNTIME_DIR`
//! (0700); commands run as the user through `setpriv --reuid --regid --init-groups`
//! with a clean environment. Dropping it deletes the containers of its state root and
//! kills (by pid) every process of the user it left behind.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::cli::Run;
use crate::Bundle;

/// The unprivileged user's name.
pub const USER: &str = "casulo-rl";

/// Serializes user creation across test processes.
pub const SETUP_LOCK: &str = "/tmp/.casulo-rl-setup.lock";

/// The unprivileged user.
#[derive(Debug, Clone)]
pub struct User {
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
    /// Its home directory.
    pub home: PathBuf,
}

/// The first id of the user's range in `/etc/subuid` or `/etc/subgid`, with its size.
pub fn sub_range(file: &str) -> Option<(u32, u32)> {
    let text = fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == USER).then_some(())?;
        Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
    })
}

/// Appends a 65536-id range for [`USER`] after the highest range in `file`.
fn add_sub_range(file: &str) {
    if sub_range(file).is_some() {
        return;
    }
    let text = fs::read_to_string(file).unwrap_or_default();
    let end = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(f.get(1)?.parse::<u64>().ok()? + f.get(2)?.parse::<u64>().ok()?)
        })
        .max()
        .unwrap_or(100_000)
        .max(100_000);
    let mut f = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(file)
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    std::io::Write::write_all(&mut f, format!("{USER}:{end}:65536\n").as_bytes())
        .unwrap_or_else(|e| panic!("{file}: {e}"));
}

/// The unprivileged user, created if missing; `None` (a recorded skip, a failure under
/// `CI=true`) without root or without `setpriv`/`useradd`.
pub fn user() -> Option<User> {
    if !crate::prereq::root() {
        return None;
    }
    if let Some(why) = ["setpriv", "useradd"]
        .iter()
        .find(|b| crate::engines::which(b).is_none())
    {
        crate::prereq::skip(&format!("{why} is not installed (util-linux, passwd)"));
        return None;
    }
    let lock = fs::File::create(SETUP_LOCK).expect("setup lock");
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .expect("flock the setup lock");
    if nix::unistd::User::from_name(USER).ok().flatten().is_none() {
        let st = Command::new("useradd")
            .args(["-m", "-s", "/bin/sh", USER])
            .status()
            .expect("run useradd");
        assert!(st.success(), "useradd {USER} failed");
    }
    add_sub_range("/etc/subuid");
    add_sub_range("/etc/subgid");
    let u = nix::unistd::User::from_name(USER)
        .ok()
        .flatten()
        .expect("the user exists");
    Some(User {
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
        home: u.dir,
    })
}

/// A directory of the user's with its own casulo binary and `XDG_RUNTIME_DIR`.
pub struct Sandbox {
    /// The user.
    pub user: User,
    /// `/tmp/casulo-rl-<pid>-<name>` (0755, the user's).
    pub dir: PathBuf,
    /// The user's copy of the casulo binary.
    pub bin: PathBuf,
    /// `XDG_RUNTIME_DIR` (0700, the user's); casulo's state root is `<xdg>/casulo`.
    pub xdg: PathBuf,
    /// Directories of the bundles made by [`Sandbox::bundle`] (their processes are
    /// killed on drop).
    bundles: std::cell::RefCell<Vec<PathBuf>>,
}

impl Sandbox {
    /// A fresh sandbox, or `None` when [`user`] is.
    pub fn new(name: &str) -> Option<Sandbox> {
        let user = user()?;
        let dir = PathBuf::from(format!("/tmp/casulo-rl-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let xdg = dir.join("xdg");
        fs::create_dir_all(&xdg).expect("mkdir sandbox");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::set_permissions(&xdg, fs::Permissions::from_mode(0o700)).expect("chmod");
        let bin = dir.join("casulo");
        fs::copy(crate::casulo_bin(), &bin).expect("copy casulo");
        let sb = Sandbox {
            user,
            dir,
            bin,
            xdg,
            bundles: Default::default(),
        };
        sb.own(&sb.dir);
        Some(sb)
    }

    /// Gives `path` (recursively, symlinks themselves) to the user.
    pub fn own(&self, path: &Path) {
        let st = Command::new("chown")
            .args(["-R", "-h"])
            .arg(format!("{}:{}", self.user.uid, self.user.gid))
            .arg(path)
            .status()
            .expect("run chown");
        assert!(st.success(), "chown {}", path.display());
    }

    /// A bundle for the sandbox's user: `Bundle::new(args)` plus a user namespace mapping
    /// the user's uid/gid to 0 (`maps` overrides the mappings), owned by the user.
    pub fn bundle(&self, args: &[&str], maps: Option<(Value, Value)>) -> Bundle {
        let mut b = Bundle::new(args);
        self.bundles.borrow_mut().push(b.dir.clone());
        let mut v = serde_json::to_value(&b.spec).unwrap();
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        let (u, g) = maps.unwrap_or_else(|| {
            (
                json!([{"containerID": 0, "hostID": self.user.uid, "size": 1}]),
                json!([{"containerID": 0, "hostID": self.user.gid, "size": 1}]),
            )
        });
        // As `spec --rootless` writes it: no gid= of an unmapped group on devpts.
        for m in v["mounts"].as_array_mut().unwrap() {
            if let Some(o) = m.get_mut("options").and_then(Value::as_array_mut) {
                o.retain(|o| !o.as_str().unwrap_or_default().starts_with("gid="));
            }
        }
        v["linux"]["uidMappings"] = u;
        v["linux"]["gidMappings"] = g;
        b.spec = serde_json::from_value(v).unwrap();
        b.write_config();
        self.own(&b.dir);
        b
    }

    /// Edits the bundle's config as JSON, writes it and gives the bundle to the user.
    pub fn edit(&self, b: &mut Bundle, f: impl FnOnce(&mut Value)) {
        let mut v = serde_json::to_value(&b.spec).unwrap();
        f(&mut v);
        b.spec = serde_json::from_value(v).unwrap();
        b.write_config();
        self.own(&b.dir);
    }

    /// A directory in the sandbox, the user's.
    pub fn mkdir(&self, name: &str) -> PathBuf {
        let d = self.dir.join(name);
        fs::create_dir_all(&d).expect("mkdir");
        self.own(&d);
        d
    }

    /// Runs `argv` as the user in `cwd` with a clean environment (PATH, HOME, USER,
    /// XDG_RUNTIME_DIR, and `env`), stdin from /dev/null, output in files.
    pub fn run_in(&self, cwd: &Path, argv: &[&str], env: &[(&str, &str)]) -> Run {
        self.run_in_cgroups(cwd, argv, env, &[])
    }

    /// [`Sandbox::run_in`], started in the cgroups whose `cgroup.procs` files are
    /// `procs` (written as root before the switch to the user: a delegated subtree's
    /// user runs inside it).
    pub fn run_in_cgroups(
        &self,
        cwd: &Path,
        argv: &[&str],
        env: &[(&str, &str)],
        procs: &[PathBuf],
    ) -> Run {
        let mut c = Command::new("sh");
        c.args([
            "-c",
            r#"n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n-1)); done; exec "$@""#,
            "sh",
        ])
        .arg(procs.len().to_string())
        .args(procs)
        .arg("setpriv")
        .arg(format!("--reuid={}", self.user.uid))
            .arg(format!("--regid={}", self.user.gid))
            .args(["--init-groups", "env", "-i"])
            .arg("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .arg(format!("HOME={}", self.user.home.display()))
            .arg(format!("USER={USER}"))
            .arg(format!("LOGNAME={USER}"))
            .arg(format!("XDG_RUNTIME_DIR={}", self.xdg.display()));
        for (k, v) in env {
            c.arg(format!("{k}={v}"));
        }
        c.args(argv).current_dir(cwd);
        let out = crate::engines::run(&mut c, std::time::Duration::from_secs(120));
        Run {
            code: out.code,
            stdout: out.stdout,
            stderr: out.stderr,
        }
    }

    /// `casulo <args>` as the user (state root: the default, `<xdg>/casulo`).
    pub fn casulo(&self, args: &[&str]) -> Run {
        let mut argv = vec![self.bin.to_str().expect("utf-8 path")];
        argv.extend_from_slice(args);
        self.run_in(&self.dir, &argv, &[])
    }

    /// `casulo <args>`, asserting success.
    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.casulo(args);
        assert_eq!(r.code, 0, "casulo {args:?} as {USER}: {r:?}");
        r
    }

    /// The user's processes whose root, cwd or command line lies in one of `dirs`.
    pub fn processes_in(&self, dirs: &[&Path]) -> Vec<i32> {
        use std::os::unix::fs::MetadataExt;
        let me = std::process::id() as i32;
        let tags: Vec<String> = dirs.iter().map(|d| format!("{}/", d.display())).collect();
        let mut out = Vec::new();
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if pid == me || e.metadata().map(|m| m.uid()).ok() != Some(self.user.uid) {
                continue;
            }
            let mut seen =
                String::from_utf8_lossy(&fs::read(e.path().join("cmdline")).unwrap_or_default())
                    .into_owned();
            for link in ["root", "cwd", "exe"] {
                if let Ok(p) = fs::read_link(e.path().join(link)) {
                    seen.push(' ');
                    seen.push_str(&p.to_string_lossy());
                }
            }
            if tags.iter().any(|t| seen.contains(t.as_str())) {
                out.push(pid);
            }
        }
        out
    }

    /// SIGKILLs (by pid) the user's processes in the sandbox or in `extra` dirs.
    pub fn kill_leftovers(&self, extra: &[&Path]) {
        let mut dirs = vec![self.dir.as_path()];
        dirs.extend_from_slice(extra);
        for pid in self.processes_in(&dirs) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Ok(rd) = fs::read_dir(self.xdg.join("casulo")) {
            for e in rd.flatten() {
                let _ = self.casulo(&["delete", "--force", &e.file_name().to_string_lossy()]);
            }
        }
        let bundles = self.bundles.take();
        let extra: Vec<&Path> = bundles.iter().map(|b| b.as_path()).collect();
        self.kill_leftovers(&extra);
        let _ = Command::new("rm")
            .arg("-rf")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
