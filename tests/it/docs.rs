//! The docs say what the code does: reason codes, the test command, and every test SECURITY.md
//! cites as proof.

use urlcap::policy::Reason;

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn readme_lists_every_reason_code_with_its_summary() {
    let readme = read("README.md");
    for reason in Reason::ALL {
        let row = format!("| `{}` | {} |", reason.code(), reason.summary());
        assert!(readme.contains(&row), "README.md lacks the row {row}");
    }
    let rows = readme
        .lines()
        .filter(|l| l.starts_with("| `") && l.contains("` | ") && l.ends_with(" |"))
        .count();
    assert!(rows >= Reason::ALL.len());
}

#[test]
fn ci_runs_the_readme_test_command() {
    let readme = read("README.md");
    assert!(
        readme.contains("\n./scripts/test\n"),
        "README names the test command"
    );
    assert!(read(".ci/run").contains("exec ./scripts/test"));
}

/// `file.rs::name`, `file.rs::{a, b}` and `file.rs::tests::name` references in SECURITY.md.
fn cited_tests(security: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let text = security.replace('\n', " ");
    for chunk in text.split('`').skip(1).step_by(2) {
        let Some((file, rest)) = chunk.split_once(".rs::") else {
            continue;
        };
        let file = format!("{file}.rs");
        let rest = rest.strip_prefix("tests::").unwrap_or(rest);
        let names: Vec<&str> = match rest.strip_prefix('{') {
            Some(list) => list
                .trim_end_matches('}')
                .split(',')
                .map(str::trim)
                .collect(),
            None => vec![rest],
        };
        for name in names {
            out.push((file.clone(), name.to_string()));
        }
    }
    out
}

#[test]
fn every_test_security_md_cites_exists() {
    let security = read("SECURITY.md");
    let cited = cited_tests(&security);
    assert!(
        cited.len() >= 20,
        "expected many citations, found {}",
        cited.len()
    );
    for (file, name) in cited {
        let source = read(&file);
        let needle = if name == "tests" {
            "mod tests {".to_string()
        } else {
            format!("fn {name}(")
        };
        assert!(
            source.contains(&needle),
            "SECURITY.md cites {file}::{name}, which does not exist"
        );
    }
    for file in [
        "tests/it/egress_vectors.rs",
        "tests/it/derive_props.rs",
        "tests/it/manifest_errors.rs",
        "crates/urlcap/src/policy/ip.rs",
    ] {
        assert!(
            security.contains(file) && std::path::Path::new(file).exists(),
            "{file}"
        );
    }
}

/// Every repository path SECURITY.md names in backticks (`tests/it/faults.rs`, `fuzz/README.md`,
/// `tests/data/wpt/`) exists.
#[test]
fn every_file_security_md_names_exists() {
    let security = read("SECURITY.md").replace('\n', " ");
    let mut checked = 0;
    for chunk in security.split('`').skip(1).step_by(2) {
        let path = chunk.split("::").next().unwrap_or("");
        let rooted = [
            "src/", "crates/", "tests/", "fuzz/", "benches/", "scripts/", "wit/",
        ]
        .iter()
        .any(|root| path.starts_with(root));
        if rooted && !path.contains([' ', '*']) && !path.contains("...") {
            assert!(
                std::path::Path::new(path).exists(),
                "SECURITY.md names {path}, which does not exist"
            );
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} paths found");
}
