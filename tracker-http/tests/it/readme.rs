//! The service README's configuration table against the command line
//! clap builds: every flag with its `TRACKER_*` variable and its visible
//! aliases, no more, no fewer, so that the documentation cannot fall
//! behind the binary.

use std::collections::{BTreeMap, BTreeSet};

use clap::CommandFactory;
use tracker_http::Config;

/// The README's flag table: per row, the flags of its first column and
/// the variables of its second, in order.
fn readme_rows() -> Vec<(Vec<String>, Vec<String>)> {
    let readme = include_str!("../../README.md");
    let table = readme
        .split("\n## Configuration\n")
        .nth(1)
        .expect("the README has a Configuration section");
    let words = |cell: &str, prefix: &str| -> Vec<String> {
        let mut seen = Vec::new();
        for word in cell.split('`').skip(1).step_by(2) {
            let name = word.split_whitespace().next().unwrap_or("");
            if name.starts_with(prefix) && !seen.iter().any(|s| s == name) {
                seen.push(name.to_string());
            }
        }
        seen
    };
    table
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2) // the header and its rule
        .map(|line| {
            let cells: Vec<&str> = line.split(" | ").collect();
            assert!(cells.len() >= 3, "a row has three columns: {line}");
            (words(cells[0], "--"), words(cells[1], "TRACKER_"))
        })
        .collect()
}

#[test]
fn the_readme_flag_table_is_the_command_line() {
    let command = Config::command();
    let clap: BTreeSet<(String, String)> = command
        .get_arguments()
        .filter_map(|arg| {
            let long = arg.get_long()?;
            let env = arg.get_env()?.to_str().unwrap();
            Some((format!("--{long}"), env.to_string()))
        })
        .collect();
    // Every flag of the binary has a variable (so none is missed above).
    let longs = command
        .get_arguments()
        .filter_map(|arg| arg.get_long())
        .filter(|long| !["help", "version"].contains(long))
        .count();
    assert_eq!(longs, clap.len(), "a flag without a TRACKER_* variable");

    // (alias, flag) of every visible alias.
    let clap_aliases: BTreeSet<(String, String)> = command
        .get_arguments()
        .filter_map(|arg| Some((arg.get_long()?, arg.get_visible_aliases()?)))
        .flat_map(|(long, aliases)| {
            aliases
                .into_iter()
                .map(move |alias| (format!("--{alias}"), format!("--{long}")))
        })
        .collect();
    let alias_names: BTreeMap<&str, &str> = clap_aliases
        .iter()
        .map(|(alias, long)| (alias.as_str(), long.as_str()))
        .collect();

    let mut readme = BTreeSet::new();
    let mut readme_aliases = BTreeSet::new();
    for (flags, vars) in readme_rows() {
        // A flag's aliases follow it and take no variable of their own.
        let mut primaries = Vec::new();
        for flag in flags {
            match (alias_names.get(flag.as_str()), primaries.last()) {
                (Some(_), Some(last)) => {
                    readme_aliases.insert((flag, String::clone(last)));
                }
                _ => primaries.push(flag),
            }
        }
        assert_eq!(
            primaries.len(),
            vars.len(),
            "one variable per flag, in order: {primaries:?} {vars:?}"
        );
        for pair in primaries.into_iter().zip(vars) {
            assert!(readme.insert(pair.clone()), "{pair:?} is listed twice");
        }
    }
    let missing: Vec<_> = clap.difference(&readme).collect();
    let unknown: Vec<_> = readme.difference(&clap).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "tracker-http/README.md's flag table disagrees with `tracker-http --help`:\n\
         missing from the README: {missing:?}\n\
         in the README but not the binary: {unknown:?}"
    );
    assert_eq!(
        readme_aliases, clap_aliases,
        "the README's aliases (after their flag, in backticks) against clap's"
    );
}

/// The flag table's defaults against clap's: where the binary has a
/// default value, the row's default column says it (per flag, comma
/// separated, in the row's order), so the two cannot drift apart.
#[test]
fn the_readme_flag_table_defaults_are_clap_defaults() {
    let command = Config::command();
    let readme = include_str!("../../README.md");
    let table = readme
        .split("\n## Configuration\n")
        .nth(1)
        .expect("the README has a Configuration section");
    let mut checked = 0;
    let mut wrong = Vec::new();
    for line in table
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2)
    {
        let cells: Vec<&str> = line.split(" | ").collect();
        let flags: Vec<&str> = cells[1]
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|v| v.starts_with("TRACKER_"))
            .collect();
        let default = cells[2].trim_end_matches(" |").replace('`', "");
        let said: Vec<&str> = default.split(", ").collect();
        for (i, var) in flags.iter().enumerate() {
            let arg = command
                .get_arguments()
                .find(|arg| arg.get_env().is_some_and(|e| e == *var))
                .expect("the flag table test checks the variables exist");
            let clap: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            if clap.is_empty() {
                continue;
            }
            let expected = clap.join(",");
            let cell = if flags.len() == said.len() {
                said[i]
            } else {
                default.as_str()
            };
            checked += 1;
            if !cell.eq_ignore_ascii_case(&expected) {
                wrong.push(format!("{var}: README says {cell:?}, clap {expected:?}"));
            }
        }
    }
    assert!(checked > 20, "only {checked} defaults compared");
    assert!(wrong.is_empty(), "defaults disagree:\n{}", wrong.join("\n"));
}

/// A switch's variable reads as environments spell it (`1`, `yes`, `on`,
/// `0`, ...), not only `true`/`false`. Started with such variables and a
/// setting validation refuses, the binary gets past parsing to
/// validation's refusal, and so exits by itself whatever it reads.
#[test]
fn switch_variables_read_the_usual_spellings() {
    let refusal = |value: &str| {
        let output = std::process::Command::new(crate::TRACKER_HTTP)
            .args(["--listen", "127.0.0.1:0", "--max-points", "0"])
            .env("TRACKER_FOLD_TRAILING_SLASH", value)
            .env("TRACKER_SALVAGE_LOG", value)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run tracker-http");
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    // Every spelling the Configuration section lists.
    for value in [
        "true", "1", "yes", "on", "y", "t", "false", "0", "no", "off", "n", "f",
    ] {
        let said = refusal(value);
        assert!(
            said.contains("--max-points must be at least 1"),
            "{value}: {said}"
        );
    }
    let said = refusal("maybe");
    assert!(said.contains("invalid value 'maybe'"), "{said}");
}
