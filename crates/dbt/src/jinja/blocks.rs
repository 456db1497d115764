//! Splitting a Jinja file into its top-level blocks (`macro`, `test`, `snapshot`, `materialization`, `docs`)
//! without rendering it, keeping line numbers.

/// The kind of a top-level block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockKind {
    Macro,
    Test,
    Snapshot,
    Materialization,
    Docs,
}

impl BlockKind {
    fn from_tag(tag: &str) -> Option<Self> {
        Some(match tag {
            "macro" => Self::Macro,
            "test" => Self::Test,
            "snapshot" => Self::Snapshot,
            "materialization" => Self::Materialization,
            "docs" => Self::Docs,
            _ => return None,
        })
    }
}

/// One top-level block of a file.
#[derive(Debug, Clone)]
pub(crate) struct Block {
    pub kind: BlockKind,
    /// The name after the tag (`my_macro` of `{% macro my_macro(a, b) %}`).
    pub name: String,
    /// The argument list text of macros and tests, without parentheses.
    pub args: String,
    /// The whole block, tags included, preceded by as many newlines as lines before it in the file, so line
    /// numbers of errors match the file.
    pub padded: String,
    /// The text between the opening and closing tags, padded the same way.
    pub body_padded: String,
}

/// A tag found in the text: byte range and inner text.
struct Tag<'a> {
    start: usize,
    end: usize,
    inner: &'a str,
}

fn next_tag(text: &str, from: usize) -> Option<Tag<'_>> {
    let mut pos = from;
    loop {
        let rel = text[pos..].find("{%").or(None);
        let cmt = text[pos..].find("{#");
        match (rel, cmt) {
            (None, _) => return None,
            (Some(t), Some(c)) if c < t => {
                let close = text[pos + c..].find("#}")?;
                pos += c + close + 2;
            }
            (Some(t), _) => {
                let start = pos + t;
                let close = text[start..].find("%}")?;
                let end = start + close + 2;
                let inner = text[start + 2..end - 2]
                    .trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
                return Some(Tag { start, end, inner });
            }
        }
    }
}

fn first_word(inner: &str) -> &str {
    inner
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .next()
        .unwrap_or("")
}

/// Split a file into its top-level blocks. Text outside blocks is ignored, as dbt does.
pub(crate) fn split_blocks(text: &str) -> Result<Vec<Block>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(tag) = next_tag(text, pos) {
        pos = tag.end;
        let word = first_word(tag.inner);
        if word == "raw" {
            // Skip to endraw.
            while let Some(t) = next_tag(text, pos) {
                pos = t.end;
                if first_word(t.inner) == "endraw" {
                    break;
                }
            }
            continue;
        }
        let Some(kind) = BlockKind::from_tag(word) else {
            continue;
        };
        let rest = tag.inner[word.len()..].trim_start();
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            return Err(format!(
                "line {}: `{word}` block without a name",
                line_of(text, tag.start)
            ));
        }
        let args = rest[name.len()..]
            .trim()
            .strip_prefix('(')
            .and_then(|s| s.rfind(')').map(|i| s[..i].to_string()))
            .unwrap_or_default();
        let end_word = format!("end{word}");
        let mut depth = 1;
        let mut close = None;
        let mut scan = tag.end;
        while let Some(t) = next_tag(text, scan) {
            scan = t.end;
            let w = first_word(t.inner);
            if w == word {
                depth += 1;
            } else if w == end_word {
                depth -= 1;
                if depth == 0 {
                    close = Some(t);
                    break;
                }
            }
        }
        let Some(close) = close else {
            return Err(format!(
                "line {}: `{{% {word} {name} %}}` is never closed with `{{% {end_word} %}}`",
                line_of(text, tag.start)
            ));
        };
        let line = line_of(text, tag.start);
        let pad = "\n".repeat(line - 1);
        let body_line = line_of(text, tag.end);
        out.push(Block {
            kind,
            name,
            args,
            padded: format!("{pad}{}", &text[tag.start..close.end]),
            body_padded: format!(
                "{}{}",
                "\n".repeat(body_line - 1),
                &text[tag.end..close.start]
            ),
        });
        pos = close.end;
    }
    Ok(out)
}

fn line_of(text: &str, byte: usize) -> usize {
    text[..byte].matches('\n').count() + 1
}

/// Rewrite a `{% test name(args) %}...{% endtest %}` block as the macro `test_name`, as dbt does.
pub(crate) fn test_block_as_macro(block: &Block) -> String {
    let text = &block.padded;
    let open_end = text.find("%}").map_or(0, |i| i + 2);
    let close_start = text.rfind("{%").unwrap_or(text.len());
    let trim_open = text[..open_end].starts_with("{%-") || text[..open_end].contains("{%-");
    let open = format!(
        "{}{{%{} macro test_{}({}) %}}",
        &text[..text.find("{%").unwrap_or(0)],
        if trim_open { "-" } else { "" },
        block.name,
        block.args
    );
    format!("{open}{}{{% endmacro %}}", &text[open_end..close_start])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_macros_keeping_lines() {
        let src = "{# {% macro hidden() %} #}\n{% macro a(x) %}\n{{ x }}\n{% endmacro %}\n\n{%- test t(model, column_name) -%}\nselect 1\n{%- endtest %}\n";
        let blocks = split_blocks(src).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].name, "a");
        assert_eq!(blocks[0].args, "x");
        assert!(blocks[0].padded.starts_with("\n{% macro a(x) %}"));
        assert_eq!(blocks[1].kind, BlockKind::Test);
        let m = test_block_as_macro(&blocks[1]);
        assert!(m.contains("macro test_t(model, column_name)"), "{m}");
        assert!(m.ends_with("{% endmacro %}"), "{m}");
        assert_eq!(
            m.matches('\n').count(),
            blocks[1].padded.matches('\n').count()
        );
    }

    #[test]
    fn unclosed_block_is_an_error() {
        assert!(
            split_blocks("{% macro a() %}\nx\n")
                .unwrap_err()
                .contains("never closed")
        );
    }
}
