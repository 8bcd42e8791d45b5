//! `docs/reference/`: every component's options, written from the config structs' doc
//! comments and serde attributes, and kept current: this test fails when the checked-in files
//! differ from what the source says (`WEIR_UPDATE_REFERENCE=1` writes them).
//!
//! Doc comments are not in the binary, so the reference is read from the source with `syn`
//! (already built for weir's derives) rather than by a `weir docs` command: no derive, no
//! table kept by hand beside each struct. A default is shown when its function is a literal
//! (`300`, `128 * 1024`, `"0.0.0.0:514".into()`); otherwise the description says it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use quote::ToTokens;
use syn::{Attribute, Expr, Fields, Item, Lit, Type};

const KINDS: [(&str, &str, &str); 3] = [
    ("sources", "Sources", "[sources.ID]"),
    ("transforms", "Transforms", "[transforms.ID]"),
    ("sinks", "Sinks", "[sinks.ID]"),
];

#[test]
fn reference_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (files, _) = pages(root);
    let out = root.join("docs/reference");
    let update = std::env::var_os("WEIR_UPDATE_REFERENCE").is_some();
    let mut stale = Vec::new();
    for (name, text) in &files {
        let path = out.join(name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            if update {
                std::fs::create_dir_all(&out).unwrap();
                std::fs::write(&path, text).unwrap();
            } else {
                stale.push(name.clone());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "docs/reference/ is stale ({}): regenerate it with\n  \
         WEIR_UPDATE_REFERENCE=1 cargo test --test it reference_is_current",
        stale.join(", ")
    );
}

/// Every option a user can set has a description: a row with an empty cell tells nothing the
/// type column does not, so the doc comment is missing at the field named here.
#[test]
fn every_option_has_a_description() {
    let (_, undescribed) = pages(Path::new(env!("CARGO_MANIFEST_DIR")));
    assert!(
        undescribed.is_empty(),
        "options without a doc comment (give each what it does, its default and unit):\n  {}",
        undescribed.join("\n  ")
    );
}

/// An option left unset takes its default, and the Default column says which: the socket
/// sink's `framing` is an `Option` (refused for udp) whose unset value is newline framing
/// (`unwrap_or_default` in the sink), not "none".
#[test]
fn an_unset_choice_shows_the_value_it_takes() {
    let (files, _) = pages(Path::new(env!("CARGO_MANIFEST_DIR")));
    let sinks = &files.iter().find(|(n, _)| n == "sinks.md").expect("sinks.md").1;
    let row = sinks
        .lines()
        .find(|l| l.starts_with("| `framing` | string: `\"newline\"`"))
        .expect("the socket sink's framing row");
    assert!(row.contains("| `\"newline\"` |"), "{row}");
}

/// The reference's files (name, text), and the options written without a description.
fn pages(root: &Path) -> (Vec<(String, String)>, Vec<String>) {
    let index = Index::read(&root.join("src"));
    let mut undescribed = Vec::new();
    let mut files = vec![("pipeline.md".to_string(), pipeline_page(&index, &mut undescribed))];
    for (dir, title, table) in KINDS {
        let text = kind_page(&index, root, dir, title, table, &mut undescribed);
        files.push((format!("{dir}.md"), text));
    }
    (files, undescribed)
}

/// Every struct, enum and function of `src/`, by name, with the file it is in.
struct Index {
    structs: BTreeMap<String, Vec<(PathBuf, syn::ItemStruct)>>,
    enums: BTreeMap<String, Vec<(PathBuf, syn::ItemEnum)>>,
    fns: BTreeMap<String, Vec<(PathBuf, syn::ItemFn)>>,
    /// Each file's module documentation (`//!`).
    module_docs: BTreeMap<PathBuf, String>,
}

impl Index {
    fn read(src: &Path) -> Self {
        let mut index = Index {
            structs: BTreeMap::new(),
            enums: BTreeMap::new(),
            fns: BTreeMap::new(),
            module_docs: BTreeMap::new(),
        };
        let mut stack = vec![src.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    let file = syn::parse_file(&text).unwrap();
                    index.module_docs.insert(path.clone(), docs(&file.attrs));
                    index.add(&path, file.items);
                }
            }
        }
        index
    }

    fn add(&mut self, path: &Path, items: Vec<Item>) {
        for item in items {
            match item {
                Item::Struct(s) => {
                    let entry = self.structs.entry(s.ident.to_string()).or_default();
                    entry.push((path.to_path_buf(), s));
                }
                Item::Enum(e) => {
                    self.enums.entry(e.ident.to_string()).or_default().push((path.to_path_buf(), e))
                }
                Item::Fn(f) => self
                    .fns
                    .entry(f.sig.ident.to_string())
                    .or_default()
                    .push((path.to_path_buf(), f)),
                Item::Mod(m) if !is_cfg_test(&m.attrs) => {
                    if let Some((_, items)) = m.content {
                        self.add(path, items);
                    }
                }
                _ => {}
            }
        }
    }

    /// The definition named `name` nearest `near`: same file, then the nearest directory
    /// above it holding one (the loki sink's `Codec` is `sinks/util`'s, not a source's).
    fn nearest<'a, T>(
        list: Option<&'a Vec<(PathBuf, T)>>,
        near: &Path,
    ) -> Option<&'a (PathBuf, T)> {
        let list = list?;
        list.iter()
            .find(|(p, _)| p == near)
            .or_else(|| {
                near.ancestors().skip(1).find_map(|d| list.iter().find(|(p, _)| p.starts_with(d)))
            })
            .or_else(|| list.first())
    }
}

fn is_cfg_test(attrs: &[Attribute]) -> bool {
    attrs
        .iter()
        .any(|a| a.path().is_ident("cfg") && a.to_token_stream().to_string().contains("test"))
}

/// The doc comment, its lines joined as written.
fn docs(attrs: &[Attribute]) -> String {
    let mut lines = Vec::new();
    for a in attrs {
        if let syn::Meta::NameValue(nv) = &a.meta
            && nv.path.is_ident("doc")
            && let Expr::Lit(syn::ExprLit { lit: Lit::Str(s), .. }) = &nv.value
        {
            let v = s.value();
            lines.push(v.strip_prefix(' ').unwrap_or(&v).to_string());
        }
    }
    lines.join("\n")
}

/// The `#[serde(...)]` settings of an item or field: (key, value) with `None` for flags.
fn serde(attrs: &[Attribute]) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for a in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        let _ = a.parse_nested_meta(|meta| {
            let key = meta.path.to_token_stream().to_string();
            let value = match meta.value() {
                Ok(v) => {
                    let lit: Lit = v.parse()?;
                    match lit {
                        Lit::Str(s) => Some(s.value()),
                        other => Some(other.to_token_stream().to_string()),
                    }
                }
                Err(_) => None,
            };
            out.push((key, value));
            Ok(())
        });
    }
    out
}

fn setting<'a>(settings: &'a [(String, Option<String>)], key: &str) -> Option<Option<&'a str>> {
    settings.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_deref())
}

/// `rename_all` applied to a Rust name.
fn renamed(name: &str, rule: Option<&str>) -> String {
    let snake = {
        let mut s = String::new();
        for (i, c) in name.chars().enumerate() {
            if c.is_uppercase() && i > 0 {
                s.push('_');
            }
            s.extend(c.to_lowercase());
        }
        s
    };
    match rule {
        Some("snake_case") => snake,
        Some("lowercase") => name.to_lowercase(),
        Some("UPPERCASE") => name.to_uppercase(),
        Some("kebab-case") => snake.replace('_', "-"),
        Some("SCREAMING_SNAKE_CASE") => snake.to_uppercase(),
        _ => name.to_string(),
    }
}

/// One row of a component's table.
struct Row {
    name: String,
    kind: String,
    default: String,
    description: String,
}

fn pipeline_page(index: &Index, undescribed: &mut Vec<String>) -> String {
    let mut text = String::from(
        "# Pipeline options\n\n<!-- Written by tests/it/reference.rs from the source; do not edit. \
         Regenerate: WEIR_UPDATE_REFERENCE=1 cargo test --test it reference_is_current -->\n\n\
         The keys a pipeline file has besides its components ([sources.md](sources.md), \
         [transforms.md](transforms.md), [sinks.md](sinks.md)).\n",
    );
    let config_mod = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config/mod.rs");
    let dead_letter = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/dead_letter.rs");
    for (title, name, near, prefix) in [
        ("Top level", "GlobalOptions", &config_mod, ""),
        ("`[api]`", "ApiConfig", &config_mod, ""),
        ("`[dead_letter]`", "DeadLetterConfig", &dead_letter, ""),
        ("`buffer` (in a sink's table)", "BufferConfig", &config_mod, "buffer."),
    ] {
        let _ = writeln!(text, "\n## {title}\n");
        let mut rows = Vec::new();
        struct_rows(index, name, near, prefix, &mut rows, 0);
        table(&mut text, &rows, &format!("pipeline {title}"), undescribed);
    }
    text
}

fn kind_page(
    index: &Index,
    root: &Path,
    dir: &str,
    title: &str,
    table_name: &str,
    undescribed: &mut Vec<String>,
) -> String {
    let mod_rs = root.join("src").join(dir).join("mod.rs");
    let list = std::fs::read_to_string(&mod_rs).unwrap();
    let entry = regex::Regex::new(r#""([a-z_]+)" => \w+\((?:Box<)?([\w:]+)>?\)"#).unwrap();
    let mut text = format!(
        "# {title}\n\n<!-- Written by tests/it/reference.rs from the source; do not edit. \
         Regenerate: WEIR_UPDATE_REFERENCE=1 cargo test --test it reference_is_current -->\n\n\
         Every `type` of a `{table_name}` table, with its options.{}\n",
        match dir {
            "sources" => "",
            "transforms" =>
                " Each also takes `inputs`, a list of component ids (`id` or `id.output`).",
            _ =>
                " Each also takes `inputs`, a list of component ids (`id` or `id.output`), and \
                  `buffer` ([pipeline.md](pipeline.md#buffer-in-a-sinks-table)).",
        }
    );
    let mut toc = Vec::new();
    let mut body = String::new();
    for caps in entry.captures_iter(&list) {
        let (tag, path) = (&caps[1], &caps[2]);
        let (module, name) = path.rsplit_once("::").unwrap_or(("", path));
        let base = root.join("src").join(dir).join(module.replace("::", "/"));
        let near = if base.join("mod.rs").is_file() {
            base.join("mod.rs")
        } else {
            base.with_extension("rs")
        };
        toc.push(format!("[`{tag}`](#{tag})"));
        let _ = writeln!(body, "\n## {tag}\n");
        let module_docs = index.module_docs.get(&near).cloned().unwrap_or_default();
        let summary = module_docs.split("\n\n").next().unwrap_or_default().replace('\n', " ");
        if !summary.trim().is_empty() {
            let _ = writeln!(body, "{}\n", summary.trim());
        }
        let mut rows = Vec::new();
        struct_rows(index, name, &near, "", &mut rows, 0);
        if rows.is_empty() {
            let _ = writeln!(body, "No options.\n");
        } else {
            table(&mut body, &rows, &format!("{dir} {tag}"), undescribed);
        }
        if let Some(example) = toml_example(&module_docs) {
            let _ = writeln!(body, "\nExample:\n\n```toml\n{example}```");
        }
    }
    let _ = writeln!(text, "\n{}\n{body}", toc.join(" · "));
    text
}

/// The first ```toml block of a module's documentation.
fn toml_example(docs: &str) -> Option<String> {
    let start = docs.find("```toml\n")? + "```toml\n".len();
    let end = docs[start..].find("```")?;
    Some(docs[start..start + end].to_string())
}

fn table(text: &mut String, rows: &[Row], context: &str, undescribed: &mut Vec<String>) {
    let _ = writeln!(text, "| option | type | default | description |\n|---|---|---|---|");
    for r in rows {
        if r.description.trim().is_empty() {
            undescribed.push(format!("{context}: `{}`", r.name));
        }
        let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        let _ = writeln!(
            text,
            "| `{}` | {} | {} | {} |",
            r.name,
            cell(&r.kind),
            cell(&r.default),
            cell(&r.description)
        );
    }
}

/// The rows of struct `name` (found nearest `near`), nested tables as `prefix.key` rows.
fn struct_rows(
    index: &Index,
    name: &str,
    near: &Path,
    prefix: &str,
    rows: &mut Vec<Row>,
    depth: usize,
) {
    let Some((file, item)) = Index::nearest(index.structs.get(name), near) else { return };
    let container = serde(&item.attrs);
    let rule = setting(&container, "rename_all").flatten();
    let container_default = setting(&container, "default").is_some();
    let fields = match &item.fields {
        Fields::Named(fields) => fields,
        // A newtype (`#[serde(transparent)]`) has the options of what it wraps.
        Fields::Unnamed(u) if u.unnamed.len() == 1 => {
            if let Some(n) = type_name(&u.unnamed[0].ty) {
                struct_rows(index, &n, file, prefix, rows, depth + 1);
            }
            return;
        }
        _ => return,
    };
    for field in &fields.named {
        let settings = serde(&field.attrs);
        if setting(&settings, "skip").is_some()
            || setting(&settings, "skip_deserializing").is_some()
        {
            continue;
        }
        let rust_name = field.ident.as_ref().map(|i| i.to_string()).unwrap_or_default();
        let key = setting(&settings, "rename")
            .flatten()
            .map(str::to_string)
            .unwrap_or_else(|| renamed(&rust_name, rule));
        let (inner, optional) = unwrap_option(&field.ty);
        if setting(&settings, "flatten").is_some() {
            if let Some(n) = type_name(inner) {
                struct_rows(index, &n, file, prefix, rows, depth + 1);
            }
            continue;
        }
        let default = field_default(index, &settings, inner, optional, container_default, file);
        let nested = type_name(inner)
            .filter(|n| depth < 3 && index.structs.contains_key(n) && is_config(index, n, file));
        // A list of tables (`[[sinks.ID.rules]]`): its entries' options as `key[].option`.
        let listed = generic(inner)
            .filter(|(outer, _)| outer == "Vec")
            .and_then(|(_, args)| args.first().and_then(|t| type_name(t)))
            .filter(|n| depth < 3 && index.structs.contains_key(n) && is_config(index, n, file));
        let kind = describe_type(index, inner, file);
        rows.push(Row {
            name: format!("{prefix}{key}"),
            kind,
            default,
            description: docs(&field.attrs),
        });
        if let Some(n) = nested {
            struct_rows(index, &n, file, &format!("{prefix}{key}."), rows, depth + 1);
        } else if let Some(n) = listed {
            struct_rows(index, &n, file, &format!("{prefix}{key}[]."), rows, depth + 1);
        } else if let Some((_, e)) =
            type_name(inner).and_then(|n| Index::nearest(index.enums.get(&n), file))
        {
            variant_rows(index, e, file, &format!("{prefix}{key}."), rows);
        }
    }
}

/// The default column of a field, from its serde settings and its struct's.
fn field_default(
    index: &Index,
    settings: &[(String, Option<String>)],
    inner: &Type,
    optional: bool,
    container_default: bool,
    near: &Path,
) -> String {
    match setting(settings, "default") {
        Some(Some(function)) => default_value(index, function, near),
        Some(None) => type_default(index, inner, optional, near),
        None if container_default => type_default(index, inner, optional, near),
        None if optional => "none".to_string(),
        None => "required".to_string(),
    }
}

/// The options of a table chosen by a key (`#[serde(tag = "strategy")]`): the key with what
/// each value means, then each variant's fields, saying which value they belong to.
fn variant_rows(index: &Index, e: &syn::ItemEnum, near: &Path, prefix: &str, rows: &mut Vec<Row>) {
    let container = serde(&e.attrs);
    let Some(Some(tag)) = setting(&container, "tag") else { return };
    let rule = setting(&container, "rename_all").flatten();
    let variants: Vec<(String, &syn::Variant)> = e
        .variants
        .iter()
        .filter(|v| setting(&serde(&v.attrs), "skip").is_none())
        .map(|v| {
            let s = serde(&v.attrs);
            let name = setting(&s, "rename").flatten().map(str::to_string);
            (name.unwrap_or_else(|| renamed(&v.ident.to_string(), rule)), v)
        })
        .collect();
    let values: Vec<String> = variants.iter().map(|(n, _)| format!("`\"{n}\"`")).collect();
    let meanings: Vec<String> =
        variants.iter().map(|(n, v)| format!("`\"{n}\"`: {}", docs(&v.attrs))).collect();
    rows.push(Row {
        name: format!("{prefix}{tag}"),
        kind: format!("string: {}", values.join(", ")),
        default: "required".into(),
        description: meanings.join(" "),
    });
    for (value, v) in &variants {
        let Fields::Named(fields) = &v.fields else { continue };
        for field in &fields.named {
            let settings = serde(&field.attrs);
            let rust_name = field.ident.as_ref().map(|i| i.to_string()).unwrap_or_default();
            let key = setting(&settings, "rename").flatten().map_or(rust_name, str::to_string);
            let (inner, optional) = unwrap_option(&field.ty);
            let description = docs(&field.attrs);
            rows.push(Row {
                name: format!("{prefix}{key}"),
                kind: describe_type(index, inner, near),
                default: field_default(index, &settings, inner, optional, false, near),
                description: if description.trim().is_empty() {
                    description
                } else {
                    let mut first = description.chars();
                    let lowered: String = first
                        .next()
                        .into_iter()
                        .flat_map(char::to_lowercase)
                        .chain(first)
                        .collect();
                    format!("With `{tag} = \"{value}\"`: {lowered}")
                },
            });
        }
    }
}

/// A struct that is read from TOML (derives `Deserialize`).
fn is_config(index: &Index, name: &str, near: &Path) -> bool {
    Index::nearest(index.structs.get(name), near).is_some_and(|(_, s)| {
        s.attrs.iter().any(|a| a.to_token_stream().to_string().contains("Deserialize"))
    })
}

fn unwrap_option(ty: &Type) -> (&Type, bool) {
    if let Some((outer, args)) = generic(ty)
        && outer == "Option"
        && let Some(inner) = args.first()
    {
        return (inner, true);
    }
    (ty, false)
}

/// `Outer<A, B>`: ("Outer", [A, B]).
fn generic(ty: &Type) -> Option<(String, Vec<&Type>)> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    let args = match &last.arguments {
        syn::PathArguments::AngleBracketed(a) => a
            .args
            .iter()
            .filter_map(|g| if let syn::GenericArgument::Type(t) = g { Some(t) } else { None })
            .collect(),
        _ => Vec::new(),
    };
    Some((last.ident.to_string(), args))
}

fn type_name(ty: &Type) -> Option<String> {
    let (name, args) = generic(ty)?;
    if name == "Box" { args.first().and_then(|t| type_name(t)) } else { Some(name) }
}

/// The type as a user writes it in TOML.
fn describe_type(index: &Index, ty: &Type, near: &Path) -> String {
    let Some((name, args)) = generic(ty) else { return ty.to_token_stream().to_string() };
    match name.as_str() {
        "String" | "PathBuf" | "Template" | "Arc" => "string".into(),
        "SocketAddr" => "string (address:port)".into(),
        "bool" => "boolean".into(),
        "f32" | "f64" => "number".into(),
        n if n.starts_with('u') || n.starts_with('i') || n.starts_with("NonZero") => {
            "integer".into()
        }
        "Vec" | "BTreeSet" | "HashSet" => format!(
            "list of {}",
            args.first().map_or("values".into(), |t| describe_type(index, t, near))
        ),
        "BTreeMap" | "HashMap" | "IndexMap" => format!(
            "table of {}",
            args.get(1).map_or("values".into(), |t| describe_type(index, t, near))
        ),
        "Box" | "Option" => args.first().map_or(name.clone(), |t| describe_type(index, t, near)),
        _ => {
            if let Some((_, e)) = Index::nearest(index.enums.get(&name), near) {
                return enum_values(e);
            }
            if index.structs.contains_key(&name) {
                return "table".into();
            }
            name
        }
    }
}

/// An enum of unit variants is one of its names; otherwise it is a table or a value.
fn enum_values(e: &syn::ItemEnum) -> String {
    let container = serde(&e.attrs);
    let rule = setting(&container, "rename_all").flatten();
    if e.variants.iter().all(|v| matches!(v.fields, Fields::Unit)) {
        let names: Vec<String> = e
            .variants
            .iter()
            .filter(|v| setting(&serde(&v.attrs), "skip").is_none())
            .map(|v| {
                let s = serde(&v.attrs);
                let n = setting(&s, "rename").flatten().map(str::to_string);
                format!("`\"{}\"`", n.unwrap_or_else(|| renamed(&v.ident.to_string(), rule)))
            })
            .collect();
        return format!("string: {}", names.join(", "));
    }
    if let Some(Some(tag)) = setting(&container, "tag") {
        return format!("table (by `{tag}`)");
    }
    "table or value".into()
}

/// The default of a field marked `#[serde(default)]`. An optional choice among names (a unit
/// enum) that has a `#[default]` variant is an `Option` only so that its absence can be told
/// apart (the socket sink's `framing`, refused for udp): unset, it is that variant.
fn type_default(index: &Index, ty: &Type, optional: bool, near: &Path) -> String {
    let unit_default = generic(ty).and_then(|(n, _)| unit_enum_default(index, &n, near));
    if optional {
        return unit_default.unwrap_or_else(|| "none".into());
    }
    if let Some(name) = unit_default {
        return name;
    }
    match generic(ty).map(|(n, _)| n).as_deref() {
        Some("bool") => "`false`".into(),
        Some("Vec" | "BTreeMap" | "HashMap" | "BTreeSet" | "HashSet" | "IndexMap") => {
            "empty".into()
        }
        Some("String") => "`\"\"`".into(),
        Some(n) if n.starts_with('u') || n.starts_with('i') => "`0`".into(),
        _ => "see description".into(),
    }
}

/// The `#[default]` variant of a unit enum named `name`, as TOML writes it.
fn unit_enum_default(index: &Index, name: &str, near: &Path) -> Option<String> {
    let (_, e) = Index::nearest(index.enums.get(name), near)?;
    if !e.variants.iter().all(|v| matches!(v.fields, Fields::Unit)) {
        return None;
    }
    let v = e.variants.iter().find(|v| v.attrs.iter().any(|a| a.path().is_ident("default")))?;
    let rule = setting(&serde(&e.attrs), "rename_all").flatten().map(str::to_string);
    let name = setting(&serde(&v.attrs), "rename")
        .flatten()
        .map(str::to_string)
        .unwrap_or_else(|| renamed(&v.ident.to_string(), rule.as_deref()));
    Some(format!("`\"{name}\"`"))
}

/// The value of a `default = "function"` when the function is a literal expression.
fn default_value(index: &Index, function: &str, near: &Path) -> String {
    let mut path: Vec<&str> = function.split("::").collect();
    let name = path.pop().unwrap_or(function);
    // `crate::transforms::parse::default_field`, `super::stdin::f`: in the module's file.
    let list = index.fns.get(name);
    let in_module = path.last().and_then(|module| {
        list?.iter().find(|(p, _)| {
            p.file_stem().is_some_and(|s| s == *module)
                || (p.ends_with("mod.rs")
                    && p.parent().and_then(Path::file_name).is_some_and(|d| d == *module))
        })
    });
    let Some((_, f)) = in_module.or_else(|| Index::nearest(list, near)) else {
        return "see description".into();
    };
    let [syn::Stmt::Expr(expr, None)] = f.block.stmts.as_slice() else {
        return "see description".into();
    };
    literal(expr).map_or_else(|| "see description".into(), |v| format!("`{v}`"))
}

/// A literal, an arithmetic of literals, or a literal converted (`"x".into()`,
/// `String::from("x")`, `vec!["a".into()]`), as TOML would write it.
fn literal(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Lit(l) => Some(match &l.lit {
            Lit::Str(s) => format!("\"{}\"", s.value()),
            other => other.to_token_stream().to_string().replace('_', ""),
        }),
        Expr::Binary(b) => {
            let (l, r) = (literal(&b.left)?, literal(&b.right)?);
            Some(format!("{l} {} {r}", b.op.to_token_stream()))
        }
        Expr::Paren(p) => literal(&p.expr),
        Expr::MethodCall(m)
            if ["into", "to_string", "to_owned"].contains(&m.method.to_string().as_str()) =>
        {
            literal(&m.receiver)
        }
        Expr::Call(c) if c.args.len() == 1 => {
            let f = c.func.to_token_stream().to_string().replace(' ', "");
            if f.ends_with("::from") || f.ends_with("::new") || f == "Some" {
                literal(&c.args[0])
            } else {
                None
            }
        }
        _ => None,
    }
}
