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
    std::thread::scope(|s| {
        for t in 0..8 {
            let (rt, env) = (&rt, &env);
            s.spawn(move || {
                for i in 0..3 {
                    // Other threads allocate and print meanwhile.
                    let noise: Vec<String> = (0..1000).map(|n| format!("{t}-{i}-{n}")).collect();
                    let b = env.bundle(&["sh", "-c", &format!("exit {}", t + i)]);
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
                        t + i,
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
fn library_errors_name_the_bundle_and_the_missing_container() {
    let rt = Runtime::new("/nonexistent-casulo-root");
    let err = rt
        .create(
            "x",
            &CreateOptions {
                bundle: "/nonexistent-bundle".into(),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent-bundle"), "{err}");
    let err = rt.state("missing").unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}
