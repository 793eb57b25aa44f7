//! Keeps `docs/ADDING_A_PROTOCOL.md` in step with the source it quotes.
//!
//! A fenced ```` ```rust ```` block whose line just above is a marker
//!
//! ```text
//! <!-- from: protocols/tests/template/protocol.rs -->
//! ```
//!
//! (a path relative to the workspace root) must appear in that file
//! verbatim, up to a common leading indentation and trailing whitespace on
//! each line. A line `// ...` alone in a block stands for code left out:
//! the block is split there, and each piece must appear, in order, after
//! the one before. Blocks without a marker are not checked (sketches,
//! shell sessions); a marker that is not followed by a `rust` block is an
//! error, so that a typo cannot turn a check off.
//!
//! Every workspace file the guide names in backticks (`protocols/src/…rs`,
//! `protocols/tests/…rs`, `wire/src/…rs`, `benches/benches/…rs`,
//! `docs/…md`) must exist; a name with a placeholder (`<name>`, `*`) is
//! not a file and is skipped.

use std::path::{Path, PathBuf};

/// The guide, relative to the workspace root.
const GUIDE: &str = "docs/ADDING_A_PROTOCOL.md";

/// Where the block's source is named, on the line above its fence.
const MARKER_OPEN: &str = "<!-- from:";
const MARKER_CLOSE: &str = "-->";

/// A line that stands for code left out of a quoted block.
const ELISION: &str = "// ...";

/// Paths the guide may name, by prefix and the ending each must have.
const PATH_KINDS: &[(&str, &str)] = &[
    ("protocols/src/", ".rs"),
    ("protocols/tests/", ".rs"),
    ("wire/src/", ".rs"),
    ("benches/benches/", ".rs"),
    ("docs/", ".md"),
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the protocols crate sits in the workspace")
        .to_path_buf()
}

#[test]
fn the_guide_quotes_the_source_verbatim() {
    let root = workspace_root();
    let guide =
        std::fs::read_to_string(root.join(GUIDE)).unwrap_or_else(|e| panic!("{GUIDE}: {e}"));
    let read = |path: &str| std::fs::read_to_string(root.join(path)).ok();
    match check_guide(GUIDE, &guide, read) {
        Ok(0) => panic!("{GUIDE} has no marked block: nothing it quotes is checked"),
        Ok(_) => {}
        Err(problems) => panic!("{GUIDE} is out of step:\n{}", problems.join("\n")),
    }
}

/// A ```` ```rust ```` block with its marker.
#[derive(Debug)]
struct Quote<'a> {
    /// Line of the fence in the guide, from 1.
    line: usize,
    /// The file it quotes, from the marker.
    from: &'a str,
    body: Vec<&'a str>,
}

/// Checks `guide` (called `name` in messages) against the files `read`
/// returns by workspace path (`None`: no such file). The number of marked
/// blocks checked, or every problem, one line each.
fn check_guide(
    name: &str,
    guide: &str,
    read: impl Fn(&str) -> Option<String>,
) -> Result<usize, Vec<String>> {
    let mut problems = Vec::new();
    let (quotes, prose) = parse(name, guide, &mut problems);
    for quote in &quotes {
        let at = format!("{name}:{} (block from {})", quote.line, quote.from);
        match read(quote.from) {
            None => problems.push(format!("{at}: {} does not exist", quote.from)),
            Some(source) => {
                if let Err(why) = find_quote(&quote.body, &source) {
                    problems.push(format!("{at}: {why}"));
                }
            }
        }
    }
    for (line, path) in named_paths(&prose) {
        if read(path).is_none() {
            problems.push(format!(
                "{name}:{line}: names `{path}`, which does not exist"
            ));
        }
    }
    if problems.is_empty() {
        Ok(quotes.len())
    } else {
        Err(problems)
    }
}

/// The marked blocks, and the lines outside every fenced block (numbered
/// from 1), where the prose names files.
fn parse<'a>(
    name: &str,
    guide: &'a str,
    problems: &mut Vec<String>,
) -> (Vec<Quote<'a>>, Vec<(usize, &'a str)>) {
    let mut quotes = Vec::new();
    let mut prose = Vec::new();
    let mut lines = guide.lines().enumerate().map(|(i, l)| (i + 1, l));
    let mut marker: Option<(usize, &str)> = None;
    while let Some((n, line)) = lines.next() {
        let trimmed = line.trim();
        let pending = marker.take();
        if let Some(path) = trimmed
            .strip_prefix(MARKER_OPEN)
            .and_then(|rest| rest.strip_suffix(MARKER_CLOSE))
        {
            marker = Some((n, path.trim()));
            continue;
        }
        if let Some(info) = trimmed.strip_prefix("```") {
            let is_rust = info
                .split(',')
                .next()
                .is_some_and(|lang| lang.trim() == "rust");
            let body: Vec<&str> = lines
                .by_ref()
                .map(|(_, l)| l)
                .take_while(|l| l.trim() != "```")
                .collect();
            match pending {
                Some((_, from)) if is_rust => quotes.push(Quote {
                    line: n,
                    from,
                    body,
                }),
                Some((at, _)) => problems.push(format!(
                    "{name}:{at}: a marker not followed by a ```rust block"
                )),
                None => {}
            }
            continue;
        }
        if let Some((at, _)) = pending {
            problems.push(format!(
                "{name}:{at}: a marker not followed by a ```rust block"
            ));
        }
        prose.push((n, line));
    }
    if let Some((at, _)) = marker {
        problems.push(format!(
            "{name}:{at}: a marker not followed by a ```rust block"
        ));
    }
    (quotes, prose)
}

/// Finds `body`'s pieces (split at elisions) in `source`, each after the
/// one before; or says which piece is missing, and which of its lines
/// differs from the closest match.
fn find_quote(body: &[&str], source: &str) -> Result<(), String> {
    let source: Vec<&str> = source.lines().map(str::trim_end).collect();
    let pieces = pieces(body);
    if pieces.is_empty() {
        return Err("the block is empty".to_string());
    }
    let mut from = 0;
    for (i, piece) in pieces.iter().enumerate() {
        let which = if pieces.len() == 1 {
            "the block".to_string()
        } else {
            format!("piece {} of {}", i + 1, pieces.len())
        };
        match (from..=source.len().saturating_sub(piece.len()))
            .find(|&at| matches_at(piece, &source[at..at + piece.len()]))
        {
            Some(at) => from = at + piece.len(),
            None => {
                let anywhere = (0..=source.len().saturating_sub(piece.len()))
                    .any(|at| matches_at(piece, &source[at..at + piece.len()]));
                let why = if anywhere {
                    format!(
                        "{which} is in the file, but not after the piece before it (line {from})"
                    )
                } else {
                    let (line, found) = closest(piece, &source[from..]);
                    format!(
                        "{which} is not in the file; its line {} `{}` differs from the \
                         closest match{}",
                        found + 1,
                        piece[found].trim(),
                        line.map_or(String::new(), |l| format!(
                            " (at line {} of the file)",
                            from + l + 1
                        ))
                    )
                };
                return Err(why);
            }
        }
    }
    Ok(())
}

/// The block split at elision lines, each piece without its blank lines at
/// either end, trailing whitespace trimmed, and dedented.
fn pieces(body: &[&str]) -> Vec<Vec<String>> {
    body.split(|line| line.trim() == ELISION)
        .map(|piece| {
            let lines: Vec<&str> = piece.iter().map(|l| l.trim_end()).collect();
            let start = lines.iter().position(|l| !l.is_empty());
            let end = lines.iter().rposition(|l| !l.is_empty());
            match (start, end) {
                (Some(start), Some(end)) => dedent(&lines[start..=end]),
                _ => Vec::new(),
            }
        })
        .filter(|piece| !piece.is_empty())
        .collect()
}

/// `lines` without the indentation they all share (blank lines aside).
fn dedent(lines: &[&str]) -> Vec<String> {
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    lines
        .iter()
        .map(|l| l.get(indent..).unwrap_or("").trim_end().to_string())
        .collect()
}

/// Whether `window` of the source is `piece`, up to a common indentation.
fn matches_at(piece: &[String], window: &[&str]) -> bool {
    // The first line alone rules out almost every window, cheaply.
    window.len() == piece.len() && window[0].trim() == piece[0].trim() && dedent(window) == piece
}

/// Where in `source` most of `piece`'s leading lines match (the line
/// there, if any line matched), and the index of the first line of
/// `piece` that differs there.
fn closest(piece: &[String], source: &[&str]) -> (Option<usize>, usize) {
    let mut best = (None, 0);
    for at in 0..source.len() {
        let window = &source[at..(at + piece.len()).min(source.len())];
        let same = (1..=window.len())
            .take_while(|&k| dedent(&window[..k])[..] == piece[..k])
            .count();
        if same > best.1 {
            best = (Some(at), same);
        }
    }
    (best.0, best.1.min(piece.len() - 1))
}

/// Workspace paths named in backticks in `prose`, with their line.
fn named_paths<'a>(prose: &[(usize, &'a str)]) -> Vec<(usize, &'a str)> {
    let mut paths = Vec::new();
    for &(n, line) in prose {
        // Inline code spans are the odd-numbered pieces between backticks.
        for span in line.split('`').skip(1).step_by(2) {
            let plain = span
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c));
            let kind = PATH_KINDS
                .iter()
                .any(|(prefix, end)| span.starts_with(prefix) && span.ends_with(end));
            if plain && kind {
                paths.push((n, span));
            }
        }
    }
    paths
}

/// The checker itself, on strings: it must be able to say no.
mod checker {
    use super::*;

    const SOURCE: &str = "\
//! A module.

pub struct Thing {
    a: u32,
}

impl Thing {
    pub fn new() -> Thing {
        Thing { a: 1 }
    }

    pub fn a(&self) -> u32 {
        self.a
    }
}
";

    fn check(guide: &str) -> Result<usize, Vec<String>> {
        check_guide("guide.md", guide, |path| match path {
            "src/thing.rs" => Some(SOURCE.to_string()),
            "docs/OTHER.md" => Some(String::new()),
            _ => None,
        })
    }

    fn guide(block: &str) -> String {
        format!("# Guide\n\nText.\n\n<!-- from: src/thing.rs -->\n```rust\n{block}```\n")
    }

    #[test]
    fn a_matching_block_passes_whatever_its_indentation() {
        // Indented differently from the source, with trailing blanks.
        let block = "pub fn new() -> Thing {   \n    Thing { a: 1 }\n}\n";
        assert_eq!(check(&guide(block)), Ok(1));
        let deeper = "        pub fn a(&self) -> u32 {\n            self.a\n        }\n";
        assert_eq!(check(&guide(deeper)), Ok(1));
    }

    #[test]
    fn a_changed_line_fails_and_says_where() {
        let block = "pub fn new() -> Thing {\n    Thing { a: 2 }\n}\n";
        let problems = check(&guide(block)).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        let problem = &problems[0];
        assert!(
            problem.starts_with("guide.md:6 (block from src/thing.rs)"),
            "{problem}"
        );
        assert!(problem.contains("`Thing { a: 2 }`"), "{problem}");
        assert!(problem.contains("at line 8 of the file"), "{problem}");
    }

    #[test]
    fn elided_pieces_must_come_in_order() {
        let in_order = "impl Thing {\n    // ...\n    pub fn a(&self) -> u32 {\n";
        assert_eq!(check(&guide(in_order)), Ok(1));
        let swapped = "pub fn a(&self) -> u32 {\n// ...\npub fn new() -> Thing {\n";
        let problems = check(&guide(swapped)).unwrap_err();
        assert!(problems[0].contains("piece 2 of 2"), "{problems:?}");
        assert!(
            problems[0].contains("not after the piece before it"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_piece_must_be_contiguous() {
        // Two lines that are in the file, but not one after the other.
        let block = "pub struct Thing {\nimpl Thing {\n";
        assert!(check(&guide(block)).is_err());
    }

    #[test]
    fn markers_must_name_a_file_and_precede_a_rust_block() {
        let missing = "<!-- from: src/gone.rs -->\n```rust\nfn f() {}\n```\n";
        let problems = check(missing).unwrap_err();
        assert!(
            problems[0].contains("src/gone.rs does not exist"),
            "{problems:?}"
        );
        let stray = "<!-- from: src/thing.rs -->\n\n```rust\nfn f() {}\n```\n";
        let problems = check(stray).unwrap_err();
        assert!(
            problems[0].contains("guide.md:1: a marker not followed"),
            "{problems:?}"
        );
        let shell = "<!-- from: src/thing.rs -->\n```sh\ncargo test\n```\n";
        assert!(check(shell).is_err());
        // An unmarked block is not checked.
        assert_eq!(check("```rust\nnot in any file\n```\n"), Ok(0));
    }

    #[test]
    fn named_paths_must_exist() {
        assert_eq!(
            check("See `docs/OTHER.md` and `protocols/src/<name>.rs`.\n"),
            Ok(0)
        );
        let problems = check("Edit `wire/src/nothing.rs`, then `docs/OTHER.md`.\n").unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("guide.md:1: names `wire/src/nothing.rs`"));
        // Inside a fenced block it is code, not a path the prose names.
        assert_eq!(check("```text\n`wire/src/nothing.rs`\n```\n"), Ok(0));
    }
}
