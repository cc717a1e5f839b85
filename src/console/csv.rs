//! CSV export of audit rows, for operators who open the file in a spreadsheet.
//!
//! Quoting follows RFC 4180: a cell is quoted when it contains a comma, a double
//! quote, CR or LF, and quotes inside it are doubled; rows end with CRLF.
//!
//! Cells are also neutralised against formula injection (OWASP "CSV
//! Injection"): company and customer names come from ConnectWise and Sophos,
//! where anyone with edit rights can type `=HYPERLINK(...)`, and a spreadsheet
//! would run it. A text cell whose first character is `=`, `+`, `-`, `@`, tab or
//! carriage return is therefore written with a leading single quote (`'=1+2`),
//! which spreadsheets show as text. This applies to every [`Cell::Text`],
//! including text that happens to look like a number: a quantity of -3 passed
//! as text comes out as `'-3`. Values this service computed itself as numbers
//! should be passed as [`Cell::Number`] or [`Cell::Integer`], which are written
//! plainly and never prefixed (a number cannot carry a formula).
//!
//! The output is UTF-8 without a byte-order mark; prepend [`UTF8_BOM`] when the
//! file is meant for Excel, which otherwise reads it in the local code page.

use std::fmt::Write as _;

/// Byte-order mark that makes Excel read a CSV file as UTF-8.
pub const UTF8_BOM: &str = "\u{feff}";

/// One cell of a row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    /// Text from anywhere; neutralised against formula injection.
    Text(&'a str),
    /// A number this service produced (e.g. a quantity), written plainly:
    /// `-3`, `2.5`, never in exponent form. Negative zero is written `0`.
    /// NaN and infinities are not numbers a spreadsheet reads, so they are
    /// written as the text `NaN`, `inf` and `'-inf`.
    Number(f64),
    /// An integer this service produced (e.g. an id), written plainly.
    Integer(i64),
}

impl<'a> From<&'a str> for Cell<'a> {
    fn from(text: &'a str) -> Self {
        Cell::Text(text)
    }
}

impl From<f64> for Cell<'_> {
    fn from(n: f64) -> Self {
        Cell::Number(n)
    }
}

impl From<i64> for Cell<'_> {
    fn from(n: i64) -> Self {
        Cell::Integer(n)
    }
}

/// Appends one row of text cells, each neutralised and quoted as needed, and a
/// CRLF. An empty slice gives an empty line (CSV cannot express a row with no
/// cells; readers see one empty cell).
pub fn write_row(out: &mut String, cells: &[&str]) {
    write_iter(out, cells.iter().map(|c| Cell::Text(c)));
}

/// Appends one row of cells, and a CRLF; see [`Cell`] for how each is written.
pub fn write_cells(out: &mut String, cells: &[Cell<'_>]) {
    write_iter(out, cells.iter().copied());
}

fn write_iter<'a>(out: &mut String, cells: impl Iterator<Item = Cell<'a>>) {
    for (i, cell) in cells.enumerate() {
        if i > 0 {
            out.push(',');
        }
        match cell {
            Cell::Text(text) => write_text(out, text),
            // Matches -0.0 too (float patterns compare with ==), written "0".
            Cell::Number(0.0) => out.push('0'),
            Cell::Number(n) if n.is_finite() => {
                // f64's Display is the shortest exact form, never exponent form.
                let _ = write!(out, "{n}");
            }
            Cell::Number(n) => write_text(out, &n.to_string()),
            Cell::Integer(n) => {
                let _ = write!(out, "{n}");
            }
        }
    }
    out.push_str("\r\n");
}

/// Characters that make a spreadsheet read a cell as a formula when first.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

fn write_text(out: &mut String, text: &str) {
    let neutralise = text.starts_with(FORMULA_STARTS);
    let quote = text.contains([',', '"', '\r', '\n']);
    if quote {
        out.push('"');
    }
    if neutralise {
        out.push('\'');
    }
    if quote {
        for c in text.chars() {
            if c == '"' {
                out.push('"');
            }
            out.push(c);
        }
        out.push('"');
    } else {
        out.push_str(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> String {
        let mut out = String::new();
        write_row(&mut out, cells);
        out
    }

    fn cells(cells: &[Cell<'_>]) -> String {
        let mut out = String::new();
        write_cells(&mut out, cells);
        out
    }

    #[test]
    fn plain_cells_are_written_as_they_are() {
        assert_eq!(row(&["Acme Ltd", "42", "ok"]), "Acme Ltd,42,ok\r\n");
    }

    #[test]
    fn each_formula_start_is_prefixed_with_a_quote() {
        assert_eq!(row(&["=1+2"]), "'=1+2\r\n");
        assert_eq!(row(&["+1"]), "'+1\r\n");
        assert_eq!(row(&["-3"]), "'-3\r\n");
        assert_eq!(row(&["@SUM(A1:A2)"]), "'@SUM(A1:A2)\r\n");
        assert_eq!(row(&["\tcmd"]), "'\tcmd\r\n");
        // CR also needs quoting, and the prefix goes inside the quotes.
        assert_eq!(row(&["\rcmd"]), "\"'\rcmd\"\r\n");
    }

    #[test]
    fn formula_characters_after_the_first_are_left_alone() {
        assert_eq!(row(&["a=b", "1-2", "x@y", " =1"]), "a=b,1-2,x@y, =1\r\n");
    }

    #[test]
    fn prefix_and_quoting_combine() {
        assert_eq!(
            row(&["=HYPERLINK(\"http://evil\",\"x\")"]),
            "\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\"\r\n"
        );
        assert_eq!(row(&["-1,2"]), "\"'-1,2\"\r\n");
    }

    #[test]
    fn quotes_commas_and_line_breaks_are_quoted() {
        assert_eq!(row(&["Smith, Jones"]), "\"Smith, Jones\"\r\n");
        assert_eq!(row(&["say \"hi\""]), "\"say \"\"hi\"\"\"\r\n");
        assert_eq!(row(&["\""]), "\"\"\"\"\r\n");
        assert_eq!(row(&["line 1\nline 2"]), "\"line 1\nline 2\"\r\n");
        assert_eq!(row(&["a\r\nb"]), "\"a\r\nb\"\r\n");
        assert_eq!(row(&["a", "b,c", "d"]), "a,\"b,c\",d\r\n");
    }

    #[test]
    fn unicode_is_written_unchanged() {
        assert_eq!(
            row(&["Müller GmbH", "東京", "🙂", "Ørsted"]),
            "Müller GmbH,東京,🙂,Ørsted\r\n"
        );
        assert_eq!(row(&["Café, Crème"]), "\"Café, Crème\"\r\n");
    }

    #[test]
    fn empty_cells_and_rows() {
        assert_eq!(row(&["", "a", ""]), ",a,\r\n");
        assert_eq!(row(&[""]), "\r\n");
        assert_eq!(row(&[]), "\r\n");
    }

    #[test]
    fn numbers_are_plain_and_never_prefixed() {
        assert_eq!(
            cells(&[
                Cell::Number(-3.0),
                Cell::Number(2.5),
                Cell::Number(0.1),
                Cell::Number(-0.0),
                Cell::Number(1e21),
                Cell::Integer(-42),
                Cell::Integer(i64::MAX),
            ]),
            "-3,2.5,0.1,0,1000000000000000000000,-42,9223372036854775807\r\n"
        );
        // The same value as text is neutralised.
        assert_eq!(cells(&[Cell::Text("-3"), Cell::Number(-3.0)]), "'-3,-3\r\n");
    }

    #[test]
    fn non_finite_numbers_are_written_as_text() {
        assert_eq!(
            cells(&[
                Cell::Number(f64::NAN),
                Cell::Number(f64::INFINITY),
                Cell::Number(f64::NEG_INFINITY),
            ]),
            "NaN,inf,'-inf\r\n"
        );
    }

    #[test]
    fn mixed_rows_append() {
        let mut out = String::from(UTF8_BOM);
        write_row(&mut out, &["customer", "quantity"]);
        write_cells(&mut out, &["=cmd".into(), (-3.0).into()]);
        write_cells(&mut out, &["Acme".into(), 7_i64.into()]);
        assert_eq!(out, "\u{feff}customer,quantity\r\n'=cmd,-3\r\nAcme,7\r\n");
    }
}
