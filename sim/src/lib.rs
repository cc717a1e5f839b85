//! Simulators of the Sophos Central Partner API and the ConnectWise PSA REST API,
//! faithful to the vendors' documented behaviour, for tests, demos and benchmarks.
//!
//! One [`Sim`] serves both APIs on two loopback ports, plus a control API under
//! `/_sim/` on each port (see [`control`]). Start it in-process from tests with
//! [`Sim::start`], or run the `sophos-cw-sim` binary.

pub mod connectwise;
pub mod control;
pub mod faults;
pub mod generate;
pub mod lambda_queue;
pub mod scenario;
pub mod sophos;
pub mod state;

pub use scenario::{Scenario, Throttle};
pub use state::{Api, ApiCounts, Counters, Fault, FaultKind, Latency, LoggedRequest};

use axum::Router;
use state::{Shared, SimState, lock};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A running pair of simulators. Dropping it stops both servers.
pub struct Sim {
    shared: Shared,
    sophos_addr: SocketAddr,
    cw_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Sim {
    /// Starts both simulators on free loopback ports.
    pub async fn start(scenario: Scenario) -> std::io::Result<Sim> {
        Self::start_on("127.0.0.1:0", "127.0.0.1:0", scenario).await
    }

    /// Starts the Sophos simulator on `sophos_bind` and ConnectWise on `cw_bind`.
    pub async fn start_on(
        sophos_bind: &str,
        cw_bind: &str,
        scenario: Scenario,
    ) -> std::io::Result<Sim> {
        let shared: Shared = Arc::new(Mutex::new(SimState::new(scenario)));
        let sophos_listener = TcpListener::bind(sophos_bind).await?;
        let cw_listener = TcpListener::bind(cw_bind).await?;
        let sophos_addr = sophos_listener.local_addr()?;
        let cw_addr = cw_listener.local_addr()?;
        let sophos_app = app(Api::Sophos, sophos::router(), &shared);
        let cw_app = app(Api::Connectwise, connectwise::router(), &shared);
        let tasks = vec![
            serve(sophos_listener, sophos_app),
            serve(cw_listener, cw_app),
        ];
        Ok(Sim {
            shared,
            sophos_addr,
            cw_addr,
            tasks,
        })
    }

    /// Base URL of the Sophos side: both the identity service (token) and the API.
    pub fn sophos_url(&self) -> String {
        format!("http://{}", self.sophos_addr)
    }

    /// Base URL of the ConnectWise side (use it as the `site`, scheme included).
    pub fn cw_url(&self) -> String {
        format!("http://{}", self.cw_addr)
    }

    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Runs `f` on the state under the lock (for setting up or inspecting tests).
    pub fn with_state<T>(&self, f: impl FnOnce(&mut SimState) -> T) -> T {
        f(&mut lock(&self.shared))
    }

    pub fn load(&self, scenario: Scenario) {
        self.with_state(|s| s.load(scenario));
    }

    pub fn dump(&self) -> serde_json::Value {
        self.with_state(|s| s.dump())
    }

    /// A ConnectWise collection as it is now (e.g. `additions`, `catalog`).
    pub fn collection(&self, name: &str) -> Vec<serde_json::Value> {
        self.with_state(|s| s.collection(name).to_vec())
    }

    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.with_state(|s| s.log.clone())
    }

    pub fn clear_requests(&self) {
        self.with_state(|s| {
            s.log.clear();
            s.counters = Counters::default();
        });
    }

    pub fn counters(&self) -> Counters {
        self.with_state(|s| s.counters)
    }

    pub fn add_fault(&self, fault: Fault) {
        self.with_state(|s| s.faults.push(fault));
    }

    pub fn clear_faults(&self) {
        self.with_state(|s| s.faults.clear());
    }

    /// Throttles ConnectWise from now on (None: stops); see [`Throttle`].
    pub fn set_throttle(&self, throttle: Option<Throttle>) {
        self.with_state(|s| s.throttle = throttle);
    }

    pub fn set_latency(&self, api: Api, latency: Latency) {
        self.with_state(|s| s.latency.insert(api, latency));
    }

    /// Moves the simulators' clock forward (expires tokens without sleeping).
    pub fn advance_clock(&self, seconds: i64) {
        self.with_state(|s| s.clock_offset += chrono::Duration::seconds(seconds));
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The vendor routes of one API, wrapped in the fault/latency/logging layer, plus
/// the control API.
fn app(api: Api, vendor: Router<Shared>, shared: &Shared) -> Router {
    let layer = axum::middleware::from_fn_with_state((shared.clone(), api), faults::layer);
    vendor
        .layer(layer)
        .merge(control::router())
        .with_state(shared.clone())
}

fn serve(listener: TcpListener, app: Router) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("simulator server stopped: {e}");
        }
    })
}
