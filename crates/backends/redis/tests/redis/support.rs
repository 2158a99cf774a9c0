//! A test's own namespace and ACL user on the shared server, removed when the test ends.

use std::time::Duration;

use flatmachines_redis::{DEFAULT_URL, RedisClient, RedisConfig};
use redis::Commands;

/// The server the tests use.
pub(crate) fn url() -> String {
    std::env::var("FLATMACHINES_TEST_REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_owned())
}

/// One test's corner of the server.
pub(crate) struct TestEnv {
    admin: redis::Client,
    /// The ACL user every client of the test connects as.
    pub(crate) user: String,
    password: String,
    /// The test's namespace.
    pub(crate) namespace: String,
}

/// `let Some(env) = TestEnv::new() else { return };` — `None` (skip) without a server,
/// except under `CI=true`.
impl TestEnv {
    pub(crate) fn new() -> Option<TestEnv> {
        let admin = redis::Client::open(url()).expect("the test URL parses");
        let reachable = admin
            .get_connection_with_timeout(Duration::from_secs(2))
            .and_then(|mut conn| redis::cmd("PING").query::<String>(&mut conn));
        if let Err(e) = reachable {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(!ci, "Redis at {} is not reachable under CI: {e}", url());
            eprintln!("skipped: Redis at {} is not reachable: {e}", url());
            return None;
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let env = TestEnv {
            admin,
            user: format!("fm-test-{}", &id[..12]),
            password: id.clone(),
            namespace: format!("flatmachines:test-{}", &id[..12]),
        };
        env.set_user(true);
        Some(env)
    }

    fn admin(&self) -> redis::Connection {
        self.admin
            .get_connection_with_timeout(Duration::from_secs(5))
            .expect("an admin connection")
    }

    /// Enables (or disables) the test's user; disabling refuses new connections.
    pub(crate) fn set_user(&self, on: bool) {
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&self.user)
            .arg(if on { "on" } else { "off" })
            .arg(format!(">{}", self.password))
            .arg("~*")
            .arg("&*")
            .arg("+@all")
            .query(&mut self.admin())
            .expect("ACL SETUSER");
    }

    /// The URL of the test's user, in the test's namespace.
    pub(crate) fn user_url(&self) -> String {
        let base = url();
        let (scheme, rest) = base.split_once("://").expect("a URL");
        let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        format!(
            "{scheme}://{}:{}@{rest}{}namespace={}",
            self.user,
            self.password,
            if rest.contains('?') { '&' } else { '?' },
            self.namespace
        )
    }

    /// The configuration of a client of the test's user.
    pub(crate) fn config(&self) -> RedisConfig {
        RedisConfig::from_url(&self.user_url())
            .expect("the user URL parses")
            .with_connect_timeout(Duration::from_secs(2))
            .with_response_timeout(Duration::from_secs(5))
    }

    /// A new client (a connection of its own) of the test's user.
    pub(crate) fn client(&self) -> RedisClient {
        RedisClient::new(self.config()).expect("a client")
    }

    /// Kills every connection of the test's user, as a network failure would; says how many.
    pub(crate) fn kill_connections(&self) -> u64 {
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("USER")
            .arg(&self.user)
            .query(&mut self.admin())
            .expect("CLIENT KILL")
    }

    /// Runs a raw command as the administrator.
    pub(crate) fn raw<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> T {
        command.query(&mut self.admin()).expect("a raw command")
    }

    /// The namespace's keys, for checks.
    pub(crate) fn keys(&self) -> Vec<String> {
        let pattern = format!("{{{}}}*", self.namespace);
        let mut conn = self.admin();
        conn.scan_match::<_, String>(&pattern)
            .expect("SCAN")
            .filter_map(Result::ok)
            .collect()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let Ok(mut conn) = self
            .admin
            .get_connection_with_timeout(Duration::from_secs(5))
        else {
            return;
        };
        let _: redis::RedisResult<()> = redis::cmd("ACL")
            .arg("DELUSER")
            .arg(&self.user)
            .query(&mut conn);
        let pattern = format!("{{{}[}}:]*", self.namespace);
        let keys: Vec<String> = match conn.scan_match::<_, String>(&pattern) {
            Ok(keys) => keys.filter_map(Result::ok).collect(),
            Err(_) => return,
        };
        for chunk in keys.chunks(500) {
            let _: redis::RedisResult<()> = redis::cmd("UNLINK").arg(chunk).query(&mut conn);
        }
    }
}
