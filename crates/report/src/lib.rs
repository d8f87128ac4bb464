//! Renderers: the same run as JSON (vLLM's result keys plus ours), one CSV
//! row per request, a Markdown summary fit for a blog post, and the
//! terminal summary. Renderers return strings or write to a writer; they
//! never print.

pub mod csv_out;
pub mod export;
pub mod html;
pub mod json_out;
pub mod local_llm_bench;
pub mod summary;
pub mod svg;

pub use csv_out::write_requests_csv;
pub use export::{render, Export, Format};
pub use html::{write_report, HtmlReportError, Report, ReportFiles};
pub use json_out::run_json;
pub use summary::{markdown_summary, repeats_table, terminal_summary, time_scale_note};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("writing CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("reading CSV: {0}")]
    CsvRead(#[source] csv::Error),
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
    #[error("writing JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("{what} has no {format} form")]
    Unsupported { what: &'static str, format: &'static str },
}
