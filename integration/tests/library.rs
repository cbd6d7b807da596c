//! The library without the CLI: casulo-core creates, starts, waits for and deletes
//! containers from 8 threads of one process at once (the create path forks through
//! libc, so malloc and locks held by other threads are no trap in the child).

use casulo_core::{CreateOptions, Runtime};
use casulo_integration::TestEnv;

#[test]
fn containers_from_eight_threads_at_once() {
    if !casulo_integration::prereq::root() {
        return;
    }
    let env = TestEnv::new("threads");
    let rt = Runtime::new(&env.root);
    // The bundles first: a thread copying busybox into its rootfs while another forks
    // hands that child the file open for writing, and a container exec'ing its busybox
    // meanwhile gets ETXTBSY (every fork-based runtime embedded in a multithreaded
    // program shares this; Go's is golang/go#22315).
    let bundles: Vec<Vec<_>> = (0..8)
        .map(|t| {
            (0..3)
                .map(|i| env.bundle(&["sh", "-c", &format!("exit {}", t + i)]))
                .collect()
        })
        .collect();
    std::thread::scope(|s| {
        for (t, mine) in bundles.iter().enumerate() {
            let (rt, env) = (&rt, &env);
            s.spawn(move || {
                for (i, b) in mine.iter().enumerate() {
                    // Other threads allocate and print meanwhile.
                    let noise: Vec<String> = (0..1000).map(|n| format!("{t}-{i}-{n}")).collect();
                    let opts = CreateOptions {
                        bundle: b.dir.clone(),
                        ..Default::default()
                    };
                    let c = rt
                        .create(&b.id(), &opts)
                        .unwrap_or_else(|e| panic!("thread {t} create: {e}"));
                    assert_eq!(rt.state(&b.id()).unwrap().status.to_string(), "created");
                    rt.start(&b.id())
                        .unwrap_or_else(|e| panic!("thread {t} start: {e}"));
                    assert_eq!(
                        c.wait().unwrap(),
                        (t + i) as i32,
                        "exit status of thread {t} container {i}"
                    );
                    rt.delete(&b.id(), false).unwrap();
                    assert!(!env.root.join(b.id()).exists());
                    drop(std::hint::black_box(noise));
                }
            });
        }
    });
}

#[test]
fn library_errors_keep_the_errno_and_the_status() {
    use casulo_core::{Error, Operation, Status};
    use nix::errno::Errno;
    let rt = Runtime::new("/nonexistent-casulo-root");
    let opts = CreateOptions {
        bundle: "/nonexistent-bundle".into(),
        ..Default::default()
    };
    let err = rt.create("x", &opts).unwrap_err();
    assert!(err.to_string().contains("/nonexistent-bundle"), "{err}");
    match &err {
        Error::Io { path, source } => {
            assert_eq!(path, std::path::Path::new("/nonexistent-bundle"));
            assert_eq!(source.raw_os_error(), Some(libc::ENOENT), "{err}");
        }
        e => panic!("not an Io error: {e:?}"),
    }
    assert_eq!(err.errno(), Some(Errno::ENOENT));
    let err = rt.state("missing").unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert!(
        matches!(&err, Error::Store(casulo_core::StoreError::Missing(id)) if id == "missing"),
        "{err:?}"
    );
    if !casulo_integration::prereq::root() {
        return;
    }
    // A wrong state carries the operation and the status; an exec failure in the
    // container keeps its errno across the channel.
    let env = TestEnv::new("typed");
    let rt = Runtime::new(&env.root);
    let b = env.bundle(&["sleep", "30"]);
    let id = b.id();
    let opts = CreateOptions {
        bundle: b.dir.clone(),
        ..Default::default()
    };
    let c = rt.create(&id, &opts).unwrap();
    match rt.delete(&id, false).unwrap_err() {
        Error::State {
            op,
            status,
            id: which,
        } => {
            assert_eq!((op, status), (Operation::Delete, Status::Created));
            assert_eq!(which, id);
        }
        e => panic!("not a State error: {e:?}"),
    }
    rt.start(&id).unwrap();
    let mut process = b.spec.process().clone().unwrap();
    process.set_args(Some(vec!["/no/such/binary".into()]));
    let exec = casulo_core::ExecOptions {
        process,
        console_socket: None,
        console: None,
        pid_file: None,
        preserve_fds: 0,
        ignore_paused: false,
        sub_cgroups: Vec::new(),
    };
    let err = rt.exec(&id, &exec).unwrap_err();
    assert!(err.to_string().contains("/no/such/binary"), "{err}");
    match &err {
        Error::Init(child) => assert_eq!(child.errno, Some(Errno::ENOENT), "{err}"),
        e => panic!("not the process's error: {e:?}"),
    }
    rt.delete(&id, true).unwrap();
    let _ = c.wait();
}

/// `runtime-core/examples/run_bundle.rs`, built as an embedder builds it (`cargo build
/// --example`, the crate's public API only: no `internals` feature).
fn example_bin() -> std::path::PathBuf {
    casulo_integration::cli::cargo_build(
        &["-p", "casulo-core", "--example", "run_bundle"],
        "debug/examples/run_bundle",
    )
}

#[test]
fn the_run_bundle_example_runs_a_container_from_a_bundle() {
    if !casulo_integration::prereq::root() {
        return;
    }
    let bin = example_bin();
    let env = TestEnv::new("example");
    // The checker verifies the config from inside; its exit status comes back through
    // the example's.
    let b = env.bundle(&["/checker", "/config.json"]);
    let out = std::process::Command::new(&bin)
        .arg(&b.dir)
        .arg(b.id())
        .arg(&env.root)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let tap = casulo_integration::parse_tap(&stdout);
    assert!(
        out.status.success() && tap.failed == 0 && tap.passed > 20,
        "run_bundle: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !env.root.join(b.id()).exists(),
        "state left after the example"
    );
    // The exit status of the container's process is the example's.
    let b = env.bundle(&["sh", "-c", "exit 7"]);
    let st = std::process::Command::new(&bin)
        .arg(&b.dir)
        .arg(b.id())
        .arg(&env.root)
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(7));
    assert!(
        !env.root.join(b.id()).exists(),
        "state left after the example"
    );
}

/// A value the runtime cannot read is refused with the field named and the parser's own
/// error kept as the source: an embedder matches the kind (here a list item that is not
/// a number, whose `ParseIntError` is reachable), not the text.
#[test]
fn library_refusals_keep_the_parsers_error() {
    use casulo_core::{CgroupError, CgroupParseError, Error};
    let env = TestEnv::new("parse");
    let rt = Runtime::new(&env.root);
    let mut b = env.bundle(&["true"]);
    let mut cpu = oci_spec::runtime::LinuxCpu::default();
    cpu.set_cpus(Some("0-x".into()));
    let mut res = oci_spec::runtime::LinuxResources::default();
    res.set_cpu(Some(cpu));
    b.spec
        .linux_mut()
        .as_mut()
        .unwrap()
        .set_resources(Some(res));
    b.write_config();
    let opts = CreateOptions {
        bundle: b.dir.clone(),
        ..Default::default()
    };
    let err = rt.create(&b.id(), &opts).unwrap_err();
    assert_eq!(
        err.to_string(),
        "linux.resources.cpu.cpus: \"0-x\" is not a list like \"0-3,5\" (\"x\" is not a number)"
    );
    let Error::Cgroup(CgroupError::Parse { field, source }) = &err else {
        panic!("not a cgroup parse error: {err:?}");
    };
    assert_eq!(field, "linux.resources.cpu.cpus");
    assert!(
        matches!(source, CgroupParseError::ListItem { item, .. } if item == "x"),
        "{source:?}"
    );
    let int = std::error::Error::source(source).expect("the number's error");
    assert!(int.is::<std::num::ParseIntError>(), "{int:?}");
    assert!(!env.root.join(b.id()).exists(), "nothing is left");
}
