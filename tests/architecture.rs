//! The architecture, checked: dependencies between the crate's top-level modules point
//! one way, down the layers declared in [`LAYERS`], and never form a cycle.
//!
//! The check reads every `src/**/*.rs` of the library (not `src/main.rs`, the binary's
//! root, which uses the library from outside), with comments and literals blanked out,
//! and collects each `crate::` path (in `use` trees, grouped or not, and inline) and each
//! `super::` path (resolved against the file's module and its inline `mod`s). A path's
//! first segment is the module it depends on. Unit tests (`#[cfg(test)]` code) count too:
//! a test that needs an upper module belongs in `tests/`.
//!
//! A plain test rather than `cargo-modules`: it runs in `cargo test` (so in `scripts/test`
//! and `.ci/run`), needs no tool, and its failure names the file and line of the
//! offending path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first: each row is the modules of a layer and the modules they may
/// use. A module may use only what its row lists, and a row may list only modules of rows
/// above it in this table (lower layers), so following the table cannot make a cycle.
const LAYERS: &[(&[&str], &[&str])] = &[
    // Leaves. Domain types (recording ids, states, scopes, cursor kinds, file kinds, the
    // object-key template), saturating time arithmetic and the printing of error chains:
    // shared by every layer, they depend on nothing of the crate.
    (&["domain", "errors", "time"], &[]),
    // Settings: the typed tree, its loading and validation, secrets, locations. It knows
    // the domain types it parses, and nothing that uses it.
    (&["config"], &["domain", "errors", "time"]),
    // Process infrastructure any layer may run under: metrics (counters and plain setters,
    // no knowledge of the database), log setup, shutdown signals, panic supervision.
    (&["metrics", "telemetry", "shutdown", "supervise"], &["config", "domain", "errors", "time"]),
    // Clients of the outside world: the Webex API (wire types, Retry-After gate, tokens,
    // retries) and the object store. They know nothing of each other or of the database:
    // what webex shares through the database, it reaches through its own traits.
    (&["webex", "storage"], &["config", "domain", "errors", "metrics", "supervise", "time"]),
    // The durable state and work queue. It uses webex only to implement webex's traits
    // (shared pause, token store) and for the listing's secret fields: see THROUGH.
    (&["state"], &["config", "domain", "errors", "time", "webex"]),
    // The Webex simulator, beside the pipeline: it speaks webex's wire types and nothing
    // else (see THROUGH), and only the entry points (demo, cli) use it.
    (&["sim"], &["webex"]),
    // The pipeline: discovery lists recordings into the state, archive streams them from
    // Webex into the store, manifest writes the daily manifests of what archive stored,
    // retention puts legal holds and longer retentions on what archive stored.
    (
        &["discovery", "archive", "manifest", "retention"],
        &["config", "domain", "errors", "metrics", "state", "storage", "supervise", "time", "webex"],
    ),
    // What watches the pipeline: verify re-reads what archive wrote (its metadata.json
    // layout), progress shows discovery's windows and archive's counters, server answers
    // /healthz /readyz /metrics, report attests what the state holds for a period.
    (
        &["verify", "progress", "server", "report"],
        &[
            "archive",
            "config",
            "discovery",
            "domain",
            "errors",
            "manifest",
            "metrics",
            "retention",
            "state",
            "storage",
            "supervise",
            "telemetry",
            "time",
            "webex",
        ],
    ),
    // The commands: one library call per command, wiring every piece below.
    (
        &["app"],
        &[
            "archive",
            "config",
            "discovery",
            "domain",
            "errors",
            "manifest",
            "metrics",
            "progress",
            "report",
            "retention",
            "server",
            "shutdown",
            "state",
            "storage",
            "supervise",
            "telemetry",
            "time",
            "verify",
            "webex",
        ],
    ),
    // Entry points: the command line and the demo, which runs the simulator and the app.
    (
        &["demo", "cli"],
        &[
            "app",
            "archive",
            "config",
            "discovery",
            "domain",
            "errors",
            "manifest",
            "metrics",
            "progress",
            "report",
            "retention",
            "server",
            "shutdown",
            "sim",
            "state",
            "storage",
            "supervise",
            "telemetry",
            "time",
            "verify",
            "webex",
        ],
    ),
];

/// Dependencies allowed only through some items: `(from, to, the first segments under
/// `to` that may be named)`. `self` and `*` are never among them (they would open the
/// whole module).
const THROUGH: &[(&str, &str, &[&str])] = &[
    // The simulator serves what the client reads: the wire types, nothing of the client.
    ("sim", "webex", &["models"]),
    // The state store implements webex's traits and stores their tokens, and keeps a
    // listing without its secret fields; it never calls the API.
    ("state", "webex", &["StoreError", "auth", "gate", "models"]),
];

/// One path to another part of the crate, and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    /// The top-level module of the file that holds the path.
    from: String,
    /// The path from the crate root, e.g. `["webex", "gate", "SharedPause"]`.
    path: Vec<String>,
    /// `src/<file>:<line>`.
    at: String,
}

/// The library's top-level modules, as `src/lib.rs` declares them.
fn declared_modules(lib_rs: &str) -> BTreeSet<String> {
    let tokens = tokenize(&blank_comments_and_literals(lib_rs));
    tokens
        .windows(3)
        .filter(|w| w[0].text == "mod" && is_ident(&w[1].text) && w[2].text == ";")
        .map(|w| w[1].text.clone())
        .collect()
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The module path of a file relative to `src/`: `webex/gate.rs` is `webex::gate`,
/// `webex/mod.rs` is `webex`, `time.rs` is `time`.
fn module_of(relative: &str) -> Vec<String> {
    let mut parts: Vec<String> = relative.trim_end_matches(".rs").split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// Every reference of the library's sources, with the set of top-level modules.
fn crate_references() -> (BTreeSet<String>, Vec<Reference>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let modules = declared_modules(&read(&src.join("lib.rs")));
    let mut references = Vec::new();
    for file in rust_files(&src) {
        let relative = file.strip_prefix(&src).expect("under src").to_string_lossy().replace('\\', "/");
        if relative == "lib.rs" || relative == "main.rs" {
            continue;
        }
        references.extend(references_in(&relative, &read(&file)));
    }
    (modules, references)
}

/// The references of one file, `relative` to `src/`.
fn references_in(relative: &str, source: &str) -> Vec<Reference> {
    let file_module = module_of(relative);
    let from = file_module[0].clone();
    let tokens = tokenize(&blank_comments_and_literals(source));
    let mut references = Vec::new();
    // Inline modules (`mod tests { ... }`) open at a brace depth and add to the path.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let text = tokens[i].text.as_str();
        let next = |k: usize| tokens.get(i + k).map_or("", |t| t.text.as_str());
        let after_path_separator = i > 0 && matches!(tokens[i - 1].text.as_str(), "::" | "$");
        match text {
            "{" => depth += 1,
            "}" => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            "mod" if is_ident(next(1)) && next(2) == "{" => {
                inline.push((next(1).to_owned(), depth + 1));
            }
            "crate" | "super" if next(1) == "::" && !after_path_separator => {
                let mut base: Vec<String> = Vec::new();
                let mut j = i;
                if text == "super" {
                    base = file_module.iter().cloned().chain(inline.iter().map(|(m, _)| m.clone())).collect();
                    while tokens.get(j).is_some_and(|t| t.text == "super")
                        && tokens.get(j + 1).is_some_and(|t| t.text == "::")
                    {
                        base.pop();
                        j += 2;
                    }
                } else {
                    j += 2;
                }
                let (paths, end) = use_tree(&tokens, j);
                for path in paths {
                    let path: Vec<String> = base.iter().cloned().chain(path).collect();
                    if !path.is_empty() {
                        references.push(Reference {
                            from: from.clone(),
                            path,
                            at: format!("src/{relative}:{}", tokens[i].line),
                        });
                    }
                }
                i = end.max(i + 1);
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    references
}

/// The paths of a use tree (or an inline path) starting at `tokens[i]`: `a::b`,
/// `a::{b, c::{d, self}}`, `a::*`. Returns them and the index after the tree.
fn use_tree(tokens: &[Token], mut i: usize) -> (Vec<Vec<String>>, usize) {
    let text = |i: usize| tokens.get(i).map_or("", |t| t.text.as_str());
    if text(i) == "{" {
        i += 1;
        let mut paths = Vec::new();
        while i < tokens.len() && text(i) != "}" {
            let (inner, end) = use_tree(tokens, i);
            paths.extend(inner);
            i = end.max(i + 1);
            if text(i) == "," {
                i += 1;
            }
        }
        return (paths, i + 1);
    }
    if !(is_ident(text(i)) || text(i) == "*") {
        return (Vec::new(), i);
    }
    let segment = text(i).to_owned();
    if text(i + 1) == "::" {
        let (rest, end) = use_tree(tokens, i + 2);
        if rest.is_empty() {
            return (vec![vec![segment]], end);
        }
        return (rest.into_iter().map(|p| std::iter::once(segment.clone()).chain(p).collect()).collect(), end);
    }
    let mut end = i + 1;
    if text(end) == "as" {
        end += 2;
    }
    (vec![vec![segment]], end)
}

/// The graph of top-level modules: who uses whom (self-references left out), each edge
/// with the first place it is written.
fn module_graph(modules: &BTreeSet<String>, references: &[Reference]) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for r in references {
        let to = &r.path[0];
        if to != &r.from && modules.contains(to) {
            graph.entry(r.from.clone()).or_default().entry(to.clone()).or_insert_with(|| r.at.clone());
        }
    }
    graph
}

/// A cycle of `graph`, as the modules along it with the first repeated at the end, or
/// `None` when the graph is acyclic.
fn find_cycle<V>(graph: &BTreeMap<String, BTreeMap<String, V>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit<V>(
        node: &str,
        graph: &BTreeMap<String, BTreeMap<String, V>>,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = stack.iter().position(|n| n == node).expect("an open node is on the stack");
                let mut cycle = stack[start..].to_vec();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node.to_owned(), Mark::Open);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flat_map(|edges| edges.keys()) {
            if let Some(cycle) = visit(next, graph, marks, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    graph.keys().find_map(|node| visit(node, graph, &mut marks, &mut Vec::new()))
}

/// The row of `module` in [`LAYERS`].
fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(modules, _)| modules.contains(&module))
}

/// Every reference that breaks the layering (a module its row does not list, or an item
/// outside what [`THROUGH`] allows), as messages naming the place.
fn layering_violations(modules: &BTreeSet<String>, references: &[Reference]) -> Vec<String> {
    let mut violations = Vec::new();
    for r in references {
        let to = r.path[0].as_str();
        if to == r.from || !modules.contains(to) {
            continue;
        }
        let Some(layer) = layer_of(&r.from) else {
            violations.push(format!("{}: module `{}` is in no row of LAYERS", r.at, r.from));
            continue;
        };
        let path = r.path.join("::");
        if !LAYERS[layer].1.contains(&to) {
            violations.push(format!(
                "{}: `{}` uses `crate::{path}`, but its layer may use only {:?}",
                r.at, r.from, LAYERS[layer].1
            ));
            continue;
        }
        if let Some((_, _, items)) = THROUGH.iter().find(|(from, t, _)| *from == r.from && *t == to) {
            let item = r.path.get(1).map_or("self", String::as_str);
            if !items.contains(&item) {
                violations
                    .push(format!("{}: `{}` may use `{to}` only through {items:?}, not `crate::{path}`", r.at, r.from));
            }
        }
    }
    violations
}

#[test]
fn the_modules_form_no_cycle() {
    let (modules, references) = crate_references();
    let graph = module_graph(&modules, &references);
    assert!(graph.len() > 5, "the reader found almost no dependencies: {graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        let places: Vec<String> =
            cycle.windows(2).map(|w| format!("{} -> {}: {}", w[0], w[1], graph[&w[0]][&w[1]])).collect();
        panic!("a dependency cycle between modules: {}\n{}", cycle.join(" -> "), places.join("\n"));
    }
}

#[test]
fn dependencies_point_down_the_layers() {
    let (modules, references) = crate_references();
    let violations = layering_violations(&modules, &references);
    assert!(violations.is_empty(), "dependencies that break the layering:\n{}", violations.join("\n"));
}

#[test]
fn the_layer_table_names_every_module_once_and_points_down() {
    let (modules, _) = crate_references();
    let mut named = BTreeSet::new();
    for (row, (layer, may_use)) in LAYERS.iter().enumerate() {
        for module in *layer {
            assert!(modules.contains(*module), "LAYERS names `{module}`, which src/lib.rs does not declare");
            assert!(named.insert(*module), "LAYERS names `{module}` twice");
        }
        for used in *may_use {
            let below = layer_of(used).is_some_and(|l| l < row);
            assert!(below, "the row of {layer:?} may use `{used}`, which is not in a row above it (a lower layer)");
        }
    }
    let missing: Vec<&String> = modules.iter().filter(|m| !named.contains(m.as_str())).collect();
    assert!(missing.is_empty(), "modules in no row of LAYERS (add them where they belong): {missing:?}");
    for (from, to, _) in THROUGH {
        let listed = layer_of(from).is_some_and(|l| LAYERS[l].1.contains(to));
        assert!(listed, "THROUGH restricts `{from}` -> `{to}`, which LAYERS does not allow at all");
    }
}

// --- the checker's own parts, on made-up input ---

fn graph_of(edges: &[(&str, &str)]) -> BTreeMap<String, BTreeMap<String, ()>> {
    let mut graph: BTreeMap<String, BTreeMap<String, ()>> = BTreeMap::new();
    for (from, to) in edges {
        graph.entry((*from).to_owned()).or_default().insert((*to).to_owned(), ());
    }
    graph
}

#[test]
fn a_cycle_is_found_and_named() {
    let dag = graph_of(&[("app", "state"), ("app", "webex"), ("state", "webex"), ("webex", "config")]);
    assert_eq!(find_cycle(&dag), None);

    let cyclic = graph_of(&[("app", "state"), ("state", "webex"), ("webex", "metrics"), ("metrics", "state")]);
    assert_eq!(find_cycle(&cyclic), Some(vec!["state".into(), "webex".into(), "metrics".into(), "state".into()]));

    let two = graph_of(&[("config", "archive"), ("archive", "config")]);
    assert_eq!(find_cycle(&two), Some(vec!["archive".into(), "config".into(), "archive".into()]));
}

#[test]
fn references_are_read_from_use_trees_inline_paths_and_super() {
    let source = r##"
        //! Docs naming crate::app are not code.
        use std::fmt;
        use crate::{metrics::{self, Metrics}, state::State};
        use super::client::join_base;
        /* crate::demo in a block comment /* nested */ still a comment */
        const QUOTE: char = '"';
        const TEXT: &str = "crate::verify is text";
        const RAW: &str = r#"crate::progress is text too"#;
        fn f<'a>(x: &'a str) -> crate::time::Later { crate::domain::KeyTemplate::parse(x); todo!() }
        macro_rules! m { () => { $crate::sim::x() }; }
        mod tests {
            use super::*;
            use super::super::storage::Store as S;
        }
    "##;
    let references = references_in("webex/gate.rs", source);
    let paths: Vec<String> = references.iter().map(|r| r.path.join("::")).collect();
    assert_eq!(
        paths,
        [
            "metrics::self",
            "metrics::Metrics",
            "state::State",
            "webex::client::join_base",
            "time::Later",
            "domain::KeyTemplate::parse",
            "webex::gate::*",
            "webex::storage::Store",
        ]
    );
    assert!(references.iter().all(|r| r.from == "webex"));
    assert_eq!(references[2].at, "src/webex/gate.rs:4");
    // From a top-level file, `super` is the crate root.
    let top = references_in("server.rs", "use super::state::State;\nfn g() { super::metrics::x(); }");
    assert_eq!(top.iter().map(|r| r.path.join("::")).collect::<Vec<_>>(), ["state::State", "metrics::x"]);
}

#[test]
fn the_layer_check_refuses_upward_and_sideways_dependencies() {
    let modules: BTreeSet<String> = LAYERS.iter().flat_map(|(m, _)| m.iter().map(|s| (*s).to_owned())).collect();
    let reference = |from: &str, path: &str| Reference {
        from: from.into(),
        path: path.split("::").map(str::to_owned).collect(),
        at: format!("src/{from}.rs:1"),
    };
    let allowed = [
        reference("webex", "config::WebexSettings"),
        reference("state", "webex::gate::SharedPause"),
        reference("sim", "webex::models::Recording"),
        reference("app", "server::Endpoint"),
    ];
    assert_eq!(layering_violations(&modules, &allowed), Vec::<String>::new());
    let refused = [
        reference("webex", "state::State"),           // upward
        reference("config", "archive::KeyTemplate"),  // upward
        reference("metrics", "state::StatusReport"),  // upward
        reference("storage", "webex::WebexClient"),   // sideways, same layer
        reference("sim", "webex::client::join_base"), // not through the wire types
        reference("state", "webex::WebexClient"),     // not through the traits
        reference("state", "webex::self"),            // the whole module
        reference("discovery", "sim::Simulator"),     // beside the pipeline
    ];
    let violations = layering_violations(&modules, &refused);
    assert_eq!(violations.len(), refused.len(), "{violations:#?}");
}

// --- a minimal Rust lexer: enough to find paths outside comments and literals ---

#[derive(Debug, Clone)]
struct Token {
    text: String,
    line: usize,
}

fn is_ident(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_') && chars.all(|c| c.is_alphanumeric() || c == '_')
}

/// The source with comments, string literals and char literals replaced by spaces
/// (newlines kept, so lines still count).
fn blank_comments_and_literals(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let prev_is_ident = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
        } else if !prev_is_ident && (c == 'r' || (c == 'b' && next == Some('r'))) && raw_string_at(&chars, i).is_some()
        {
            let (hashes, open) = raw_string_at(&chars, i).expect("checked");
            let mut j = open + 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (0..hashes).all(|k| chars.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &ch in &chars[i..j.min(chars.len())] {
                blank(&mut out, ch);
            }
            i = j;
        } else if c == '"' {
            blank(&mut out, c);
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
                if i < chars.len() {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
            if i < chars.len() {
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            // A char literal ('x', '\n', '\''), not a lifetime ('a).
            let mut j = i + 1;
            if chars.get(j) == Some(&'\\') {
                j += 2;
            } else {
                j += 1;
            }
            while j < chars.len() && chars[j] != '\'' {
                j += 1;
            }
            for &ch in &chars[i..(j + 1).min(chars.len())] {
                blank(&mut out, ch);
            }
            i = j + 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// At `chars[i]`, a raw string `r#"` or `br#"`: its number of `#` and the index of its `"`.
fn raw_string_at(chars: &[char], i: usize) -> Option<(usize, usize)> {
    let mut j = if chars[i] == 'b' { i + 2 } else { i + 1 };
    let mut hashes = 0;
    while chars.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    (chars.get(j) == Some(&'"')).then_some((hashes, j))
}

/// Identifiers, `::`, and single punctuation characters, with their line numbers.
fn tokenize(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token { text: chars[start..i].iter().collect(), line });
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push(Token { text: "::".into(), line });
            i += 2;
        } else {
            tokens.push(Token { text: c.to_string(), line });
            i += 1;
        }
    }
    tokens
}
