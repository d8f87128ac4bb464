//! The backends file of `aiops run`: which operators to ask, built-in or
//! over HTTP (sent by [`crate::arena`]), with concurrency and prices.

use fleetbench_core::ApiKind;
use serde::Deserialize;

use crate::leaderboard::Price;
use crate::operator::BUILTIN;

/// One backend entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    pub name: String,
    /// A built-in operator (`rules`, `always-healthy`, `random`) instead of HTTP.
    pub builtin: Option<String>,
    pub url: Option<String>,
    pub model: Option<String>,
    /// Wire protocol (`chat`, `completions`, `anthropic`); default chat.
    pub api: Option<ApiKind>,
    /// Environment variable holding the API key.
    pub api_key_env: Option<String>,
    #[serde(default = "one")]
    pub concurrency: usize,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    /// Dollars per million input / output tokens.
    pub price_input_per_mtok: Option<f64>,
    pub price_output_per_mtok: Option<f64>,
    /// The name of an entry in the price sheet (`aiops run --prices`), of
    /// any kind (api, rented, owned); replaces the two prices above.
    pub price: Option<String>,
}

fn one() -> usize {
    1
}

impl BackendSpec {
    pub fn price(&self) -> Option<Price> {
        match (self.price_input_per_mtok, self.price_output_per_mtok) {
            (None, None) => None,
            (i, o) => Some(Price { input_per_mtok: i.unwrap_or(0.0), output_per_mtok: o.unwrap_or(0.0) }),
        }
    }

    /// A built-in backend by name.
    pub fn builtin(name: &str) -> BackendSpec {
        BackendSpec {
            name: name.to_string(),
            builtin: Some(name.to_string()),
            url: None,
            model: None,
            api: None,
            api_key_env: None,
            concurrency: 1,
            max_tokens: None,
            temperature: None,
            price_input_per_mtok: None,
            price_output_per_mtok: None,
            price: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendsFile {
    #[serde(alias = "backends")]
    backend: Vec<BackendSpec>,
}

/// Errors in a backends list or file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackendsError {
    #[error("backends file is not valid TOML: {0}")]
    Toml(String),
    #[error("backend '{0}': {1}")]
    Invalid(String, String),
    #[error("unknown built-in backend '{0}' (built-ins: rules, always-healthy, random; or pass a backends.toml file)")]
    UnknownBuiltin(String),
    #[error("no backends given")]
    Empty,
    #[error("reading {path}: {why}")]
    Read { path: String, why: String },
}

/// `--backends`: a backends TOML file (a path ending in `.toml`, or any
/// existing file), else a comma list of built-in names.
pub fn parse_backends_arg(arg: &str) -> Result<Vec<BackendSpec>, BackendsError> {
    if arg.ends_with(".toml") || std::path::Path::new(arg).is_file() {
        let text = std::fs::read_to_string(arg)
            .map_err(|e| BackendsError::Read { path: arg.to_string(), why: e.to_string() })?;
        parse_backends_toml(&text)
    } else {
        parse_builtin_list(arg)
    }
}

/// Parses a comma list of built-in names.
pub fn parse_builtin_list(list: &str) -> Result<Vec<BackendSpec>, BackendsError> {
    let specs: Vec<BackendSpec> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|n| {
            if BUILTIN.contains(&n) {
                Ok(BackendSpec::builtin(n))
            } else {
                Err(BackendsError::UnknownBuiltin(n.to_string()))
            }
        })
        .collect::<Result<_, _>>()?;
    if specs.is_empty() {
        return Err(BackendsError::Empty);
    }
    let mut names = std::collections::BTreeSet::new();
    if let Some(dup) = specs.iter().find(|s| !names.insert(s.name.as_str())) {
        return Err(BackendsError::Invalid(dup.name.clone(), "name used twice".into()));
    }
    Ok(specs)
}

/// Parses a backends TOML file (`[[backend]]` tables).
pub fn parse_backends_toml(text: &str) -> Result<Vec<BackendSpec>, BackendsError> {
    let file: BackendsFile = toml::from_str(text).map_err(|e| BackendsError::Toml(e.to_string()))?;
    if file.backend.is_empty() {
        return Err(BackendsError::Empty);
    }
    let mut names = std::collections::BTreeSet::new();
    for b in &file.backend {
        if !names.insert(b.name.clone()) {
            return Err(BackendsError::Invalid(b.name.clone(), "name used twice".into()));
        }
        if b.concurrency == 0 || b.concurrency > 4096 {
            return Err(BackendsError::Invalid(b.name.clone(), "concurrency must be 1..4096".into()));
        }
        match (&b.builtin, &b.url) {
            (Some(n), None) if BUILTIN.contains(&n.as_str()) => {}
            (Some(n), None) => return Err(BackendsError::UnknownBuiltin(n.clone())),
            (None, Some(_)) => {
                if b.model.is_none() {
                    return Err(BackendsError::Invalid(b.name.clone(), "an HTTP backend needs 'model'".into()));
                }
            }
            (Some(_), Some(_)) => {
                return Err(BackendsError::Invalid(b.name.clone(), "give either 'builtin' or 'url', not both".into()))
            }
            (None, None) => {
                return Err(BackendsError::Invalid(b.name.clone(), "needs 'url' (HTTP) or 'builtin'".into()))
            }
        }
    }
    Ok(file.backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_builtins_and_files() {
        assert_eq!(parse_builtin_list("rules, random").unwrap().len(), 2);
        assert!(matches!(parse_builtin_list("rules,gpt9"), Err(BackendsError::UnknownBuiltin(n)) if n == "gpt9"));
        assert!(matches!(parse_builtin_list("rules,random,rules"), Err(BackendsError::Invalid(n, _)) if n == "rules"));
        let text = r#"
            [[backend]]
            name = "local"
            url = "http://127.0.0.1:8000/v1"
            model = "qwen"
            api = "chat"
            concurrency = 4
            price_output_per_mtok = 0.6

            [[backend]]
            name = "baseline"
            builtin = "rules"
        "#;
        let b = parse_backends_toml(text).unwrap();
        assert_eq!(b[0].api, Some(ApiKind::Chat));
        assert_eq!(b[0].price().unwrap().output_per_mtok, 0.6);
        assert_eq!(b[1].concurrency, 1);
        assert!(parse_backends_toml("[[backend]]\nname = \"x\"\nurl = \"http://h/v1\"\n").is_err());
        assert!(parse_backends_toml("[[backend]]\nname = \"x\"\nbuiltin = \"rules\"\nsurprise = 1\n").is_err());
        assert!(parse_backends_toml("not toml [").is_err());
    }
}
