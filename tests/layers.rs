//! The core's layering, checked from the source: every `crate::` path a core module names
//! must point at its own layer or one below, the imports must form no cycle, no core
//! module may name `worker`, and the crate doc's Layout section must name every module.
//!
//! The table below is the one statement of the layers; `src/lib.rs` draws the same picture
//! for a reader. A new module fails this test until it is given a layer.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Bottom to top. A module may use modules of its own layer (if that makes no cycle) or
/// of any layer below; `edge` (wasm32 only) sits above all of them and is not listed.
const LAYERS: &[(&str, &[&str])] = &[
    ("the product's words", &["model"]),
    ("preferences", &["attention"]),
    ("protocol", &["frame"]),
    (
        "settings and credentials",
        &["config", "keys", "auth", "access"],
    ),
    ("stores", &["inbox", "room_store"]),
    (
        "log rules, socket rules, timers, counters",
        &["history", "socket", "timer", "stats", "fanout"],
    ),
    ("hub state machines", &["hub", "room"]),
    ("HTTP request rules", &["route", "publish", "error"]),
];

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The core modules and the crate modules each one names, read from `src/`.
fn core_imports() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = Graph::new();
    for entry in fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        if name == "lib" || name == "edge" {
            continue;
        }
        let text = if path.is_dir() {
            // A module with submodules: all its files are one node.
            let mut all = String::new();
            for file in fs::read_dir(&path).unwrap() {
                all.push_str(&fs::read_to_string(file.unwrap().path()).unwrap());
            }
            all
        } else {
            fs::read_to_string(&path).unwrap()
        };
        let names = graph.entry(name.clone()).or_default();
        names.extend(crate_paths(&text).into_iter().filter(|n| *n != name));
    }
    graph
}

/// The code of `text` without comments (doc links name modules without depending on them).
fn code(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Modules named as `crate::<module>` or inside `use crate::{<module>, …}`.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let code = code(text);
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                found.extend(leading_ident(part.trim()));
            }
        } else {
            found.extend(leading_ident(rest));
        }
    }
    found
}

fn leading_ident(text: &str) -> Option<String> {
    let ident: String = text
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!ident.is_empty()).then_some(ident)
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

/// Every way `graph` breaks the layering: unknown modules, imports that go up, cycles.
fn violations(graph: &Graph) -> Vec<String> {
    let mut found = Vec::new();
    for (module, imports) in graph {
        let Some(layer) = layer_of(module) else {
            found.push(format!("`{module}` has no layer in tests/layers.rs"));
            continue;
        };
        for import in imports {
            match layer_of(import) {
                Some(other) if other > layer => found.push(format!(
                    "`{module}` ({}) imports `{import}` ({}), a higher layer",
                    LAYERS[layer].0, LAYERS[other].0
                )),
                Some(_) => {}
                None => found.push(format!("`{module}` imports `{import}`, which has no layer")),
            }
        }
    }
    found.extend(cycle(graph).map(|path| format!("import cycle: {}", path.join(" → "))));
    found
}

/// One import cycle, as the path around it, if there is any.
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut around = path[start..].to_vec();
            around.push(node.to_owned());
            return Some(around);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_core_imports_only_downwards_and_without_cycles() {
    let graph = core_imports();
    assert!(graph.contains_key("model") && graph.contains_key("hub"));
    let found = violations(&graph);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn a_planted_cycle_is_caught() {
    let mut graph = core_imports();
    // `auth` → `model` exists; `model` → `auth` closes a cycle within the rules of layers
    // only if it were allowed to go up, so plant one inside a single layer instead.
    graph.get_mut("config").unwrap().insert("auth".to_owned());
    graph.get_mut("auth").unwrap().insert("config".to_owned());
    let found = violations(&graph);
    assert!(
        found.iter().any(|v| v.starts_with("import cycle")),
        "{found:?}"
    );
}

#[test]
fn an_upward_import_is_caught() {
    let mut graph = core_imports();
    graph.get_mut("model").unwrap().insert("hub".to_owned());
    let found = violations(&graph);
    assert!(
        found
            .iter()
            .any(|v| v.contains("`model`") && v.contains("higher layer")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|v| v.starts_with("import cycle")),
        "{found:?}"
    );
}

#[test]
fn imports_are_read_from_use_lines_groups_and_paths() {
    let text = "use crate::{model::Seq, frame};\nuse crate::inbox::Inbox;\n\
                // crate::hub in a comment is no import\nlet x = crate::config::Limits::default();";
    let names: Vec<String> = crate_paths(text).into_iter().collect();
    assert_eq!(names, ["config", "frame", "inbox", "model"]);
}

#[test]
fn no_core_module_names_the_runtime() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for module in core_imports().keys() {
        let file = src.join(format!("{module}.rs"));
        let path = if file.exists() {
            file
        } else {
            src.join(module).join("mod.rs")
        };
        let text = code(&fs::read_to_string(&path).unwrap());
        assert!(
            !text.contains("worker::") && !text.contains("use worker"),
            "{module} names the workers-rs runtime; only edge may"
        );
    }
}

#[test]
fn the_layout_section_names_every_module() {
    let lib = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    for module in core_imports().keys() {
        assert!(
            lib.contains(&format!("[`{module}`]")),
            "src/lib.rs's Layout section does not name `{module}`"
        );
    }
}
