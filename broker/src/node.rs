//! One way to start a broker node, in either world: open the data directory (recovery), install
//! the cost hook, bind the listener and advertise an address, start the background tasks, the
//! controller side (combined mode) and the request server. `broker serve` passes real storage, TCP
//! and a no-op cost hook; the simulator and tests pass simulated ones. Nothing here knows which
//! world it runs in: storage, transport, cost hook and seed come from the caller.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use disk_model::Storage;
use net_model::{CostHook, Listener, Network};
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::broker::{Broker, BrokerError};
use crate::config::BrokerConfig;
use crate::controller::link::RpcLink;
use crate::controller::node::ControllerHandle;

/// Why a node did not start (or did not stop cleanly).
#[derive(Debug, Error)]
pub enum NodeError {
    #[error("could not open the data directory: {0}")]
    Open(#[source] BrokerError),
    #[error("could not listen on {addr}: {source}")]
    Listen { addr: String, source: io::Error },
    #[error("could not start in combined mode: {0}")]
    Combined(String),
    #[error("clean shutdown failed: {0}")]
    Shutdown(#[source] BrokerError),
}

/// What a node is started with: the world-specific parts are passed in.
pub struct NodeOptions {
    pub config: BrokerConfig,
    /// The disk (real files or a simulated disk).
    pub storage: Arc<dyn Storage>,
    /// The data directory inside `storage` (Kafka's `log.dirs` entry; "" for its root).
    pub data_dir: PathBuf,
    /// More data directories inside `storage` (the rest of `log.dirs`: JBOD), in order.
    pub more_data_dirs: Vec<PathBuf>,
    /// The transport: the listener is bound on it, and combined mode talks through it.
    pub net: Arc<dyn Network>,
    /// `host:port` to listen on (port 0: any free port).
    pub listen: String,
    /// What Metadata advertises; `None`: the bound address (a wildcard host becomes 127.0.0.1);
    /// port 0: the bound port. `advertised.listeners` in the config overrides either.
    pub advertised: Option<(String, i32)>,
    /// The CPU seam (`None`: the real CPU, which charges nothing).
    pub cost: Option<Arc<dyn CostHook>>,
    /// Seeds election timeouts and the broker's incarnation (OS entropy for real, the scenario
    /// seed in the simulator).
    pub seed: u64,
    /// Serve Prometheus metrics on this `host:port` too (a real socket: real world only; the
    /// simulated build ignores it with a warning).
    pub metrics_listen: Option<String>,
    /// Combined mode: accept clients only once the controller has this broker registered and
    /// unfenced, as Kafka opens its client listeners (before that, Metadata lists no broker and
    /// librdkafka gives up on it). `broker serve` sets it; the simulator does not.
    pub serve_when_unfenced: bool,
    /// Called once the data directory is open (recovery done, cost hook installed), before the
    /// listener is bound: the simulator records what the broker opened here.
    pub after_open: Option<AfterOpen>,
}

/// A hook [`start`] awaits right after opening the data directory.
pub type AfterOpen = Box<dyn FnOnce(Arc<Broker>) -> BoxFuture + Send>;

/// A future [`start_inline`] hands back (the request server) or a hook returns.
pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

impl NodeOptions {
    /// Options with no cost hook, no metrics listener and the bound address advertised.
    pub fn new(
        config: BrokerConfig,
        storage: Arc<dyn Storage>,
        net: Arc<dyn Network>,
        listen: &str,
        seed: u64,
    ) -> Self {
        Self {
            config,
            storage,
            data_dir: PathBuf::new(),
            more_data_dirs: Vec::new(),
            net,
            listen: listen.to_string(),
            advertised: None,
            cost: None,
            seed,
            metrics_listen: None,
            serve_when_unfenced: false,
            after_open: None,
        }
    }
}

/// Every data directory, the first first.
fn roots(first: PathBuf, more: Vec<PathBuf>) -> Vec<PathBuf> {
    std::iter::once(first).chain(more).collect()
}

/// A running node. Dropping it leaves its tasks running; [`NodeHandle::shutdown`] stops them
/// cleanly, [`NodeHandle::halt`] stops them without flushing (a crash).
pub struct NodeHandle {
    pub broker: Arc<Broker>,
    /// The address the listener is bound to.
    pub bound: String,
    /// The address Metadata advertises.
    pub advertised: (String, i32),
    /// Where metrics are served, when asked for.
    pub metrics_addr: Option<String>,
    /// Combined mode: this node's controller (when a voter) and its broker's controller link.
    pub controller: Option<ControllerHandle>,
    pub link: Option<Arc<RpcLink>>,
    stop: watch::Sender<bool>,
    /// `None` when the caller runs the server itself ([`start_inline`]).
    server: Option<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
}

/// The metrics endpoint's socket (`crate::metrics::http`), bound when asked for, before anything
/// starts (a bad address fails the start cleanly).
#[cfg(not(any(madsim, doctest)))]
type MetricsListener = tokio::net::TcpListener;
#[cfg(any(madsim, doctest))]
type MetricsListener = ();

#[cfg(not(any(madsim, doctest)))]
async fn bind_metrics(
    listen: Option<String>,
) -> Result<Option<(MetricsListener, String)>, NodeError> {
    let Some(addr) = listen else { return Ok(None) };
    let listen_err = |source| NodeError::Listen { addr: addr.clone(), source };
    let l = tokio::net::TcpListener::bind(&addr).await.map_err(listen_err)?;
    let bound = l.local_addr().map_err(listen_err)?.to_string();
    Ok(Some((l, bound)))
}

/// The simulated build has no metrics endpoint (the simulator reads `Broker::metrics` directly;
/// rustdoc's doctest pass, which lacks `--cfg madsim`, compiles this too).
#[cfg(any(madsim, doctest))]
async fn bind_metrics(
    listen: Option<String>,
) -> Result<Option<(MetricsListener, String)>, NodeError> {
    if let Some(addr) = listen {
        tracing::warn!(%addr, "metrics_listen ignored: no metrics endpoint in the simulated build");
    }
    Ok(None)
}

#[cfg(not(any(madsim, doctest)))]
fn serve_metrics(
    listener: MetricsListener,
    broker: &Arc<Broker>,
    image: crate::metrics::http::Image,
    rx: &watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(crate::metrics::http::run(broker.clone(), image, listener, rx.clone()))
}

#[cfg(any(madsim, doctest))]
fn serve_metrics(
    _listener: MetricsListener,
    _broker: &Arc<Broker>,
    _image: Option<watch::Receiver<Arc<cluster::metadata::MetadataImage>>>,
    _rx: &watch::Receiver<bool>,
) -> JoinHandle<()> {
    unreachable!("bind_metrics binds nothing in the simulated build")
}

/// Starts a node (see the module doc for the order of steps); the request server runs in a task
/// of its own.
pub async fn start(opts: NodeOptions) -> Result<NodeHandle, NodeError> {
    let (mut node, server) = start_inline(opts).await?;
    node.server = Some(tokio::spawn(server));
    Ok(node)
}

/// Starts a node like [`start`], except that the request server is handed back instead of
/// spawned: the caller runs it (awaits it, keeping the handle alive meanwhile), as the simulator
/// does so a broker process runs exactly the tasks it always ran. Nothing is served until then.
pub async fn start_inline(opts: NodeOptions) -> Result<(NodeHandle, BoxFuture), NodeError> {
    let NodeOptions {
        config,
        storage,
        data_dir,
        more_data_dirs,
        net,
        listen,
        advertised,
        cost,
        seed,
        metrics_listen,
        serve_when_unfenced,
        after_open,
    } = opts;
    for sw in config.safeguards.off() {
        tracing::warn!(node = config.node_id, key = sw.key, "safeguard off: {}", sw.reproduces);
    }
    let broker = Arc::new(
        Broker::open_dirs(config.clone(), storage.clone(), &roots(data_dir, more_data_dirs))
            .await
            .map_err(NodeError::Open)?,
    );
    broker.faults.reseed(seed);
    if let Some(hook) = cost {
        broker.set_cost_hook(hook);
    }
    if let Some(hook) = after_open {
        hook(broker.clone()).await;
    }
    let (listener, bound) = bind(net.as_ref(), &listen).await?;
    let (host, port) = match advertised {
        Some((host, 0)) => (host, address_of(&bound).1),
        Some(a) => a,
        None => address_of(&bound),
    };
    broker.set_advertised(&host, port);
    let advertised = broker.advertised();
    warn_if_dead(&advertised, &bound);
    let metrics = bind_metrics(metrics_listen).await?;
    let (stop, rx) = watch::channel(false);
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(crate::tasks::run(broker.clone(), rx.clone())));
    let started = crate::controller::combined::start(
        &config,
        net,
        storage,
        &broker,
        (&advertised.0, advertised.1),
        seed,
        &rx,
    )
    .await
    .map_err(NodeError::Combined)?;
    tasks.extend(started.tasks);
    let mut metrics_addr = None;
    if let Some((ml, bound)) = metrics {
        let image = started.controller.as_ref().map(|c| c.image.clone());
        tasks.push(serve_metrics(ml, &broker, image, &rx));
        metrics_addr = Some(bound);
    }
    let gate = started.link.clone().filter(|_| serve_when_unfenced);
    let server = server(broker.clone(), listener, rx, gate);
    let node = NodeHandle {
        broker,
        bound,
        advertised,
        metrics_addr,
        controller: started.controller,
        link: started.link,
        stop,
        server: None,
        tasks,
    };
    Ok((node, server))
}

/// Binds `addr` on `net`; returns the listener and its bound address.
async fn bind(net: &dyn Network, addr: &str) -> Result<(Box<dyn Listener>, String), NodeError> {
    let listen_err = |source| NodeError::Listen { addr: addr.to_string(), source };
    let listener = net.bind(addr).await.map_err(listen_err)?;
    let bound = listener.local_addr().map_err(listen_err)?;
    Ok((listener, bound))
}

/// The request server on `listener`; with a `gate` (combined mode, `serve_when_unfenced`) it
/// starts serving once the controller has this broker unfenced.
fn server(
    broker: Arc<Broker>,
    listener: Box<dyn Listener>,
    rx: watch::Receiver<bool>,
    gate: Option<Arc<RpcLink>>,
) -> BoxFuture {
    match gate {
        None => Box::pin(crate::server::run(broker, listener, rx)),
        Some(link) => Box::pin(async move {
            if unfenced(link.as_ref(), broker.config.node_id, rx.clone()).await {
                crate::server::run(broker, listener, rx).await
            }
        }),
    }
}

/// Waits until the controller's metadata has broker `id` registered and unfenced; `false` when
/// told to stop first.
async fn unfenced(link: &RpcLink, id: i32, mut stop: watch::Receiver<bool>) -> bool {
    use crate::controller::link::ControllerLink;
    let mut image = link.metadata();
    let mut waited = false;
    loop {
        if image.borrow().brokers.get(&id).is_some_and(|b| !b.fenced) {
            if waited {
                tracing::info!(broker = id, "registered and unfenced: serving clients");
            }
            return true;
        }
        if !waited {
            tracing::info!(broker = id, "clients wait until the controller unfences this broker");
            waited = true;
        }
        tokio::select! {
            biased;
            _ = stop.changed() => return false,
            changed = image.changed() => {
                if changed.is_err() {
                    return false;
                }
            }
        }
    }
}

/// `host:port` → (host, port); a wildcard host becomes 127.0.0.1, IPv6 brackets are dropped.
fn address_of(bound: &str) -> (String, i32) {
    let (host, port) = bound
        .rsplit_once(':')
        .map(|(h, p)| (h.to_string(), p.parse().unwrap_or(9092)))
        .unwrap_or((bound.to_string(), 9092));
    let host = if host == "0.0.0.0" || host == "[::]" { "127.0.0.1".to_string() } else { host };
    (host.trim_matches(|c| c == '[' || c == ']').to_string(), port)
}

/// A loopback address advertised on another port than the bound one sends every client on this
/// machine to a port nobody listens on (a stale `advertised.listeners`): say so at start.
fn warn_if_dead(advertised: &(String, i32), bound: &str) {
    let (host, port) = advertised;
    let local = host == "localhost" || host.starts_with("127.") || host == "::1";
    let bound_port = address_of(bound).1;
    if local && *port != bound_port {
        tracing::warn!(
            advertised = %format!("{host}:{port}"),
            bound,
            "advertised.listeners sends clients to a local port the broker does not listen on"
        );
    }
}

/// How long a clean shutdown waits for the server, then for each background task.
const SERVER_STOP_WAIT: Duration = Duration::from_secs(10);
const TASK_STOP_WAIT: Duration = Duration::from_secs(2);

impl NodeHandle {
    /// Clean shutdown: controlled shutdown with the controller (combined mode, while this node's
    /// controller still votes), then every task ends, then logs are flushed and the
    /// clean-shutdown marker written.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        if let Some(link) = &self.link {
            if let Err(e) = link.controlled_shutdown().await {
                tracing::warn!(error = %e, "controlled shutdown: could not reach the controller; fenced after the session timeout instead");
            }
        }
        let _ = self.stop.send(true);
        if let Some(server) = self.server {
            let _ = tokio::time::timeout(SERVER_STOP_WAIT, server).await;
        }
        for t in self.tasks {
            let _ = tokio::time::timeout(TASK_STOP_WAIT, t).await;
        }
        let controller = self.controller;
        let result = self.broker.shutdown().await.map_err(NodeError::Shutdown);
        drop(controller);
        result
    }

    /// Tells every task to stop, flushing nothing (what a crash leaves behind).
    pub fn halt(&self) {
        let _ = self.stop.send(true);
    }

    /// Ends the server and the background tasks, leaving the logs open (for tests that inspect
    /// the broker afterwards); returns the broker.
    pub async fn stop_tasks(self) -> Arc<Broker> {
        let _ = self.stop.send(true);
        if let Some(server) = self.server {
            let _ = server.await;
        }
        for t in self.tasks {
            let _ = t.await;
        }
        self.broker
    }
}
