//! Kafka's own KRaft `server.properties` (3.7's `config/kraft/server.properties`, 4.x's
//! `config/server.properties`, copies in `tests/data/`) configure `broker serve` as they are:
//! listeners, advertised address, controller quorum, log.dirs; flags override the file; what
//! cannot be honoured is refused naming its key. Real world only (files, TCP, the binary).
#![cfg(not(madsim))]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use broker::config::{ConfigError, ServeFlags};
use broker::node::{self, NodeOptions};
use broker::BrokerConfig;
use disk_model::{OsStorage, Storage};
use net_model::tcp::TcpNetwork;
use net_model::Network;

mod support;
use support::process::{free_ports, BIN};

const STOCK: [&str; 2] = ["kafka-3.7-kraft-server.properties", "kafka-4.x-server.properties"];

fn stock(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn serve(text: &str, flags: &ServeFlags) -> Result<broker::config::Serve, ConfigError> {
    BrokerConfig::for_serve(Some(text), flags, || None)
}

/// The key a refusal names.
fn refused_key(text: &str) -> String {
    match serve(text, &ServeFlags::default()) {
        Err(ConfigError::Rejected { key, .. }) | Err(ConfigError::BadValue { key, .. }) => key,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn stock_files_configure_the_broker_as_written() {
    for name in STOCK {
        let s =
            serve(&stock(name), &ServeFlags::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let c = &s.config;
        assert_eq!(s.listen, "0.0.0.0:9092", "{name}");
        assert_eq!(s.data_dir, PathBuf::from("/tmp/kraft-combined-logs"), "{name}");
        assert_eq!(c.advertised, Some(("localhost".into(), 9092)), "{name}");
        assert_eq!(c.quorum.controller_listen.as_deref(), Some("0.0.0.0:9093"), "{name}");
        assert_eq!(c.quorum.voters.as_deref(), Some("1@localhost:9093"), "{name}");
        assert!(c.quorum.is_broker() && c.quorum.is_controller(), "{name}");
        assert_eq!((c.node_id, c.num_partitions, c.offsets_topic_replication_factor), (1, 1, 1));
        assert_eq!(c.log.retention_ms, 168 * 3_600_000, "{name}");
        assert_eq!(c.log.segment_bytes, 1 << 30, "{name}");
        assert_eq!(c.retention_check_interval_ms, 300_000, "{name}");
        let ignored: Vec<&str> =
            c.ignored.iter().map(|(kv, _)| kv.split('=').next().unwrap_or("")).collect();
        for k in ["num.network.threads", "num.io.threads", "socket.send.buffer.bytes"] {
            assert!(ignored.contains(&k), "{name}: {k} not logged as ignored: {ignored:?}");
        }
    }
}

#[test]
fn flags_override_the_file_and_the_advertised_port_follows() {
    let text = stock(STOCK[1]);
    let flags = ServeFlags {
        listen: Some("127.0.0.1:19092".into()),
        data_dir: Some("/srv/elsewhere".into()),
        overrides: vec!["num.partitions=4".into()],
        ..ServeFlags::default()
    };
    let s = serve(&text, &flags).unwrap();
    assert_eq!(
        (s.listen.as_str(), s.data_dir.as_path()),
        ("127.0.0.1:19092", Path::new("/srv/elsewhere"))
    );
    assert_eq!(s.config.num_partitions, 4);
    // The file advertised its own port 9092: kept, clients would find nobody there.
    assert_eq!(s.config.advertised, Some(("localhost".into(), 19092)));
    // To any free port: the bound one, known once bound (port 0 in the node's options).
    let any = ServeFlags { listen: Some("127.0.0.1:0".into()), ..ServeFlags::default() };
    let s = serve(&text, &any).unwrap();
    assert_eq!((s.config.advertised, s.advertised), (None, Some(("localhost".into(), 0))));
    // An explicit advertised address elsewhere (a NAT) is left alone.
    let nat = format!("{text}\nadvertised.listeners=PLAINTEXT://public.example:443\n");
    let s = serve(&nat, &flags).unwrap();
    assert_eq!(s.config.advertised, Some(("public.example".into(), 443)));
}

#[test]
fn wildcard_listener_without_advertised_gets_the_host_name() {
    let text = "listeners=PLAINTEXT://:19092\nlog.dirs=/tmp/x\n";
    let s = BrokerConfig::for_serve(Some(text), &ServeFlags::default(), || Some("myhost".into()))
        .unwrap();
    assert_eq!((s.listen.as_str(), s.advertised), ("0.0.0.0:19092", Some(("myhost".into(), 0))));
    let s =
        BrokerConfig::for_serve(None, &ServeFlags::default(), || Some("myhost".into())).unwrap();
    assert_eq!((s.listen.as_str(), s.advertised), ("127.0.0.1:9092", None));
    assert_eq!(s.data_dir, PathBuf::from("./data"));
    // Kafka's controller-only file: no client listener, so not the brokers' 9092 either.
    let controller = "process.roles=controller\nnode.id=1\ncontroller.quorum.voters=1@localhost:9093\nlisteners=CONTROLLER://:9093\ncontroller.listener.names=CONTROLLER\n";
    let s = serve(controller, &ServeFlags::default()).unwrap();
    assert_eq!(
        (s.listen.as_str(), s.config.quorum.controller_listen.as_deref()),
        ("127.0.0.1:0", Some("0.0.0.0:9093"))
    );
}

#[test]
fn several_log_dirs_are_kept_in_order_and_data_dir_overrides_them() {
    let s = serve("log.dirs=/a, /b,/c\n", &ServeFlags::default()).unwrap();
    assert_eq!(s.data_dir, PathBuf::from("/a"));
    assert_eq!(s.more_data_dirs, [PathBuf::from("/b"), PathBuf::from("/c")]);
    let flags = ServeFlags { data_dir: Some("/only".into()), ..ServeFlags::default() };
    let s = serve("log.dirs=/a,/b\n", &flags).unwrap();
    assert_eq!((s.data_dir, s.more_data_dirs), (PathBuf::from("/only"), vec![]));
    assert!(s.notes.iter().any(|n| n.contains("overrides log.dirs (/a,/b)")), "{:?}", s.notes);
}

#[test]
fn retention_units_follow_kafkas_precedence_not_the_order() {
    let s = serve(
        "log.retention.ms=1000\nlog.retention.hours=1\nlog.roll.ms=7\nlog.roll.hours=2\n",
        &ServeFlags::default(),
    )
    .unwrap();
    assert_eq!((s.config.log.retention_ms, s.config.log.segment_ms), (1000, 7));
    let s =
        serve("log.retention.hours=1\nlog.retention.minutes=2\n", &ServeFlags::default()).unwrap();
    assert_eq!(s.config.log.retention_ms, 120_000);
}

#[test]
fn what_cannot_be_honoured_is_refused_naming_the_key() {
    let base = stock(STOCK[1]);
    // The stock file with one line changed (or added), as a user would.
    let with = |k: &str, v: &str| {
        let line = base.lines().find(|l| l.starts_with(&format!("{k}="))).map(str::to_string);
        match line {
            Some(l) => base.replace(&l, &format!("{k}={v}")),
            None => format!("{base}\n{k}={v}\n"),
        }
    };
    let map = "listener.security.protocol.map";
    let bootstrap = "controller.quorum.bootstrap.servers";
    let cases = [
        (with(map, "CONTROLLER:PLAINTEXT,PLAINTEXT:SSL"), map),
        (with(map, "CONTROLLER:SASL_SSL,PLAINTEXT:PLAINTEXT"), map),
        ("listeners=SSL://:9094\n".to_string(), "listeners"),
        ("listeners=EXTERNAL://:9094\n".to_string(), map),
        (
            "listeners=PLAINTEXT://:1,OTHER://:2\n".to_string() + map + "=OTHER:PLAINTEXT",
            "listeners",
        ),
        (
            with("security.inter.broker.protocol", "SASL_PLAINTEXT"),
            "security.inter.broker.protocol",
        ),
        (with("inter.broker.listener.name", "INTERNAL"), "inter.broker.listener.name"),
        (with("advertised.listeners", "PLAINTEXT://0.0.0.0:9092"), "advertised.listeners"),
        (with("log.dirs", "/a,/b,/a"), "log.dirs"),
        (with(bootstrap, "h1:9093,h2:9093"), bootstrap),
        (with(bootstrap, "localhost:9999"), bootstrap),
        (with("process.roles", "broker"), bootstrap),
        ("process.roles=broker,controller\nnode.id=1\n".to_string(), "process.roles"),
    ];
    for (text, key) in cases {
        assert_eq!(refused_key(&text), key, "{text}");
    }
    // The refusal says why, in words a user can act on.
    let e = serve(&cases_text_ssl(&base), &ServeFlags::default()).unwrap_err().to_string();
    assert!(e.contains("PLAINTEXT uses SSL") && e.contains("PLAINTEXT only"), "{e}");
}

fn cases_text_ssl(base: &str) -> String {
    base.replace("PLAINTEXT:PLAINTEXT,SSL:SSL", "PLAINTEXT:SSL,SSL:SSL")
}

/// The stock file as a user edits it for this machine: its ports and its log.dirs.
fn edited(name: &str, broker_port: u16, controller_port: u16, log_dir: &Path) -> String {
    stock(name)
        .replace("9092", &broker_port.to_string())
        .replace("9093", &controller_port.to_string())
        .replace("/tmp/kraft-combined-logs", &log_dir.display().to_string())
}

#[test]
fn stock_files_start_a_node_on_their_ports_and_log_dirs() {
    for name in STOCK {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("kraft-combined-logs");
        let ports = free_ports(2);
        let (bp, cp) = (ports[0], ports[1]);
        let s = serve(&edited(name, bp, cp, &logs), &ServeFlags::default()).unwrap();
        assert_eq!(s.data_dir, logs);
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        rt.block_on(async {
            std::fs::create_dir_all(&s.data_dir).unwrap();
            let storage: Arc<dyn Storage> = Arc::new(OsStorage::new(&s.data_dir).unwrap());
            let net: Arc<dyn Network> = Arc::new(TcpNetwork::new(true));
            let mut opts = NodeOptions::new(s.config.clone(), storage, net, &s.listen, 7);
            opts.advertised = s.advertised.clone();
            let node = node::start(opts).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(node.bound, format!("0.0.0.0:{bp}"), "{name}");
            assert_eq!(node.advertised, ("localhost".to_string(), i32::from(bp)), "{name}");
            let controller = node.controller.as_ref().expect("a controller");
            assert_eq!(controller.local_addr, format!("0.0.0.0:{cp}"), "{name}");
            std::net::TcpStream::connect(("127.0.0.1", bp)).expect("the file's port answers");
            node.shutdown().await.unwrap();
        });
        assert!(logs.join("loglab-topics.json").exists(), "{name}: nothing in log.dirs");
    }
}

#[test]
fn ssl_listener_refused_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let props = dir.path().join("server.properties");
    let text = stock(STOCK[0]).replace(
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:SSL,",
    );
    std::fs::write(&props, text).unwrap();
    let out = Command::new(BIN).args(["serve", "--config"]).arg(&props).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listener.security.protocol.map") && err.contains("SSL"), "{err}");
    assert!(!dir.path().join("data").exists());
}

#[test]
fn version_flag() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.trim(), format!("broker {}", env!("CARGO_PKG_VERSION")));
}
