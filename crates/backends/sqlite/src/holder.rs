//! Who holds an execution lock: the host, boot and process recorded in each lock row, and
//! whether that process still runs.
//!
//! A runner killed with SIGKILL cannot release its locks, and its rows would keep them for
//! the rest of the lease (30 s by default) although nothing runs. A resumer on the same host
//! can tell such a row apart: the process it names is gone, or the pid now belongs to a
//! process that started at another time. Everything here reads `/proc` (Linux); wherever
//! that cannot answer with certainty the answer is [`Liveness::Unknown`], and the lock then
//! waits for the lease as before, because taking a key from a live holder would let two
//! runners write one execution.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// One process on one boot of one host, as a lock row records its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Holder {
    /// The host name: a pid means nothing on another host.
    pub(crate) host: String,
    /// The kernel's boot id: a pid and a start time mean nothing after a reboot, and two
    /// hosts (or containers) with one host name have different boot ids.
    pub(crate) boot_id: String,
    /// The pid namespace, as `/proc/self/ns/pid` names it (`pid:[inode]`): containers on
    /// one kernel share the boot id, and a pid of another namespace is another process.
    pub(crate) pid_ns: String,
    /// The process id in that namespace.
    pub(crate) pid: i64,
    /// When the process started, in clock ticks after boot (field 22 of `/proc/<pid>/stat`):
    /// a recycled pid has another start time.
    pub(crate) start_time: i64,
}

/// What `/proc` says about the process a lock row names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// It runs: its key must not be taken.
    Alive,
    /// It has exited (or is a zombie), or its pid now names another process.
    Gone,
    /// Another host, boot or pid namespace, or `/proc` cannot tell: only the lease decides.
    Unknown,
}

/// The current process as lock rows record it, or `None` where `/proc` cannot identify it
/// (then its rows record no holder and others wait for their lease).
///
/// Read once per pid: a process forked without exec gets its own identity rather than its
/// parent's.
pub(crate) fn current() -> Option<Holder> {
    static CACHE: Mutex<Option<(u32, Option<Holder>)>> = Mutex::new(None);
    let pid = std::process::id();
    // The cache is replaced whole, so a poisoned one is still consistent.
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    match &*cache {
        Some((cached, holder)) if *cached == pid => holder.clone(),
        _ => {
            let holder = ProcFs::system().current(pid);
            *cache = Some((pid, holder.clone()));
            holder
        }
    }
}

/// Whether the process `recorded` names still runs, as seen from the current process `me`.
pub(crate) fn liveness(me: &Holder, recorded: &Holder) -> Liveness {
    ProcFs::system().liveness(me, recorded)
}

/// A `/proc` tree and the host-name fallback: the system's, or a fake one in tests.
struct ProcFs {
    proc: PathBuf,
    etc_hostname: PathBuf,
}

/// The fields of `/proc/<pid>/stat` this module uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    pid: u32,
    state: char,
    start_time: i64,
}

/// Why a `stat` file gave no [`Stat`].
#[derive(Debug)]
enum StatError {
    /// No such process.
    Missing,
    /// Unreadable or not in the expected shape: the process may well exist.
    Unreadable,
}

impl ProcFs {
    fn system() -> Self {
        ProcFs {
            proc: PathBuf::from("/proc"),
            etc_hostname: PathBuf::from("/etc/hostname"),
        }
    }

    fn current(&self, pid: u32) -> Option<Holder> {
        // Other systems' `/proc`, if any, is not Linux's; their locks wait for the lease.
        if !cfg!(target_os = "linux") {
            return None;
        }
        let own = self.stat(&self.proc.join("self")).ok()?;
        // A `/proc` of another pid namespace than this process's would make every pid
        // lookup name someone else.
        if own.pid != pid {
            return None;
        }
        let pid_ns = std::fs::read_link(self.proc.join("self/ns/pid")).ok()?;
        Some(Holder {
            host: self.host_name()?,
            boot_id: read_trimmed(&self.proc.join("sys/kernel/random/boot_id"))?,
            pid_ns: pid_ns.to_str()?.to_owned(),
            pid: i64::from(pid),
            start_time: own.start_time,
        })
    }

    fn host_name(&self) -> Option<String> {
        read_trimmed(&self.proc.join("sys/kernel/hostname"))
            .or_else(|| read_trimmed(&self.etc_hostname))
    }

    fn liveness(&self, me: &Holder, recorded: &Holder) -> Liveness {
        let same_kernel_and_namespace = recorded.host == me.host
            && recorded.boot_id == me.boot_id
            && recorded.pid_ns == me.pid_ns;
        if !same_kernel_and_namespace || recorded.pid <= 0 {
            return Liveness::Unknown;
        }
        if recorded.pid == me.pid {
            // This process holds it, or held a pid it now has after the holder exited.
            return if recorded.start_time == me.start_time {
                Liveness::Alive
            } else {
                Liveness::Gone
            };
        }
        // With `hidepid`, other users' processes are missing from `/proc` although they run.
        if self.hides_processes() {
            return Liveness::Unknown;
        }
        match self.stat(&self.proc.join(recorded.pid.to_string())) {
            // A zombie has exited; only its parent has not reaped it yet.
            Ok(stat) if matches!(stat.state, 'Z' | 'X' | 'x') => Liveness::Gone,
            Ok(stat) if stat.start_time != recorded.start_time => Liveness::Gone,
            Ok(_) => Liveness::Alive,
            Err(StatError::Missing) => Liveness::Gone,
            Err(StatError::Unreadable) => Liveness::Unknown,
        }
    }

    /// Whether the `/proc` mount may hide processes that run (`hidepid` other than 0), or
    /// its options cannot be read.
    fn hides_processes(&self) -> bool {
        let Ok(mounts) = std::fs::read_to_string(self.proc.join("self/mounts")) else {
            return true;
        };
        // The last mount on `/proc` is the one lookups see.
        let options = mounts
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_ascii_whitespace();
                let (_, point, kind, options) = (
                    fields.next()?,
                    fields.next()?,
                    fields.next()?,
                    fields.next()?,
                );
                (point == "/proc" && kind == "proc").then_some(options)
            })
            .next_back();
        let Some(options) = options else {
            return true;
        };
        options
            .split(',')
            .filter_map(|option| option.strip_prefix("hidepid="))
            .any(|value| !matches!(value, "0" | "off"))
    }

    fn stat(&self, process: &Path) -> Result<Stat, StatError> {
        let text = std::fs::read_to_string(process.join("stat")).map_err(|error| {
            // ESRCH: the process exited while the file was being read.
            if error.kind() == io::ErrorKind::NotFound || error.raw_os_error() == Some(3) {
                StatError::Missing
            } else {
                StatError::Unreadable
            }
        })?;
        parse_stat(&text).ok_or(StatError::Unreadable)
    }
}

/// Parses `pid (comm) state ppid … starttime …`. The command name may hold spaces and
/// parentheses, so the fields after it are counted from its last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let (head, rest) = text.rsplit_once(')')?;
    let pid = head.split_once(" (")?.0.trim().parse().ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // `state` was field 3; skipping fields 4 to 21 leaves field 22.
    let start_time: u64 = fields.nth(18)?.parse().ok()?;
    Some(Stat {
        pid,
        state,
        start_time: i64::try_from(start_time).ok()?,
    })
}

/// The first line of a small file, trimmed; `None` if it is missing, unreadable or blank.
fn read_trimmed(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().next()?.trim();
    (!line.is_empty()).then(|| line.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `stat` line shaped like the kernel's, with `comm` and `state` as given.
    fn stat_line(pid: u32, comm: &str, state: char, start_time: u64) -> String {
        format!(
            "{pid} ({comm}) {state} 1 {pid} {pid} 0 -1 4194304 98 0 0 0 0 0 0 0 20 0 1 0 \
             {start_time} 3133440 355 18446744073709551615 0 0 0 0 0"
        )
    }

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        let line = stat_line(42, "a) b (c", 'S', 22381);
        assert_eq!(
            parse_stat(&line),
            Some(Stat {
                pid: 42,
                state: 'S',
                start_time: 22381
            })
        );
        assert_eq!(parse_stat("42 (short) S 1 2"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn the_current_process_is_identified_by_the_real_proc() {
        let Some(me) = ProcFs::system().current(std::process::id()) else {
            assert!(!Path::new("/proc/self/stat").exists() || !cfg!(target_os = "linux"));
            return;
        };
        assert_eq!(me.pid, i64::from(std::process::id()));
        assert!(me.pid_ns.starts_with("pid:["), "{me:?}");
        assert_eq!(current(), Some(me.clone()));
        assert_eq!(ProcFs::system().liveness(&me, &me), Liveness::Alive);
    }

    /// A fake `/proc` with this process as `self` and the given other processes.
    struct FakeProc {
        dir: tempfile::TempDir,
    }

    impl FakeProc {
        fn new(mount_options: &str) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path();
            let pid = std::process::id();
            std::fs::create_dir_all(root.join("self/ns")).unwrap();
            std::fs::create_dir_all(root.join("sys/kernel/random")).unwrap();
            std::fs::write(root.join("self/stat"), stat_line(pid, "me", 'R', 500)).unwrap();
            std::os::unix::fs::symlink("pid:[4026531836]", root.join("self/ns/pid")).unwrap();
            std::fs::write(
                root.join("self/mounts"),
                format!("sysfs /sys sysfs rw 0 0\nproc /proc proc {mount_options} 0 0\n"),
            )
            .unwrap();
            std::fs::write(root.join("sys/kernel/hostname"), "box\n").unwrap();
            std::fs::write(root.join("sys/kernel/random/boot_id"), "boot-1\n").unwrap();
            FakeProc { dir }
        }

        fn process(&self, pid: u32, state: char, start_time: u64) {
            let dir = self.dir.path().join(pid.to_string());
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("stat"), stat_line(pid, "other", state, start_time)).unwrap();
        }

        fn fs(&self) -> ProcFs {
            ProcFs {
                proc: self.dir.path().to_owned(),
                etc_hostname: self.dir.path().join("no-etc-hostname"),
            }
        }
    }

    fn recorded(me: &Holder, pid: i64, start_time: i64) -> Holder {
        Holder {
            pid,
            start_time,
            ..me.clone()
        }
    }

    #[test]
    fn gone_recycled_and_zombie_processes_are_gone_and_live_ones_alive() {
        let fake = FakeProc::new("rw,relatime");
        let fs = fake.fs();
        let me = fs.current(std::process::id()).unwrap();
        assert_eq!(
            (me.host.as_str(), me.boot_id.as_str(), me.start_time),
            ("box", "boot-1", 500)
        );
        fake.process(7001, 'S', 900);
        fake.process(7002, 'Z', 900);
        assert_eq!(fs.liveness(&me, &recorded(&me, 7001, 900)), Liveness::Alive);
        assert_eq!(fs.liveness(&me, &recorded(&me, 7001, 901)), Liveness::Gone);
        assert_eq!(fs.liveness(&me, &recorded(&me, 7002, 900)), Liveness::Gone);
        assert_eq!(fs.liveness(&me, &recorded(&me, 7003, 900)), Liveness::Gone);
        assert_eq!(
            fs.liveness(&me, &recorded(&me, me.pid, 499)),
            Liveness::Gone
        );
        assert_eq!(fs.liveness(&me, &recorded(&me, 0, 900)), Liveness::Unknown);
    }

    #[test]
    fn other_hosts_boots_and_namespaces_and_hidden_processes_are_unknown() {
        let fake = FakeProc::new("rw,relatime");
        let fs = fake.fs();
        let me = fs.current(std::process::id()).unwrap();
        let dead = recorded(&me, 7003, 900);
        for other in [
            Holder {
                host: "elsewhere".into(),
                ..dead.clone()
            },
            Holder {
                boot_id: "boot-2".into(),
                ..dead.clone()
            },
            Holder {
                pid_ns: "pid:[1]".into(),
                ..dead.clone()
            },
        ] {
            assert_eq!(fs.liveness(&me, &other), Liveness::Unknown, "{other:?}");
        }
        let hidden = FakeProc::new("rw,relatime,hidepid=invisible");
        let fs = hidden.fs();
        let me = fs.current(std::process::id()).unwrap();
        assert_eq!(
            fs.liveness(&me, &recorded(&me, 7003, 900)),
            Liveness::Unknown
        );
        let shown = FakeProc::new("rw,hidepid=0");
        let fs = shown.fs();
        assert_eq!(fs.liveness(&me, &recorded(&me, 7003, 900)), Liveness::Gone);
    }

    #[test]
    fn a_proc_of_another_pid_namespace_identifies_no_one() {
        let fake = FakeProc::new("rw");
        std::fs::write(
            fake.dir.path().join("self/stat"),
            stat_line(std::process::id().wrapping_add(1), "me", 'R', 500),
        )
        .unwrap();
        assert_eq!(fake.fs().current(std::process::id()), None);
        // No host name anywhere: no identity either.
        let fake = FakeProc::new("rw");
        std::fs::remove_file(fake.dir.path().join("sys/kernel/hostname")).unwrap();
        assert_eq!(fake.fs().current(std::process::id()), None);
        std::fs::write(fake.dir.path().join("no-etc-hostname"), "fallback\n").unwrap();
        assert_eq!(
            fake.fs().current(std::process::id()).map(|me| me.host),
            Some("fallback".to_owned())
        );
    }
}
