//! `cargo ci tidy --only scenarios`: every scenario is complete across the
//! repository.
//!
//! The ids come from their source of truth, the `scenario_ids! { Variant =>
//! "id", "leak-id", ... }` block in `service/src/components/mod.rs` (beside
//! each scenario's registration), read as Rust tokens (the service is not
//! built). Each id needs:
//!
//! | what | where |
//! |---|---|
//! | a leak guard | `guards! { id_snake => ...::ScenarioId::Variant, ... }` in `service/tests/guards/main.rs` |
//! | a write-up | `fixes/<id>.md` |
//! | its catalogue snapshot entry | `loadgen/tests/data/catalogue.json` |
//! | its Cargo feature | `leak-<id>` under `[features]` in `service/Cargo.toml` |
//! | its docs section (the catalogue's README) | a heading with `` `<id>` `` in `docs/catalogue.md` |

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use leaklab_model::Catalogue;
use proc_macro2::{Delimiter, TokenStream, TokenTree};
use syn::parse::{ParseStream, Parser};
use syn::{Ident, LitStr, Token};

use super::Findings;
use crate::json;

const CATALOGUE_RS: &str = "service/src/components/mod.rs";
const GUARDS: &str = "service/tests/guards/main.rs";
const SNAPSHOT: &str = "loadgen/tests/data/catalogue.json";
const SERVICE_TOML: &str = "service/Cargo.toml";
const DOCS: &str = "docs/catalogue.md";

/// One entry of the `scenario_ids!` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioIdEntry {
    /// The `ScenarioId` variant (`UnboundedCache`).
    pub variant: String,
    /// The id (`unbounded-cache`).
    pub id: String,
    /// The Cargo feature that turns the leak on in a build (`leak-unbounded-cache`).
    pub feature: String,
}

/// One entry of the guards' `guards!` block: a test module and its scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardEntry {
    /// The module the two guard tests live in (`unbounded_cache`).
    pub module: String,
    /// The `ScenarioId` variant it guards (the path's last segment).
    pub variant: String,
}

/// The body of the item-level macro call `name! { ... }` in `source`.
fn macro_body(source: &str, name: &str) -> Result<TokenStream, String> {
    let tokens: TokenStream = source
        .parse()
        .map_err(|e| format!("does not lex as Rust: {e}"))?;
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    tokens
        .windows(3)
        .find_map(|w| match w {
            [TokenTree::Ident(i), TokenTree::Punct(p), TokenTree::Group(g)]
                if i == name && p.as_char() == '!' && g.delimiter() == Delimiter::Brace =>
            {
                Some(g.stream())
            }
            _ => None,
        })
        .ok_or_else(|| format!("no `{name}! {{ ... }}` block"))
}

fn syn_error(err: syn::Error) -> String {
    format!("line {}: {err}", err.span().start().line)
}

/// Parses the `scenario_ids! { Variant => "id", "leak-id", ... }` block of
/// `service/src/components/mod.rs`; an error says what is wrong with it.
pub fn parse_scenario_ids(source: &str) -> Result<Vec<ScenarioIdEntry>, String> {
    let body = macro_body(source, "scenario_ids")?;
    let parse = |input: ParseStream<'_>| {
        let mut entries = Vec::new();
        while !input.is_empty() {
            let variant: Ident = input.parse()?;
            input.parse::<Token![=>]>()?;
            let id: LitStr = input.parse()?;
            input.parse::<Token![,]>()?;
            let feature: LitStr = input.parse()?;
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
            entries.push(ScenarioIdEntry {
                variant: variant.to_string(),
                id: id.value(),
                feature: feature.value(),
            });
        }
        Ok(entries)
    };
    let entries = parse
        .parse2(body)
        .map_err(|e| format!("scenario_ids! block, {}", syn_error(e)))?;
    if entries.is_empty() {
        return Err("the scenario_ids! block lists no scenario".to_owned());
    }
    Ok(entries)
}

/// Parses the `guards! { module => path::to::ScenarioId::Variant, ... }` block
/// of `service/tests/guards/main.rs`.
pub fn parse_guards(source: &str) -> Result<Vec<GuardEntry>, String> {
    let body = macro_body(source, "guards")?;
    let parse = |input: ParseStream<'_>| {
        let mut entries = Vec::new();
        while !input.is_empty() {
            let module: Ident = input.parse()?;
            input.parse::<Token![=>]>()?;
            let path: syn::Path = input.parse()?;
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
            let variant = path.segments.last().map(|s| s.ident.to_string());
            entries.push(GuardEntry {
                module: module.to_string(),
                variant: variant.unwrap_or_default(),
            });
        }
        Ok(entries)
    };
    parse
        .parse2(body)
        .map_err(|e| format!("guards! block, {}", syn_error(e)))
}

/// Whether a markdown document has a heading that names `` `id` ``.
pub fn has_heading(doc: &str, id: &str) -> bool {
    let quoted = format!("`{id}`");
    doc.lines()
        .any(|l| l.starts_with('#') && l.contains(&quoted))
}

/// The feature names under `[features]` of a Cargo.toml.
fn features(manifest: &str) -> Result<BTreeSet<String>, String> {
    let manifest: toml::Table = manifest.parse().map_err(|e| format!("{e}"))?;
    let features = manifest
        .get("features")
        .and_then(|f| f.as_table())
        .ok_or("no [features] table")?;
    Ok(features.keys().cloned().collect())
}

/// Everything the per-scenario checks read, each source read once; a
/// source that cannot be read is one problem, not one per scenario.
struct Sources {
    guards: Result<Vec<GuardEntry>, String>,
    snapshot: Result<BTreeSet<String>, String>,
    features: Result<BTreeSet<String>, String>,
    docs: Result<String, String>,
}

fn read(root: &Path, file: &str) -> Result<String, String> {
    std::fs::read_to_string(root.join(file)).map_err(|e| format!("cannot be read: {e}"))
}

impl Sources {
    fn read(root: &Path) -> Sources {
        let snapshot = json::read::<Catalogue>(&root.join(SNAPSHOT))
            .map(|c| c.ids().into_iter().map(str::to_owned).collect())
            .map_err(|e| format!("{e:#}"));
        Sources {
            guards: read(root, GUARDS).and_then(|s| parse_guards(&s)),
            snapshot,
            features: read(root, SERVICE_TOML).and_then(|s| features(&s)),
            docs: read(root, DOCS),
        }
    }

    /// A problem per source that could not be read.
    fn unreadable(&self) -> Vec<String> {
        let errors = [
            (GUARDS, self.guards.as_ref().err()),
            (SNAPSHOT, self.snapshot.as_ref().err()),
            (SERVICE_TOML, self.features.as_ref().err()),
            (DOCS, self.docs.as_ref().err()),
        ];
        errors
            .into_iter()
            .filter_map(|(file, err)| {
                err.map(|e| format!("{file}: {e} (no scenario could be checked against it)"))
            })
            .collect()
    }
}

/// What `entry` lacks, each as "what: what to do (which file)".
fn missing(root: &Path, entry: &ScenarioIdEntry, sources: &Sources) -> Vec<String> {
    let id = entry.id.as_str();
    let mut missing = Vec::new();
    let expected_feature = format!("leak-{id}");
    if entry.feature != expected_feature {
        missing.push(format!(
            "its feature in {CATALOGUE_RS}'s scenario_ids! is `{}`: it must be `{expected_feature}`",
            entry.feature
        ));
    }
    if let Ok(guards) = &sources.guards {
        missing.extend(guard_problem(entry, guards));
    }
    if !root.join("fixes").join(format!("{id}.md")).is_file() {
        missing.push(format!(
            "no write-up: create fixes/{id}.md (see fixes/README.md; `cargo ci prove --only {id}` writes its proof)"
        ));
    }
    if sources.snapshot.as_ref().is_ok_and(|ids| !ids.contains(id)) {
        missing.push(format!(
            "no entry in {SNAPSHOT}: add the one `leaklab-service scenarios --json` prints for it"
        ));
    }
    if sources
        .features
        .as_ref()
        .is_ok_and(|f| !f.contains(&entry.feature))
    {
        missing.push(format!(
            "no Cargo feature: add `{} = []` under [features] in {SERVICE_TOML}",
            entry.feature
        ));
    }
    if sources.docs.as_ref().is_ok_and(|doc| !has_heading(doc, id)) {
        missing.push(format!(
            "no section in {DOCS}: add a heading `### N. `{id}`` under \"## The scenarios\""
        ));
    }
    missing
}

/// The guard problem of `entry`, if any: none declared, or declared under a
/// module name `cargo ci guards --only ID` does not find.
fn guard_problem(entry: &ScenarioIdEntry, guards: &[GuardEntry]) -> Option<String> {
    let module = entry.id.replace('-', "_");
    match guards.iter().find(|g| g.variant == entry.variant) {
        None => Some(format!(
            "no leak guard: add `{module} => leaklab_service::catalogue::ScenarioId::{},` to the guards! block in {GUARDS}",
            entry.variant
        )),
        Some(g) if g.module != module => Some(format!(
            "its guard in {GUARDS} is the module `{}`: name it `{module}` (`cargo ci guards --only {}` filters on `{module}::`)",
            g.module, entry.id
        )),
        Some(_) => None,
    }
}

/// Runs the group from `root`.
pub fn check(root: &Path) -> Result<Findings> {
    let source = std::fs::read_to_string(root.join(CATALOGUE_RS))
        .with_context(|| format!("reading {CATALOGUE_RS}, where the scenario ids are declared"))?;
    let entries = parse_scenario_ids(&source).map_err(|e| {
        anyhow!(
            "{CATALOGUE_RS}: {e}; tidy takes the scenario ids from its \
             `scenario_ids! {{ Variant => \"id\", \"leak-id\", ... }}` block"
        )
    })?;
    let sources = Sources::read(root);
    let mut problems = sources.unreadable();
    let mut seen = BTreeSet::new();
    for entry in &entries {
        if !seen.insert(entry.id.as_str()) {
            problems.push(format!(
                "{}: listed twice in {CATALOGUE_RS}'s scenario_ids!",
                entry.id
            ));
        }
        let missing = missing(root, entry, &sources);
        if !missing.is_empty() {
            problems.push(format!("{}:\n- {}", entry.id, missing.join("\n- ")));
        }
    }
    Ok(Findings {
        checked: format!("{} scenarios complete", entries.len()),
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scenario_ids_block_parses_and_the_macro_definition_is_skipped() {
        let source = r#"
            //! x
            macro_rules! scenario_ids {
                ($($variant:ident => $id:literal, $feature:literal),+ $(,)?) => {};
            }
            scenario_ids! {
                UnboundedCache => "unbounded-cache", "leak-unbounded-cache",
                // a comment between entries
                Churn => "churn", "leak-churn"
            }
        "#;
        let entries = parse_scenario_ids(source).unwrap();
        assert_eq!(
            entries,
            [
                ScenarioIdEntry {
                    variant: "UnboundedCache".into(),
                    id: "unbounded-cache".into(),
                    feature: "leak-unbounded-cache".into(),
                },
                ScenarioIdEntry {
                    variant: "Churn".into(),
                    id: "churn".into(),
                    feature: "leak-churn".into(),
                },
            ]
        );
    }

    #[test]
    fn a_missing_or_malformed_block_is_an_error_saying_so() {
        let err = parse_scenario_ids("//! x\nfn main() {}\n").unwrap_err();
        assert!(err.contains("no `scenario_ids! { ... }` block"), "{err}");
        let err = parse_scenario_ids("scenario_ids! {\n A => \"a\" \"leak-a\",\n}").unwrap_err();
        assert!(
            err.starts_with("scenario_ids! block, line 2: expected `,`"),
            "{err}"
        );
        let err = parse_scenario_ids("scenario_ids! {}").unwrap_err();
        assert!(err.contains("no scenario"), "{err}");
    }

    #[test]
    fn guards_parse_to_their_module_and_variant() {
        let source = "guards! {\n    unbounded_cache => leaklab_service::catalogue::ScenarioId::UnboundedCache,\n    churn => ScenarioId::Churn,\n}";
        let guards = parse_guards(source).unwrap();
        assert_eq!(guards[0].module, "unbounded_cache");
        assert_eq!(guards[0].variant, "UnboundedCache");
        assert_eq!(guards[1].variant, "Churn");
        let entry = |variant: &str, id: &str| ScenarioIdEntry {
            variant: variant.into(),
            id: id.into(),
            feature: format!("leak-{id}"),
        };
        assert_eq!(guard_problem(&entry("Churn", "churn"), &guards), None);
        let misnamed = guard_problem(&entry("UnboundedCache", "cache"), &guards).unwrap();
        assert!(misnamed.contains("name it `cache`"), "{misnamed}");
        let absent = guard_problem(&entry("TaskLeak", "task-leak"), &guards).unwrap();
        assert!(
            absent.contains("add `task_leak => leaklab_service::catalogue::ScenarioId::TaskLeak,`"),
            "{absent}"
        );
    }

    #[test]
    fn a_docs_section_is_a_heading_naming_the_id() {
        assert!(has_heading(
            "## x\n### 14. `churn` (negative control)\n",
            "churn"
        ));
        assert!(!has_heading("| `churn` | in a table |\n", "churn"));
    }

    /// A repository with scenarios `a` (complete) and `b` (nothing but its id).
    fn fake_repository() -> std::path::PathBuf {
        let root = std::env::temp_dir().join(format!("leaklab-tidy-{}", std::process::id()));
        let files = [
            (
                CATALOGUE_RS,
                "//! c\nscenario_ids! {\n A => \"a\", \"leak-a\",\n B => \"b\", \"leak-b\",\n}\n",
            ),
            (GUARDS, "//! g\nguards! {\n a => ScenarioId::A,\n}\n"),
            (
                SNAPSHOT,
                r#"[{"id": "a", "class": "retention", "recipe": [{"method": "GET", "path": "/a"}]}]"#,
            ),
            (
                SERVICE_TOML,
                "[package]\nname = \"s\"\n[features]\nleak-a = []\n",
            ),
            (DOCS, "# c\n## The scenarios\n### 1. `a`\n"),
            ("fixes/a.md", "# a\n"),
        ];
        for (file, text) in files {
            let path = root.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        root
    }

    #[test]
    fn a_scenario_missing_everything_is_one_problem_naming_each_file() {
        let root = fake_repository();
        let findings = check(&root);
        std::fs::remove_dir_all(&root).unwrap();
        let findings = findings.unwrap();
        assert_eq!(findings.problems.len(), 1, "{:?}", findings.problems);
        let problem = &findings.problems[0];
        assert!(
            problem.starts_with("b:\n- no leak guard: add `b => "),
            "{problem}"
        );
        for file in [GUARDS, "fixes/b.md", SNAPSHOT, SERVICE_TOML, DOCS] {
            assert!(problem.contains(file), "{file} not named in {problem}");
        }
        assert_eq!(problem.lines().count(), 6, "{problem}");
    }

    #[test]
    fn features_come_from_the_features_table() {
        let f = features("[package]\nname = \"s\"\n[features]\ndefault = []\nleak-churn = []\n")
            .unwrap();
        assert!(f.contains("leak-churn"));
        assert!(features("[package]\nname = \"s\"\n").is_err());
    }
}
