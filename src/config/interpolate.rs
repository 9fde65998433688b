//! `${VAR}` interpolation of the config text, before it is parsed as YAML.
//!
//! - `${VAR}` is replaced by the variable's value; unset is an error.
//! - `${VAR:-default}` uses `default` when the variable is unset or empty.
//! - `$$` is a literal `$`; a `$` not followed by `{` or `$` stays as it is.
//! - Comments (`#` at the start of a line or after white space, outside
//!   quotes) are left alone, so documentation can mention `${VAR}`.
//!
//! Substitution happens on the text so that YAML typing applies to the
//! result (`port: ${PORT}` is a number). A value containing YAML syntax
//! (`: `, `#`, quotes) should be quoted in the file or read from a `*_file`.

/// The interpolated text, plus what was substituted, so that error messages
/// can be scrubbed of substituted values.
#[derive(Debug)]
pub struct Interpolated {
    pub text: String,
    /// `(variable name, value)` for every substitution made.
    pub substitutions: Vec<(String, String)>,
}

/// A problem at a 1-based line and column of the original text.
#[derive(Debug, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Interpolate `text`, looking variables up with `lookup`. Every problem in
/// the file is reported, not just the first.
pub fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Interpolated, Vec<Problem>> {
    let mut out = String::with_capacity(text.len());
    let mut substitutions = Vec::new();
    let mut problems = Vec::new();
    for (index, line) in text.split_inclusive('\n').enumerate() {
        interpolate_line(
            line,
            index + 1,
            lookup,
            &mut out,
            &mut substitutions,
            &mut problems,
        );
    }
    if problems.is_empty() {
        Ok(Interpolated {
            text: out,
            substitutions,
        })
    } else {
        Err(problems)
    }
}

fn interpolate_line(
    line: &str,
    line_no: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut String,
    substitutions: &mut Vec<(String, String)>,
    problems: &mut Vec<Problem>,
) {
    let mut quote: Option<char> = None;
    let mut prev_is_space = true;
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '#' if quote.is_none() && prev_is_space => {
                out.push_str(&line[i..]);
                return;
            }
            '\'' | '"' => {
                quote = match quote {
                    None => Some(c),
                    Some(q) if q == c => None,
                    other => other,
                };
                out.push(c);
            }
            '$' => match chars.peek().map(|&(_, n)| n) {
                Some('$') => {
                    chars.next();
                    out.push('$');
                }
                Some('{') => {
                    let rest = &line[i + 2..];
                    let Some(end) = rest.find('}') else {
                        problems.push(Problem {
                            line: line_no,
                            column: column_of(line, i),
                            message: "unterminated ${: expected } on the same line".into(),
                        });
                        out.push_str(&line[i..]);
                        return;
                    };
                    let expr = &rest[..end];
                    match expand(expr, lookup) {
                        Ok((name, value)) => {
                            out.push_str(&value);
                            substitutions.push((name, value));
                        }
                        Err(message) => problems.push(Problem {
                            line: line_no,
                            column: column_of(line, i),
                            message,
                        }),
                    }
                    // Skip "{", the expression and "}".
                    let skip_to = i + 2 + end + 1;
                    while chars.peek().is_some_and(|&(j, _)| j < skip_to) {
                        chars.next();
                    }
                }
                _ => out.push('$'),
            },
            _ => out.push(c),
        }
        prev_is_space = c.is_whitespace();
    }
}

fn column_of(line: &str, byte: usize) -> usize {
    line[..byte].chars().count() + 1
}

/// Expand one `${...}` expression: returns the variable name and the value.
fn expand(expr: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<(String, String), String> {
    let (name, default) = match expr.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (expr, None),
    };
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "invalid variable reference ${{{expr}}}: expected ${{NAME}} or ${{NAME:-default}}"
        ));
    }
    match (lookup(name), default) {
        (Some(v), Some(d)) if v.is_empty() => Ok((name.to_string(), d.to_string())),
        (Some(v), _) => Ok((name.to_string(), v)),
        (None, Some(d)) => Ok((name.to_string(), d.to_string())),
        (None, None) => Err(format!(
            "environment variable {name} is not set (use ${{{name}:-default}} to give a default)"
        )),
    }
}

/// Replace substituted values in `message` by the `${VAR}` they came from,
/// so that errors never echo a value taken from the environment. Values
/// shorter than four characters are left alone: they cannot be secrets worth
/// the noise of replacing every digit in a message.
pub fn scrub(message: &str, substitutions: &[(String, String)]) -> String {
    let mut out = message.to_string();
    let mut subs: Vec<&(String, String)> =
        substitutions.iter().filter(|(_, v)| v.len() >= 4).collect();
    // Longest first, so a value containing another is replaced whole.
    subs.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
    for (name, value) in subs {
        out = out.replace(value.as_str(), &format!("${{{name}}}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("db.internal".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn run(text: &str) -> Result<String, Vec<Problem>> {
        interpolate(text, &env).map(|i| i.text)
    }

    #[test]
    fn substitutes_defaults_and_escapes() {
        assert_eq!(run("a: ${HOST}:5432\n").unwrap(), "a: db.internal:5432\n");
        assert_eq!(run("a: ${NOPE:-127.0.0.1}\n").unwrap(), "a: 127.0.0.1\n");
        assert_eq!(run("a: ${EMPTY:-x}\n").unwrap(), "a: x\n");
        assert_eq!(run("a: $${HOST} ^ok$\n").unwrap(), "a: ${HOST} ^ok$\n");
    }

    #[test]
    fn comments_are_not_interpolated() {
        let text = "# uses ${NOT_SET}\na: 1 # also ${NOT_SET}\nb: 'x # ${HOST}'\n";
        assert_eq!(
            run(text).unwrap(),
            "# uses ${NOT_SET}\na: 1 # also ${NOT_SET}\nb: 'x # db.internal'\n"
        );
    }

    #[test]
    fn every_unset_variable_is_reported_with_its_position() {
        let problems = run("a: ${ONE}\nb: x${TWO}\n").unwrap_err();
        assert_eq!(
            problems,
            vec![
                Problem {
                    line: 1,
                    column: 4,
                    message: "environment variable ONE is not set (use ${ONE:-default} to give a default)".into()
                },
                Problem {
                    line: 2,
                    column: 5,
                    message: "environment variable TWO is not set (use ${TWO:-default} to give a default)".into()
                },
            ]
        );
    }

    #[test]
    fn malformed_references_are_errors() {
        assert!(run("a: ${HOST\n").unwrap_err()[0]
            .message
            .starts_with("unterminated"));
        assert!(run("a: ${1X}\n").unwrap_err()[0]
            .message
            .starts_with("invalid variable reference"));
    }

    #[test]
    fn scrub_replaces_values_by_their_variable() {
        let subs = vec![("PW".to_string(), "hunter22".to_string())];
        assert_eq!(
            scrub("bad value \"hunter22\"", &subs),
            "bad value \"${PW}\""
        );
    }
}
