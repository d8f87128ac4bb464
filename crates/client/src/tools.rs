//! Tools offered with a request, and tool calls read back from a response.
//!
//! The tools are given once, OpenAI-style (`[{"type": "function",
//! "function": {name, description, parameters}}]`), and converted for the
//! Anthropic Messages API (`[{name, description, input_schema}]`). A
//! response's tool calls arrive in pieces (OpenAI `tool_calls` deltas keyed
//! by `index`; Anthropic `tool_use` blocks filled by `input_json_delta`);
//! [`ToolCalls`] joins them into complete calls.

use fleetbench_core::{ApiKind, ToolCall};
use serde_json::{json, Value};

/// Most tools one request may offer.
pub const MAX_TOOLS: usize = 128;
/// Most tool calls kept from one response.
pub const MAX_CALLS: usize = 128;

/// A tools array, ready for either API.
#[derive(Debug, Clone, PartialEq)]
pub struct Tools {
    openai: Value,
    anthropic: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum ToolsError {
    #[error("reading the tools file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("the tools file {path} is not JSON: {source}")]
    Json { path: String, source: serde_json::Error },
    #[error("tools: {0} (expected an OpenAI tools array: [{{\"type\": \"function\", \"function\": {{\"name\": ..., \"parameters\": {{...}}}}}}])")]
    Shape(String),
}

impl Tools {
    /// Checks an OpenAI-style tools array and prepares its Anthropic form.
    pub fn from_openai(v: Value) -> Result<Tools, ToolsError> {
        let shape = |m: String| ToolsError::Shape(m);
        let list = v.as_array().ok_or_else(|| shape("the top level is not an array".into()))?;
        if list.is_empty() {
            return Err(shape("the array is empty".into()));
        }
        if list.len() > MAX_TOOLS {
            return Err(shape(format!("{} tools, at most {MAX_TOOLS} are accepted", list.len())));
        }
        let mut anthropic = Vec::with_capacity(list.len());
        for (i, t) in list.iter().enumerate() {
            if t.get("type").and_then(Value::as_str) != Some("function") {
                return Err(shape(format!("tool {i}: \"type\" must be \"function\"")));
            }
            let f = t.get("function").ok_or_else(|| shape(format!("tool {i}: no \"function\" object")))?;
            let name = f
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| shape(format!("tool {i}: no \"function.name\"")))?;
            let parameters = f.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object"}));
            if !parameters.is_object() {
                return Err(shape(format!("tool {i} ({name}): \"parameters\" must be a JSON Schema object")));
            }
            let mut a = json!({ "name": name, "input_schema": parameters });
            if let Some(d) = f.get("description").and_then(Value::as_str) {
                a["description"] = json!(d);
            }
            anthropic.push(a);
        }
        Ok(Tools { openai: v, anthropic: Value::Array(anthropic) })
    }

    /// Reads an OpenAI-style tools array from a JSON file.
    pub fn from_file(path: &std::path::Path) -> Result<Tools, ToolsError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ToolsError::Read { path: p.clone(), source })?;
        let v = serde_json::from_str(&text).map_err(|source| ToolsError::Json { path: p, source })?;
        Tools::from_openai(v)
    }

    /// The `tools` value to send to `api`.
    pub fn for_api(&self, api: ApiKind) -> &Value {
        match api {
            ApiKind::Anthropic => &self.anthropic,
            _ => &self.openai,
        }
    }
}

/// One piece of a tool call as a stream event carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolDelta {
    /// Which call the piece belongs to (OpenAI `index`, Anthropic block index).
    pub index: usize,
    pub id: Option<String>,
    pub name: Option<String>,
    /// More argument text, appended to what came before.
    pub arguments: String,
}

/// The calls of one response, assembled from their pieces in arrival order.
#[derive(Debug, Default)]
pub struct ToolCalls {
    calls: Vec<(usize, ToolCall)>,
}

impl ToolCalls {
    /// Adds one piece; `false` when it would start a call past [`MAX_CALLS`].
    pub fn push(&mut self, d: ToolDelta) -> bool {
        let at = match self.calls.iter().position(|(i, _)| *i == d.index) {
            Some(at) => at,
            None if self.calls.len() >= MAX_CALLS => return false,
            None => {
                self.calls.push((d.index, ToolCall::default()));
                self.calls.len() - 1
            }
        };
        let call = &mut self.calls[at].1;
        if let Some(id) = d.id.filter(|s| !s.is_empty()) {
            call.id = id;
        }
        if let Some(name) = d.name.filter(|s| !s.is_empty()) {
            call.name.push_str(&name);
        }
        call.arguments.push_str(&d.arguments);
        true
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// The complete calls, in the order they started.
    pub fn take(&mut self) -> Vec<ToolCall> {
        std::mem::take(&mut self.calls).into_iter().map(|(_, c)| c).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_tools_convert_for_anthropic() {
        let t = Tools::from_openai(json!([{
            "type": "function",
            "function": {"name": "lookup", "description": "find it", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}
        }]))
        .unwrap();
        let a = t.for_api(ApiKind::Anthropic);
        assert_eq!(a[0]["name"], "lookup");
        assert_eq!(a[0]["description"], "find it");
        assert_eq!(a[0]["input_schema"]["properties"]["q"]["type"], "string");
        assert_eq!(t.for_api(ApiKind::Chat)[0]["function"]["name"], "lookup");
    }

    #[test]
    fn malformed_tools_are_refused_with_the_reason() {
        for (v, why) in [
            (json!({"type": "function"}), "not an array"),
            (json!([]), "empty"),
            (json!([{"type": "code"}]), "\"type\" must be"),
            (json!([{"type": "function", "function": {}}]), "function.name"),
            (json!([{"type": "function", "function": {"name": "f", "parameters": 3}}]), "parameters"),
        ] {
            let e = Tools::from_openai(v).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn pieces_join_into_calls_by_index() {
        let mut c = ToolCalls::default();
        let d = |index, id: Option<&str>, name: Option<&str>, args: &str| ToolDelta {
            index,
            id: id.map(str::to_string),
            name: name.map(str::to_string),
            arguments: args.into(),
        };
        assert!(c.push(d(0, Some("call_a"), Some("first"), "")));
        assert!(c.push(d(1, Some("call_b"), Some("second"), "{\"x\":")));
        assert!(c.push(d(0, None, None, "{\"q\":")));
        assert!(c.push(d(0, None, None, "\"up\"}")));
        assert!(c.push(d(1, None, None, "2}")));
        let calls = c.take();
        assert_eq!(calls.len(), 2);
        assert_eq!((calls[0].id.as_str(), calls[0].name.as_str()), ("call_a", "first"));
        assert_eq!(calls[0].arguments, r#"{"q":"up"}"#);
        assert_eq!(calls[1].arguments, r#"{"x":2}"#);
        assert!(c.is_empty());
        for i in 0..MAX_CALLS {
            assert!(c.push(d(i, None, Some("f"), "")));
        }
        assert!(!c.push(d(MAX_CALLS, None, Some("f"), "")));
    }
}
