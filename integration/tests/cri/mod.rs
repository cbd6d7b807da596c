//! The harness of `tests/engines_cri.rs`: a private containerd with its CRI plugin, run
//! in a network namespace and a mount namespace of its own (`unshare -m -n`: the CNI
//! bridge, the veths and the pods' netns live there, never on the host), the runtime
//! handler `casulo` pointing at the runtime under test, and a CRI client speaking
//! runtime.v1 gRPC (k8s-cri + tonic) over its socket.

use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use casulo_integration::engines::{self, Daemon, Out, TempDir, IMAGE};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

/// The pause image the test builds and names as containerd's `sandbox_image`.
pub const PAUSE_IMAGE: &str = "docker.io/casulo-test/pause:1";

/// The pods' subnet, on the bridge inside containerd's own network namespace.
pub const SUBNET: &str = "10.231.0.0/24";

/// The bridge the CNI bridge plugin creates (in containerd's network namespace).
pub const BRIDGE: &str = "casulo-cri0";

/// The cgroup driver behind the handler: the runc shim's `SystemdCgroup` option
/// (`--systemd-cgroup`, pods' cgroup parents as slices) or cgroupfs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// `SystemdCgroup = false`: cgroup parents are paths.
    Cgroupfs,
    /// `SystemdCgroup = true`: cgroup parents are slices, containers transient scopes.
    Systemd,
}

/// A private containerd with the CRI plugin and a connected CRI client.
pub struct Cri {
    rt: tokio::runtime::Runtime,
    channel: Channel,
    daemon: Option<Daemon>,
    /// The test's temp dir (config, root, state, logs, CNI config and IPAM data).
    pub dir: TempDir,
    /// containerd's socket.
    pub sock: PathBuf,
    /// The handler's runtime root (`Root` of the runc shim options).
    pub runtime_root: PathBuf,
    /// The handler's cgroup driver.
    pub driver: Driver,
    /// The runtime behind the handler (`BinaryName`).
    pub runtime: PathBuf,
}

/// The containerd configuration: the CRI plugin with the `casulo` handler (runc v2 shim,
/// `BinaryName` = `runtime`), the `runc` default handler pointed at a binary that does
/// not exist (so a pod that does not ask for `casulo` fails), the native snapshotter,
/// streaming on loopback, the netns mounts under the state dir, CNI from `net.d`;
/// `SystemdCgroup` as `driver` says.
pub fn containerd_config(dir: &Path, sock: &Path, runtime: &Path, driver: Driver) -> String {
    let head = engines::containerd_config(dir, sock, "");
    format!(
        r#"{head}[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  disable_apparmor = true
  enable_selinux = false
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  restrict_oom_score_adj = {restrict_oom}
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/nonexistent/not-the-handler-asked-for"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.casulo]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.casulo.options]
        BinaryName = "{runtime}"
        Root = "{dir}/runtime-root"
        SystemdCgroup = {systemd}
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{dir}/net.d"
    max_conf_num = 1
"#,
        dir = dir.display(),
        runtime = runtime.display(),
        restrict_oom = !has_sys_resource(),
        systemd = driver == Driver::Systemd,
    )
}

/// Whether this process has CAP_SYS_RESOURCE. Without it (some sandboxed hosts) no
/// process can lower its oom_score_adj below the inherited minimum, so the sandbox's
/// -998 fails with EACCES in runc and Casulo alike: `restrict_oom_score_adj` makes
/// containerd clamp the value to its own, as it does for rootless runs.
pub fn has_sys_resource() -> bool {
    let st = fs::read_to_string("/proc/self/status").unwrap_or_default();
    st.lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|v| v & (1 << 24) != 0)
}

/// The CNI network: a bridge on [`SUBNET`] with host-local addresses kept in the test's
/// dir; no gateway, no masquerading (no iptables), nothing routed out. containerd adds
/// the loopback plugin for every pod itself.
pub fn cni_conflist(dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "casulo-cri",
        "plugins": [{
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": false,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": SUBNET}]],
                "dataDir": dir.join("ipam").display().to_string()
            }
        }]
    })
    .to_string()
}

/// The prerequisites, as a skip (a failure under CI=true) when missing.
pub fn missing() -> bool {
    let bins = [
        "containerd",
        "ctr",
        "containerd-shim-runc-v2",
        "unshare",
        "nsenter",
        "ip",
    ];
    if engines::missing(&bins).is_some() {
        return true;
    }
    for p in [
        "/usr/lib/cni/bridge",
        "/usr/lib/cni/host-local",
        "/usr/lib/cni/loopback",
    ] {
        if !Path::new(p).is_file() {
            casulo_integration::prereq::skip(&format!(
                "{p} missing (containernetworking-plugins, .ci/packages.d/cri)"
            ));
            return true;
        }
    }
    false
}

impl Cri {
    /// Starts containerd (`name` makes the temp dir unique) with `runtime` behind the
    /// `casulo` handler and `driver`, imports the busybox and pause images into
    /// `k8s.io`, connects.
    pub fn start(name: &str, runtime: &Path, driver: Driver) -> Cri {
        let dir = TempDir::new(name);
        let sock = engines::containerd_sock(&dir.path);
        fs::create_dir_all(dir.join("net.d")).unwrap();
        fs::write(
            dir.join("net.d/10-casulo.conflist"),
            cni_conflist(&dir.path),
        )
        .unwrap();
        // In the new mount namespace: a tmpfs over /var/lib, where libcni keeps its cache
        // (/var/lib/cni) whatever the configuration says; in the new network namespace:
        // loopback up, for the streaming server.
        let d = engines::start_containerd_netns(
            &dir.path,
            &containerd_config(&dir.path, &sock, runtime, driver),
            "mount -t tmpfs -o mode=0755 casulo-cri /var/lib; ip link set lo up",
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let path = sock.clone();
        let channel = rt
            .block_on(
                Endpoint::from_static("http://[::1]:0").connect_with_connector(tower::service_fn(
                    move |_: Uri| {
                        let p = path.clone();
                        async move {
                            let s = tokio::net::UnixStream::connect(p).await?;
                            Ok::<_, std::io::Error>(TokioIo::new(s))
                        }
                    },
                )),
            )
            .expect("connect to containerd's socket");
        let cri = Cri {
            rt,
            channel,
            daemon: Some(d),
            runtime_root: dir.join("runtime-root"),
            driver,
            runtime: runtime.to_path_buf(),
            sock,
            dir,
        };
        cri.import(&engines::busybox_image(&cri.dir.path));
        cri.import(&pause_image(&cri.dir.path));
        cri
    }

    /// containerd's pid (the daemon's: unshare and sh exec it).
    pub fn pid(&self) -> u32 {
        self.daemon.as_ref().expect("containerd running").pid()
    }

    fn import(&self, archive: &Path) {
        let r = self.ctr(&[
            "images",
            "import",
            "--snapshotter",
            "native",
            archive.to_str().unwrap(),
        ]);
        assert_eq!(r.code, 0, "ctr -n k8s.io images import: {r:?}");
    }

    /// `ctr -n k8s.io ARGS` against this containerd.
    pub fn ctr(&self, args: &[&str]) -> Out {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(&self.sock)
            .args(["-n", "k8s.io"])
            .args(args);
        engines::run(&mut c, Duration::from_secs(120))
    }

    /// `ARGV` run in containerd's network namespace (nsenter -n).
    pub fn in_netns(&self, argv: &[&str]) -> Out {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.pid().to_string())
            .arg("-n")
            .arg("--")
            .args(argv);
        engines::run(&mut c, Duration::from_secs(30))
    }

    /// A RuntimeService client.
    pub fn rs(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel.clone())
    }

    /// An ImageService client.
    pub fn is(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel.clone())
    }

    /// Runs one call to completion.
    pub fn call<T>(
        &self,
        f: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, tonic::Status> {
        self.rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(120), f).await })
            .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("test timeout (120 s)")))
            .map(tonic::Response::into_inner)
    }

    /// Runs one call that must succeed: a failure panics naming `what`, with the status
    /// and [`Cri::diagnostics`].
    pub fn ok<T>(
        &self,
        what: &str,
        f: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> T {
        self.call(f)
            .unwrap_or_else(|e| panic!("{what}: {e}\n{}", self.diagnostics()))
    }

    /// What a failed step prints: the last lines of containerd's log (its shim's and the
    /// runtime's errors are there) and, with the systemd driver, the units of the pods'
    /// slices and scopes as systemd has them.
    pub fn diagnostics(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(60)..].join("\n");
        let mut d = format!("containerd's log (last 60 lines):\n{tail}");
        if self.driver == Driver::Systemd {
            let mut c = Command::new("systemctl");
            c.args([
                "--no-pager",
                "list-units",
                "--all",
                "--plain",
                "--no-legend",
            ])
            .args(["kubepods*", "cri-containerd-*"]);
            let r = engines::run(&mut c, Duration::from_secs(30));
            d += &format!(
                "\nsystemd's kubepods and cri-containerd units:\n{}",
                r.stdout
            );
        }
        d
    }

    /// containerd's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// Stops containerd (by pid) and kills what it left (shims, containers).
    pub fn stop(&mut self) {
        drop(self.daemon.take());
        engines::kill_leftovers(&self.dir.path);
    }
}

impl Drop for Cri {
    fn drop(&mut self) {
        self.stop();
        // The pods' cgroup parents (also after a failed assertion).
        casulo_integration::bundle::remove_cgroup_parent();
    }
}

/// Builds `<dir>/pause.tar`: [`PAUSE_IMAGE`], the static `casulo-pause` as `/pause`,
/// its entrypoint. `CASULO_PAUSE=<path>` uses a prebuilt `casulo-pause` (the systemd
/// VM's runner: cargo there would build it under emulation); otherwise it is built.
pub fn pause_image(dir: &Path) -> PathBuf {
    let work = dir.join("pause-build");
    let rootfs = work.join("rootfs");
    fs::create_dir_all(&rootfs).unwrap();
    let bin = std::env::var_os("CASULO_PAUSE")
        .map(PathBuf::from)
        .unwrap_or_else(|| casulo_integration::bundle::static_bin("casulo-pause"));
    fs::copy(bin, rootfs.join("pause")).expect("copy casulo-pause");
    let image = dir.join("pause.tar");
    let config = serde_json::json!({"Entrypoint": ["/pause"], "WorkingDir": "/"});
    engines::docker_archive(&rootfs, &work.join("out"), &image, PAUSE_IMAGE, config);
    let _ = fs::remove_dir_all(&work);
    image
}

/// The busybox image's reference.
pub fn busybox() -> String {
    IMAGE.to_string()
}
