//! Tables as candor prints them: aligned columns without borders, wrapped to the terminal's
//! width when stdout is one, so a long license id or path wraps inside its cell instead of
//! pushing the next columns out of line. Piped output is never wrapped.

use comfy_table::{presets, CellAlignment, ContentArrangement, Table};
use std::io::IsTerminal;

/// An empty table with these column headings.
pub fn new<const N: usize>(header: [&str; N]) -> Table {
    let mut table = plain();
    table.set_header(header);
    table
}

/// A two-column table of facts, one per row, without headings.
pub fn key_values<'a>(rows: impl IntoIterator<Item = (&'a str, String)>) -> Table {
    let mut table = plain();
    for (key, value) in rows {
        table.add_row([key.to_string(), value]);
    }
    table
}

/// A Markdown table (what llama-bench prints, and what pastes into an issue or a README).
pub fn markdown<const N: usize>(header: [&str; N]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::ASCII_MARKDOWN)
        .set_header(header);
    table
}

/// Prints `table` to stdout, starting at the first column and without trailing blanks.
pub fn print(table: &Table) {
    println!("{}", render(table));
}

pub fn render(table: &Table) -> String {
    table
        .lines()
        .map(|l| l.strip_prefix(' ').unwrap_or(&l).trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn align_right(table: &mut Table, column: usize) {
    if let Some(c) = table.column_mut(column) {
        c.set_cell_alignment(CellAlignment::Right);
    }
}

/// A size as people read it: "98.4 MB", "1.06 GB".
pub fn bytes(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2} GB", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1} kB", n as f64 / 1e3),
        n => format!("{n} B"),
    }
}

fn plain() -> Table {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    if std::io::stdout().is_terminal() {
        if let Some((terminal_size::Width(w), _)) = terminal_size::terminal_size() {
            table
                .set_width(w)
                .set_content_arrangement(ContentArrangement::Dynamic);
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_stay_aligned_with_a_long_license_id() {
        let mut t = new(["MODEL", "LICENSE", "STATE"]);
        t.add_row([
            "llama-3.2-1b-instruct-q4_k_m",
            "LicenseRef-Llama-3.2-Community-License",
            "refused",
        ]);
        t.add_row(["smollm2-135m-instruct-q4_1", "Apache-2.0", "verified"]);
        let text = render(&t);
        let starts: Vec<usize> = text
            .lines()
            .map(|l| {
                l.find("refused")
                    .or(l.find("verified"))
                    .or(l.find("STATE"))
                    .unwrap()
            })
            .collect();
        assert!(starts.windows(2).all(|w| w[0] == w[1]), "{text}");
    }

    #[test]
    fn a_narrow_table_wraps_long_cells_instead_of_breaking_columns() {
        let mut t = plain();
        t.set_header(["MODEL", "LICENSE", "STATE"])
            .set_width(48)
            .set_content_arrangement(ContentArrangement::Dynamic);
        t.add_row([
            "llama-3.2-1b-instruct-q4_k_m",
            "LicenseRef-Llama-3.2-Community-License",
            "refused",
        ]);
        for line in render(&t).lines() {
            assert!(line.chars().count() <= 48, "{line:?}");
        }
    }

    #[test]
    fn sizes_read_as_people_read_them() {
        assert_eq!(bytes(98_362_432), "98.4 MB");
        assert_eq!(bytes(4_350_000_000), "4.35 GB");
        assert_eq!(bytes(512), "512 B");
    }
}
