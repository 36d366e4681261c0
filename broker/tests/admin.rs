//! The admin control API over HTTP (issue 19), against a broker on loopback: fault rules pushed,
//! listed with their counts and cleared; the token; bad rules named by field; throttle times in
//! responses; connection resets and half-open holds. Real mode only.
#![cfg(not(madsim))]
#![allow(clippy::field_reassign_with_default)]

use std::time::{Duration, Instant};

use broker::BrokerConfig;
use kafka_protocol::messages::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod support;
use support::client::{Client, TIMEOUT};
use support::kafka::{produce_req, produced as code, values_batch};
use support::server::{start, Server};

/// The broker and its admin API on loopback; returns the API's address.
async fn admin(srv: &Server) -> (String, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    (addr, tokio::spawn(broker::admin::run(srv.broker.clone(), l)))
}

/// One HTTP/1.1 request (connection: close); the status and the body as JSON.
async fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut headers = vec!["Content-Type: application/json".to_string()];
    headers.extend(token.map(|t| format!("Authorization: Bearer {t}")));
    let (status, body) = support::http::request(addr, method, path, &headers, body).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// A Kafka connection whose first request (a Metadata) tells the broker its client id.
async fn kafka(addr: &str, client_id: &'static str) -> Client {
    let mut k = Client::connect_as(addr, client_id).await;
    let _: MetadataResponse = k.call(ApiKey::Metadata, 12, &MetadataRequest::default()).await;
    k
}

/// One record to partition 0 of `topic` (acks=all); `None` if the broker closed the connection.
async fn produce(k: &mut Client, topic: &str) -> Option<ProduceResponse> {
    let records = values_batch(1_000, &[b"v".as_slice()]);
    k.try_call(ApiKey::Produce, 9, &produce_req(topic, 0, records, -1)).await
}

#[tokio::test]
async fn rules_are_pushed_listed_counted_and_cleared_over_http() {
    let srv = start(BrokerConfig::default()).await;
    let (api, task) = admin(&srv).await;
    let mut k = kafka(&srv.addr, "admin-test").await;

    let rule = r#"{"api": "Produce", "error": "NOT_LEADER_OR_FOLLOWER", "times": 3}"#;
    let (st, body) = http(&api, "POST", "/faults", None, rule).await;
    assert_eq!((st, body), (200, json!({"ids": [1]})));
    for _ in 0..3 {
        assert_eq!(code(&produce(&mut k, "a").await.unwrap()).0, 6, "NOT_LEADER_OR_FOLLOWER");
    }
    assert_eq!(code(&produce(&mut k, "a").await.unwrap()), (0, 0), "the fourth is written, first");
    let (st, rules) = http(&api, "GET", "/faults", None, "").await;
    assert_eq!(st, 200);
    assert_eq!((rules[0]["id"].clone(), rules[0]["fired"].clone()), (json!(1), json!(3)));
    assert_eq!(rules[0]["matched"], json!(4));
    assert_eq!(rules[0]["error"], json!("NOT_LEADER_OR_FOLLOWER"));

    // A list is installed whole or not at all; the refusal names the rule and the field.
    let two = r#"[{"api": "Fetch", "delay_ms": 5}, {"api": "Produce", "error": "NOT_A_CODE"}]"#;
    let (st, body) = http(&api, "POST", "/faults", None, two).await;
    assert_eq!(st, 400);
    assert!(body["error"].as_str().unwrap().starts_with("rule 1: `error`"), "{body}");
    let (st, body) = http(&api, "POST", "/faults", None, r#"{"api": "Produce", "delay": 5}"#).await;
    assert_eq!(st, 400);
    assert!(body["error"].as_str().unwrap().contains("unknown field `delay`"), "{body}");
    let (_, rules) = http(&api, "GET", "/faults", None, "").await;
    assert_eq!(rules.as_array().unwrap().len(), 1, "nothing of the refused pushes installed");

    let (st, body) = http(
        &api,
        "POST",
        "/faults",
        None,
        r#"[{"api": "Fetch", "delay_ms": 5}, {"api": "Metadata", "delay_ms": 5}]"#,
    )
    .await;
    assert_eq!((st, body), (200, json!({"ids": [2, 3]})));
    assert_eq!(http(&api, "DELETE", "/faults/2", None, "").await, (200, json!({"removed": 1})));
    assert_eq!(http(&api, "DELETE", "/faults/2", None, "").await.0, 404);
    assert_eq!(http(&api, "DELETE", "/faults", None, "").await, (200, json!({"removed": 2})));
    assert!(!srv.broker.faults.is_active(), "cleared: the free path again");
    assert_eq!(http(&api, "GET", "/nowhere", None, "").await.0, 404);
    assert_eq!(http(&api, "PUT", "/faults", None, "").await.0, 405);
    // A body announced above the bound is refused before it is read.
    let mut s = TcpStream::connect(&api).await.unwrap();
    let head = format!("POST /faults HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", 2 << 20);
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = vec![0u8; 12];
    tokio::time::timeout(TIMEOUT, s.read_exact(&mut out)).await.unwrap().unwrap();
    assert_eq!(&out, b"HTTP/1.1 413");
    task.abort();
    srv.stop().await;
}

#[tokio::test]
async fn a_token_is_required_when_set() {
    let mut cfg = BrokerConfig::default();
    cfg.apply_override("loglab.admin.token=s3cret").unwrap();
    let srv = start(cfg).await;
    let (api, task) = admin(&srv).await;
    let rule = r#"{"api": "Produce", "delay_ms": 1}"#;
    let (st, body) = http(&api, "POST", "/faults", None, rule).await;
    assert_eq!(st, 401);
    assert!(body["error"].as_str().unwrap().contains("token"), "{body}");
    assert_eq!(http(&api, "GET", "/faults", Some("wrong"), "").await.0, 401);
    assert_eq!(http(&api, "POST", "/connections/reset", Some("s3cre"), "").await.0, 401);
    assert!(!srv.broker.faults.is_active(), "nothing installed without the token");
    assert_eq!(
        http(&api, "POST", "/faults", Some("s3cret"), rule).await,
        (200, json!({"ids": [1]}))
    );
    task.abort();
    srv.stop().await;
}

#[tokio::test]
async fn throttle_rules_set_throttle_time_where_the_response_has_it() {
    let srv = start(BrokerConfig::default()).await;
    let (api, task) = admin(&srv).await;
    let mut k = kafka(&srv.addr, "admin-test").await;
    let before = produce(&mut k, "t").await.unwrap();
    assert_eq!(before.throttle_time_ms, 0);
    let (st, body) = http(
        &api,
        "POST",
        "/faults",
        None,
        r#"{"api": "Produce", "throttle_ms": 1500, "once": true}"#,
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let r = produce(&mut k, "t").await.unwrap();
    assert_eq!((r.throttle_time_ms, code(&r)), (1500, (0, 1)), "handled, and throttled");
    assert_eq!(produce(&mut k, "t").await.unwrap().throttle_time_ms, 0, "once");

    let (st, body) =
        http(&api, "POST", "/faults", None, r#"{"api": "Metadata", "throttle_ms": 20}"#).await;
    assert_eq!(st, 200, "{body}");
    let m: MetadataResponse = k.call(ApiKey::Metadata, 12, &MetadataRequest::default()).await;
    assert_eq!(m.throttle_time_ms, 20);
    let (_, rules) = http(&api, "GET", "/faults", None, "").await;
    assert_eq!(rules[1]["versions"], json!([3, 12]), "narrowed to the versions with the field");
    let (st, body) = http(
        &api,
        "POST",
        "/faults",
        None,
        r#"{"api": "Metadata", "throttle_ms": 20, "versions": [0, 12]}"#,
    )
    .await;
    assert_eq!(st, 400);
    assert!(body["error"].as_str().unwrap().starts_with("`versions`"), "{body}");
    task.abort();
    srv.stop().await;
}

#[tokio::test]
async fn connections_are_reset_by_client_id_and_held_half_open() {
    let srv = start(BrokerConfig::default()).await;
    let (api, task) = admin(&srv).await;
    let mut a = kafka(&srv.addr, "app-a").await;
    let mut b = kafka(&srv.addr, "app-b").await;
    let (_, conns) = http(&api, "GET", "/connections", None, "").await;
    let ids: Vec<_> = conns.as_array().unwrap().iter().map(|c| c["client_id"].clone()).collect();
    assert_eq!(ids, [json!("app-a"), json!("app-b")]);

    assert_eq!(
        http(&api, "POST", "/connections/reset", None, r#"{"client_id": "app-a"}"#).await,
        (200, json!({"reset": 1}))
    );
    assert!(produce(&mut a, "r").await.is_none(), "app-a's connection is closed");
    assert!(produce(&mut b, "r").await.is_some(), "app-b's is untouched");

    let (st, body) = http(&api, "POST", "/connections/half-open", None, r#"{"ms": 800}"#).await;
    assert_eq!((st, body), (200, json!({"held": 1})));
    let t0 = Instant::now();
    assert!(produce(&mut b, "r").await.is_some(), "answered once the hold is over");
    assert!(t0.elapsed() >= Duration::from_millis(700), "held: {:?}", t0.elapsed());

    // A slow close: silent for linger_ms, then closed.
    let (st, _) = http(&api, "POST", "/connections/reset", None, r#"{"linger_ms": 500}"#).await;
    assert_eq!(st, 200);
    let t0 = Instant::now();
    assert!(produce(&mut b, "r").await.is_none(), "closed without an answer");
    assert!(t0.elapsed() >= Duration::from_millis(400), "lingered: {:?}", t0.elapsed());
    assert_eq!(
        http(&api, "POST", "/connections/half-open", None, "{}").await.0,
        400,
        "ms is required"
    );
    task.abort();
    srv.stop().await;
}
