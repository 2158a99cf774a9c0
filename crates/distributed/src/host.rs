//! What a worker says about where it runs.

/// This machine's host name: the kernel's, else `$HOSTNAME`, else `unknown`.
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| {
            std::env::var("HOSTNAME")
                .ok()
                .filter(|name| !name.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Now, as the ISO 8601 UTC timestamps the backends store.
pub(crate) fn now_iso8601() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

/// A fresh worker id, `worker-` and eight hex digits as in the reference.
pub(crate) fn new_worker_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("worker-{}", &id[..8])
}
