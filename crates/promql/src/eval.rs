//! Evaluation of a parsed query over a [`Storage`].

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::parser::{parse_with, AggOp, BinOp, Card, Expr, Func, Grouping, MatchOp, Matching, Selector, ValueType};
use crate::storage::{Labels, Storage};
use crate::{Limits, PromqlError, LOOKBACK_MS};

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub value: f64,
}

/// One series of a range result: `(timestamp ms, value)` points.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    pub labels: Labels,
    pub values: Vec<(i64, f64)>,
}

/// A query's answer, shaped like the `data` of Prometheus's query API.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryResult {
    /// A scalar at an instant.
    Scalar(i64, f64),
    /// An instant vector at an instant; sorted by labels.
    Vector(i64, Vec<Sample>),
    /// A range vector (instant query of a range selector) or the result of a
    /// range query; sorted by labels.
    Matrix(Vec<RangeSeries>),
}

/// Prometheus's number format: shortest round-trip decimal, no exponent.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

fn ts_json(t: i64) -> Value {
    if t % 1000 == 0 {
        json!(t / 1000)
    } else {
        json!(t as f64 / 1000.0)
    }
}

fn metric_json(l: &Labels) -> Value {
    Value::Object(l.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
}

impl QueryResult {
    /// The `data` object of Prometheus's `/api/v1/query` or `/api/v1/query_range`.
    pub fn to_json(&self) -> Value {
        match self {
            QueryResult::Scalar(t, v) => json!({"resultType": "scalar", "result": [ts_json(*t), format_value(*v)]}),
            QueryResult::Vector(t, s) => json!({
                "resultType": "vector",
                "result": s.iter().map(|s| json!({
                    "metric": metric_json(&s.labels),
                    "value": [ts_json(*t), format_value(s.value)],
                })).collect::<Vec<_>>(),
            }),
            QueryResult::Matrix(m) => json!({
                "resultType": "matrix",
                "result": m.iter().map(|s| json!({
                    "metric": metric_json(&s.labels),
                    "values": s.values.iter().map(|(t, v)| json!([ts_json(*t), format_value(*v)])).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            }),
        }
    }
}

enum Val {
    Scalar(f64),
    Vector(Vec<Sample>),
    Matrix(Vec<RangeSeries>),
}

struct Ctx<'a> {
    storage: &'a Storage,
    limits: &'a Limits,
    samples_read: u64,
    /// Series indices each selector matches, keyed by the selector's address.
    selected: HashMap<*const Selector, Vec<usize>>,
}

/// Query times are bounded so that no time arithmetic can overflow.
const MAX_ABS_TIME_MS: i64 = 1 << 52;

fn check_time(what: &str, t: i64) -> Result<(), PromqlError> {
    if !(-MAX_ABS_TIME_MS..=MAX_ABS_TIME_MS).contains(&t) {
        return Err(PromqlError::Eval(format!(
            "{what} {t} ms is out of range (at most {MAX_ABS_TIME_MS} ms either side of 1970)"
        )));
    }
    Ok(())
}

pub(crate) fn instant(storage: &Storage, query: &str, t: i64, limits: &Limits) -> Result<QueryResult, PromqlError> {
    check_time("time", t)?;
    let expr = parse_with(query, limits)?;
    let mut ctx = Ctx { storage, limits, samples_read: 0, selected: HashMap::new() };
    Ok(match ctx.eval(&expr, t)? {
        Val::Scalar(v) => QueryResult::Scalar(t, v),
        Val::Vector(mut v) => {
            v.sort_by(|a, b| a.labels.cmp(&b.labels));
            QueryResult::Vector(t, v)
        }
        Val::Matrix(mut m) => {
            m.sort_by(|a, b| a.labels.cmp(&b.labels));
            QueryResult::Matrix(m)
        }
    })
}

pub(crate) fn range(
    storage: &Storage,
    query: &str,
    start: i64,
    end: i64,
    step: i64,
    limits: &Limits,
) -> Result<QueryResult, PromqlError> {
    check_time("start", start)?;
    check_time("end", end)?;
    if step <= 0 {
        return Err(PromqlError::Eval("step must be positive".into()));
    }
    if end < start {
        return Err(PromqlError::Eval("end timestamp must not be before start time".into()));
    }
    let points = (end - start) / step.min(MAX_ABS_TIME_MS) + 1;
    if points > limits.max_points as i64 {
        return Err(PromqlError::Limit(format!(
            "range query has {points} points per series, at most {} allowed (raise the step)",
            limits.max_points
        )));
    }
    let expr = parse_with(query, limits)?;
    let vt = expr.value_type();
    if vt == ValueType::Matrix {
        return Err(PromqlError::Eval(
            "invalid expression type \"range vector\" for range query, must be scalar or instant vector".into(),
        ));
    }
    let mut ctx = Ctx { storage, limits, samples_read: 0, selected: HashMap::new() };
    let mut out: HashMap<Labels, Vec<(i64, f64)>> = HashMap::new();
    let mut t = start;
    let mut total = 0usize;
    while t <= end {
        match ctx.eval(&expr, t)? {
            Val::Scalar(v) => out.entry(Vec::new()).or_default().push((t, v)),
            Val::Vector(v) => {
                total += v.len();
                if total > limits.max_result_points {
                    return Err(PromqlError::Limit(format!(
                        "range query result has more than {} points",
                        limits.max_result_points
                    )));
                }
                for s in v {
                    out.entry(s.labels).or_default().push((t, s.value));
                }
                if out.len() > limits.max_series {
                    return Err(PromqlError::Limit(format!(
                        "range query result has more than {} series",
                        limits.max_series
                    )));
                }
            }
            Val::Matrix(_) => return Err(PromqlError::Eval("range vector in a range query".into())),
        }
        t = match t.checked_add(step) {
            Some(n) => n,
            None => break,
        };
    }
    let mut m: Vec<RangeSeries> = out.into_iter().map(|(labels, values)| RangeSeries { labels, values }).collect();
    m.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(QueryResult::Matrix(m))
}

fn drop_name(l: &mut Labels) {
    l.retain(|(k, _)| k != "__name__");
}

fn check_unique(v: &[Sample]) -> Result<(), PromqlError> {
    let mut seen: Vec<&Labels> = v.iter().map(|s| &s.labels).collect();
    seen.sort();
    if seen.windows(2).any(|w| w[0] == w[1]) {
        return Err(PromqlError::Eval("vector cannot contain metrics with the same labelset".into()));
    }
    Ok(())
}

/// Kahan-compensated sum.
fn ksum(values: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut c) = (0.0f64, 0.0f64);
    for v in values {
        let t = sum + v;
        if sum.abs() >= v.abs() {
            c += (sum - t) + v;
        } else {
            c += (v - t) + sum;
        }
        sum = t;
    }
    if c.is_finite() {
        sum + c
    } else {
        sum
    }
}

impl Ctx<'_> {
    fn read(&mut self, n: usize) -> Result<(), PromqlError> {
        self.samples_read += n as u64;
        if self.samples_read > self.limits.max_samples {
            return Err(PromqlError::Limit(format!("query reads more than {} samples", self.limits.max_samples)));
        }
        Ok(())
    }

    fn select(&mut self, sel: &Selector) -> Result<Vec<usize>, PromqlError> {
        let key = sel as *const Selector;
        if let Some(v) = self.selected.get(&key) {
            return Ok(v.clone());
        }
        let mut out = Vec::new();
        for (i, s) in self.storage.series().iter().enumerate() {
            let ok = sel.matchers.iter().all(|m| {
                let v = s.labels.iter().find(|(k, _)| *k == m.name).map(|(_, v)| v.as_str()).unwrap_or("");
                m.matches(v)
            });
            if ok {
                out.push(i);
                if out.len() > self.limits.max_series {
                    return Err(PromqlError::Limit(format!(
                        "a selector matches more than {} series",
                        self.limits.max_series
                    )));
                }
            }
        }
        // Prometheus reads a block's series in label order; topk/bottomk ties depend on it.
        out.sort_by(|&a, &b| self.storage.series()[a].labels.cmp(&self.storage.series()[b].labels));
        self.selected.insert(key, out.clone());
        Ok(out)
    }

    fn eval(&mut self, e: &Expr, t: i64) -> Result<Val, PromqlError> {
        match e {
            Expr::Number(n) => Ok(Val::Scalar(*n)),
            Expr::Selector(sel) => {
                let r = t - sel.offset_ms;
                let mut out = Vec::new();
                for i in self.select(sel)? {
                    let s = &self.storage.series()[i];
                    let at = s.samples.partition_point(|&(ts, _)| ts <= r);
                    if at > 0 {
                        let (ts, v) = s.samples[at - 1];
                        if ts >= r - LOOKBACK_MS {
                            out.push(Sample { labels: s.labels.clone(), value: v });
                        }
                    }
                }
                self.read(out.len())?;
                Ok(Val::Vector(out))
            }
            Expr::Range(sel, range) => {
                let r = t - sel.offset_ms;
                let mut out = Vec::new();
                for i in self.select(sel)? {
                    let s = &self.storage.series()[i];
                    let lo = s.samples.partition_point(|&(ts, _)| ts < r - range);
                    let hi = s.samples.partition_point(|&(ts, _)| ts <= r);
                    if hi > lo {
                        self.read(hi - lo)?;
                        out.push(RangeSeries { labels: s.labels.clone(), values: s.samples[lo..hi].to_vec() });
                    }
                }
                Ok(Val::Matrix(out))
            }
            Expr::Neg(inner) => match self.eval(inner, t)? {
                Val::Scalar(v) => Ok(Val::Scalar(-v)),
                Val::Vector(mut v) => {
                    for s in &mut v {
                        s.value = -s.value;
                        drop_name(&mut s.labels);
                    }
                    check_unique(&v)?;
                    Ok(Val::Vector(v))
                }
                Val::Matrix(_) => Err(PromqlError::Eval("unary minus on a range vector".into())),
            },
            Expr::Call { func, args, .. } => self.call(*func, args, t),
            Expr::Aggregate { op, param, expr, grouping, .. } => {
                let k = match param {
                    Some(p) => match self.eval(p, t)? {
                        Val::Scalar(k) => Some(k),
                        _ => return Err(PromqlError::Eval("aggregation parameter must be a scalar".into())),
                    },
                    None => None,
                };
                let Val::Vector(v) = self.eval(expr, t)? else {
                    return Err(PromqlError::Eval("aggregation over a non-vector".into()));
                };
                aggregate(*op, k, v, grouping).map(Val::Vector)
            }
            Expr::Binary { op, lhs, rhs, return_bool, matching, .. } => {
                let l = self.eval(lhs, t)?;
                let r = self.eval(rhs, t)?;
                let out = match (l, r) {
                    (Val::Scalar(a), Val::Scalar(b)) => {
                        let (v, keep) = elem(*op, a, b);
                        return Ok(Val::Scalar(if *return_bool { bool_f(keep) } else { v }));
                    }
                    (Val::Vector(v), Val::Scalar(s)) => vector_scalar(*op, v, s, false, *return_bool),
                    (Val::Scalar(s), Val::Vector(v)) => vector_scalar(*op, v, s, true, *return_bool),
                    (Val::Vector(a), Val::Vector(b)) if op.is_set() => set_op(*op, a, b, matching.as_ref()),
                    (Val::Vector(a), Val::Vector(b)) => vector_vector(*op, a, b, matching.as_ref(), *return_bool)?,
                    _ => return Err(PromqlError::Eval("binary operation on a range vector".into())),
                };
                check_unique(&out)?;
                Ok(Val::Vector(out))
            }
        }
    }

    fn call(&mut self, func: Func, args: &[Expr], t: i64) -> Result<Val, PromqlError> {
        if func == Func::Time {
            return Ok(Val::Scalar(t as f64 / 1000.0));
        }
        let Some(arg) = args.first() else {
            return Err(PromqlError::Eval("function call without an argument".into()));
        };
        let math: Option<fn(f64) -> f64> = match func {
            Func::Abs => Some(f64::abs),
            Func::Ceil => Some(f64::ceil),
            Func::Floor => Some(f64::floor),
            Func::Sqrt => Some(f64::sqrt),
            Func::Exp => Some(f64::exp),
            Func::Ln => Some(f64::ln),
            Func::Log2 => Some(f64::log2),
            Func::Log10 => Some(f64::log10),
            _ => None,
        };
        match func {
            _ if math.is_some() => {
                let Val::Vector(mut v) = self.eval(arg, t)? else {
                    return Err(PromqlError::Eval("this function needs an instant vector".into()));
                };
                let f = math.unwrap_or(f64::abs);
                for s in &mut v {
                    s.value = f(s.value);
                    drop_name(&mut s.labels);
                }
                check_unique(&v)?;
                return Ok(Val::Vector(v));
            }
            Func::Scalar => {
                let Val::Vector(v) = self.eval(arg, t)? else {
                    return Err(PromqlError::Eval("scalar() needs an instant vector".into()));
                };
                return Ok(Val::Scalar(if v.len() == 1 { v[0].value } else { f64::NAN }));
            }
            Func::Vector => {
                let Val::Scalar(x) = self.eval(arg, t)? else {
                    return Err(PromqlError::Eval("vector() needs a scalar".into()));
                };
                return Ok(Val::Vector(vec![Sample { labels: Vec::new(), value: x }]));
            }
            _ => {}
        }
        if func == Func::Absent {
            let Val::Vector(v) = self.eval(arg, t)? else {
                return Err(PromqlError::Eval("absent() needs an instant vector".into()));
            };
            if !v.is_empty() {
                return Ok(Val::Vector(Vec::new()));
            }
            let mut labels: Labels = Vec::new();
            if let Expr::Selector(sel) = arg {
                let mut dup = Vec::new();
                for m in &sel.matchers {
                    if m.op == MatchOp::Eq && m.name != "__name__" {
                        if labels.iter().any(|(k, _)| *k == m.name) {
                            dup.push(m.name.clone());
                        } else {
                            labels.push((m.name.clone(), m.value.clone()));
                        }
                    }
                }
                labels.retain(|(k, v)| !dup.contains(k) && !v.is_empty());
                labels.sort();
            }
            return Ok(Val::Vector(vec![Sample { labels, value: 1.0 }]));
        }
        let (range, offset) = match arg {
            Expr::Range(sel, r) => (*r, sel.offset_ms),
            _ => return Err(PromqlError::Eval("function needs a range vector".into())),
        };
        let Val::Matrix(m) = self.eval(arg, t)? else {
            return Err(PromqlError::Eval("function needs a range vector".into()));
        };
        let q = match (func, args.get(1)) {
            (Func::QuantileOverTime, Some(q)) => match self.eval(q, t)? {
                Val::Scalar(q) => q,
                _ => return Err(PromqlError::Eval("the quantile must be a scalar".into())),
            },
            _ => f64::NAN,
        };
        let mut out = Vec::with_capacity(m.len());
        for s in m {
            let p = &s.values;
            let value = match func {
                Func::Rate => extrapolated(p, t - offset - range, t - offset, true, true),
                Func::Increase => extrapolated(p, t - offset - range, t - offset, true, false),
                Func::Delta => extrapolated(p, t - offset - range, t - offset, false, false),
                Func::Deriv => deriv(p),
                Func::Changes => {
                    Some(p.windows(2).filter(|w| w[0].1 != w[1].1 && !(w[0].1.is_nan() && w[1].1.is_nan())).count()
                        as f64)
                }
                Func::Resets => Some(p.windows(2).filter(|w| w[1].1 < w[0].1).count() as f64),
                Func::AvgOverTime => Some(mean_over_time(p)),
                Func::SumOverTime => Some(ksum(p.iter().map(|x| x.1))),
                Func::CountOverTime => Some(p.len() as f64),
                Func::MinOverTime => {
                    Some(p.iter().map(|x| x.1).fold(f64::NAN, |a, v| if a.is_nan() || v < a { v } else { a }))
                }
                Func::MaxOverTime => {
                    Some(p.iter().map(|x| x.1).fold(f64::NAN, |a, v| if a.is_nan() || v > a { v } else { a }))
                }
                Func::LastOverTime => p.last().map(|x| x.1),
                Func::Irate | Func::Idelta => instant_change(p, func == Func::Irate),
                Func::StddevOverTime => Some(variance(p).sqrt()),
                Func::StdvarOverTime => Some(variance(p)),
                Func::QuantileOverTime => Some(quantile(q, p.iter().map(|x| x.1).collect())),
                _ => None,
            };
            if let Some(value) = value {
                let mut labels = s.labels;
                if func != Func::LastOverTime {
                    drop_name(&mut labels);
                }
                out.push(Sample { labels, value });
            }
        }
        check_unique(&out)?;
        Ok(Val::Vector(out))
    }
}

/// `rate`, `increase` and `delta`: the change over the samples in the window,
/// extrapolated towards the window's ends (by at most half an average
/// sample interval where the data stops short of an end, and for counters
/// never below zero at the start).
fn extrapolated(p: &[(i64, f64)], range_start: i64, range_end: i64, counter: bool, rate: bool) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (first, last) = (p[0], p[p.len() - 1]);
    let mut result = last.1 - first.1;
    if counter {
        for w in p.windows(2) {
            if w[1].1 < w[0].1 {
                result += w[0].1;
            }
        }
    }
    let mut to_start = (first.0 - range_start) as f64 / 1000.0;
    let to_end = (range_end - last.0) as f64 / 1000.0;
    let sampled = (last.0 - first.0) as f64 / 1000.0;
    let avg = sampled / (p.len() - 1) as f64;
    if counter && result > 0.0 && first.1 >= 0.0 {
        let to_zero = sampled * (first.1 / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold { to_start } else { avg / 2.0 };
    interval += if to_end < threshold { to_end } else { avg / 2.0 };
    let mut factor = interval / sampled;
    if rate {
        factor /= (range_end - range_start) as f64 / 1000.0;
    }
    Some(result * factor)
}

/// Mean of a window: a compensated running mean (each step divided by the
/// count first, so large values cannot overflow).
fn mean_over_time(p: &[(i64, f64)]) -> f64 {
    let (mut mean, mut c, mut count) = (0.0f64, 0.0f64, 0.0f64);
    for &(_, v) in p {
        count += 1.0;
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        let inc = v / count - mean / count;
        let t = mean + inc;
        if mean.abs() >= inc.abs() {
            c += (mean - t) + inc;
        } else {
            c += (inc - t) + mean;
        }
        mean = t;
    }
    if mean.is_infinite() {
        mean
    } else {
        mean + c
    }
}

/// Mean of a group, updated one sample at a time.
fn running_mean(values: impl Iterator<Item = f64>) -> f64 {
    let (mut mean, mut count) = (0.0f64, 0.0f64);
    for v in values {
        count += 1.0;
        if count == 1.0 {
            mean = v;
            continue;
        }
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        mean += v / count - mean / count;
    }
    mean
}

/// The q-quantile of the values, interpolated between the nearest ranks
/// (NaN sorts first, as in Prometheus).
fn quantile(q: f64, mut values: Vec<f64>) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.total_cmp(b),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// `irate` (per second, a drop counts as a reset) and `idelta` over the last
/// two samples of the window.
fn instant_change(p: &[(i64, f64)], rate: bool) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (prev, last) = (p[p.len() - 2], p[p.len() - 1]);
    let interval = last.0 - prev.0;
    if interval == 0 {
        return None;
    }
    if !rate {
        return Some(last.1 - prev.1);
    }
    let change = if last.1 < prev.1 { last.1 } else { last.1 - prev.1 };
    Some(change / (interval as f64 / 1000.0))
}

/// One step of a Neumaier-compensated sum: the new sum and compensation.
fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    if sum.abs() >= inc.abs() {
        (t, c + ((sum - t) + inc))
    } else {
        (t, c + ((inc - t) + sum))
    }
}

/// Population variance (Welford's running form, compensated).
fn variance(p: &[(i64, f64)]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0f64, 0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for &(_, v) in p {
        count += 1.0;
        let delta = v - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// Least-squares slope per second.
fn deriv(p: &[(i64, f64)]) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let t0 = p[0].0;
    let first = p[0].1;
    if p.iter().all(|x| x.1 == first) {
        return Some(if first.is_infinite() { f64::NAN } else { 0.0 });
    }
    let n = p.len() as f64;
    let xs = || p.iter().map(|x| (x.0 - t0) as f64 / 1000.0);
    let sum_x = ksum(xs());
    let sum_y = ksum(p.iter().map(|x| x.1));
    let sum_xy = ksum(p.iter().map(|x| (x.0 - t0) as f64 / 1000.0 * x.1));
    let sum_x2 = ksum(xs().map(|x| x * x));
    let cov = sum_xy - sum_x * sum_y / n;
    let var = sum_x2 - sum_x * sum_x / n;
    Some(cov / var)
}

fn bool_f(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// The value of `a op b` and, for comparisons, whether it holds.
fn elem(op: BinOp, a: f64, b: f64) -> (f64, bool) {
    match op {
        BinOp::Add => (a + b, true),
        BinOp::Sub => (a - b, true),
        BinOp::Mul => (a * b, true),
        BinOp::Div => (a / b, true),
        BinOp::Mod => (a % b, true),
        BinOp::Pow => (a.powf(b), true),
        BinOp::Eq => (a, a == b),
        BinOp::Ne => (a, a != b),
        BinOp::Lt => (a, a < b),
        BinOp::Le => (a, a <= b),
        BinOp::Gt => (a, a > b),
        BinOp::Ge => (a, a >= b),
        BinOp::And | BinOp::Or | BinOp::Unless => (f64::NAN, false),
    }
}

fn vector_scalar(op: BinOp, v: Vec<Sample>, s: f64, scalar_left: bool, return_bool: bool) -> Vec<Sample> {
    let mut out = Vec::with_capacity(v.len());
    for mut x in v {
        let (a, b) = if scalar_left { (s, x.value) } else { (x.value, s) };
        let (mut value, keep) = elem(op, a, b);
        if op.is_comparison() {
            // The vector's own value is kept whichever side it is on.
            value = x.value;
            if return_bool {
                value = bool_f(keep);
            } else if !keep {
                continue;
            }
        }
        if !op.is_comparison() || return_bool {
            drop_name(&mut x.labels);
        }
        x.value = value;
        out.push(x);
    }
    out
}

/// `and`, `or`, `unless`: the left side's series, kept or dropped by whether
/// the right side has their match group (`or` adds the right side's others).
fn set_op(op: BinOp, lhs: Vec<Sample>, rhs: Vec<Sample>, m: Option<&Matching>) -> Vec<Sample> {
    use std::collections::HashSet;
    match op {
        BinOp::Or => {
            let left: HashSet<Labels> = lhs.iter().map(|s| signature(&s.labels, m)).collect();
            let mut out = lhs;
            out.extend(rhs.into_iter().filter(|s| !left.contains(&signature(&s.labels, m))));
            out
        }
        _ => {
            let right: HashSet<Labels> = rhs.iter().map(|s| signature(&s.labels, m)).collect();
            let keep = op == BinOp::And;
            lhs.into_iter().filter(|s| right.contains(&signature(&s.labels, m)) == keep).collect()
        }
    }
}

fn signature(l: &Labels, m: Option<&Matching>) -> Labels {
    match m {
        Some(Matching { on: true, labels, .. }) => l.iter().filter(|(k, _)| labels.contains(k)).cloned().collect(),
        Some(Matching { on: false, labels, .. }) => {
            l.iter().filter(|(k, _)| k != "__name__" && !labels.contains(k)).cloned().collect()
        }
        None => l.iter().filter(|(k, _)| k != "__name__").cloned().collect(),
    }
}

fn vector_vector(
    op: BinOp,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    m: Option<&Matching>,
    return_bool: bool,
) -> Result<Vec<Sample>, PromqlError> {
    if lhs.is_empty() || rhs.is_empty() {
        return Ok(Vec::new());
    }
    let card = m.map(|m| m.card).unwrap_or(Card::OneToOne);
    // The "many" side is walked, the "one" side looked up.
    let (many, one) = if card == Card::OneToMany { (rhs, lhs) } else { (lhs, rhs) };
    let mut index: HashMap<Labels, &Sample> = HashMap::with_capacity(one.len());
    for s in &one {
        let sig = signature(&s.labels, m);
        if index.insert(sig.clone(), s).is_some() {
            let side = if card == Card::OneToMany { "left" } else { "right" };
            return Err(PromqlError::Eval(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation; many-to-many matching not allowed: matching labels must be unique on one side",
                fmt_labels(&sig)
            )));
        }
    }
    let mut matched: HashMap<Labels, std::collections::HashSet<Labels>> = HashMap::new();
    let mut out = Vec::new();
    for l in many {
        let sig = signature(&l.labels, m);
        let Some(r) = index.get(&sig) else { continue };
        let (a, b) = if card == Card::OneToMany { (r.value, l.value) } else { (l.value, r.value) };
        let (mut value, keep) = elem(op, a, b);
        if op.is_comparison() {
            if return_bool {
                value = bool_f(keep);
            } else if !keep {
                continue;
            }
        }
        let mut labels = l.labels;
        if !op.is_comparison() {
            drop_name(&mut labels);
        }
        match (m, card) {
            (Some(Matching { on: true, labels: on, .. }), Card::OneToOne) => labels.retain(|(k, _)| on.contains(k)),
            (Some(Matching { on: false, labels: ign, .. }), Card::OneToOne) => labels.retain(|(k, _)| !ign.contains(k)),
            (Some(mm), _) => {
                for name in &mm.include {
                    labels.retain(|(k, _)| k != name);
                    if let Some(v) = r.labels.iter().find(|(k, _)| k == name) {
                        labels.push(v.clone());
                    }
                }
                labels.sort();
            }
            (None, _) => {}
        }
        if return_bool {
            drop_name(&mut labels);
        }
        let seen = matched.entry(sig.clone()).or_default();
        if card == Card::OneToOne {
            if !seen.is_empty() {
                return Err(PromqlError::Eval(format!(
                    "multiple matches for labels {}: many-to-one matching must be explicit (group_left/group_right)",
                    fmt_labels(&sig)
                )));
            }
        } else if seen.contains(&labels) {
            return Err(PromqlError::Eval(format!(
                "multiple matches for labels {}: grouping labels must ensure unique matches",
                fmt_labels(&sig)
            )));
        }
        seen.insert(labels.clone());
        out.push(Sample { labels, value });
    }
    Ok(out)
}

fn fmt_labels(l: &Labels) -> String {
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

fn group_key(l: &Labels, g: &Grouping) -> Labels {
    if g.without {
        l.iter().filter(|(k, _)| k != "__name__" && !g.labels.contains(k)).cloned().collect()
    } else {
        l.iter().filter(|(k, _)| g.labels.contains(k)).cloned().collect()
    }
}

fn aggregate(op: AggOp, k: Option<f64>, v: Vec<Sample>, g: &Grouping) -> Result<Vec<Sample>, PromqlError> {
    let mut order: Vec<Labels> = Vec::new();
    let mut groups: HashMap<Labels, Vec<Sample>> = HashMap::new();
    for s in v {
        let key = group_key(&s.labels, g);
        groups
            .entry(key.clone())
            .or_insert_with(|| {
                order.push(key);
                Vec::new()
            })
            .push(s);
    }
    let mut out = Vec::new();
    for key in order {
        let Some(members) = groups.remove(&key) else { continue };
        let vals = || members.iter().map(|s| s.value);
        let value = match op {
            // The order of operations is Prometheus's, so the last bits agree too.
            AggOp::Sum => vals().fold(0.0, |a, v| a + v),
            AggOp::Avg => running_mean(vals()),
            AggOp::Count => members.len() as f64,
            AggOp::Min => vals().fold(f64::NAN, |a, v| if a.is_nan() || v < a { v } else { a }),
            AggOp::Max => vals().fold(f64::NAN, |a, v| if a.is_nan() || v > a { v } else { a }),
            AggOp::Group => 1.0,
            AggOp::Quantile => quantile(k.unwrap_or(f64::NAN), vals().collect()),
            AggOp::Stddev | AggOp::Stdvar => {
                let (mut count, mut mean, mut var) = (0.0f64, 0.0f64, 0.0f64);
                for v in vals() {
                    count += 1.0;
                    if count == 1.0 {
                        mean = v;
                        continue;
                    }
                    let delta = v - mean;
                    mean += delta / count;
                    var += delta * (v - mean);
                }
                if op == AggOp::Stddev {
                    (var / count).sqrt()
                } else {
                    var / count
                }
            }
            AggOp::Topk | AggOp::Bottomk => {
                let k = k.unwrap_or(0.0);
                if k.is_nan() || k.abs() > 1e9 {
                    return Err(PromqlError::Eval(format!("scalar value {k} overflows the k of topk/bottomk")));
                }
                let k = k as i64;
                if k < 1 {
                    return Ok(Vec::new());
                }
                let top = op == AggOp::Topk;
                // Prometheus keeps a binary heap of the k best so far (a better
                // sample pops the worst and is pushed); on ties the heap's shape
                // decides which series stay, so do exactly the same. Prometheus
                // 2.42 feeds computed vectors of range queries in hash-map order,
                // so there its own choice among ties varies from run to run.
                let worse = |a: f64, b: f64| a.is_nan() || if top { a < b } else { a > b };
                let mut heap: Vec<Sample> = Vec::with_capacity((k as usize).min(members.len()));
                for s in members {
                    if (heap.len() as i64) == k {
                        if !heap_replaces(heap[0].value, s.value, top) {
                            continue;
                        }
                        if k == 1 {
                            heap[0] = s;
                            continue;
                        }
                        // Pop the worst: move the last to the root and sift it down.
                        let last = heap.len() - 1;
                        heap.swap(0, last);
                        sift_down(&mut heap[..last], &worse);
                        heap.pop();
                    }
                    heap.push(s);
                    let mut j = heap.len() - 1;
                    while j > 0 {
                        let i = (j - 1) / 2;
                        if !worse(heap[j].value, heap[i].value) {
                            break;
                        }
                        heap.swap(i, j);
                        j = i;
                    }
                }
                out.extend(heap);
                continue;
            }
        };
        out.push(Sample { labels: key, value });
    }
    Ok(out)
}

/// Whether a new sample displaces the heap's worst (Prometheus's test: strictly
/// better, or the worst is NaN).
fn heap_replaces(worst: f64, new: f64, top: bool) -> bool {
    (if top { worst < new } else { worst > new }) || worst.is_nan()
}

/// Sifts the root down to restore the heap order.
fn sift_down(heap: &mut [Sample], worse: &dyn Fn(f64, f64) -> bool) {
    let n = heap.len();
    let mut i = 0;
    loop {
        let j1 = 2 * i + 1;
        if j1 >= n {
            break;
        }
        let mut j = j1;
        if j1 + 1 < n && worse(heap[j1 + 1].value, heap[j1].value) {
            j = j1 + 1;
        }
        if !worse(heap[j].value, heap[i].value) {
            break;
        }
        heap.swap(i, j);
        i = j;
    }
}
