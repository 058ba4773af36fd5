//! No import cycle between the files of any crate of the workspace (issue 15). An edge A → B for every
//! `crate::b…` or `super::b…` path written in file A, test modules included; `crate::Name`
//! re-exported by a `pub use b::…` line of `lib.rs` counts as an edge to b. Macro invocations
//! are not paths: `plug!` (defined in `twins`) does not make an edge. `scripts/module-cycles.py`
//! runs the same check on any crate.

use std::collections::BTreeMap;
use std::path::Path;

/// Module path ("x86::avx2"; "" for lib.rs) → source without `//` comments, for every file.
fn sources(dir: &Path, prefix: &str, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        if path.is_dir() {
            sources(&path, &format!("{prefix}{stem}::"), out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            let text: Vec<&str> = text.lines().map(|l| l.split("//").next().unwrap()).collect();
            let module = if stem == "lib" || stem == "main" || stem == "mod" {
                prefix.to_string()
            } else {
                format!("{prefix}{stem}")
            };
            out.insert(module.trim_end_matches("::").to_string(), text.join("\n"));
        }
    }
}

/// The full paths written after each `anchor` (`crate::`, `super::`), groups `{a, b::{c}}` expanded.
fn paths(text: &str, anchor: &str) -> Vec<String> {
    fn expand(s: &str, prefix: &str, out: &mut Vec<String>) {
        let end = s.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(s.len());
        let head = format!("{prefix}{}", &s[..end]);
        if !s[end..].starts_with('{') {
            return out.push(head);
        }
        let (mut depth, mut start) = (0, end + 1);
        for (i, c) in s.char_indices().skip(end) {
            match c {
                '{' => depth += 1,
                '}' | ',' if depth == 1 => {
                    expand(s[start..i].trim(), &head, out);
                    start = i + 1;
                    if c == '}' {
                        return;
                    }
                }
                '}' => depth -= 1,
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    text.match_indices(anchor).for_each(|(i, _)| expand(&text[i + anchor.len()..], "", &mut out));
    out
}

#[test]
fn no_import_cycle_between_the_files_of_any_crate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut edges = BTreeMap::new();
    for krate in ["kernels", "format", "quantize", "runtime", "ffi", "bindings", "cli", "benches", "server"] {
        edges.insert(krate, check(&root.join(krate).join("src")));
    }
    assert!(edges["kernels"] > 40 && edges["runtime"] > 20, "too few edges found: the parser is broken: {edges:?}");
}

/// Panics on a cycle among the files under `dir`; returns the number of edges.
fn check(dir: &Path) -> usize {
    eprintln!("checking {}", dir.display()); // names the crate of a failure
    let mut src = BTreeMap::new();
    sources(dir, "", &mut src);
    let reexports: BTreeMap<String, String> = src[""]
        .lines()
        .filter_map(|l| l.strip_prefix("pub use ")?.trim_end_matches(';').split_once("::"))
        .flat_map(|(m, names)| {
            names.trim_matches(['{', '}']).split(',').map(move |n| (n.trim().to_string(), m.to_string()))
        })
        .collect();
    let mut graph: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (module, text) in &src {
        let parent = module.rsplit_once("::").map_or("", |p| p.0);
        let sup =
            paths(text, "super::").into_iter().map(|p| if parent.is_empty() { p } else { format!("{parent}::{p}") });
        for path in paths(text, "crate::").into_iter().chain(sup) {
            let path = reexports.get(path.split("::").next().unwrap()).cloned().unwrap_or(path);
            // the longest prefix that is a file's module
            let segments: Vec<&str> = path.split("::").collect();
            let target = (1..=segments.len()).rev().map(|n| segments[..n].join("::")).find(|p| src.contains_key(p));
            if let Some((t, _)) =
                target.and_then(|t| src.get_key_value(&t)).filter(|(t, _)| *t != module && !t.is_empty())
            {
                graph.entry(module).or_default().push(t);
            }
        }
    }
    // depth-first search; a module met again while on the stack closes a cycle
    fn visit<'a>(m: &'a str, g: &BTreeMap<&'a str, Vec<&'a str>>, stack: &mut Vec<&'a str>, done: &mut Vec<&'a str>) {
        if let Some(i) = stack.iter().position(|s| *s == m) {
            panic!("import cycle: {} -> {m}", stack[i..].join(" -> "));
        }
        if done.contains(&m) {
            return;
        }
        stack.push(m);
        g.get(m).into_iter().flatten().for_each(|n| visit(n, g, stack, done));
        stack.pop();
        done.push(m);
    }
    let mut done = Vec::new();
    graph.keys().for_each(|m| visit(m, &graph, &mut Vec::new(), &mut done));
    graph.values().map(Vec::len).sum()
}
