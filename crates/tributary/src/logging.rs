//! Log lines in Prometheus 3.x's shapes (log/slog): logfmt
//! `time=… level=INFO source=file.rs:12 msg="…" key=value` or the same keys
//! as a JSON object, one line per event on stderr.

use std::fmt::Write as _;
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LogFormat {
    Logfmt,
    Json,
}

/// Installs the global subscriber. `level` is one of debug|info|warn|error.
pub fn init(level: &str, format: &str) {
    let max = match level {
        "debug" => Level::DEBUG,
        "warn" => Level::WARN,
        "error" => Level::ERROR,
        _ => Level::INFO,
    };
    let format = if format == "json" {
        LogFormat::Json
    } else {
        LogFormat::Logfmt
    };
    let layer =
        LineLayer { format }.with_filter(tracing_subscriber::filter::LevelFilter::from_level(max));
    // A second init (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

struct LineLayer {
    format: LogFormat,
}

#[derive(Default)]
struct Fields {
    msg: String,
    kv: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg = value.to_string();
        } else {
            self.kv.push((field.name(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let s = format!("{value:?}");
        if field.name() == "message" {
            self.msg = s;
        } else {
            self.kv.push((field.name(), s));
        }
    }
}

fn level_word(l: &Level) -> &'static str {
    match *l {
        Level::ERROR => "ERROR",
        Level::WARN => "WARN",
        Level::INFO => "INFO",
        _ => "DEBUG",
    }
}

/// logfmt quoting: bare when the value has no space, quote, `=` or control
/// character; otherwise a Go-style quoted string.
fn logfmt_value(out: &mut String, v: &str) {
    let bare = !v.is_empty()
        && v.chars()
            .all(|c| c > ' ' && c != '"' && c != '=' && c != '\u{7f}');
    if bare {
        out.push_str(v);
    } else {
        let _ = write!(out, "{v:?}");
    }
}

fn json_string(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

pub fn format_line(
    format: LogFormat,
    time: &str,
    level: &str,
    source: &str,
    msg: &str,
    kv: &[(&str, String)],
) -> String {
    let mut line = String::with_capacity(128);
    match format {
        LogFormat::Logfmt => {
            let _ = write!(line, "time={time} level={level} source={source} msg=");
            logfmt_value(&mut line, msg);
            for (k, v) in kv {
                let _ = write!(line, " {k}=");
                logfmt_value(&mut line, v);
            }
        }
        LogFormat::Json => {
            let _ = write!(
                line,
                "{{\"time\":\"{time}\",\"level\":\"{level}\",\"source\":"
            );
            json_string(&mut line, source);
            line.push_str(",\"msg\":");
            json_string(&mut line, msg);
            for (k, v) in kv {
                line.push(',');
                json_string(&mut line, k);
                line.push(':');
                json_string(&mut line, v);
            }
            line.push('}');
        }
    }
    line.push('\n');
    line
}

impl<S: Subscriber> Layer<S> for LineLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let file = meta.file().unwrap_or("");
        let file = file.rsplit('/').next().unwrap_or(file);
        let source = format!("{}:{}", file, meta.line().unwrap_or(0));
        let time = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let line = format_line(
            self.format,
            &time,
            level_word(meta.level()),
            &source,
            &fields.msg,
            &fields.kv,
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_shape() {
        let l = format_line(
            LogFormat::Logfmt,
            "2026-01-01T00:00:00.000Z",
            "INFO",
            "main.rs:1",
            "Starting Tributary",
            &[("mode", "agent".into()), ("err", "a b".into())],
        );
        assert_eq!(l, "time=2026-01-01T00:00:00.000Z level=INFO source=main.rs:1 msg=\"Starting Tributary\" mode=agent err=\"a b\"\n");
    }

    #[test]
    fn json_shape() {
        let l = format_line(
            LogFormat::Json,
            "T",
            "WARN",
            "x.rs:2",
            "m\"q",
            &[("k", "v".into())],
        );
        let v: serde_json::Value = serde_json::from_str(l.trim()).unwrap();
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["msg"], "m\"q");
        assert_eq!(v["k"], "v");
    }
}
