//! `cargo ci tidy --only fn-length`: no function longer than a limit
//! (STYLE.md 10: "no 400-line `run`").
//!
//! Every `.rs` file under a source tree is parsed with `syn`; each function
//! with a body (free functions, methods, trait defaults, functions nested in
//! functions, test functions too) is measured from its signature to its
//! closing brace, attributes and doc comments excluded. Methods are named
//! `Type::method`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::visit::Visit;

use super::{relative, rust_sources, Findings};

/// One function and its length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FnSpan {
    /// `name`, or `Type::name` for a method.
    pub name: String,
    /// Line of its signature.
    pub line: usize,
    /// Lines from the signature to the closing brace, both included.
    pub lines: usize,
}

/// Collects every function with a body.
#[derive(Default)]
struct Collector {
    /// The impl's type or the trait enclosing the current item.
    owners: Vec<String>,
    fns: Vec<FnSpan>,
}

impl Collector {
    fn record(&mut self, sig: &syn::Signature, close: Span, method: bool) {
        let name = match self.owners.last() {
            Some(owner) if method => format!("{owner}::{}", sig.ident),
            _ => sig.ident.to_string(),
        };
        let line = sig.span().start().line;
        let end = close.end().line;
        self.fns.push(FnSpan {
            name,
            line,
            lines: end.saturating_sub(line) + 1,
        });
    }
}

/// The last segment of an impl's type (`Sampler` for `impl<T> x::Sampler<T>`).
fn type_name(ty: &syn::Type) -> String {
    match ty {
        syn::Type::Path(p) => p
            .path
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_default(),
        syn::Type::Reference(r) => type_name(&r.elem),
        _ => "_".to_owned(),
    }
}

impl<'ast> Visit<'ast> for Collector {
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        self.record(&f.sig, f.block.brace_token.span.close(), false);
        syn::visit::visit_item_fn(self, f);
    }

    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        self.owners.push(type_name(&i.self_ty));
        syn::visit::visit_item_impl(self, i);
        self.owners.pop();
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        self.record(&f.sig, f.block.brace_token.span.close(), true);
        syn::visit::visit_impl_item_fn(self, f);
    }

    fn visit_item_trait(&mut self, t: &'ast syn::ItemTrait) {
        self.owners.push(t.ident.to_string());
        syn::visit::visit_item_trait(self, t);
        self.owners.pop();
    }

    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        if let Some(block) = &f.default {
            self.record(&f.sig, block.brace_token.span.close(), true);
        }
        syn::visit::visit_trait_item_fn(self, f);
    }
}

/// Every function with a body in `source`, in source order.
pub fn functions(source: &str) -> syn::Result<Vec<FnSpan>> {
    let file = syn::parse_file(source)?;
    let mut collector = Collector::default();
    collector.visit_file(&file);
    collector.fns.sort_by_key(|f| f.line);
    Ok(collector.fns)
}

/// Functions longer than `max_lines` in the `.rs` files under `src`, as
/// `file:line name N lines`; a file that does not parse is a problem too.
pub fn long_functions(root: &Path, src: &Path, max_lines: usize) -> Result<(usize, Vec<String>)> {
    let mut counted = 0;
    let mut problems = Vec::new();
    for (path, source) in rust_sources(&root.join(src))? {
        let file = relative(root, &path);
        match functions(&source) {
            Ok(fns) => {
                counted += fns.len();
                problems.extend(fns.iter().filter(|f| f.lines > max_lines).map(|f| {
                    format!(
                        "{file}:{} {} {} lines (limit {max_lines}): split it",
                        f.line, f.name, f.lines
                    )
                }));
            }
            Err(e) => problems.push(format!(
                "{file}:{}: does not parse, functions not measured: {e}",
                e.span().start().line
            )),
        }
    }
    Ok((counted, problems))
}

/// Runs the group over the source trees `srcs` (relative to `root`).
pub fn check(root: &Path, srcs: &[PathBuf], max_lines: usize) -> Result<Findings> {
    let mut counted = 0;
    let mut problems = Vec::new();
    for src in srcs {
        let (n, found) = long_functions(root, src, max_lines)?;
        counted += n;
        problems.extend(found);
    }
    let trees: Vec<String> = srcs.iter().map(|s| s.display().to_string()).collect();
    Ok(Findings {
        checked: format!(
            "{counted} functions in {}, none over {max_lines} lines",
            trees.join(", ")
        ),
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = r#"//! A file.

/// A doc comment is not counted.
#[inline]
pub fn short() -> u32 {
    1
}

struct Sampler;

impl Sampler {
    pub async fn run(
        &self,
    ) {
        fn nested() {}
        let _ = 1;
    }
}

trait Render {
    fn render(&self) -> String {
        String::new()
    }
    fn declared_only(&self);
}
"#;

    #[test]
    fn functions_are_measured_from_signature_to_closing_brace() {
        let fns = functions(SOURCE).unwrap();
        let found: Vec<(&str, usize, usize)> = fns
            .iter()
            .map(|f| (f.name.as_str(), f.line, f.lines))
            .collect();
        assert_eq!(
            found,
            [
                ("short", 5, 3),
                ("Sampler::run", 12, 6),
                ("nested", 15, 1),
                ("Render::render", 21, 3),
            ]
        );
    }

    #[test]
    fn a_file_that_does_not_parse_is_an_error_with_its_line() {
        let err = functions("//! x\nfn f() {\n let = ;\n}\n").unwrap_err();
        assert_eq!(err.span().start().line, 3);
    }
}
