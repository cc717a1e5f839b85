//! CSV export (RFC 4180) with spreadsheet formula injection neutralised.

/// One cell: text from anywhere (neutralised), or a number we formatted ourselves.
#[derive(Debug, Clone, Copy)]
pub enum Cell<'a> {
    Text(&'a str),
    Number(f64),
}

/// Appends one row with CRLF. A text cell starting with `=`, `+`, `-`, `@`, a tab or
/// a carriage return gets a leading `'`, so a spreadsheet shows it as text instead
/// of running it as a formula (OWASP "CSV injection"); numbers are written plainly.
pub fn write_row(out: &mut String, cells: &[Cell<'_>]) {
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match cell {
            Cell::Number(n) => out.push_str(&n.to_string()),
            Cell::Text(t) => {
                let neutral = match t.chars().next() {
                    Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{t}"),
                    _ => (*t).to_owned(),
                };
                if neutral.contains([',', '"', '\r', '\n']) {
                    out.push('"');
                    out.push_str(&neutral.replace('"', "\"\""));
                    out.push('"');
                } else {
                    out.push_str(&neutral);
                }
            }
        }
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[Cell<'_>]) -> String {
        let mut s = String::new();
        write_row(&mut s, cells);
        s
    }

    #[test]
    fn formulas_are_neutralised_and_numbers_are_not() {
        for bad in ["=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx"] {
            assert!(
                row(&[Cell::Text(bad)]).starts_with("\"'")
                    || row(&[Cell::Text(bad)]).starts_with('\''),
                "{bad:?}"
            );
        }
        assert_eq!(
            row(&[Cell::Text("=HYPERLINK(\"x\")")]),
            "\"'=HYPERLINK(\"\"x\"\")\"\r\n"
        );
        assert_eq!(row(&[Cell::Number(-3.0), Cell::Number(2.5)]), "-3,2.5\r\n");
        assert_eq!(
            row(&[
                Cell::Text("a,b"),
                Cell::Text(""),
                Cell::Text("line\nbreak"),
                Cell::Text("Müller")
            ]),
            "\"a,b\",,\"line\nbreak\",Müller\r\n"
        );
    }
}
