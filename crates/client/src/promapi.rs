//! The one client of a Prometheus server's HTTP API (`/api/v1/query`,
//! `/api/v1/query_range`): instant vectors for the energy meter that reads
//! DCGM power, matrices for the arena's telemetry windows; anything that
//! speaks the API (Thanos, Mimir, VictoriaMetrics) works. Bodies are bounded
//! and errors name the URL and what was wrong.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// Largest answer read, bytes.
const MAX_BODY: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PromApiError {
    #[error("'{0}' is not an http(s) URL (expected e.g. http://127.0.0.1:9090)")]
    BadUrl(String),
    #[error("could not build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("cannot reach {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status} with a body that is not the Prometheus API's JSON: {why}")]
    NotApi { url: String, status: u16, why: String },
    #[error("{url}: the answer is larger than {MAX_BODY} bytes")]
    TooLarge { url: String },
    #[error("query {query} failed: {error_type}: {error}")]
    Failed { query: String, error_type: String, error: String },
    #[error("query {query} gave a {got}, expected a {want}")]
    WrongType { query: String, got: String, want: &'static str },
}

#[derive(Debug, Deserialize)]
struct ApiResponse<T> {
    status: String,
    data: Option<ApiData<T>>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ApiData<T> {
    #[serde(rename = "resultType")]
    result_type: String,
    result: T,
}

/// One series of an instant query.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct VectorSample {
    pub metric: BTreeMap<String, String>,
    /// `[unix seconds, "value"]`.
    pub value: (f64, String),
}

/// One series of a range query.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct RangeSeries {
    pub metric: BTreeMap<String, String>,
    /// `[unix seconds, "value"]` pairs.
    pub values: Vec<(f64, String)>,
}

impl RangeSeries {
    pub fn name(&self) -> &str {
        self.metric.get("__name__").map(String::as_str).unwrap_or("")
    }
    /// Points with values parsed (`NaN`, `+Inf` accepted; garbage dropped).
    pub fn points(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.values.iter().filter_map(|(t, v)| v.parse::<f64>().ok().map(|v| (*t, v)))
    }
}

/// A Prometheus server.
#[derive(Debug, Clone)]
pub struct PromApi {
    base: String,
    http: reqwest::Client,
}

impl PromApi {
    /// `base` like `http://127.0.0.1:9090`; every request gives up after `timeout`.
    pub fn new(base: &str, timeout: Duration) -> Result<PromApi, PromApiError> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(PromApiError::BadUrl(base));
        }
        let http = reqwest::Client::builder().timeout(timeout).build().map_err(PromApiError::Client)?;
        Ok(PromApi { base, http })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// An instant query, evaluated now or at `time` (unix seconds).
    pub async fn query(&self, query: &str, time: Option<f64>) -> Result<Vec<VectorSample>, PromApiError> {
        let mut params = vec![("query", query.to_string())];
        if let Some(t) = time {
            params.push(("time", format!("{t:.3}")));
        }
        self.get("query", query, &params, "vector").await
    }

    /// A range query over `[start, end]` (unix seconds) every `step` seconds.
    pub async fn query_range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<RangeSeries>, PromApiError> {
        let params = [
            ("query", query.to_string()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
            ("step", format!("{step:.3}")),
        ];
        self.get("query_range", query, &params, "matrix").await
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &str,
        query: &str,
        params: &[(&str, String)],
        want: &'static str,
    ) -> Result<T, PromApiError> {
        let url = format!("{}/api/v1/{endpoint}", self.base);
        let unreachable = |source| PromApiError::Unreachable { url: url.clone(), source };
        let resp = self.http.get(&url).query(params).send().await.map_err(unreachable)?;
        let status = resp.status().as_u16();
        if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
            return Err(PromApiError::TooLarge { url });
        }
        let body = resp.bytes().await.map_err(unreachable)?;
        if body.len() > MAX_BODY {
            return Err(PromApiError::TooLarge { url });
        }
        parse(&body, query, want).map_err(|e| match e {
            PromApiError::NotApi { why, .. } => PromApiError::NotApi { url, status, why },
            other => other,
        })
    }
}

/// Parses an API answer whose result should be a `want` (`vector`, `matrix`).
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8], query: &str, want: &'static str) -> Result<T, PromApiError> {
    let not_api = |why: String| PromApiError::NotApi { url: String::new(), status: 0, why };
    let resp: ApiResponse<serde_json::Value> = serde_json::from_slice(body).map_err(|e| not_api(e.to_string()))?;
    if resp.status != "success" {
        return Err(PromApiError::Failed {
            query: query.to_string(),
            error_type: resp.error_type.unwrap_or_else(|| resp.status.clone()),
            error: resp.error.unwrap_or_else(|| "no message".into()),
        });
    }
    let data = resp.data.ok_or_else(|| not_api("success without data".into()))?;
    if data.result_type != want {
        return Err(PromApiError::WrongType { query: query.to_string(), got: data.result_type, want });
    }
    serde_json::from_value(data.result).map_err(|e| not_api(format!("the {want} result: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vectors_and_matrices_and_rejects_errors() {
        let m = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"up","job":"x"},"values":[[1778544000,"0.5"],[1778544015,"NaN"],[1778544030,"junk"]]}]}}"#;
        let r: Vec<RangeSeries> = parse(m, "up", "matrix").expect("matrix");
        assert_eq!((r[0].name(), r[0].points().count()), ("up", 2));
        let v = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"3"]}]}}"#;
        let s: Vec<VectorSample> = parse(v, "x", "vector").expect("vector");
        assert_eq!(s[0].value.1, "3");
        assert!(matches!(parse::<Vec<RangeSeries>>(v, "x", "matrix"), Err(PromApiError::WrongType { .. })));
        let err = br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert!(
            matches!(parse::<Vec<VectorSample>>(err, "x", "vector"), Err(PromApiError::Failed { error_type, .. }) if error_type == "bad_data")
        );
        assert!(parse::<Vec<VectorSample>>(b"<html>", "x", "vector").is_err());
    }
}
