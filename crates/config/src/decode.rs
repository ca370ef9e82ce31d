//! Typed access to the YAML node tree with error collection.
//!
//! [`Ctx`] accumulates [`ConfigError`]s; converters return `Option<T>` and
//! record an error instead of failing, so decoding continues past a bad
//! field and reports everything in one go. [`Fields`] wraps one mapping: each
//! known key is `take`n, and `finish` reports whatever was left as an
//! unknown field (Prometheus decodes strictly).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{ConfigError, Position};
use crate::units::{parse_duration, parse_size};
use crate::yaml::{Entry, Node, Value};

pub(crate) struct Ctx<'a> {
    file: String,
    pub base_dir: &'a Path,
    pub errors: Vec<ConfigError>,
    /// Label-name rules for relabel rules being decoded (global scheme,
    /// overridden per scrape job).
    pub name_validation: crate::relabel::NameValidation,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(file: &str, base_dir: &'a Path) -> Self {
        Ctx {
            file: file.to_string(),
            base_dir,
            errors: Vec::new(),
            name_validation: crate::relabel::NameValidation::Utf8,
        }
    }

    pub(crate) fn error(&mut self, pos: Position, path: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            position: pos,
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// An error value at `pos`/`path` in this file (message filled later).
    pub(crate) fn located(&self, pos: Position, path: &str) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            position: pos,
            path: path.to_string(),
            message: String::new(),
        }
    }

    /// Makes a relative file path relative to the configuration directory,
    /// as Prometheus's `SetDirectory` does.
    pub(crate) fn resolve_path(&self, path: &str) -> String {
        if path.is_empty() || Path::new(path).is_absolute() {
            return path.to_string();
        }
        let joined: PathBuf = self.base_dir.join(path);
        joined.to_string_lossy().into_owned()
    }
}

pub(crate) fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// A mapping being decoded. `type_name` names the Prometheus type in
/// unknown-field messages (`field foo not found in type config.ScrapeConfig`).
pub(crate) struct Fields<'n> {
    entries: &'n [Entry],
    used: Vec<bool>,
    pub path: String,
    pub pos: Position,
    type_name: &'static str,
}

impl<'n> Fields<'n> {
    /// Opens `node` as a mapping; `null` is an empty mapping. A non-mapping
    /// records an error and returns `None`.
    pub(crate) fn open(
        ctx: &mut Ctx,
        node: &'n Node,
        path: &str,
        type_name: &'static str,
    ) -> Option<Fields<'n>> {
        let entries: &'n [Entry] = match &node.value {
            Value::Map(entries) => entries,
            Value::Null => &[],
            _ => {
                ctx.error(
                    node.pos,
                    path,
                    format!("expected a mapping for {type_name}"),
                );
                return None;
            }
        };
        Some(Fields {
            entries,
            used: vec![false; entries.len()],
            path: path.to_string(),
            pos: node.pos,
            type_name,
        })
    }

    /// The value of `key`, marking it known. A `null` value counts as absent
    /// (go-yaml leaves the field at its zero value).
    pub(crate) fn take(&mut self, key: &str) -> Option<&'n Node> {
        let i = self.entries.iter().position(|e| e.key == key)?;
        if let Some(u) = self.used.get_mut(i) {
            *u = true;
        }
        let node = &self.entries.get(i)?.value;
        (!node.is_null()).then_some(node)
    }

    /// Like `take` but keeps explicit nulls (for lists whose null entries
    /// must be diagnosed).
    pub(crate) fn has_key(&self, key: &str) -> bool {
        self.entries.iter().any(|e| e.key == key)
    }

    /// Position of `key`'s value, or of the mapping when absent.
    pub(crate) fn pos_of(&self, key: &str) -> Position {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .map_or(self.pos, |e| e.value.pos)
    }

    pub(crate) fn path_of(&self, key: &str) -> String {
        child(&self.path, key)
    }

    /// Decodes `key` with `conv` when present.
    pub(crate) fn get<T>(
        &mut self,
        ctx: &mut Ctx,
        key: &str,
        conv: impl FnOnce(&mut Ctx, &Node, &str) -> Option<T>,
    ) -> Option<T> {
        let node = self.take(key)?;
        let path = self.path_of(key);
        conv(ctx, node, &path)
    }

    /// Reports every key that was never taken.
    pub(crate) fn finish(self, ctx: &mut Ctx) {
        for (entry, used) in self.entries.iter().zip(&self.used) {
            if !used {
                ctx.error(
                    entry.key_pos,
                    &child(&self.path, &entry.key),
                    format!("field {} not found in type {}", entry.key, self.type_name),
                );
            }
        }
    }

    /// Takes every key ending in `suffix` that is not in `except`, with the
    /// key's position (used to reject unsupported `*_sd_configs`).
    pub(crate) fn take_suffixed(
        &mut self,
        suffix: &str,
        except: &[&str],
    ) -> Vec<(String, Position)> {
        let mut out = Vec::new();
        for (entry, used) in self.entries.iter().zip(self.used.iter_mut()) {
            if !*used && entry.key.ends_with(suffix) && !except.contains(&entry.key.as_str()) {
                *used = true;
                out.push((entry.key.clone(), entry.key_pos));
            }
        }
        out
    }

    /// Marks a set of keys as accepted without decoding them (inert blocks).
    pub(crate) fn accept(&mut self, keys: &[&str]) {
        for key in keys {
            let _ = self.take(key);
        }
    }
}

fn scalar<'n>(ctx: &mut Ctx, node: &'n Node, path: &str, what: &str) -> Option<(&'n str, bool)> {
    match &node.value {
        Value::Scalar { text, plain } => Some((text.as_str(), *plain)),
        Value::Null => Some(("", true)),
        _ => {
            ctx.error(node.pos, path, format!("expected {what}, got a collection"));
            None
        }
    }
}

pub(crate) fn string(ctx: &mut Ctx, node: &Node, path: &str) -> Option<String> {
    scalar(ctx, node, path, "a string").map(|(s, _)| s.to_string())
}

pub(crate) fn boolean(ctx: &mut Ctx, node: &Node, path: &str) -> Option<bool> {
    let (text, plain) = scalar(ctx, node, path, "a boolean")?;
    // go-yaml v2 resolves YAML 1.1 booleans, but only in plain scalars.
    let value = if plain {
        match text {
            "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "y" | "Y" => {
                Some(true)
            }
            "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "n"
            | "N" => Some(false),
            _ => None,
        }
    } else {
        None
    };
    if value.is_none() {
        ctx.error(
            node.pos,
            path,
            format!("cannot unmarshal {text:?} into bool"),
        );
    }
    value
}

fn parse_int(text: &str) -> Option<i128> {
    let cleaned: String = text.chars().filter(|c| *c != '_').collect();
    let (negative, digits) = match cleaned.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, cleaned.strip_prefix('+').unwrap_or(&cleaned)),
    };
    let magnitude = if let Some(hex) = digits.strip_prefix("0x") {
        i128::from_str_radix(hex, 16).ok()?
    } else if let Some(bin) = digits.strip_prefix("0b") {
        i128::from_str_radix(bin, 2).ok()?
    } else if let Some(oct) = digits.strip_prefix("0o") {
        i128::from_str_radix(oct, 8).ok()?
    } else if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    } else {
        digits.parse::<i128>().ok()?
    };
    Some(if negative { -magnitude } else { magnitude })
}

pub(crate) fn integer(ctx: &mut Ctx, node: &Node, path: &str) -> Option<i64> {
    let (text, plain) = scalar(ctx, node, path, "an integer")?;
    let value = plain
        .then(|| parse_int(text))
        .flatten()
        .and_then(|v| i64::try_from(v).ok());
    if value.is_none() {
        ctx.error(
            node.pos,
            path,
            format!("cannot unmarshal {text:?} into int"),
        );
    }
    value
}

pub(crate) fn unsigned(ctx: &mut Ctx, node: &Node, path: &str) -> Option<u64> {
    let (text, plain) = scalar(ctx, node, path, "an unsigned integer")?;
    let value = plain
        .then(|| parse_int(text))
        .flatten()
        .and_then(|v| u64::try_from(v).ok());
    if value.is_none() {
        ctx.error(
            node.pos,
            path,
            format!("cannot unmarshal {text:?} into uint"),
        );
    }
    value
}

pub(crate) fn float(ctx: &mut Ctx, node: &Node, path: &str) -> Option<f64> {
    let (text, plain) = scalar(ctx, node, path, "a number")?;
    let value = plain
        .then(|| match text {
            ".inf" | ".Inf" | ".INF" | "+.inf" => Some(f64::INFINITY),
            "-.inf" | "-.Inf" | "-.INF" => Some(f64::NEG_INFINITY),
            ".nan" | ".NaN" | ".NAN" => Some(f64::NAN),
            _ => text.parse::<f64>().ok().filter(|v| v.is_finite()),
        })
        .flatten();
    if value.is_none() {
        ctx.error(
            node.pos,
            path,
            format!("cannot unmarshal {text:?} into float64"),
        );
    }
    value
}

pub(crate) fn duration(ctx: &mut Ctx, node: &Node, path: &str) -> Option<Duration> {
    let text = string(ctx, node, path)?;
    match parse_duration(&text) {
        Ok(d) => Some(d),
        Err(e) => {
            ctx.error(node.pos, path, e.to_string());
            None
        }
    }
}

pub(crate) fn size(ctx: &mut Ctx, node: &Node, path: &str) -> Option<u64> {
    let text = string(ctx, node, path)?;
    match parse_size(&text) {
        Ok(d) => Some(d),
        Err(e) => {
            ctx.error(node.pos, path, e.to_string());
            None
        }
    }
}

/// A file path field, resolved against the configuration directory.
pub(crate) fn file_path(ctx: &mut Ctx, node: &Node, path: &str) -> Option<String> {
    string(ctx, node, path).map(|p| ctx.resolve_path(&p))
}

/// The items of a sequence (`null` = empty), with their paths.
pub(crate) fn seq<'n>(ctx: &mut Ctx, node: &'n Node, path: &str) -> Option<&'n [Node]> {
    match &node.value {
        Value::Seq(items) => Some(items),
        Value::Null => Some(&[]),
        _ => {
            ctx.error(node.pos, path, "expected a sequence");
            None
        }
    }
}

pub(crate) fn string_list(ctx: &mut Ctx, node: &Node, path: &str) -> Option<Vec<String>> {
    let items = seq(ctx, node, path)?;
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match string(ctx, item, &index(path, i)) {
            Some(s) => out.push(s),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// A `map[string]V` in source order; callers sort where Go output would.
pub(crate) fn string_map<T>(
    ctx: &mut Ctx,
    node: &Node,
    path: &str,
    mut conv: impl FnMut(&mut Ctx, &Node, &str) -> Option<T>,
) -> Option<Vec<(String, T)>> {
    let entries: &[Entry] = match &node.value {
        Value::Map(entries) => entries,
        Value::Null => &[],
        _ => {
            ctx.error(node.pos, path, "expected a mapping");
            return None;
        }
    };
    let mut out = Vec::with_capacity(entries.len());
    let mut ok = true;
    for e in entries {
        match conv(ctx, &e.value, &child(path, &e.key)) {
            Some(v) => out.push((e.key.clone(), v)),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// Entries of a mapping with positions, for callers that validate keys.
pub(crate) fn map_entries<'n>(ctx: &mut Ctx, node: &'n Node, path: &str) -> Option<&'n [Entry]> {
    match &node.value {
        Value::Map(entries) => Some(entries),
        Value::Null => Some(&[]),
        _ => {
            ctx.error(node.pos, path, "expected a mapping");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_follow_yaml_resolution() {
        assert_eq!(parse_int("10"), Some(10));
        assert_eq!(parse_int("-3"), Some(-3));
        assert_eq!(parse_int("0x10"), Some(16));
        assert_eq!(parse_int("1_000"), Some(1000));
        assert_eq!(parse_int("1.5"), None);
        assert_eq!(parse_int("abc"), None);
    }
}
