//! TEMPORARY interface stub; replaced by the real simulator from the `sim` branch.
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
pub struct SimOptions {
    pub tenants: usize,
    pub seed: u64,
    pub page_size: usize,
    pub now: DateTime<Utc>,
    pub history: chrono::Duration,
    pub sessions_per_day: usize,
    pub token_lifetime_secs: u64,
}
impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            tenants: 3,
            seed: 42,
            page_size: 100,
            now: Utc::now(),
            history: chrono::Duration::days(2),
            sessions_per_day: 300,
            token_lifetime_secs: 3600,
        }
    }
}
#[derive(Debug, Clone)]
pub struct SimTenant {
    pub name: String,
    pub customer_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub utc_offset_minutes: i32,
}
pub struct Simulator;
impl Simulator {
    pub fn new(_o: SimOptions) -> Simulator {
        Simulator
    }
    pub fn tenants(&self) -> Vec<SimTenant> {
        vec![]
    }
    pub async fn start(self, _ip: std::net::IpAddr) -> std::io::Result<SimHandle> {
        Ok(SimHandle)
    }
    pub async fn serve(
        self,
        _r: tokio::net::TcpListener,
        _f: tokio::net::TcpListener,
        _s: CancellationToken,
    ) -> std::io::Result<()> {
        Ok(())
    }
}
pub struct SimHandle;
impl SimHandle {
    pub fn regional_url(&self) -> String {
        String::new()
    }
    pub fn fallback_url(&self) -> String {
        String::new()
    }
    pub fn monitor_base_url(&self) -> String {
        String::new()
    }
    pub fn tenants(&self) -> Vec<SimTenant> {
        vec![]
    }
    pub fn rows(&self, _c: &str, _e: &str) -> Vec<serde_json::Value> {
        vec![]
    }
    pub fn shutdown(&self) {}
}
