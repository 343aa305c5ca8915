//! The README's two commands are the project's contract with a new user:
//! keep the test command and `.ci/run` in step.

fn read(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// The code blocks at the top of the README, before the first heading.
fn first_commands() -> Vec<String> {
    let readme = read("README.md");
    let head = readme.split("\n## ").next().unwrap().to_string();
    head.split("```sh\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap().trim().to_string())
        .collect()
}

#[test]
fn readme_starts_with_the_install_and_test_commands() {
    let cmds = first_commands();
    assert_eq!(cmds.len(), 2, "{cmds:?}");
    assert!(
        cmds[0].contains("cargo install --path .") && cmds[0].contains("samples/de_article.txt")
    );
    assert!(std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("samples/de_article.txt")
        .exists());
}

#[test]
fn ci_runs_the_readme_test_command() {
    let test_cmd = &first_commands()[1];
    let ci = read(".ci/run");
    assert!(
        ci.lines().any(|l| l.trim() == test_cmd),
        ".ci/run must run `{test_cmd}` verbatim"
    );
    assert!(ci.contains("cargo fmt --check"));
    assert!(ci.contains("cargo clippy --all-targets -- -D warnings"));
}
