//! The workspace's shape, checked: no two files of a crate depend on each
//! other, directly or around a circle (issue 33). A module here is a file
//! under `src/` (or a folder with its `mod.rs`); it depends on another when
//! its code (comments and its `#[cfg(test)] mod tests` aside) names
//! `crate::other`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// The code of a file without comments and without its test module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::name` a text names.
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        // `$crate::` in macros and `reelkit_x::crate` do not count.
        let before = rest[..at].chars().last();
        if !name.is_empty() && !matches!(before, Some('$' | '_' | ':')) {
            out.insert(name);
        }
        rest = after;
    }
    out
}

/// The crate's module graph: top-level module → the modules it names.
fn graph(src: &Path) -> std::io::Result<BTreeMap<String, BTreeSet<String>>> {
    let mut files = Vec::new();
    rust_files(src, &mut files)?;
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(src).unwrap_or(&f);
        let first = rel
            .components()
            .next()
            .map(|c| {
                c.as_os_str()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_string()
            })
            .unwrap_or_default();
        if first == "lib" || first == "main" || first == "bin" {
            continue;
        }
        let refs = crate_refs(&code(&std::fs::read_to_string(&f)?));
        g.entry(first.clone())
            .or_default()
            .extend(refs.into_iter().filter(|r| *r != first));
    }
    let names: BTreeSet<String> = g.keys().cloned().collect();
    for deps in g.values_mut() {
        deps.retain(|d| names.contains(d));
    }
    Ok(g)
}

/// Groups of modules that reach each other (Tarjan's strongly connected
/// components), the ones of more than one module.
fn circles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        t.on.insert(v);
        for w in &t.g[v] {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(lw));
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn the_circle_finder_finds_circles() {
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
        ("e", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(circles(&g), vec![vec!["a", "b", "c"]]);
    let refs = crate_refs(&code(
        "use crate::x::Y;\n// crate::comment\nlet z = crate::w::f();\n$crate::m\n#[cfg(test)]\nmod tests { use crate::t; }",
    ));
    assert_eq!(refs, ["w", "x"].into_iter().map(String::from).collect());
}

#[test]
fn no_file_circles_in_any_crate() -> std::io::Result<()> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut found = Vec::new();
    let mut checked = 0;
    for entry in std::fs::read_dir(&crates)? {
        let src = entry?.path().join("src");
        if !src.is_dir() {
            continue;
        }
        checked += 1;
        for c in circles(&graph(&src)?) {
            found.push(format!("{}: {}", src.display(), c.join(" ↔ ")));
        }
    }
    assert!(
        checked >= 8,
        "only {checked} crates found under {}",
        crates.display()
    );
    assert!(found.is_empty(), "file circles:\n{}", found.join("\n"));
    Ok(())
}

/// An int8 kernel runs `unsafe` instructions its CPU must have: only the
/// module's detection may make one. `Kernel`'s field stays private (code
/// elsewhere in the crate then cannot build one), and every `Kernel(...)`
/// built inside the module is the portable one or comes from detection.
#[test]
fn int8_kernels_come_only_from_detection() -> std::io::Result<()> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ranker/src");
    let int8 = code(&std::fs::read_to_string(src.join("int8/mod.rs"))?);
    assert!(
        int8.contains("pub(crate) struct Kernel(Kind);"),
        "int8::Kernel's field must stay private"
    );
    let built: Vec<&str> = int8
        .lines()
        .filter(|l| l.contains("Kernel(Kind::") && !l.contains("Kind::Generic"))
        .collect();
    // The SIMD kernels are made in `Kernel::available`, under detection, only.
    let available = int8
        .split("fn available()")
        .nth(1)
        .and_then(|rest| rest.split("\n    }\n").next())
        .unwrap_or("");
    assert!(
        built.is_empty()
            || (available.contains("is_x86_feature_detected!")
                && available.contains("Isa::detect()")),
        "Kernel::available no longer detects"
    );
    for line in built {
        assert!(
            available.contains(line.trim()),
            "a SIMD kernel made outside detection: {line}"
        );
    }
    let mut files = Vec::new();
    rust_files(&src, &mut files)?;
    for f in files.iter().filter(|f| !f.ends_with("int8/mod.rs")) {
        let text = code(&std::fs::read_to_string(f)?);
        assert!(
            !text.contains("Kernel(Kind"),
            "{} builds an int8 kernel",
            f.display()
        );
    }
    Ok(())
}

/// The f32 and f16 kernels: their tokens (`simd::Isa`, `simd::F16`) keep
/// private fields and are made only in `simd/mod.rs`, and every
/// `#[target_feature]` function of the ranker lives in `simd/` or beside the
/// int8 kernels' own token (`int8/x86.rs`), so no other file can hold a
/// kernel that skips the token, nor dispatch on its own.
#[test]
fn simd_kernels_live_behind_detected_tokens() -> std::io::Result<()> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ranker/src");
    let simd = code(&std::fs::read_to_string(src.join("simd/mod.rs"))?);
    assert!(
        simd.contains("pub struct Isa(Level);"),
        "Isa's field must stay private"
    );
    assert!(
        simd.contains("pub(crate) struct F16(bool);"),
        "F16's field must stay private"
    );
    let mut files = Vec::new();
    rust_files(&src, &mut files)?;
    for f in &files {
        let rel = f
            .strip_prefix(&src)
            .unwrap_or(f)
            .to_string_lossy()
            .replace('\\', "/");
        let text = code(&std::fs::read_to_string(f)?);
        if rel != "simd/mod.rs" {
            for made in ["Isa(Level::", "F16(true", "F16(false", "F16(std::arch"] {
                assert!(!text.contains(made), "{rel} makes a SIMD token: {made}");
            }
            assert!(
                !text.contains("isa.level()"),
                "{rel} dispatches on the token itself: use the one dispatch in simd/"
            );
        }
        let kernels_here = rel.starts_with("simd/") || rel == "int8/x86.rs";
        assert!(
            kernels_here || !text.contains("#[target_feature"),
            "{rel} defines a #[target_feature] kernel outside simd/"
        );
    }
    Ok(())
}
