//! Claims per second across OS processes sharing one database file.
//!
//! ```text
//! cargo run --release -p flatmachines-sqlite --example claim_rate -- PROCESSES ITEMS
//! ```
//!
//! Pushes ITEMS items into a pool of a fresh database, starts PROCESSES worker processes
//! (this program again), lets them go at once, and times until every item is claimed and
//! completed. Prints the rate and each process's share; fails if any item was handed out
//! twice or left behind.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use flatmachines_core::{PushOptions, WorkBackend, WorkStatus};
use flatmachines_sqlite::{SqliteConfig, SqliteDatabase};
use serde_json::json;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--worker") {
        return worker(&args[2], &args[3]).await;
    }
    let processes: usize = args.get(1).map_or(Ok(4), |a| a.parse())?;
    let items: usize = args.get(2).map_or(Ok(4000), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("claims.sqlite");
    let db = SqliteDatabase::connect(SqliteConfig::new(&path)).await?;
    let pool = db.work().pool("jobs");
    for n in 0..items {
        pool.push(json!({"n": n}), PushOptions::default()).await?;
    }
    let mut children = Vec::new();
    for p in 0..processes {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--worker", &path.display().to_string(), &format!("p{p}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        if lines.next().transpose()?.as_deref() != Some("READY") {
            return Err("a worker did not get ready".into());
        }
        children.push((child, lines));
    }
    let started = Instant::now();
    for (child, _) in &mut children {
        writeln!(child.stdin.as_mut().ok_or("no stdin")?, "GO")?;
    }
    let mut seen = HashSet::new();
    let mut shares = Vec::new();
    for (mut child, lines) in children {
        let mut mine = 0;
        for line in lines {
            let line = line?;
            if let Some(id) = line.strip_prefix("CLAIMED ") {
                if !seen.insert(id.to_owned()) {
                    return Err(format!("item {id} was claimed twice").into());
                }
                mine += 1;
            }
        }
        child.wait()?;
        shares.push(mine);
    }
    let elapsed = started.elapsed();
    if seen.len() != items {
        return Err(format!("{} of {items} items were claimed", seen.len()).into());
    }
    for id in &seen {
        let status = pool.get(id).await?.map(|item| item.status);
        if status != Some(WorkStatus::Done) {
            return Err(format!("item {id} ended {status:?}").into());
        }
    }
    println!(
        "{processes} process(es), {items} items: {:.0} claims/s (claim + complete), {:.1} µs per item, shares {shares:?}",
        items as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / items as f64
    );
    Ok(())
}

/// One worker process: ready, wait for `GO`, then claim and complete until the pool is empty.
async fn worker(path: &str, name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let db = SqliteDatabase::connect(SqliteConfig::new(path)).await?;
    let pool = db.work().pool("jobs");
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "READY")?;
        out.flush()?;
    }
    let mut go = String::new();
    std::io::stdin().read_line(&mut go)?;
    let mut claimed = Vec::new();
    while let Some(item) = pool.claim(name).await? {
        pool.complete(&item.id, None).await?;
        claimed.push(item.id);
    }
    let mut out = std::io::stdout().lock();
    for id in claimed {
        writeln!(out, "CLAIMED {id}")?;
    }
    Ok(())
}
