//! `cargo ci tidy --only cycles`: no cycles between a crate's top-level
//! modules (STYLE.md 14: each stage depends only on the stages before it).
//!
//! The modules are the files and folders under the source tree (`run.rs`,
//! `report/`); `lib.rs` and `main.rs` are the crate root, not a module. Every
//! file is parsed with `syn`, and each `crate::X`, `super::X` or `self::X`
//! reference (in `use` trees, in paths anywhere in the code, and as tokens
//! inside macro calls) that resolves to another top-level module is an edge.
//! A name the root re-exports (`pub use run::RunOpts;` in `lib.rs`) counts as
//! its module; items defined in the root itself are not a module and are not
//! edges. Code under `#[cfg(test)]` is left out: tests may reach anywhere.
//! The cycles are the strongly connected components of more than one module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};
use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

use super::{relative, rust_sources, Findings};

/// Where a reference was found.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reference {
    pub file: String,
    pub line: usize,
}

/// The top-level modules and who refers to whom.
#[derive(Debug, Default)]
pub struct ModuleGraph {
    pub modules: BTreeSet<String>,
    /// From → to → the first reference found.
    pub edges: BTreeMap<String, BTreeMap<String, Reference>>,
}

/// The module path of a file relative to the source tree: `[]` for the crate
/// root (`lib.rs`, `main.rs`), `[a]` for `a.rs` or `a/mod.rs`, `[a, b]` for
/// `a/b.rs`; None for files of other crates (`bin/`).
pub fn module_path(rel: &Path) -> Option<Vec<String>> {
    let mut parts: Vec<String> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    let last = parts.pop()?;
    let stem = last.strip_suffix(".rs")?;
    if parts.first().is_some_and(|p| p == "bin") {
        return None;
    }
    if parts.is_empty() && (stem == "lib" || stem == "main") {
        return Some(Vec::new());
    }
    if stem != "mod" {
        parts.push(stem.to_owned());
    }
    Some(parts)
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && matches!(&a.meta, syn::Meta::List(l) if l.tokens.to_string() == "test")
    })
}

fn item_attrs(item: &syn::Item) -> &[syn::Attribute] {
    use syn::Item;
    match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

/// A path as written: its segments (`["crate", "run", "RunOpts"]`), the
/// module scope it was written in, its line, and the name it binds (a `use`
/// leaf: its last segment or its `as` rename).
#[derive(Clone, Debug)]
struct Written {
    scope: Vec<String>,
    segments: Vec<String>,
    line: usize,
    binds: Option<String>,
}

/// Collects the `crate::`/`super::`/`self::` paths of one file.
struct PathCollector {
    scope: Vec<String>,
    found: Vec<Written>,
}

impl PathCollector {
    fn push(&mut self, segments: Vec<String>, line: usize, binds: Option<String>) {
        let anchored = matches!(segments[0].as_str(), "crate" | "super" | "self");
        // In the crate root a `use` path may start at a module (`pub use run::RunOpts;`).
        let root_use = self.scope.is_empty() && binds.is_some();
        if segments.len() > 1 && (anchored || root_use) {
            self.found.push(Written {
                scope: self.scope.clone(),
                segments,
                line,
                binds,
            });
        }
    }

    fn use_tree(&mut self, tree: &syn::UseTree, prefix: &mut Vec<String>) {
        let leaf = |this: &mut Self, ident: &syn::Ident, binds: String| {
            let mut segments = prefix.clone();
            segments.push(ident.to_string());
            this.push(segments, ident.span().start().line, Some(binds));
        };
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(&p.tree, prefix);
                prefix.pop();
            }
            syn::UseTree::Name(n) => leaf(self, &n.ident, n.ident.to_string()),
            syn::UseTree::Rename(r) => leaf(self, &r.ident, r.rename.to_string()),
            syn::UseTree::Glob(g) => {
                let mut segments = prefix.clone();
                segments.push("*".to_owned());
                self.push(segments, g.star_token.span.start().line, None);
            }
            syn::UseTree::Group(g) => {
                for tree in &g.items {
                    self.use_tree(tree, prefix);
                }
            }
        }
    }

    /// `crate :: a :: b` token runs inside a macro call.
    fn tokens(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < trees.len() {
            if let TokenTree::Group(g) = &trees[i] {
                self.tokens(g.stream());
            }
            let TokenTree::Ident(first) = &trees[i] else {
                i += 1;
                continue;
            };
            let mut segments = vec![first.to_string()];
            let mut j = i + 1;
            while let [TokenTree::Punct(a), TokenTree::Punct(b), TokenTree::Ident(next), ..] =
                &trees[j.min(trees.len())..]
            {
                if a.as_char() != ':' || b.as_char() != ':' {
                    break;
                }
                segments.push(next.to_string());
                j += 3;
            }
            self.push(segments, first.span().start().line, None);
            i = j;
        }
    }
}

impl<'ast> Visit<'ast> for PathCollector {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        if !is_cfg_test(item_attrs(item)) {
            syn::visit::visit_item(self, item);
        }
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        self.scope.push(m.ident.to_string());
        syn::visit::visit_item_mod(self, m);
        self.scope.pop();
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.use_tree(&u.tree, &mut Vec::new());
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segments = p.segments.iter().map(|s| s.ident.to_string()).collect();
        let line = p
            .segments
            .first()
            .map_or(0, |s| s.ident.span().start().line);
        self.push(segments, line, None);
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.tokens(m.tokens.clone());
        syn::visit::visit_macro(self, m);
    }
}

/// The `crate::`/`super::`/`self::` paths written in `source`, a file at
/// module path `scope`.
fn written_paths(source: &str, scope: Vec<String>) -> syn::Result<Vec<Written>> {
    let file = syn::parse_file(source)?;
    let mut collector = PathCollector {
        scope,
        found: Vec::new(),
    };
    collector.visit_file(&file);
    Ok(collector.found)
}

/// What `crate::<name>` means for the graph: a module, a name the root
/// re-exports from one, or nothing (an item of the root itself).
struct Root<'a> {
    modules: &'a BTreeSet<String>,
    reexports: BTreeMap<String, String>,
}

impl Root<'_> {
    fn item(&self, name: Option<&String>) -> Option<String> {
        let name = name?;
        if self.modules.contains(name) {
            return Some(name.clone());
        }
        self.reexports.get(name).cloned()
    }

    /// The top-level module `written` refers to, if any.
    fn resolve(&self, written: &Written) -> Option<String> {
        let segments = &written.segments;
        let scope = &written.scope;
        match segments[0].as_str() {
            "crate" => self.item(segments.get(1)),
            first @ ("self" | "super") => {
                let up = segments.iter().take_while(|s| *s == "super").count();
                let rest = scope.len().checked_sub(up)?;
                match scope[..rest].first() {
                    Some(module) => Some(module.clone()),
                    None => self.item(segments.get(if first == "self" { 1 } else { up })),
                }
            }
            // A `use` path of the crate root, which starts at the root.
            _ => self.item(segments.first()),
        }
    }
}

/// Builds the graph of the crate whose sources are under `src_dir`.
pub fn module_graph(root: &Path, src_dir: &Path) -> Result<ModuleGraph> {
    let mut files = Vec::new();
    for (path, source) in rust_sources(src_dir)? {
        let rel = path.strip_prefix(src_dir).unwrap_or(&path).to_path_buf();
        let Some(scope) = module_path(&rel) else {
            continue;
        };
        let file = relative(root, &path);
        let written = written_paths(&source, scope.clone()).map_err(|e| {
            anyhow::anyhow!("{file}:{}: does not parse: {e}", e.span().start().line)
        })?;
        files.push((file, scope, written));
    }
    let modules: BTreeSet<String> = files
        .iter()
        .filter_map(|(_, s, _)| s.first().cloned())
        .collect();
    let mut crate_root = Root {
        modules: &modules,
        reexports: BTreeMap::new(),
    };
    // The root's own `use` items: the names it brings in from a module.
    for (_, scope, written) in files.iter().filter(|(_, s, _)| s.is_empty()) {
        for w in written.iter().filter(|w| w.scope == *scope) {
            if let (Some(binds), Some(module)) = (&w.binds, crate_root.resolve(w)) {
                crate_root.reexports.insert(binds.clone(), module);
            }
        }
    }
    let mut graph = ModuleGraph {
        modules: modules.clone(),
        edges: BTreeMap::new(),
    };
    for (file, scope, written) in &files {
        let Some(from) = scope.first() else { continue };
        for w in written {
            let Some(to) = crate_root.resolve(w).filter(|to| to != from) else {
                continue;
            };
            let at = Reference {
                file: file.clone(),
                line: w.line,
            };
            let first = graph
                .edges
                .entry(from.clone())
                .or_default()
                .entry(to)
                .or_insert(at.clone());
            *first = first.clone().min(at);
        }
    }
    Ok(graph)
}

/// Strongly connected components of more than one node (Tarjan), each
/// sorted, in order of their first node.
pub fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, (usize, usize)>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, node: &'a str) {
            let n = self.index.len();
            self.index.insert(node, (n, n));
            self.stack.push(node);
            self.on_stack.insert(node);
            for next in self.edges.get(node).into_iter().flatten() {
                let next = next.as_str();
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.index[next].1.min(self.index[node].1);
                    self.index.get_mut(node).expect("visited").1 = low;
                } else if self.on_stack.contains(next) {
                    let low = self.index[next].0.min(self.index[node].1);
                    self.index.get_mut(node).expect("visited").1 = low;
                }
            }
            let (index, low) = self.index[node];
            if index == low {
                let mut component = Vec::new();
                while let Some(member) = self.stack.pop() {
                    self.on_stack.remove(member);
                    component.push(member.to_owned());
                    if member == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut tarjan = Tarjan {
        edges,
        index: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in edges.keys() {
        if !tarjan.index.contains_key(node.as_str()) {
            tarjan.visit(node);
        }
    }
    tarjan.found.sort();
    tarjan.found
}

/// One problem per cycle: its modules, and each reference inside it.
fn describe(graph: &ModuleGraph, cycle: &[String], src: &Path) -> String {
    let mut text = format!(
        "{}: cycle between {} ({} modules); each reference inside it:",
        src.display(),
        cycle.join(", "),
        cycle.len()
    );
    for from in cycle {
        for (to, at) in graph.edges.get(from).into_iter().flatten() {
            if cycle.contains(to) {
                text += &format!("\n{from} -> {to}: {}:{}", at.file, at.line);
            }
        }
    }
    text
}

/// Runs the group over the source trees `srcs` (relative to `root`).
pub fn check(root: &Path, srcs: &[PathBuf]) -> Result<Findings> {
    let mut problems = Vec::new();
    let mut modules = 0;
    for src in srcs {
        let graph = module_graph(root, &root.join(src))
            .with_context(|| format!("reading the modules of {}", src.display()))?;
        modules += graph.modules.len();
        let edges = graph
            .edges
            .iter()
            .map(|(from, to)| (from.clone(), to.keys().cloned().collect()))
            .collect();
        problems.extend(cycles(&edges).iter().map(|c| describe(&graph, c, src)));
    }
    Ok(Findings {
        checked: format!("{modules} top-level modules, no cycle"),
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &str)]) -> BTreeMap<String, BTreeSet<String>> {
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, to) in edges {
            graph
                .entry(from.to_string())
                .or_default()
                .insert(to.to_string());
        }
        graph
    }

    #[test]
    fn cycles_are_the_strongly_connected_components_of_two_or_more() {
        let g = graph(&[
            ("run", "analysis"),
            ("analysis", "summary"),
            ("summary", "run"),
            ("hunt", "run"),
            ("canary", "oom"),
            ("oom", "canary"),
            ("report", "report"),
        ]);
        assert_eq!(
            cycles(&g),
            [vec!["analysis", "run", "summary"], vec!["canary", "oom"]]
        );
        assert!(cycles(&graph(&[("a", "b"), ("b", "c")])).is_empty());
    }

    #[test]
    fn module_paths_follow_the_files() {
        let p = |s: &str| module_path(Path::new(s));
        assert_eq!(p("lib.rs"), Some(vec![]));
        assert_eq!(p("run.rs"), Some(vec!["run".to_owned()]));
        assert_eq!(p("report/mod.rs"), Some(vec!["report".to_owned()]));
        assert_eq!(
            p("report/html.rs"),
            Some(vec!["report".to_owned(), "html".to_owned()])
        );
        assert_eq!(p("bin/tool.rs"), None);
    }

    #[test]
    fn references_resolve_through_use_paths_super_macros_and_reexports() {
        let modules: BTreeSet<String> = ["run", "summary", "report", "stats"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        let lib = written_paths("pub mod run;\npub use summary::RunSummary;\n", vec![]).unwrap();
        let mut root = Root {
            modules: &modules,
            reexports: BTreeMap::new(),
        };
        for w in &lib {
            if let (Some(binds), Some(m)) = (&w.binds, root.resolve(w)) {
                root.reexports.insert(binds.clone(), m);
            }
        }
        let source = r#"
            use crate::{exit, summary::{self, Verdict}};
            use super::report as html;
            use crate::RunSummary;
            fn f() { let x = crate::stats::median(&[]); println!("{}", crate::run::RATE); }
            #[cfg(test)]
            mod tests { use crate::run::tests_only; }
            mod inner { use super::super::stats; use super::f; }
        "#;
        let written = written_paths(source, vec!["hunt".to_owned()]).unwrap();
        let mut resolved: Vec<(String, usize)> = written
            .iter()
            .filter_map(|w| Some((root.resolve(w)?, w.line)))
            .collect();
        resolved.sort();
        resolved.dedup();
        assert_eq!(
            resolved,
            [
                ("hunt".to_owned(), 8),
                ("report".to_owned(), 3),
                ("run".to_owned(), 5),
                ("stats".to_owned(), 5),
                ("stats".to_owned(), 8),
                ("summary".to_owned(), 2),
                ("summary".to_owned(), 4),
            ]
        );
    }
}
