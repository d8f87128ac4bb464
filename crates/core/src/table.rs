//! The one table writer: aligned plain text for the terminal and Markdown
//! for files, from the same rows. Every table fleetbench prints (the run
//! summary, sweep levels, stored runs, the batch-job plan) goes through it.

/// Where a column's cells sit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table of text cells.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    head: Vec<String>,
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
    indent: usize,
}

impl Table {
    /// A table with these column heads, every column left-aligned.
    pub fn new<S: Into<String>>(head: impl IntoIterator<Item = S>) -> Table {
        let head: Vec<String> = head.into_iter().map(Into::into).collect();
        Table { align: vec![Align::Left; head.len()], head, rows: Vec::new(), indent: 0 }
    }

    /// Sets the alignment of column `i`.
    pub fn align(mut self, i: usize, a: Align) -> Table {
        if let Some(slot) = self.align.get_mut(i) {
            *slot = a;
        }
        self
    }

    /// Right-aligns every column (tables of numbers).
    pub fn all_right(mut self) -> Table {
        self.align.iter_mut().for_each(|a| *a = Align::Right);
        self
    }

    /// Spaces before every line of the text form.
    pub fn indent(mut self, n: usize) -> Table {
        self.indent = n;
        self
    }

    /// Adds a row; missing cells are empty, extra ones are dropped.
    pub fn push<S: Into<String>>(&mut self, row: impl IntoIterator<Item = S>) {
        let mut r: Vec<String> = row.into_iter().map(Into::into).collect();
        r.resize(self.head.len(), String::new());
        self.rows.push(r);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Aligned columns two spaces apart, one line per row with the heads
    /// first, trailing spaces trimmed, each line ending in a newline.
    pub fn text(&self) -> String {
        let mut widths: Vec<usize> = self.head.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        for r in std::iter::once(&self.head).chain(&self.rows) {
            let mut line = " ".repeat(self.indent);
            for (i, c) in r.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = " ".repeat(widths[i] - c.chars().count());
                match self.align[i] {
                    Align::Left => {
                        line.push_str(c);
                        line.push_str(&pad);
                    }
                    Align::Right => {
                        line.push_str(&pad);
                        line.push_str(c);
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// A Markdown table; `|` in a cell is escaped.
    pub fn markdown(&self) -> String {
        let cell = |c: &String| c.replace('|', "\\|");
        let mut out = format!("| {} |\n|", self.head.iter().map(cell).collect::<Vec<_>>().join(" | "));
        for a in &self.align {
            out.push_str(match a {
                Align::Left => "---|",
                Align::Right => "---:|",
            });
        }
        out.push('\n');
        for r in &self.rows {
            out.push_str(&format!("| {} |\n", r.iter().map(cell).collect::<Vec<_>>().join(" | ")));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_markdown_come_from_the_same_rows() {
        let mut t = Table::new(["name", "tok/s"]).align(1, Align::Right);
        t.push(["a", "1.5"]);
        t.push(["longer|name", "12"]);
        assert_eq!(t.text(), "name         tok/s\na              1.5\nlonger|name     12\n");
        assert_eq!(t.markdown(), "| name | tok/s |\n|---|---:|\n| a | 1.5 |\n| longer\\|name | 12 |\n");
        let mut short = Table::new(["a", "b", "c"]).indent(2).all_right();
        short.push(["1"]);
        assert_eq!(short.text(), "  a  b  c\n  1\n");
    }
}
