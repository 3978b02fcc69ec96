//! The small languages the stack's files are written in: Pyroscope label selectors and TraceQL
//! filters (the dashboard's queries) and .dockerignore globs, parsed so checks can read them.

/// `{a="x", b=~"y|z"}` -> [(a, "=", "x"), (b, "=~", "y|z")].
pub(crate) fn parse_label_selector(sel: &str) -> Result<Vec<(String, String, String)>, String> {
    let inner = sel
        .trim()
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .ok_or_else(|| format!("label selector {sel:?} is not {{...}}"))?;
    let mut out = Vec::new();
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let name_end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .ok_or_else(|| format!("label selector {sel:?}: matcher without operator"))?;
        let name = rest[..name_end].to_owned();
        let after = rest[name_end..].trim_start();
        let op = ["=~", "!~", "!=", "="]
            .into_iter()
            .find(|op| after.starts_with(op))
            .ok_or_else(|| format!("label selector {sel:?}: no operator after {name:?}"))?;
        let after = after[op.len()..].trim_start();
        let (value, tail) = quoted(after)
            .ok_or_else(|| format!("label selector {sel:?}: value of {name:?} is not quoted"))?;
        out.push((name, op.to_owned(), value));
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    Ok(out)
}

/// A leading `"..."` string (with `\"` escapes) and what follows it.
fn quoted(s: &str) -> Option<(String, &str)> {
    let body = s.strip_prefix('"')?;
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => value.push(chars.next()?.1),
            '"' => return Some((value, &body[i + 1..])),
            c => value.push(c),
        }
    }
    None
}

/// The conditions of a TraceQL spanset filter: (attribute, operator, value as written).
pub(crate) fn traceql_conditions(query: &str) -> Result<Vec<(String, String, String)>, String> {
    let start = query
        .find('{')
        .ok_or_else(|| format!("TraceQL {query:?} has no spanset filter {{...}}"))?;
    let end = query[start..]
        .find('}')
        .map(|i| start + i)
        .ok_or_else(|| format!("TraceQL {query:?}: unclosed {{"))?;
    let mut out = Vec::new();
    for cond in query[start + 1..end].split("&&") {
        let cond = cond.trim();
        if cond.is_empty() {
            continue;
        }
        let op_at = cond
            .find(['=', '!', '<', '>'])
            .ok_or_else(|| format!("TraceQL {query:?}: {cond:?} has no comparison"))?;
        let attr = cond[..op_at].trim().to_owned();
        let rest = &cond[op_at..];
        let op_len = rest
            .find(|c: char| !matches!(c, '=' | '!' | '<' | '>' | '~'))
            .unwrap_or(rest.len());
        let op = rest[..op_len].to_owned();
        let value = rest[op_len..].trim();
        let value = quoted(value).map_or_else(|| value.to_owned(), |(v, _)| v);
        if attr.contains("||") || value.contains("||") {
            return Err(format!(
                "TraceQL {query:?}: `||` is not understood by this test"
            ));
        }
        out.push((attr, op, value));
    }
    Ok(out)
}

/// `*` and `?` within one path segment, `**` across segments.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) if p.get(1) == Some(&b'*') => {
                let rest = p[2..].strip_prefix(b"/").unwrap_or(&p[2..]);
                (0..=t.len()).any(|i| go(rest, &t[i..]))
            }
            (Some(b'*'), _) => (0..=t.len())
                .take_while(|&i| i == 0 || t[i - 1] != b'/')
                .any(|i| go(&p[1..], &t[i..])),
            (Some(b'?'), Some(c)) if *c != b'/' => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

/// This module's parsers on known input (part of `parsers_read_what_they_are_given`).
pub(crate) fn read_known_input() {
    assert_eq!(
        parse_label_selector(r#"{service_name="a", region=~"x|y"}"#).unwrap(),
        vec![
            ("service_name".into(), "=".into(), "a".into()),
            ("region".into(), "=~".into(), "x|y".into())
        ]
    );
    assert_eq!(
        traceql_conditions(r#"{resource.service.name="a" && name="GET /car" && span.x != nil}"#)
            .unwrap(),
        vec![
            ("resource.service.name".into(), "=".into(), "a".into()),
            ("name".into(), "=".into(), "GET /car".into()),
            ("span.x".into(), "!=".into(), "nil".into()),
        ]
    );
    assert!(glob_match("**/*.rs.bk", "src/a.rs.bk") && !glob_match("target", "src"));
    assert!(glob_match("src*", "src") && !glob_match("*.rs", "src/main.rs"));
}
