use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use flatmachines_core::{Error, PersistenceBackend};
use flatmachines_local::LocalFileBackend;
use tempfile::TempDir;

use crate::support::{Immutable, tree};

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn backend() -> (TempDir, LocalFileBackend) {
    let tmp = tempfile::tempdir().unwrap();
    let backend = LocalFileBackend::new(tmp.path().join(LocalFileBackend::DEFAULT_DIR)).unwrap();
    (tmp, backend)
}

/// Saves alternating uniform values while readers check that every load is one whole value.
async fn loads_never_see_a_mix(backend: LocalFileBackend, rounds: usize) {
    let a = Bytes::from(vec![b'a'; 64 * 1024]);
    let b = Bytes::from(vec![b'b'; 96 * 1024]);
    backend.save("exec/latest", a.clone()).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (backend, stop) = (backend.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut loads = 0_u32;
                while !stop.load(Ordering::Relaxed) || loads == 0 {
                    let value = backend.load("exec/latest").await.unwrap().unwrap();
                    let whole_a = value.len() == 64 * 1024 && value.iter().all(|&x| x == b'a');
                    let whole_b = value.len() == 96 * 1024 && value.iter().all(|&x| x == b'b');
                    assert!(whole_a || whole_b, "a mixed value of {} bytes", value.len());
                    loads += 1;
                }
            })
        })
        .collect();
    for round in 0..rounds {
        let value = if round % 2 == 0 { &b } else { &a };
        backend.save("exec/latest", value.clone()).await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.await.unwrap();
    }
    assert_eq!(tree(backend.dir()), ["exec/", "exec/latest"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clause1_concurrent_loads_see_the_old_or_the_new_value_never_a_mix() {
    let (_tmp, backend) = backend();
    loads_never_see_a_mix(backend, 200).await;
}

#[tokio::test]
async fn clause1_a_write_cut_short_before_its_rename_leaves_the_old_value() {
    let (_tmp, backend) = backend();
    backend.save("exec/latest", bytes("old")).await.unwrap();
    // What a process killed mid-write leaves behind: a partial temporary file.
    let leftover = backend.dir().join("exec/.latest.4242.7.tmp");
    fs::write(&leftover, b"ne").unwrap();
    assert_eq!(
        backend.load("exec/latest").await.unwrap(),
        Some(bytes("old"))
    );
    assert_eq!(backend.list("").await.unwrap(), ["exec/latest"]);
    backend.save("exec/latest", bytes("new")).await.unwrap();
    assert_eq!(
        backend.load("exec/latest").await.unwrap(),
        Some(bytes("new"))
    );
}

#[tokio::test]
async fn clause2_save_overwrites() {
    let (_tmp, backend) = backend();
    backend.save("exec/latest", bytes("one")).await.unwrap();
    backend
        .save("exec/latest", bytes("two, longer"))
        .await
        .unwrap();
    backend.save("exec/latest", bytes("3")).await.unwrap();
    assert_eq!(backend.load("exec/latest").await.unwrap(), Some(bytes("3")));
    assert_eq!(fs::read(backend.dir().join("exec/latest")).unwrap(), b"3");
    assert_eq!(backend.list("").await.unwrap(), ["exec/latest"]);
}

#[tokio::test]
async fn clause3_load_of_a_missing_key_is_none() {
    let (_tmp, backend) = backend();
    backend.save("exec/present", bytes("x")).await.unwrap();
    backend.save("file", bytes("x")).await.unwrap();
    for key in [
        "missing",
        "exec/missing",
        "no-dir/latest",
        "a/b/c",
        "file/under",
    ] {
        assert_eq!(backend.load(key).await.unwrap(), None, "{key}");
    }
    backend.delete("exec/present").await.unwrap();
    assert_eq!(backend.load("exec/present").await.unwrap(), None);
}

#[tokio::test]
async fn clause4_delete_of_a_missing_key_succeeds() {
    let (_tmp, backend) = backend();
    backend.save("file", bytes("x")).await.unwrap();
    for key in ["missing", "no-dir/latest", "file/under"] {
        backend.delete(key).await.unwrap();
    }
    backend.save("a/b", bytes("x")).await.unwrap();
    backend.delete("a/b").await.unwrap();
    backend.delete("a/b").await.unwrap();
    assert_eq!(backend.list("").await.unwrap(), ["file"]);
}

#[tokio::test]
async fn clause5_list_returns_exactly_the_prefixed_keys_sorted() {
    let (_tmp, backend) = backend();
    // Speed only: listing does not depend on durability.
    let backend = backend.durable(false);
    let mut all = Vec::new();
    // Saved in reverse so that creation order cannot pass for sorting.
    for i in (0..1000).rev() {
        let key = format!("a{}/step_{i:06}_execute.json", i % 20);
        backend.save(&key, bytes("{}")).await.unwrap();
        all.push(key);
    }
    for other in ["a1.json", "a10x", "b/latest", "a1-sibling/x"] {
        backend.save(other, bytes("{}")).await.unwrap();
        all.push(other.to_owned());
    }
    all.sort();
    let expect = |prefix: &str| -> Vec<String> {
        all.iter()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    };
    for prefix in [
        "",
        "a",
        "a1",
        "a1/",
        "a10",
        "a10/",
        "a1/step_0009",
        "a1/step_000981_execute.json",
        "a1-",
        "b/",
        "nothing",
        "nothing/",
        "a1/nothing",
    ] {
        let listed = backend.list(prefix).await.unwrap();
        assert_eq!(listed, expect(prefix), "prefix {prefix:?}");
    }
    assert_eq!(backend.list("").await.unwrap().len(), 1004);
    assert_eq!(backend.list("a1/").await.unwrap().len(), 50);
    // `a1` is a prefix of `a1.json`, `a10x` and the directories `a1`, `a10`…`a19` and
    // `a1-sibling`.
    assert_eq!(backend.list("a1").await.unwrap().len(), 1 + 550 + 1 + 1);
}

#[tokio::test]
async fn clause5_list_sorts_by_bytes() {
    let (_tmp, backend) = backend();
    // `p/a-b` sorts before `p/a/x` although its name `a-b` sorts after the directory `a`.
    for key in [
        "p/é", "p/z", "p/Z", "p/a-b", "p/ä", "p/a.b", "p/a b", "p/1", "p/a/x",
    ] {
        backend.save(key, bytes("")).await.unwrap();
    }
    let listed = backend.list("p/").await.unwrap();
    assert_eq!(
        listed,
        [
            "p/1", "p/Z", "p/a b", "p/a-b", "p/a.b", "p/a/x", "p/z", "p/ä", "p/é"
        ]
    );
}

#[tokio::test]
async fn clause6_every_byte_value_round_trips() {
    let (_tmp, backend) = backend();
    let all: Bytes = (0..=255_u8).collect::<Vec<_>>().into();
    backend.save("binary", all.clone()).await.unwrap();
    assert_eq!(backend.load("binary").await.unwrap(), Some(all.clone()));
    assert_eq!(fs::read(backend.dir().join("binary")).unwrap(), all);
    backend.save("empty", Bytes::new()).await.unwrap();
    assert_eq!(backend.load("empty").await.unwrap(), Some(Bytes::new()));
}

#[tokio::test]
async fn clause6_a_5_mb_value_round_trips() {
    let (_tmp, backend) = backend();
    let big: Bytes = (0..5 * 1024 * 1024)
        .map(|i: u32| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    backend.save("exec/big", big.clone()).await.unwrap();
    assert_eq!(backend.load("exec/big").await.unwrap(), Some(big));
}

#[tokio::test]
async fn clause7_unusual_legal_keys_are_stored_as_given() {
    let (_tmp, backend) = backend();
    let long = [
        "k".repeat(255),
        "l".repeat(255),
        "m".repeat(255),
        "n".repeat(255),
    ]
    .join("/");
    assert_eq!(long.len(), 1023);
    let keys = [
        "with space/step 1.json",
        "ünïcødé/ключ/键",
        "x.y",
        "dots.in.name/x.y.z",
        "a./b",
        "emoji/🦀",
        "back\\slash",
        long.as_str(),
    ];
    for (i, key) in keys.iter().enumerate() {
        backend.save(key, Bytes::from(vec![i as u8])).await.unwrap();
    }
    for (i, key) in keys.iter().enumerate() {
        let expected = Some(Bytes::from(vec![i as u8]));
        assert_eq!(backend.load(key).await.unwrap(), expected, "{key}");
        assert!(backend.dir().join(key).is_file(), "{key}");
    }
    let mut sorted: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    sorted.sort();
    assert_eq!(backend.list("").await.unwrap(), sorted);
}

#[tokio::test]
async fn clause7_rejected_keys_fail_in_every_method_and_touch_nothing() {
    let (_tmp, backend) = backend();
    backend.save("keep/v", bytes("v")).await.unwrap();
    let before = tree(backend.dir());
    let long = "k".repeat(1025);
    let invalid = |r: Result<(), Error>| matches!(r, Err(Error::InvalidKey { .. }));
    for key in [
        "",
        "..",
        "../x",
        "keep/../x",
        "/abs",
        "a//b",
        "trailing/",
        ".hidden",
        "a/.tmp",
        "keep/.v.1.2.tmp",
        "a\0b",
        "line\nbreak",
        long.as_str(),
    ] {
        assert!(invalid(backend.save(key, bytes("x")).await), "save {key:?}");
        let many = [("keep/ok", bytes("x")), (key, bytes("x"))];
        assert!(invalid(backend.save_many(&many).await), "save_many {key:?}");
        assert!(invalid(backend.load(key).await.map(drop)), "load {key:?}");
        assert!(invalid(backend.delete(key).await), "delete {key:?}");
    }
    for prefix in ["..", "/abs", "a//", ".locks/", "keep/.", "a//b"] {
        assert!(invalid(backend.list(prefix).await.map(drop)), "{prefix:?}");
    }
    let err = backend
        .save("a//b", bytes("x"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty segments"), "{err}");
    let err = backend
        .save("a/.b", bytes("x"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("may not start with `.`"), "{err}");
    assert_eq!(tree(backend.dir()), before);
}

#[tokio::test]
async fn clause8_save_many_saves_in_order_and_stops_at_the_first_failure() {
    let (_tmp, backend) = backend();
    backend
        .save_many(&[
            ("exec/step_000001_execute.json", bytes("{\"step\":1}")),
            ("exec/latest", bytes("exec/step_000001_execute.json")),
            ("other/latest", bytes("o")),
        ])
        .await
        .unwrap();
    assert_eq!(
        backend.load("exec/latest").await.unwrap(),
        Some(bytes("exec/step_000001_execute.json"))
    );
    assert_eq!(
        backend.list("").await.unwrap(),
        [
            "exec/latest",
            "exec/step_000001_execute.json",
            "other/latest"
        ]
    );
    backend.save_many(&[]).await.unwrap();

    // `blocker` is a file, so `blocker/x` cannot be written: what comes after it is never
    // written (what came before may or may not be: the entries are committed in order).
    backend.save("blocker", bytes("file")).await.unwrap();
    let err = backend
        .save_many(&[
            ("exec/step_000002_execute.json", bytes("{\"step\":2}")),
            ("blocker/x", bytes("x")),
            ("exec/latest", bytes("exec/step_000002_execute.json")),
        ])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("blocker/x"), "{err}");
    let earlier = backend.load("exec/step_000002_execute.json").await.unwrap();
    assert!(
        earlier.is_none() || earlier == Some(bytes("{\"step\":2}")),
        "{earlier:?}"
    );
    assert_eq!(
        backend.load("exec/latest").await.unwrap(),
        Some(bytes("exec/step_000001_execute.json"))
    );
    assert!(!tree(backend.dir()).iter().any(|f| f.ends_with(".tmp")));
}

#[tokio::test]
async fn files_follow_the_reference_layout() {
    let (tmp, backend) = backend();
    let snapshot = bytes("{\"execution_id\":\"abc\",\"step\":1}");
    backend
        .save_many(&[
            ("abc/step_000001_execute.json", snapshot.clone()),
            ("abc/latest", bytes("abc/step_000001_execute.json")),
        ])
        .await
        .unwrap();
    let root = tmp.path().join(".checkpoints");
    assert_eq!(backend.dir(), root);
    assert_eq!(
        fs::read(root.join("abc").join("step_000001_execute.json")).unwrap(),
        snapshot
    );
    assert_eq!(
        fs::read(root.join("abc").join("latest")).unwrap(),
        b"abc/step_000001_execute.json"
    );
    assert_eq!(
        tree(&root),
        ["abc/", "abc/latest", "abc/step_000001_execute.json"]
    );
    let debug = format!("{backend:?}");
    assert!(debug.contains(".checkpoints"), "{debug}");
}

#[tokio::test]
async fn files_written_by_hand_are_listed_and_loaded() {
    let (_tmp, backend) = backend();
    fs::create_dir_all(backend.dir().join("abc")).unwrap();
    fs::write(backend.dir().join("abc/latest"), b"by hand").unwrap();
    fs::create_dir_all(backend.dir().join(".locks")).unwrap();
    fs::write(backend.dir().join(".locks/abc.lock"), b"").unwrap();
    assert_eq!(backend.list("").await.unwrap(), ["abc/latest"]);
    assert_eq!(
        backend.load("abc/latest").await.unwrap(),
        Some(bytes("by hand"))
    );
}

#[tokio::test]
async fn no_temporary_files_remain_after_saves() {
    let (_tmp, backend) = backend();
    for i in 0..20 {
        backend
            .save(&format!("exec/step_{i:06}"), bytes("{}"))
            .await
            .unwrap();
        backend.save("exec/latest", bytes("p")).await.unwrap();
    }
    let files = tree(backend.dir());
    assert_eq!(files.len(), 1 + 20 + 1, "{files:?}");
    assert!(files.iter().all(|f| !f.contains("/.")), "{files:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_saves_of_one_key_leave_one_complete_value() {
    let (_tmp, backend) = backend();
    let size = 256 * 1024;
    let writers: Vec<_> = (0..16_u8)
        .map(|i| {
            let backend = backend.clone();
            tokio::spawn(async move {
                let value = Bytes::from(vec![i; size + usize::from(i)]);
                for _ in 0..4 {
                    backend.save("exec/latest", value.clone()).await.unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let value = backend.load("exec/latest").await.unwrap().unwrap();
    let first = value[0];
    assert!(first < 16);
    assert_eq!(value.len(), size + usize::from(first));
    assert!(value.iter().all(|&x| x == first));
    assert_eq!(tree(backend.dir()), ["exec/", "exec/latest"]);
}

#[tokio::test]
async fn delete_removes_the_directories_it_empties_but_not_the_root() {
    let (_tmp, backend) = backend();
    backend.save("a/b/c/k", bytes("x")).await.unwrap();
    backend.save("a/b/sibling", bytes("x")).await.unwrap();
    backend.delete("a/b/c/k").await.unwrap();
    assert_eq!(tree(backend.dir()), ["a/", "a/b/", "a/b/sibling"]);
    backend.delete("a/b/sibling").await.unwrap();
    assert!(tree(backend.dir()).is_empty());
    assert!(backend.dir().is_dir());
    // The root is recreated if someone removed it.
    fs::remove_dir(backend.dir()).unwrap();
    backend.save("a/k", bytes("again")).await.unwrap();
    assert_eq!(backend.load("a/k").await.unwrap(), Some(bytes("again")));
}

#[tokio::test]
async fn a_directory_where_a_file_should_be_is_an_error_naming_the_path() {
    let (_tmp, backend) = backend();
    backend.save("exec/latest", bytes("x")).await.unwrap();
    let path = backend.dir().join("exec");
    for err in [
        backend.load("exec").await.map(drop).unwrap_err(),
        backend.save("exec", bytes("x")).await.unwrap_err(),
        backend.delete("exec").await.unwrap_err(),
    ] {
        let text = err.to_string();
        assert!(text.contains(&format!("`{}`", path.display())), "{text}");
        assert!(
            matches!(
                err,
                Error::Backend {
                    backend: "local",
                    ..
                }
            ),
            "{err:?}"
        );
    }
    assert_eq!(backend.load("exec/latest").await.unwrap(), Some(bytes("x")));
    // The failed save removed its temporary file.
    assert_eq!(tree(backend.dir()), ["exec/", "exec/latest"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn non_durable_saves_are_still_atomic() {
    let (_tmp, backend) = backend();
    let backend = backend.durable(false);
    loads_never_see_a_mix(backend, 1000).await;
}

#[tokio::test]
async fn a_failed_save_names_the_path_and_keeps_the_old_value() {
    let (_tmp, backend) = backend();
    backend.save("exec/one", bytes("old")).await.unwrap();
    let exec = backend.dir().join("exec");
    let _immutable = match Immutable::set(&exec) {
        Ok(guard) => guard,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let err = backend.save("exec/two", bytes("new")).await.unwrap_err();
    let Error::Backend {
        backend: "local",
        retryable: false,
        source,
    } = &err
    else {
        panic!("not a local backend error: {err:?}");
    };
    let expected = format!(
        "cannot write checkpoint file `{}`: ",
        exec.join("two").display()
    );
    assert!(source.to_string().starts_with(&expected), "{source}");
    assert!(err.to_string().contains(&expected), "{err}");

    let err = backend.save("exec/one", bytes("new")).await.unwrap_err();
    assert!(err.to_string().contains("exec/one"), "{err}");
    assert_eq!(backend.load("exec/one").await.unwrap(), Some(bytes("old")));
    assert_eq!(backend.load("exec/two").await.unwrap(), None);
    assert_eq!(tree(backend.dir()), ["exec/", "exec/one"]);
}

/// The checkpoint pair of a cancelled run, abandoned mid-write, then a `replace` of the same
/// execution (list, delete each): the list must see both keys, or the pointer survives the
/// snapshot it names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_sees_every_write_started_before_it() {
    let (_tmp, backend) = backend();
    let mut abandoned = 0;
    for round in 0..50 {
        let pair = [
            ("exec/step_000000_machine_start.json", bytes("snapshot")),
            ("exec/latest", bytes("step_000000_machine_start.json")),
        ];
        if tokio::time::timeout(std::time::Duration::ZERO, backend.save_many(&pair))
            .await
            .is_err()
        {
            abandoned += 1;
        }
        for key in backend.list("exec/").await.unwrap() {
            backend.delete(&key).await.unwrap();
        }
        // Time for an abandoned save that was not waited for to land, as it would in a
        // runtime that goes on.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(
            backend.list("exec/").await.unwrap(),
            Vec::<String>::new(),
            "round {round}: a key written by the abandoned save outlived the replace"
        );
    }
    assert!(
        abandoned > 0,
        "no save was abandoned: the test proved nothing"
    );
}
