//! Tables as Qubes prints them through `column -t` (spec/qvm-tools.md §1.6).

/// Renders rows: every column but the last is padded to its widest cell and
/// followed by two spaces; the last cell is printed as is. An empty table
/// prints nothing at all.
pub fn render(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        for (i, width) in widths.iter().enumerate() {
            let cell = row.get(i).map(String::as_str).unwrap_or("");
            out.push_str(cell);
            if i + 1 < columns {
                out.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 2));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| (*c).to_owned()).collect()
    }

    #[test]
    fn two_spaces_and_unpadded_last_column() {
        let rows = [
            row(&["dom0:00_14.0", "PCI_USB: x", ""]),
            row(&["dom0:00_1c.0-00_00.0", "Network: y", "sys-net (attached)"]),
        ];
        assert_eq!(
            render(&rows),
            "dom0:00_14.0          PCI_USB: x  \ndom0:00_1c.0-00_00.0  Network: y  sys-net (attached)\n"
        );
    }

    #[test]
    fn empty_table_prints_nothing() {
        assert_eq!(render(&[]), "");
    }

    #[test]
    fn widths_count_characters() {
        let rows = [row(&["é", "x"]), row(&["ab", "y"])];
        assert_eq!(render(&rows), "é   x\nab  y\n");
    }
}
