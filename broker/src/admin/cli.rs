//! `broker faults push|list|clear --admin URL [--token T]`: the admin API from the command line.
//!
//! ```text
//! broker faults push --admin http://127.0.0.1:9405 --api Produce --error NOT_LEADER_OR_FOLLOWER --times 3
//! broker faults push --admin http://127.0.0.1:9405 --file rules.json
//! broker faults list --admin http://127.0.0.1:9405      # the rules as JSON, each with `fired`
//! broker faults clear --admin http://127.0.0.1:9405     # {"removed": N}
//! ```
//! The token may also come from `LOGLAB_ADMIN_TOKEN`. A refusal exits 1 with the server's message.

use std::path::PathBuf;
use std::process::ExitCode;

use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::BODY_BYTES_MAX;
use crate::faults::{RuleSpec, When};

#[derive(Args, Debug)]
pub struct FaultsArgs {
    #[command(subcommand)]
    pub cmd: FaultsCmd,
}

/// Where the admin API is and how to be let in.
#[derive(Args, Debug)]
pub struct Target {
    /// The admin API's base URL, e.g. http://127.0.0.1:9405 (`broker serve --admin-listen`).
    #[arg(long)]
    pub admin: String,
    /// The bearer token (loglab.admin.token); default: env LOGLAB_ADMIN_TOKEN.
    #[arg(long)]
    pub token: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum FaultsCmd {
    /// Install a rule given by flags, or the rules of a JSON file (--file).
    Push {
        #[command(flatten)]
        target: Target,
        /// A JSON file with one rule or a list of rules.
        #[arg(long, conflicts_with = "api")]
        file: Option<PathBuf>,
        #[command(flatten)]
        rule: Box<RuleFlags>,
    },
    /// Print the installed rules as JSON, each with its `matched` and `fired` counts.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Remove every rule; prints how many were removed.
    Clear {
        #[command(flatten)]
        target: Target,
    },
}

/// A rule's fields as flags (see broker/src/faults/rules.rs).
#[derive(Args, Debug, Default)]
pub struct RuleFlags {
    /// Kafka's API name: Produce, Fetch, JoinGroup, ...
    #[arg(long, required_unless_present = "file")]
    pub api: Option<String>,
    /// A version range, LO-HI (or one version).
    #[arg(long, value_parser = parse_versions)]
    pub versions: Option<[i16; 2]>,
    #[arg(long)]
    pub topic: Option<String>,
    #[arg(long)]
    pub partition: Option<i32>,
    #[arg(long)]
    pub group: Option<String>,
    #[arg(long)]
    pub client_id: Option<String>,
    /// A Kafka error name, answered instead of handling (or after it, --after-handling).
    #[arg(long)]
    pub error: Option<String>,
    #[arg(long)]
    pub after_handling: bool,
    #[arg(long)]
    pub delay_ms: Option<u64>,
    #[arg(long)]
    pub throttle_ms: Option<i32>,
    /// before (close without handling) or after (handle, then close without answering).
    #[arg(long, value_parser = parse_when)]
    pub disconnect: Option<When>,
    #[arg(long)]
    pub once: bool,
    #[arg(long)]
    pub times: Option<u64>,
    /// Skip this many matching requests first.
    #[arg(long)]
    pub after: Option<u64>,
    #[arg(long)]
    pub probability: Option<f64>,
    #[arg(long)]
    pub from_ms: Option<u64>,
    #[arg(long)]
    pub until_ms: Option<u64>,
}

fn parse_versions(s: &str) -> Result<[i16; 2], String> {
    let (lo, hi) = s.split_once(['-', ',']).unwrap_or((s, s));
    let v = |x: &str| x.trim().parse::<i16>().map_err(|e| format!("`{x}`: {e}"));
    Ok([v(lo)?, v(hi)?])
}

fn parse_when(s: &str) -> Result<When, String> {
    match s {
        "before" => Ok(When::Before),
        "after" => Ok(When::After),
        _ => Err(format!("`{s}`: expected before or after")),
    }
}

impl RuleFlags {
    fn spec(self) -> RuleSpec {
        RuleSpec {
            api: self.api.unwrap_or_default(),
            versions: self.versions,
            topic: self.topic,
            partition: self.partition,
            group: self.group,
            client_id: self.client_id,
            error: self.error,
            after_handling: self.after_handling,
            delay_ms: self.delay_ms,
            throttle_ms: self.throttle_ms,
            disconnect: self.disconnect,
            once: self.once,
            times: self.times,
            after: self.after,
            probability: self.probability,
            from_ms: self.from_ms,
            until_ms: self.until_ms,
        }
    }
}

/// Runs one `broker faults` command; exit 1 on a refusal or when the API cannot be reached.
pub fn run(args: FaultsArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(command(args.cmd)) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn command(cmd: FaultsCmd) -> Result<String, String> {
    match cmd {
        FaultsCmd::Push { target, file: Some(path), .. } => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            call(&target, Method::POST, "/faults", Some(text)).await.map(|v| v.to_string())
        }
        FaultsCmd::Push { target, file: None, rule } => {
            let body = serde_json::to_string(&rule.spec()).map_err(|e| e.to_string())?;
            call(&target, Method::POST, "/faults", Some(body)).await.map(|v| v.to_string())
        }
        FaultsCmd::List { target } => {
            let rules = call(&target, Method::GET, "/faults", None).await?;
            serde_json::to_string_pretty(&rules).map_err(|e| e.to_string())
        }
        FaultsCmd::Clear { target } => {
            call(&target, Method::DELETE, "/faults", None).await.map(|v| v.to_string())
        }
    }
}

/// `http://host:port[/prefix]` → (host:port, prefix).
fn split_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--admin `{url}`: expected http://HOST:PORT"))?;
    let (authority, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.is_empty() {
        return Err(format!("--admin `{url}`: no host"));
    }
    Ok((authority.to_string(), format!("/{prefix}").trim_end_matches('/').to_string()))
}

/// One request; the answer's JSON, or the server's message on a refusal.
async fn call(
    target: &Target,
    method: Method,
    path: &str,
    body: Option<String>,
) -> Result<Value, String> {
    let (authority, prefix) = split_url(&target.admin)?;
    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .map_err(|e| format!("connecting to {authority}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("{authority}: {e}"))?;
    tokio::spawn(conn);
    let mut req = Request::builder().method(method).uri(format!("{prefix}{path}"));
    req = req.header(HOST, &authority).header(CONTENT_TYPE, "application/json");
    let token = target.token.clone().or_else(|| std::env::var("LOGLAB_ADMIN_TOKEN").ok());
    if let Some(t) = token.filter(|t| !t.is_empty()) {
        req = req.header(AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| format!("request: {e}"))?;
    let resp = sender.send_request(req).await.map_err(|e| format!("{authority}: {e}"))?;
    let status = resp.status();
    let bytes = Limited::new(resp.into_body(), BODY_BYTES_MAX * 16)
        .collect()
        .await
        .map_err(|e| format!("{authority}: reading the answer: {e}"))?
        .to_bytes();
    let value: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    if !status.is_success() {
        let msg = value.get("error").and_then(Value::as_str).map(str::to_string);
        return Err(format!("{status}: {}", msg.unwrap_or_else(|| value.to_string())));
    }
    Ok(value)
}
