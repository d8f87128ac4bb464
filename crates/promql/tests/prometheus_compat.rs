//! Every query of `data/queries.txt` through this engine and through a real
//! Prometheus on the same data (`data/fleet.om`, backfilled with promtool):
//! the same series with the same values (1e-9 relative, NaN equal to NaN).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fleetbench_promql::{promql_query, promql_range, Storage};
use serde_json::Value;

const T0: f64 = 1_778_544_000.0;

enum Kind {
    Instant(f64),
    Range(f64, f64, f64),
    Error(f64),
}

struct Case {
    line: usize,
    kind: Kind,
    query: String,
}

/// `FLEETBENCH_PROMQL_FIXTURE` and `FLEETBENCH_PROMQL_QUERIES` point the
/// check at other telemetry (say `fleetbench aiops generate --format
/// openmetrics` output, which starts at the same instant) and other queries.
fn cases() -> Vec<Case> {
    let text = match std::env::var_os("FLEETBENCH_PROMQL_QUERIES") {
        Some(p) => std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", Path::new(&p).display())),
        None => include_str!("data/queries.txt").to_string(),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (head, query) = line.split_once(" | ").unwrap_or_else(|| panic!("queries.txt:{}: no ' | '", i + 1));
        let f: Vec<&str> = head.split_whitespace().collect();
        let num = |s: &str| s.parse::<f64>().unwrap_or_else(|_| panic!("queries.txt:{}: bad time {s:?}", i + 1));
        let kind = match f.as_slice() {
            ["instant", t] => Kind::Instant(num(t)),
            ["error", t] => Kind::Error(num(t)),
            ["range", s, e, st] => Kind::Range(num(s), num(e), num(st)),
            _ => panic!("queries.txt:{}: unknown head {head:?}", i + 1),
        };
        out.push(Case { line: i + 1, kind, query: query.to_string() });
    }
    out
}

fn ms(rel_s: f64) -> i64 {
    ((T0 + rel_s) * 1000.0).round() as i64
}

fn secs(rel_s: f64) -> String {
    format!("{}", (ms(rel_s) as f64) / 1000.0)
}

struct Server {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for d in std::env::split_paths(&path) {
        let p = d.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("`{name}` is not installed: run scripts/ensure-prometheus.sh (scripts/test.sh installs it)");
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local address").port()
}

fn start_prometheus(fixture: &Path) -> Server {
    let prometheus = tool("prometheus");
    let promtool = tool("promtool");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("promql-compat-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("create the TSDB folder");
    let out = Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(fixture)
        .arg(&data)
        .output()
        .expect("run promtool");
    assert!(out.status.success(), "promtool failed: {}", String::from_utf8_lossy(&out.stderr));
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 15s\nscrape_configs: []\n").expect("write the config");
    let port = free_port();
    let log = std::fs::File::create(dir.join("prometheus.log")).expect("create the log");
    let child = Command::new(&prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start prometheus");
    let mut server = Server { child, dir, port };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((200, _)) = http_get(port, "/-/ready") {
            break;
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            let log = std::fs::read_to_string(server.dir.join("prometheus.log")).unwrap_or_default();
            panic!("prometheus exited with {status}: {log}");
        }
        assert!(Instant::now() < deadline, "prometheus not ready after 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    server.port = port;
    server
}

fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").map_err(|e| e.to_string())?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).map_err(|e| e.to_string())?;
    let (head, body) = buf.split_once("\r\n\r\n").ok_or("no header end")?;
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or("no status")?;
    Ok((status, body.to_string()))
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Prometheus's answer: `Ok(data)` or `Err(error message)`.
fn ask(port: u16, path: &str) -> Result<Value, String> {
    let (_, body) = http_get(port, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"));
    if v["status"] == "success" {
        Ok(v["data"].clone())
    } else {
        Err(v["error"].as_str().unwrap_or("?").to_string())
    }
}

fn num(v: &Value) -> f64 {
    match v.as_str() {
        Some("NaN") => f64::NAN,
        Some("+Inf") => f64::INFINITY,
        Some("-Inf") => f64::NEG_INFINITY,
        Some(s) => s.parse().unwrap_or_else(|_| panic!("not a number: {s:?}")),
        None => v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

fn points(v: &Value) -> Vec<(f64, f64)> {
    v.as_array().map(|a| a.iter().map(|p| (num(&p[0]), num(&p[1]))).collect()).unwrap_or_default()
}

/// Compares two `data` objects; returns what differs.
fn diff(ours: &Value, theirs: &Value) -> Option<String> {
    let rt = &theirs["resultType"];
    if ours["resultType"] != *rt {
        return Some(format!("resultType {} vs Prometheus {}", ours["resultType"], rt));
    }
    if rt == "scalar" {
        let (a, b) = (
            points(&Value::Array(vec![ours["result"].clone()])),
            points(&Value::Array(vec![theirs["result"].clone()])),
        );
        return if a[0].0 == b[0].0 && close(a[0].1, b[0].1) {
            None
        } else {
            Some(format!("{a:?} vs Prometheus {b:?}"))
        };
    }
    let series = |v: &Value| -> Vec<(String, Vec<(f64, f64)>)> {
        let mut out: Vec<(String, Vec<(f64, f64)>)> = v["result"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| {
                        let pts = if rt == "vector" {
                            points(&Value::Array(vec![s["value"].clone()]))
                        } else {
                            points(&s["values"])
                        };
                        (s["metric"].to_string(), pts)
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    };
    let (a, b) = (series(ours), series(theirs));
    let names = |s: &[(String, Vec<(f64, f64)>)]| s.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    if names(&a) != names(&b) {
        return Some(format!("series {:?} vs Prometheus {:?}", names(&a), names(&b)));
    }
    for ((m, pa), (_, pb)) in a.iter().zip(&b) {
        let same = pa.len() == pb.len() && pa.iter().zip(pb).all(|(x, y)| x.0 == y.0 && close(x.1, y.1));
        if !same {
            return Some(format!("{m}: {pa:?} vs Prometheus {pb:?}"));
        }
    }
    None
}

#[test]
#[ignore = "needs Prometheus: scripts/test.sh installs it"]
fn promql_engine_agrees_with_prometheus() {
    let custom = std::env::var_os("FLEETBENCH_PROMQL_FIXTURE");
    let fixture = match &custom {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fleet.om"),
    };
    let text = std::fs::read_to_string(&fixture).expect("read the fixture");
    let storage = Storage::from_openmetrics(&text).expect("the fixture parses");
    let cases = cases();
    let committed = custom.is_none() && std::env::var_os("FLEETBENCH_PROMQL_QUERIES").is_none();
    assert!(!committed || cases.len() >= 50, "only {} queries", cases.len());
    let server = start_prometheus(&fixture);
    let mut failures = Vec::new();
    let mut nonempty = 0;
    for c in &cases {
        let q = encode(&c.query);
        let (ours, theirs) = match c.kind {
            Kind::Instant(t) | Kind::Error(t) => (
                promql_query(&storage, &c.query, ms(t)).map(|r| r.to_json()),
                ask(server.port, &format!("/api/v1/query?query={q}&time={}", secs(t))),
            ),
            Kind::Range(s, e, st) => (
                promql_range(&storage, &c.query, ms(s), ms(e), (st * 1000.0) as i64).map(|r| r.to_json()),
                ask(server.port, &format!("/api/v1/query_range?query={q}&start={}&end={}&step={st}", secs(s), secs(e))),
            ),
        };
        let expect_error = matches!(c.kind, Kind::Error(_));
        let problem = match (&ours, &theirs) {
            (Ok(a), Ok(b)) if !expect_error => {
                if b["result"].as_array().is_some_and(|r| !r.is_empty()) {
                    nonempty += 1;
                }
                diff(a, b)
            }
            (Err(_), Err(_)) if expect_error => None,
            _ => Some(format!(
                "engine {:?} vs Prometheus {:?} (error expected: {expect_error})",
                ours.as_ref().map(|_| "ok"),
                theirs
            )),
        };
        if let Some(p) = problem {
            failures.push(format!("queries.txt:{} `{}`: {p}", c.line, c.query));
        }
    }
    drop(server);
    assert!(failures.is_empty(), "{} of {} queries disagree:\n{}", failures.len(), cases.len(), failures.join("\n"));
    assert!(!committed || nonempty >= 40, "only {nonempty} queries returned data: the fixture or the times are off");
}
