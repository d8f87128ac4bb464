//! Unit tests of the parser (errors with positions), the bounds and each
//! function, on small hand-made series whose answers are worked out by hand.

use fleetbench_promql::{
    parse, promql_query, promql_range, query_with_limits, range_with_limits, Limits, PromqlError, QueryResult, Storage,
};
use serde_json::json;

fn l(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// `c`: a counter 0, 10, 20, 5, 15 at 0..40 s (a reset at 30 s);
/// `g`: a gauge 1, 3, 2, 6, 5 at the same times; `t{node,gpu}`: four temperatures.
fn storage() -> Storage {
    let mut s = Storage::new();
    for (i, (c, g)) in [(0.0, 1.0), (10.0, 3.0), (20.0, 2.0), (5.0, 6.0), (15.0, 5.0)].into_iter().enumerate() {
        let ts = i as i64 * 10_000;
        s.push(l(&[("__name__", "c"), ("job", "dcgm")]), ts, c);
        s.push(l(&[("__name__", "g"), ("job", "dcgm")]), ts, g);
    }
    for (node, gpu, v) in [("n1", "0", 50.0), ("n1", "1", 80.0), ("n2", "0", 60.0), ("n2", "1", 90.0)] {
        s.push(l(&[("__name__", "t"), ("node", node), ("gpu", gpu)]), 40_000, v);
        s.push(l(&[("__name__", "lim"), ("node", node), ("gpu", gpu)]), 40_000, 100.0);
    }
    s
}

fn vector(q: &str, t_ms: i64) -> Vec<(Vec<(String, String)>, f64)> {
    match promql_query(&storage(), q, t_ms) {
        Ok(QueryResult::Vector(_, v)) => v.into_iter().map(|s| (s.labels, s.value)).collect(),
        other => panic!("{q}: expected a vector, got {other:?}"),
    }
}

fn one(q: &str, t_ms: i64) -> f64 {
    let v = vector(q, t_ms);
    assert_eq!(v.len(), 1, "{q}: {v:?}");
    v[0].1
}

fn parse_err(q: &str) -> (usize, String) {
    match parse(q) {
        Err(PromqlError::Parse { pos, msg }) => (pos, msg),
        other => panic!("{q}: expected a parse error, got {other:?}"),
    }
}

#[test]
fn parse_errors_say_where() {
    let cases: &[(&str, usize, &str)] = &[
        ("sum(rate(c[5m])", 15, "expected ')'"),
        ("c{job=\"x\"", 9, "expected ',' or '}'"),
        ("c{job~\"x\"}", 5, "unexpected character"),
        ("rate(c)", 5, "expected type range vector"),
        ("1 > 2", 2, "bool modifier"),
        ("{job=\"\"}", 0, "at least one matcher"),
        ("frobnicate(c)", 0, "unknown or unsupported function"),
        ("c[5]", 2, "expected a duration"),
        ("c[5m:1m]", 4, "subqueries are not supported"),
        ("c and 1", 2, "set operators"),
        ("c{job=~\"(\"}", 7, "invalid regular expression"),
        ("\"text\"", 0, "string literals"),
        ("c offset", 8, "expected a duration after offset"),
        ("c + group_left g", 4, "needs on(...) or ignoring(...)"),
        ("c and on(job) group_left g", 14, "no grouping allowed"),
        ("t / on(gpu) group_left(gpu) lim", 12, "must not occur in ON and GROUP"),
        ("@", 0, "unexpected character '@'"),
        ("sum(c[5m])", 4, "expected type instant vector"),
        ("c[5m] + 1", 6, "binary expression"),
        ("1 + * 2", 4, "unexpected '*'"),
        ("c ) ", 2, "after the expression"),
        ("c{job=\"x\\q\"}", 8, "unknown escape"),
        ("5m", 0, "duration is only allowed"),
    ];
    for (q, pos, msg) in cases {
        let (p, m) = parse_err(q);
        assert!(m.contains(msg), "{q}: message {m:?} lacks {msg:?}");
        assert_eq!(p, *pos, "{q}: position of {m:?}");
    }
    let e = promql_query(&storage(), "rate(c)", 0).expect_err("invalid");
    assert_eq!(
        e.to_string(),
        "parse error at position 5: expected type range vector in call to function, got instant vector"
    );
}

#[test]
fn parser_accepts_the_supported_forms() {
    for q in [
        "c",
        "c{job=\"dcgm\",}",
        "{__name__=~\"c|g\", job!~'x.*'}",
        "vllm:num_requests_waiting",
        "rate(c[1h30m] offset 5m)",
        "sum by (job) (rate(c[5m]))",
        "sum(rate(c[5m])) without (job)",
        "topk(2, t) by (node)",
        "t > bool on(node, gpu) lim",
        "t / ignoring(gpu) lim",
        "-(1 + 2) * 3 ^ 2 % 4",
        "Inf + NaN - 1e3 + .5",
        "c{job=`raw\\d`}",
        "c offset -1m",
    ] {
        assert!(parse(q).is_ok(), "{q}: {:?}", parse(q).err());
    }
}

#[test]
fn bounds_are_enforced() {
    let s = storage();
    let long = format!("c{{job=\"{}\"}}", "x".repeat(5000));
    assert!(matches!(parse(&long), Err(PromqlError::Limit(m)) if m.contains("5009 bytes")));
    let deep = format!("{}1{}", "(".repeat(100), ")".repeat(100));
    assert!(matches!(parse(&deep), Err(PromqlError::Limit(m)) if m.contains("nests deeper than 64")));
    let deep_neg = format!("{}1", "-".repeat(100));
    assert!(matches!(parse(&deep_neg), Err(PromqlError::Limit(_))));
    let big_re = format!("c{{job=~\"{}\"}}", "a|".repeat(600));
    assert!(matches!(parse(&big_re), Err(PromqlError::Limit(m)) if m.contains("regular expression at position 7")));
    // A short pattern that compiles to something huge.
    let heavy = "c{job=~\"(\\\\w{50}){50}\"}";
    assert!(matches!(parse(heavy), Err(PromqlError::Parse { pos: 7, .. })), "{:?}", parse(heavy));
    assert!(matches!(parse("c[30d]"), Err(PromqlError::Limit(m)) if m.contains("range at position 2")));
    assert!(matches!(parse("c offset 8w"), Err(PromqlError::Limit(_))));
    let chain = vec!["c"; 100].join(" + ");
    assert!(matches!(parse(&chain), Err(PromqlError::Limit(m)) if m.contains("nests deeper")));
    assert!(parse(&vec!["c"; 40].join(" + ")).is_ok());
    assert!(matches!(promql_query(&s, "c", i64::MAX), Err(PromqlError::Eval(m)) if m.contains("out of range")));
    assert!(matches!(promql_range(&s, "c", i64::MIN, i64::MAX, i64::MAX), Err(PromqlError::Eval(_))));
    assert!(promql_range(&s, "c", 0, 1 << 52, 1 << 52).is_ok());
    assert!(matches!(parse("c[99999999999999y]"), Err(PromqlError::Parse { .. })));
    let points = promql_range(&s, "c", 0, 20_000_000, 1000);
    assert!(matches!(points, Err(PromqlError::Limit(m)) if m.contains("20001 points")));
    assert!(matches!(promql_range(&s, "c", 0, 10, 0), Err(PromqlError::Eval(_))));
    assert!(matches!(promql_range(&s, "c", 10, 0, 1), Err(PromqlError::Eval(_))));
    assert!(matches!(promql_range(&s, "c[1m]", 0, 10, 1), Err(PromqlError::Eval(m)) if m.contains("range vector")));
    let tight = Limits { max_series: 3, ..Limits::default() };
    assert!(matches!(query_with_limits(&s, "t", 40_000, &tight), Err(PromqlError::Limit(m)) if m.contains("3 series")));
    assert!(query_with_limits(&s, "t{node=\"n1\"}", 40_000, &tight).is_ok());
    let small = Limits { max_result_points: 10, ..Limits::default() };
    assert!(range_with_limits(&s, "g", 0, 9_000, 1000, &small).is_ok());
    assert!(matches!(
        range_with_limits(&s, "g", 0, 10_000, 1000, &small),
        Err(PromqlError::Limit(m)) if m.contains("more than 10 points")
    ));
    let few = Limits { max_samples: 20, ..Limits::default() };
    assert!(query_with_limits(&s, "rate(c[1m])", 40_000, &few).is_ok());
    assert!(matches!(
        range_with_limits(&s, "rate(c[1m])", 0, 40_000, 1000, &few),
        Err(PromqlError::Limit(m)) if m.contains("20 samples")
    ));
}

#[test]
fn counter_functions_handle_the_reset_and_extrapolate() {
    // Window [0, 40] holds every sample: 15 - 0 + 20 (the reset) = 35, no extrapolation.
    assert_eq!(one("increase(c[40s])", 40_000), 35.0);
    assert_eq!(one("rate(c[40s])", 40_000), 35.0 / 40.0);
    // Window [-10, 50]: 10 s short at both ends (under 1.1 intervals) is extrapolated,
    // but the start only as far as the counter's zero (0 at the first sample): 35 * 50/40.
    assert_eq!(one("increase(c[1m])", 50_000), 43.75);
    assert_eq!(one("rate(c[1m])", 50_000), 43.75 / 60.0);
    // Window [-60, 100]: the data stops far from both ends, so half an interval each side.
    assert_eq!(one("delta(g[160s])", 100_000), 4.0 * 50.0 / 40.0);
    assert_eq!(one("resets(c[1m])", 40_000), 1.0);
    assert_eq!(one("resets(g[1m])", 40_000), 2.0);
    assert_eq!(one("changes(c[1m])", 40_000), 4.0);
    // One sample is not enough for a rate.
    assert!(vector("rate(c[5s])", 40_000).is_empty());
    // Functions drop the metric name.
    assert_eq!(vector("rate(c[1m])", 40_000)[0].0, l(&[("job", "dcgm")]));
}

#[test]
fn gauge_functions() {
    assert_eq!(one("delta(g[1m])", 50_000), 4.0 * 60.0 / 40.0);
    assert!((one("deriv(g[1m])", 40_000) - 0.11).abs() < 1e-12);
    assert_eq!(one("avg_over_time(g[1m])", 40_000), 3.4);
    assert_eq!(one("min_over_time(g[1m])", 40_000), 1.0);
    assert_eq!(one("max_over_time(g[1m])", 40_000), 6.0);
    assert_eq!(one("sum_over_time(g[1m])", 40_000), 17.0);
    assert_eq!(one("count_over_time(g[1m])", 40_000), 5.0);
    assert_eq!(one("count_over_time(g[10s])", 40_000), 2.0);
    let last = vector("last_over_time(g[1m])", 40_000);
    assert_eq!(last, vec![(l(&[("__name__", "g"), ("job", "dcgm")]), 5.0)]);
    assert_eq!(one("sum_over_time(g[1m] offset 20s)", 40_000), 6.0);
}

#[test]
fn absent_and_lookback() {
    assert!(vector("absent(g)", 40_000).is_empty());
    assert_eq!(vector("absent(nope{job=\"x\", gpu=~\"1\"})", 0), vec![(l(&[("job", "x")]), 1.0)]);
    assert_eq!(vector("absent(sum(nope))", 0), vec![(Vec::new(), 1.0)]);
    // The last sample (40 s) is visible for exactly five minutes.
    assert_eq!(one("g", 340_000), 5.0);
    assert!(vector("g", 340_001).is_empty());
    assert_eq!(one("g", 25_000), 2.0);
    assert_eq!(one("g offset 10s", 25_000), 3.0);
    assert!(vector("g", -1).is_empty());
}

#[test]
fn aggregations_and_topk() {
    assert_eq!(vector("sum by (node) (t)", 40_000), vec![(l(&[("node", "n1")]), 130.0), (l(&[("node", "n2")]), 150.0)]);
    assert_eq!(
        vector("avg without (gpu) (t)", 40_000),
        vec![(l(&[("node", "n1")]), 65.0), (l(&[("node", "n2")]), 75.0)]
    );
    assert_eq!(one("max(t)", 40_000), 90.0);
    assert_eq!(one("min(t)", 40_000), 50.0);
    assert_eq!(one("count(t)", 40_000), 4.0);
    let top = vector("topk(1, t) by (node)", 40_000);
    assert_eq!(top.iter().map(|x| x.1).collect::<Vec<_>>(), vec![80.0, 90.0]);
    assert_eq!(top[0].0[0], ("__name__".to_string(), "t".to_string()), "topk keeps the series' labels");
    assert_eq!(vector("bottomk(2, t)", 40_000).iter().map(|x| x.1).collect::<Vec<_>>(), vec![50.0, 60.0]);
    assert!(vector("topk(0, t)", 40_000).is_empty());
    assert!(promql_query(&storage(), "topk(NaN, t)", 40_000).is_err());
}

#[test]
fn comparisons_and_arithmetic() {
    let hot = vector("t > 70", 40_000);
    assert_eq!(hot.len(), 2);
    assert!(hot.iter().all(|(labels, _)| labels[0] == ("__name__".to_string(), "t".to_string())));
    assert_eq!(vector("70 < t", 40_000).iter().map(|x| x.1).collect::<Vec<_>>(), vec![80.0, 90.0]);
    let b = vector("t > bool 70", 40_000);
    assert_eq!(b.iter().map(|x| x.1).collect::<Vec<_>>(), vec![0.0, 0.0, 1.0, 1.0]);
    assert!(b.iter().all(|(labels, _)| labels.iter().all(|(k, _)| k != "__name__")));
    assert_eq!(vector("t / lim", 40_000).iter().map(|x| x.1).collect::<Vec<_>>(), vec![0.5, 0.6, 0.8, 0.9]);
    // `on` keeps only the matching labels; `ignoring` drops the ignored ones.
    let on = vector("t / on(node, gpu) lim", 40_000);
    assert_eq!(on[0].0, l(&[("gpu", "0"), ("node", "n1")]));
    let err = promql_query(&storage(), "t / on(node) lim", 40_000).expect_err("duplicate right side");
    assert!(err.to_string().contains("duplicate series for the match group {node=\"n1\"}"), "{err}");
    let err = promql_query(&storage(), "t / on(node) sum by (node) (lim)", 40_000).expect_err("many on the left");
    assert!(err.to_string().contains("many-to-one"), "{err}");
    assert_eq!(vector("t{gpu=\"0\"} - ignoring(gpu) t{gpu=\"1\"}", 40_000).len(), 2);
    assert_eq!(one("-t{node=\"n1\",gpu=\"0\"} * 2 + 1", 40_000), -99.0);
    let scalar = |q: &str| match promql_query(&storage(), q, 0) {
        Ok(QueryResult::Scalar(_, v)) => v,
        other => panic!("{q}: {other:?}"),
    };
    assert_eq!(scalar("2 ^ 3 ^ 2"), 512.0);
    assert_eq!(scalar("-2 ^ 2"), -4.0);
    assert_eq!(scalar("7 % 4 + 10 / 4 - 1"), 4.5);
    assert_eq!(scalar("2 > bool 1"), 1.0);
    assert!(scalar("0 / 0").is_nan());
    let err = promql_query(&storage(), "rate({__name__=~\"c|g\"}[1m])", 40_000).expect_err("same labels");
    assert!(err.to_string().contains("same labelset"), "{err}");
}

#[test]
fn results_have_prometheus_api_shape() {
    let s = storage();
    let r = promql_query(&s, "1 / 0", 1_500).expect("scalar");
    assert_eq!(r.to_json(), json!({"resultType": "scalar", "result": [1.5, "+Inf"]}));
    let r = promql_query(&s, "t{node=\"n1\",gpu=\"1\"} / 3", 40_000).expect("vector");
    assert_eq!(
        r.to_json(),
        json!({"resultType": "vector", "result": [{"metric": {"gpu": "1", "node": "n1"}, "value": [40, "26.666666666666668"]}]})
    );
    let r = promql_query(&s, "g[15s]", 40_000).expect("matrix");
    assert_eq!(
        r.to_json(),
        json!({"resultType": "matrix", "result": [{"metric": {"__name__": "g", "job": "dcgm"}, "values": [[30, "6"], [40, "5"]]}]})
    );
    let r = promql_range(&s, "sum(g) - 1", 0, 20_000, 10_000).expect("range");
    assert_eq!(
        r.to_json(),
        json!({"resultType": "matrix", "result": [{"metric": {}, "values": [[0, "0"], [10, "2"], [20, "1"]]}]})
    );
    let r = promql_range(&s, "0.5", 0, 1_000, 1_000).expect("scalar range");
    assert_eq!(r.to_json()["result"][0]["values"], json!([[0, "0.5"], [1, "0.5"]]));
    let r = promql_query(&s, "absent(g)", 40_000).expect("empty");
    assert_eq!(r.to_json(), json!({"resultType": "vector", "result": []}));
}

#[test]
fn the_fixture_loads() {
    let text = include_str!("data/fleet.om");
    let s = Storage::from_openmetrics(text).expect("fixture");
    assert_eq!(s.series().len(), 48);
    assert_eq!(s.sample_count(), 3848, "one sample a line, 3848 lines");
    let temp = vector_in(&s, "count(DCGM_FI_DEV_GPU_TEMP)", 1_778_544_600_000);
    assert_eq!(temp, 5.0, "one GPU is in its exporter gap at 600 s");
}

fn vector_in(s: &Storage, q: &str, t: i64) -> f64 {
    match promql_query(s, q, t) {
        Ok(QueryResult::Vector(_, v)) if v.len() == 1 => v[0].value,
        other => panic!("{q}: {other:?}"),
    }
}

/// Every prefix of every committed query, and each with a token spliced in,
/// evaluates to an answer or an error, never a panic.
#[test]
fn mangled_queries_never_panic() {
    let s = storage();
    let text = include_str!("data/queries.txt");
    let mut tried = 0;
    let mut errors = 0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((_, q)) = line.split_once(" | ") else { continue };
        let cuts: Vec<usize> = (0..=q.len()).filter(|&i| q.is_char_boundary(i)).collect();
        for &i in &cuts {
            for insert in ["", "(", ")", "[5m]", "{", "}", "\"", "-", " by (x) ", ",", " offset 1m", "1e308", "~"] {
                let m = format!("{}{insert}{}", &q[..i], if insert.is_empty() { "" } else { &q[i..] });
                tried += 1;
                if promql_query(&s, &m, 40_000).is_err() {
                    errors += 1;
                }
            }
        }
    }
    assert!(tried > 10_000, "{tried}");
    assert!(errors > tried / 4 && errors < tried, "{errors} errors of {tried}");
}

/// Means stay infinite (not NaN) when a series holds an infinity, as in Prometheus.
#[test]
fn means_with_infinities() {
    let mut s = Storage::new();
    for (i, v) in [1.0, f64::INFINITY, 2.0].into_iter().enumerate() {
        s.push(l(&[("__name__", "x"), ("i", "a")]), i as i64 * 1000, v);
        s.push(l(&[("__name__", "y"), ("i", &i.to_string())]), 0, v);
    }
    let value = |q: &str| match promql_query(&s, q, 2000) {
        Ok(QueryResult::Vector(_, v)) if v.len() == 1 => v[0].value,
        other => panic!("{q}: {other:?}"),
    };
    assert_eq!(value("avg_over_time(x[5s])"), f64::INFINITY);
    assert_eq!(value("avg(y)"), f64::INFINITY);
    assert_eq!(value("sum(y)"), f64::INFINITY);
    assert_eq!(value("max(y)"), f64::INFINITY);
    assert_eq!(value("min(y)"), 1.0);
    assert!(value("deriv(x[5s])").is_nan());
}

#[test]
fn instant_rate_spread_and_scalar_functions() {
    // Last two samples 5 -> 15 over 10 s; at 30 s they are 20 -> 5, a reset: 5 over 10 s.
    assert_eq!(one("irate(c[1m])", 40_000), 1.0);
    assert_eq!(one("irate(c[1m])", 30_000), 0.5);
    assert_eq!(one("idelta(g[1m])", 40_000), -1.0);
    assert!(vector("irate(c[5s])", 40_000).is_empty());
    assert!((one("stdvar_over_time(g[1m])", 40_000) - 3.44).abs() < 1e-12);
    assert!((one("stddev_over_time(g[1m])", 40_000) - 3.44f64.sqrt()).abs() < 1e-12);
    assert_eq!(vector("abs(-t{gpu=\"0\",node=\"n1\"})", 40_000), vec![(l(&[("gpu", "0"), ("node", "n1")]), 50.0)]);
    assert_eq!(vector("vector(2) * 3", 0), vec![(Vec::new(), 6.0)]);
    let scalar = |q: &str, t: i64| match promql_query(&storage(), q, t) {
        Ok(QueryResult::Scalar(_, v)) => v,
        other => panic!("{q}: {other:?}"),
    };
    assert_eq!(scalar("time()", 40_500), 40.5);
    assert_eq!(scalar("scalar(sum(t))", 40_000), 280.0);
    assert!(scalar("scalar(t)", 40_000).is_nan(), "four series are not one");
    assert!(matches!(parse("time(1)"), Err(PromqlError::Parse { pos: 5, .. })));
    assert!(matches!(parse("vector(t)"), Err(PromqlError::Parse { pos: 7, .. })));
}

#[test]
fn set_operators() {
    let values = |q: &str| vector(q, 40_000).into_iter().map(|x| x.1).collect::<Vec<_>>();
    assert_eq!(values("t and t > 70"), vec![80.0, 90.0]);
    assert_eq!(values("t unless t > 70"), vec![50.0, 60.0]);
    assert_eq!(values("t > 85 or t < 55"), vec![50.0, 90.0]);
    assert_eq!(values("t and on(node) t{node=\"n2\"} > 85"), vec![60.0, 90.0]);
    // `or` binds looser than `and`: (t > 85 and t > 0) or lim{...}.
    assert_eq!(values("t > 85 and t > 0 or lim{gpu=\"0\", node=\"n1\"}"), vec![100.0, 90.0]);
    let kept = vector("t and lim", 40_000);
    assert_eq!(kept.len(), 4);
    assert!(kept.iter().all(|(labels, _)| labels[0].1 == "t"), "and keeps the left side's name");
}

#[test]
fn many_to_one_matching() {
    // Each GPU against its node's hottest: group_left keeps the many side's labels.
    let d = vector("t - on(node) group_left max by (node) (t)", 40_000);
    assert_eq!(d.iter().map(|x| x.1).collect::<Vec<_>>(), vec![-30.0, -30.0, 0.0, 0.0]);
    assert_eq!(d[0].0, l(&[("gpu", "0"), ("node", "n1")]));
    // group_right: the one side on the left; comparisons keep the left value.
    let r = vector("max by (node) (t) >= on(node) group_right t", 40_000);
    assert_eq!(r.iter().map(|x| x.1).collect::<Vec<_>>(), vec![80.0, 90.0, 80.0, 90.0]);
    assert_eq!(r[0].0, l(&[("__name__", "t"), ("gpu", "0"), ("node", "n1")]));
    // Labels named in group_left(...) come from the one side.
    let mut s = storage();
    s.push(l(&[("__name__", "info"), ("node", "n1"), ("rack", "r7")]), 40_000, 1.0);
    match promql_query(&s, "t * on(node) group_left(rack) info", 40_000) {
        Ok(QueryResult::Vector(_, v)) => {
            assert_eq!(v.len(), 2);
            assert!(v.iter().all(|x| x.labels.contains(&("rack".to_string(), "r7".to_string()))));
        }
        other => panic!("{other:?}"),
    }
    let err = promql_query(&storage(), "t - on(node) group_left lim", 40_000).expect_err("many on the right");
    assert!(err.to_string().contains("on the right hand-side"), "{err}");
    let err =
        promql_query(&storage(), "sum by (node) (t) - on(node) group_right(gpu) (t * 0)", 40_000).expect_err("dup");
    assert!(err.to_string().contains("grouping labels must ensure unique matches"), "{err}");
}

#[test]
fn quantiles_spread_and_math() {
    // t: 50, 60, 80, 90. Rank 0.5 * 3 = 1.5: halfway between 60 and 80.
    assert_eq!(one("quantile(0.5, t)", 40_000), 70.0);
    assert_eq!(one("quantile(0, t)", 40_000), 50.0);
    assert_eq!(one("quantile(2, t)", 40_000), f64::INFINITY);
    assert_eq!(one("quantile(-1, t)", 40_000), f64::NEG_INFINITY);
    // g over 1m: 1, 3, 2, 6, 5 -> sorted 1 2 3 5 6; rank 0.75 * 4 = 3.
    assert_eq!(one("quantile_over_time(0.75, g[1m])", 40_000), 5.0);
    assert_eq!(one("quantile_over_time(0.1, g[1m])", 40_000), 1.4);
    assert!((one("stdvar(t)", 40_000) - 250.0).abs() < 1e-9);
    assert!((one("stddev(t)", 40_000) - 250f64.sqrt()).abs() < 1e-9);
    assert_eq!(vector("group by (node) (t)", 40_000), vec![(l(&[("node", "n1")]), 1.0), (l(&[("node", "n2")]), 1.0)]);
    assert_eq!(one("sqrt(t{gpu=\"0\",node=\"n1\"} * 2)", 40_000), 10.0);
    assert_eq!(one("log10(t{gpu=\"0\",node=\"n1\"} * 2)", 40_000), 2.0);
    assert_eq!(one("log2(t{gpu=\"0\",node=\"n1\"} / 25)", 40_000), 1.0);
    assert_eq!(one("ceil(t{gpu=\"0\",node=\"n1\"} / 3)", 40_000), 17.0);
    assert_eq!(one("floor(t{gpu=\"0\",node=\"n1\"} / 3)", 40_000), 16.0);
    assert_eq!(one("ln(exp(t{gpu=\"0\",node=\"n1\"} / 50))", 40_000), 1.0);
    assert!(matches!(parse("quantile_over_time(g[1m], 0.5)"), Err(PromqlError::Parse { pos: 19, .. })));
    assert!(matches!(parse("quantile(t)"), Err(PromqlError::Parse { .. })));
}
