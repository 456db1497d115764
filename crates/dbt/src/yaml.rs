//! Reading YAML files with errors that name the file, line and column.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{DbtError, Result};

/// Parse YAML text into `T`; an empty document (or one of comments only) reads as an empty mapping.
pub(crate) fn parse_yaml<T: DeserializeOwned>(text: &str, file: &str) -> Result<T> {
    let has_content = text.lines().any(|l| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#') && t != "---"
    });
    let text = if has_content { text } else { "{}" };
    serde_norway::from_str(text).map_err(|e| yaml_error(file, &e))
}

/// Read and parse a YAML file; `display` is how errors name it (usually the path relative to the project).
pub(crate) fn read_yaml<T: DeserializeOwned>(path: &Path, display: &str) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| DbtError::io(path, e))?;
    parse_yaml(&text, display)
}

/// Turn a serde_norway error into [`DbtError::Yaml`] with the location pulled out of the message.
pub(crate) fn yaml_error(file: &str, e: &serde_norway::Error) -> DbtError {
    let mut message = e.to_string();
    let location = match e.location() {
        Some(loc) => {
            let suffix = format!(" at line {} column {}", loc.line(), loc.column());
            if let Some(pos) = message.find(&suffix) {
                message.replace_range(pos..pos + suffix.len(), "");
            }
            format!(" line {} column {}", loc.line(), loc.column())
        }
        None => String::new(),
    };
    DbtError::Yaml {
        file: file.to_string(),
        location,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_yaml_names_file_and_line() {
        let err = parse_yaml::<serde_norway::Value>("a: 1\nb: [1, 2\nc: 3\n", "models/schema.yml")
            .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("models/schema.yml line "), "{text}");
    }

    #[test]
    fn empty_file_is_an_empty_mapping() {
        let v: std::collections::BTreeMap<String, String> =
            parse_yaml("# nothing\n", "x.yml").unwrap();
        assert!(v.is_empty());
    }
}
