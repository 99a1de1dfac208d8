//! What a run produces: the summary (a table for people, JSON for programs),
//! every sample (CSV), and the series to plot; and how each is written.
//!
//! Imports go one way: this module draws `report.svg` through
//! [`super::plot`], which knows nothing of reports; the units both print
//! numbers in live in [`super::units`].

use std::fmt::Write as _;
use std::path::Path;

use super::plot::Panel;
use super::units::human_ns;

/// The outcome of one scenario run.
pub(crate) struct Report {
    /// The title of the plot and of `report.md`.
    pub(crate) title: String,
    /// What the run shows, in a paragraph, for `report.md` (may be empty).
    pub(crate) intro: String,
    /// The summary as JSON, fields in the order of the summary's struct;
    /// always has `drift_bytes`.
    pub(crate) summary: String,
    /// The summary for people.
    pub(crate) tables: Vec<Table>,
    /// What the columns and numbers mean, for `report.md`.
    pub(crate) notes: Vec<String>,
    /// Every sample. Columns ending in `_ns` are timings; the rest is
    /// determined by the scenario and the seed.
    pub(crate) samples: Samples,
    /// The plot's panels.
    pub(crate) panels: Vec<Panel>,
    /// Invariants the run saw broken (drift not 0, ...). Empty on success.
    pub(crate) failures: Vec<String>,
}
/// The summary of a run of a scenario's variants, one after the other, as
/// `--json` prints it: `V` is the scenario's summary of one variant, `P`
/// its parameters.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Summary<P, V> {
    pub(crate) scenario: &'static str,
    pub(crate) seed: u64,
    pub(crate) rounds: usize,
    /// In the scenario's order of variants.
    pub(crate) variants: Vec<V>,
    /// The largest drift of the variants (the root's `memory.current` once
    /// everything was freed and removed: must be 0).
    pub(crate) drift_bytes: i128,
    pub(crate) elapsed_ms: u64,
    pub(crate) parameters: P,
}

impl<P, V> Summary<P, V> {
    /// The summary of `variants`, run from `started`; `drift` reads a
    /// variant's drift.
    pub(crate) fn new(
        scenario: &'static str,
        (seed, rounds): (u64, usize),
        variants: Vec<V>,
        drift: impl Fn(&V) -> i128,
        started: std::time::Instant,
        parameters: P,
    ) -> Self {
        Summary {
            scenario,
            seed,
            rounds,
            drift_bytes: variants
                .iter()
                .map(drift)
                .max_by_key(|d| d.abs())
                .unwrap_or(0),
            variants,
            elapsed_ms: started.elapsed().as_millis() as u64,
            parameters,
        }
    }
}

/// A table of rows under headers, printed aligned or as Markdown.
pub(crate) struct Table {
    pub(crate) headers: Vec<String>,
    pub(crate) rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len());
        self.rows.push(cells);
    }

    /// The two rows every scenario's summary ends with: the root's usage
    /// left once everything was freed (must be 0), and the run's time.
    pub(crate) fn closing_rows(&mut self, drift_bytes: i128, elapsed_ms: u64) {
        self.row(vec!["drift at the end".into(), format!("{drift_bytes} B")]);
        self.row(vec!["run time".into(), human_ns(elapsed_ms as f64 * 1e6)]);
    }

    fn widths(&self) -> Vec<usize> {
        (0..self.headers.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| r[i].chars().count())
                    .chain([self.headers[i].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    }

    /// Whether every cell of column `i` is a number (with a unit at most).
    fn numeric(&self, i: usize) -> bool {
        self.rows.iter().all(|r| looks_numeric(&r[i]))
    }

    /// Aligned columns for a terminal: numeric columns right, others left.
    pub(crate) fn to_text(&self) -> String {
        let widths = self.widths();
        let numeric: Vec<bool> = (0..widths.len()).map(|i| self.numeric(i)).collect();
        let mut out = String::new();
        let line = |out: &mut String, cells: &[String]| {
            let mut s = String::new();
            for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
                if i > 0 {
                    s.push_str("  ");
                }
                if numeric[i] {
                    let _ = write!(s, "{cell:>w$}");
                } else {
                    let _ = write!(s, "{cell:<w$}");
                }
            }
            out.push_str(s.trim_end());
            out.push('\n');
        };
        line(&mut out, &self.headers);
        let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
        line(&mut out, &rule);
        for row in &self.rows {
            line(&mut out, row);
        }
        out
    }

    pub(crate) fn to_markdown(&self) -> String {
        let mut out = format!("| {} |\n", self.headers.join(" | "));
        let align: Vec<&str> = (0..self.headers.len())
            .map(|i| if self.numeric(i) { "---:" } else { "---" })
            .collect();
        let _ = writeln!(out, "| {} |", align.join(" | "));
        for row in &self.rows {
            let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
        out
    }
}

/// A number with at most a short unit: `2000`, `-3`, `0 B`, `12.5 µs`,
/// `1.05x`; `-` stands for no value.
fn looks_numeric(cell: &str) -> bool {
    let mut words = cell.split(' ');
    let number = words.next().unwrap_or("");
    let unit = words.next().unwrap_or("");
    cell == "-"
        || (words.next().is_none()
            && unit.chars().count() <= 3
            && number.trim_end_matches('x').parse::<f64>().is_ok())
}

/// Samples: named columns of integers, one row per sample.
pub(crate) struct Samples {
    pub(crate) columns: Vec<&'static str>,
    pub(crate) rows: Vec<Vec<i128>>,
}

impl Samples {
    pub(crate) fn new(columns: &[&'static str]) -> Samples {
        Samples {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, row: Vec<i128>) {
        debug_assert_eq!(row.len(), self.columns.len());
        self.rows.push(row);
    }

    /// The column `name` as (x, y) points against the column `x`.
    pub(crate) fn series(&self, x: &str, name: &str) -> Vec<(f64, f64)> {
        let xi = self.index(x);
        let yi = self.index(name);
        self.rows
            .iter()
            .map(|r| (r[xi] as f64, r[yi] as f64))
            .collect()
    }

    /// The position of the column `name`.
    pub(crate) fn index(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|c| *c == name)
            .unwrap_or_else(|| panic!("no sample column {name}"))
    }

    pub(crate) fn to_csv(&self) -> String {
        let mut out = self.columns.join(",");
        out.push('\n');
        for row in &self.rows {
            let cells: Vec<String> = row.iter().map(i128::to_string).collect();
            out.push_str(&cells.join(","));
            out.push('\n');
        }
        out
    }
}

impl Report {
    /// The summary for a terminal.
    pub(crate) fn to_text(&self) -> String {
        let mut out = String::new();
        for (i, table) in self.tables.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&table.to_text());
        }
        out
    }

    /// `report.md`: the command, the summary, what the numbers mean.
    pub(crate) fn to_markdown(&self, command: &str) -> String {
        let mut out = format!(
            "# {}\n\n```sh\n{command}\n```\n\n![plot](report.svg)\n\n",
            self.title
        );
        if !self.intro.is_empty() {
            let _ = writeln!(out, "{}\n", self.intro);
        }
        for table in &self.tables {
            out.push_str(&table.to_markdown());
            out.push('\n');
        }
        if !self.notes.is_empty() {
            out.push_str("## What the numbers mean\n\n");
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
            out.push('\n');
        }
        out.push_str("## Checks\n\n");
        if self.failures.is_empty() {
            out.push_str("Every invariant held (drift 0 at every sample and at the end).\n");
        } else {
            for failure in &self.failures {
                let _ = writeln!(out, "- FAILED: {failure}");
            }
        }
        out
    }

    /// Write `report.svg`, `samples.csv` and `report.md` into `dir`.
    pub(crate) fn write(&self, dir: &Path, command: &str) -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let write = |name: &str, content: String| {
            let path = dir.join(name);
            std::fs::write(&path, content).map_err(|e| format!("{}: {e}", path.display()))
        };
        write("samples.csv", self.samples.to_csv())?;
        write("report.md", self.to_markdown(command))?;
        let svg = dir.join("report.svg");
        super::plot::render(&svg, &self.title, &self.panels)
            .map_err(|e| format!("{}: {e}", svg.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_numbers_right() {
        let mut t = Table::new(&["metric", "value"]);
        t.row(vec!["rounds".into(), "2000".into()]);
        t.row(vec!["drift".into(), "0 B".into()]);
        assert_eq!(
            t.to_text(),
            "metric  value\n------  -----\nrounds   2000\ndrift     0 B\n"
        );
        t.row(vec!["jobs".into(), "2 x 3 threads".into()]);
        assert!(t.to_text().contains("\nrounds  2000\n"), "{}", t.to_text());
        assert!(t.to_markdown().contains("| --- | --- |"));
    }
}
