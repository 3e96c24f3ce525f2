//! The real Windows-authentication acceptor (tests/winauth/acceptor.py: PyPI pyspnego, NTLM and
//! Negotiate/Kerberos against Debian's MIT KDC) in front of a simulator's on-premises site, one
//! process per test so its counters are the test's own. tests/run-with-servers.sh prepares the
//! venv, the user file and the realm and exports where they are; without them the tests skip
//! outside CI and fail in CI.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// What tests/winauth/setup.sh exported.
pub struct Env {
    pub python: String,
    pub script: String,
    pub user: String,
    pub password: String,
    pub kdc: String,
    /// ca.pem, server.pem/.key (for `localhost`) and other-ca.pem.
    pub tls_dir: std::path::PathBuf,
}

pub fn env() -> Option<Env> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (
        get("CH_TEST_WINAUTH_PYTHON"),
        get("CH_TEST_WINAUTH_ACCEPTOR"),
        get("CH_TEST_WINAUTH_USER"),
        get("CH_TEST_WINAUTH_PASSWORD"),
        get("CH_TEST_KDC_URL"),
        get("CH_TEST_TLS_DIR"),
    ) {
        (Some(python), Some(script), Some(user), Some(password), Some(kdc), Some(tls)) => {
            Some(Env {
                python,
                script,
                user,
                password,
                kdc,
                tls_dir: tls.into(),
            })
        }
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "CH_TEST_WINAUTH_* / CH_TEST_KDC_URL / CH_TEST_TLS_DIR are not set: the NTLM and Kerberos \
                     acceptors are required in CI; run tests/run-with-servers.sh"
                );
            }
            eprintln!(
                "\n*** SKIPPED: CH_TEST_WINAUTH_* is not set, so this test did not talk to a real \
                 NTLM/Kerberos acceptor. Run tests/run-with-servers.sh. ***\n"
            );
            None
        }
    }
}

/// A running acceptor; killed when dropped.
pub struct Acceptor {
    child: Child,
    pub port: u16,
    /// Serving HTTPS with the certificate of `localhost` signed by `tls_dir/ca.pem`.
    tls: Option<std::path::PathBuf>,
}

impl Acceptor {
    /// Starts the acceptor in front of `upstream` (`http://127.0.0.1:PORT` of the simulator).
    pub fn start(env: &Env, upstream: &str) -> Acceptor {
        Acceptor::spawn(env, upstream, false)
    }

    /// The acceptor serving HTTPS (certificate for `localhost`, issued by `ca.pem`).
    pub fn start_tls(env: &Env, upstream: &str) -> Acceptor {
        Acceptor::spawn(env, upstream, true)
    }

    fn spawn(env: &Env, upstream: &str, tls: bool) -> Acceptor {
        let mut cmd = Command::new(&env.python);
        cmd.arg(&env.script).arg("--upstream").arg(upstream);
        if tls {
            cmd.arg("--tls-cert")
                .arg(env.tls_dir.join("server.pem"))
                .arg("--tls-key")
                .arg(env.tls_dir.join("server.key"));
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("acceptor starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("acceptor prints its port");
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("acceptor said `{line}`"));
        Acceptor {
            child,
            port,
            tls: tls.then(|| env.tls_dir.clone()),
        }
    }

    /// A controller URL (the harvester adds the Monitor path): `http://127.0.0.1:PORT`, or
    /// `https://localhost:PORT` (the name in the certificate) when serving HTTPS.
    pub fn url(&self) -> String {
        match self.tls {
            None => format!("http://127.0.0.1:{}", self.port),
            Some(_) => format!("https://localhost:{}", self.port),
        }
    }

    pub async fn stats(&self) -> Value {
        let mut b = reqwest::Client::builder().no_proxy();
        if let Some(dir) = &self.tls {
            let pem = std::fs::read(dir.join("ca.pem")).expect("ca.pem");
            b = b.tls_certs_merge(reqwest::Certificate::from_pem_bundle(&pem).expect("CA"));
        }
        b.build()
            .unwrap()
            .get(format!("{}/_stats", self.url()))
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("stats JSON")
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on (bound, then released): a controller that is down.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
