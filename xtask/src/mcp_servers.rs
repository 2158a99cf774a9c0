//! The MCP servers the tests start: a Python with the `mcp` package (our own test server is
//! written with it) and `@modelcontextprotocol/server-everything` from npm. Both are installed
//! once into the project's cache and found there by the tests, through the variables
//! [`prepare`] returns.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::s3_server::{cache_dir, fresh_venv_with, install_lock, step, venv_bin};

/// The `mcp` releases the test server is written against.
const MCP: &str = "mcp>=1.9,<2";
/// The npm server, pinned so that its tool list does not change under the tests.
const EVERYTHING: &str = "@modelcontextprotocol/server-everything@2026.8.31";

/// Installs what is missing and returns `FLATMACHINES_TEST_MCP_PYTHON` and
/// `FLATMACHINES_TEST_MCP_EVERYTHING` for the tests.
pub(crate) fn prepare() -> Result<Vec<(String, String)>, String> {
    // The tests find the servers here too (`crates/mcp/tests/support`).
    let cache = cache_dir("mcp");
    let _lock = install_lock(&cache)?;
    let python = python_with_mcp(&cache)?;
    let everything = everything_server(&cache)?;
    Ok(vec![
        (
            "FLATMACHINES_TEST_MCP_PYTHON".to_owned(),
            python.display().to_string(),
        ),
        (
            "FLATMACHINES_TEST_MCP_EVERYTHING".to_owned(),
            everything.display().to_string(),
        ),
    ])
}

fn quietly(command: &mut Command) -> bool {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn python_with_mcp(cache: &Path) -> Result<PathBuf, String> {
    let venv = cache.join("venv");
    let python = venv_bin(&venv, "python");
    let works = || quietly(Command::new(&python).args(["-c", "import mcp.server.fastmcp"]));
    if works() {
        return Ok(python);
    }
    eprintln!(
        "xtask: mcp: installing {MCP} from PyPI into {} (once)",
        venv.display()
    );
    fresh_venv_with(&venv, &[MCP])?;
    if works() {
        Ok(python)
    } else {
        Err(format!(
            "{} cannot import mcp after installing it",
            python.display()
        ))
    }
}

fn everything_server(cache: &Path) -> Result<PathBuf, String> {
    let prefix = cache.join("npm");
    let bin = prefix
        .join("node_modules")
        .join(".bin")
        .join("mcp-server-everything");
    let version = EVERYTHING.rsplit_once('@').map(|(_, v)| v).unwrap_or("");
    let manifest = prefix
        .join("node_modules")
        .join("@modelcontextprotocol")
        .join("server-everything")
        .join("package.json");
    let installed = fs::read_to_string(&manifest)
        .is_ok_and(|text| text.contains(&format!("\"version\": \"{version}\"")));
    if installed && bin.exists() {
        return Ok(bin);
    }
    eprintln!(
        "xtask: mcp: installing {EVERYTHING} from npm into {} (once)",
        prefix.display()
    );
    step(
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .arg(EVERYTHING),
        "npm install @modelcontextprotocol/server-everything (it needs Node.js and npm)",
    )?;
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!("{} is missing after npm install", bin.display()))
    }
}
