//! Delimited text interaction files as exports come: any of `\n`, `\r\n` or
//! `\r` line ends; a separator of one or more characters (`,`, tab, `::`,
//! `;`), chosen by extension or sniffed from the first line; CSV quoting
//! (`"a,b"`, `""` for a quote; a value still wrapped in quotes after that,
//! as Book-Crossing's `"""034545104X"""`, has them stripped); a header line
//! that may start with `//` or `#` (HetRec's `//userID\tartistID\tweight`);
//! later `//` and `#` lines are comments; blank lines and lines of empty
//! fields are skipped.
//!
//! Ids are numbers when every value of the column is a plain decimal
//! without a leading zero; otherwise the column holds strings (ISBNs, hashes,
//! `"0042"`), mapped to dense internal ids in order of first appearance and
//! kept in [`Keys`], so a model answers with the ids it was trained on. A
//! row whose user or item is empty is skipped with a warning (it names no
//! interaction); a row with too few fields or an unclosed quote is an error
//! naming the line, unless the caller skips bad rows.

use std::borrow::Cow;
use std::path::Path;

use crate::error::{cut, Error, Result};

/// How a delimited file is laid out (default: a header line, the separator
/// by extension or sniffed, bad rows are errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The separator; `None`: tab for `.tsv`; `,` for `.csv` unless the first
    /// line has no `,` but a `;`, tab or `|` (spreadsheet exports of many
    /// locales, the original Book-Crossing dump); for other extensions the
    /// first of tab, `::`, `,`, `;`, `|` found in the first line.
    pub separator: Option<String>,
    /// Whether the first (non-blank) line names the columns; without a header
    /// they are `column_1`, `column_2`, ...
    pub has_header: bool,
    /// Skip rows with too few fields or an unclosed quote (with a warning
    /// counting them) instead of failing on the first.
    pub skip_bad_rows: bool,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            separator: None,
            has_header: true,
            skip_bad_rows: false,
        }
    }
}

/// String ids of a column: `keys[k]` is the id given to internal id `k`.
pub type Keys = Vec<String>;

/// One id column read: numbers, or strings mapped to dense internal ids.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum IdColumn {
    /// Plain decimal ids.
    Numbers(Vec<u64>),
    /// Internal ids (dense, in order of first appearance) and their strings.
    Strings(Vec<u64>, Keys),
}

/// The columns the caller asked for, row-aligned.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub ids: Vec<IdColumn>,
    /// Float columns (weights, timestamps as text), per asked column.
    pub numbers: Vec<Vec<f64>>,
    /// 1-based line of each row kept (for messages).
    pub lines: Vec<usize>,
}

/// The separator of `path` under `layout`, and whether it was sniffed.
fn separator_for(path: &Path, layout: &Layout, first: &str) -> String {
    if let Some(s) = &layout.separator {
        return s.clone();
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("csv") if first.contains(',') => ",".into(),
        Some("csv") => [";", "\t", "|"]
            .iter()
            .find(|s| first.contains(*s))
            .map_or_else(|| ",".into(), |s| s.to_string()),
        Some("tsv") => "\t".into(),
        _ => ["\t", "::", ",", ";", "|"]
            .iter()
            .find(|s| first.contains(*s))
            .map_or_else(|| ",".into(), |s| s.to_string()),
    }
}

/// Splits one line into fields. `Err` names what is wrong.
fn fields<'a>(
    line: &'a str,
    sep: &str,
    out: &mut Vec<Cow<'a, str>>,
) -> std::result::Result<(), &'static str> {
    out.clear();
    let mut rest = line;
    loop {
        if let Some(body) = rest.strip_prefix('"') {
            // A quoted field: up to the quote not doubled.
            let mut value = String::new();
            let mut i = 0;
            let bytes = body.as_bytes();
            loop {
                match body[i..].find('"') {
                    None => return Err("a quote is not closed"),
                    Some(at) => {
                        value.push_str(&body[i..i + at]);
                        let q = i + at;
                        if bytes.get(q + 1) == Some(&b'"') {
                            value.push('"');
                            i = q + 2;
                        } else {
                            i = q + 1;
                            break;
                        }
                    }
                }
            }
            let after = &body[i..];
            out.push(Cow::Owned(value));
            if after.is_empty() {
                return Ok(());
            }
            match after.strip_prefix(sep) {
                Some(r) => rest = r,
                None => return Err("text after a closing quote before the separator"),
            }
        } else {
            match rest.find(sep) {
                Some(at) => {
                    out.push(Cow::Borrowed(&rest[..at]));
                    rest = &rest[at + sep.len()..];
                }
                None => {
                    out.push(Cow::Borrowed(rest));
                    return Ok(());
                }
            }
        }
    }
}

/// An id value with spaces and any wrapping quotes removed.
fn clean_id(v: &str) -> &str {
    v.trim().trim_matches(|c| c == '"' || c == '\'').trim()
}

/// A column of string ids: plain decimal numbers when every value is one,
/// else dense ids in order of first appearance and the strings.
pub(crate) fn ids_of_strings(raw: Vec<String>) -> IdColumn {
    match raw
        .iter()
        .map(|v| plain_number(v))
        .collect::<Option<Vec<u64>>>()
    {
        Some(v) => IdColumn::Numbers(v),
        None => intern(raw),
    }
}

/// Dense ids in order of first appearance, and the strings.
fn intern(raw: Vec<String>) -> IdColumn {
    let mut index = std::collections::HashMap::<String, u64>::new();
    let mut keys = Vec::new();
    let ids = raw
        .into_iter()
        .map(|s| match index.get(&s) {
            Some(&k) => k,
            None => {
                let k = keys.len() as u64;
                keys.push(s.clone());
                index.insert(s, k);
                k
            }
        })
        .collect();
    IdColumn::Strings(ids, keys)
}

/// Whether `v` is a plain decimal id (no sign, no leading zero but "0").
fn plain_number(v: &str) -> Option<u64> {
    let b = v.as_bytes();
    if b.is_empty() || (b.len() > 1 && b[0] == b'0') || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.parse().ok()
}

/// Reads the text at `path`: for each of `id_cols`, an id column; for each of
/// `num_cols`, a column of numbers. Errors name the file, the column and the
/// line.
pub(crate) fn read(
    path: &Path,
    layout: &Layout,
    id_cols: &[&str],
    num_cols: &[&str],
) -> Result<Parsed> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    // Latin-1 exports (Book-Crossing) are not UTF-8: read bytes as Latin-1
    // when they are not valid UTF-8, so every byte survives into the ids.
    let text: Cow<'_, str> = match std::str::from_utf8(&bytes) {
        Ok(t) => Cow::Borrowed(t),
        Err(_) => Cow::Owned(bytes.iter().map(|&b| b as char).collect()),
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut lines = text
        .split(['\n', '\r'])
        .enumerate()
        .map(|(n, l)| (n + 1, l))
        .filter(|(_, l)| !l.trim().is_empty());
    // Line numbers count `\r\n` as one line end.
    let crlf = text.contains("\r\n");
    let number = |n: usize| if crlf { n.div_ceil(2) } else { n };
    let Some((first_no, first)) = lines.next() else {
        return Err(Error::NoRows {
            path: path.to_path_buf(),
        });
    };
    let sep = separator_for(path, layout, first);
    if sep.is_empty() {
        return Err(Error::InvalidValue {
            path: path.to_path_buf(),
            column: "--sep".into(),
            row: 0,
            value: String::new(),
            reason: "an empty separator",
        });
    }
    let mut buf = Vec::new();
    let names: Vec<String> = if layout.has_header {
        let head = first
            .trim_start()
            .strip_prefix("//")
            .or_else(|| first.trim_start().strip_prefix('#'))
            .unwrap_or(first);
        fields(head, &sep, &mut buf).map_err(|why| bad_line(path, number(first_no), first, why))?;
        buf.iter().map(|f| clean_id(f).to_string()).collect()
    } else {
        fields(first, &sep, &mut buf)
            .map_err(|why| bad_line(path, number(first_no), first, why))?;
        (1..=buf.len()).map(|i| format!("column_{i}")).collect()
    };
    if names.len() == 1 {
        // One column: the separator is probably another one.
        if let Some(other) = ["\t", "::", ",", ";", "|"]
            .iter()
            .find(|x| **x != sep && names[0].contains(*x))
        {
            return Err(Error::BadLine {
                path: path.to_path_buf(),
                line: number(first_no),
                text: cut(first),
                reason: format!(
                    "the header is one column; is the separator `{}` rather than `{}`? (--sep)",
                    other.escape_default(),
                    sep.escape_default()
                ),
            });
        }
    }
    let index = |c: &str| -> Result<usize> {
        names
            .iter()
            .position(|n| n == c)
            .ok_or_else(|| Error::MissingColumn {
                path: path.to_path_buf(),
                column: cut(c),
                available: names.iter().map(|n| cut(n)).collect::<Vec<_>>().join(", "),
            })
    };
    let id_at: Vec<usize> = id_cols.iter().map(|c| index(c)).collect::<Result<_>>()?;
    let num_at: Vec<usize> = num_cols.iter().map(|c| index(c)).collect::<Result<_>>()?;
    let needed = id_at.iter().chain(&num_at).copied().max().unwrap_or(0) + 1;
    let header = layout.has_header.then_some(first_no);
    let rows = std::iter::once((first_no, first))
        .filter(|_| header.is_none())
        .chain(lines);
    let mut raw_ids: Vec<Vec<String>> = vec![Vec::new(); id_at.len()];
    let mut nums: Vec<Option<Vec<u64>>> = vec![Some(Vec::new()); id_at.len()];
    let mut numbers: Vec<Vec<f64>> = vec![Vec::new(); num_at.len()];
    let mut kept_lines = Vec::new();
    let (mut empty_id, mut first_empty) = (0usize, 0usize);
    let (mut bad, mut first_bad) = (0usize, 0usize);
    'rows: for (n, line) in rows {
        let n = number(n);
        let t = line.trim_start();
        if t.starts_with("//") || t.starts_with('#') {
            continue;
        }
        if let Err(why) = fields(line, &sep, &mut buf) {
            if layout.skip_bad_rows {
                bad += 1;
                first_bad = if first_bad == 0 { n } else { first_bad };
                continue;
            }
            return Err(bad_line(path, n, line, why));
        }
        if buf.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        if buf.len() < needed {
            if layout.skip_bad_rows {
                bad += 1;
                first_bad = if first_bad == 0 { n } else { first_bad };
                continue;
            }
            return Err(Error::BadLine {
                path: path.to_path_buf(),
                line: n,
                text: cut(line),
                reason: format!(
                    "{} fields where the columns ({}) need {needed}; is the separator `{}`? (--sep)",
                    buf.len(),
                    names.iter().map(|n| cut(n)).collect::<Vec<_>>().join(", "),
                    sep.escape_default()
                ),
            });
        }
        for &at in &id_at {
            if clean_id(&buf[at]).is_empty() {
                empty_id += 1;
                first_empty = if first_empty == 0 { n } else { first_empty };
                continue 'rows;
            }
        }
        for (k, &at) in id_at.iter().enumerate() {
            let v = clean_id(&buf[at]);
            if let Some(col) = nums[k].as_mut() {
                match plain_number(v) {
                    Some(x) => col.push(x),
                    None => nums[k] = None,
                }
            }
            raw_ids[k].push(v.to_string());
        }
        for (k, &at) in num_at.iter().enumerate() {
            let v = buf[at].trim().trim_matches('"').trim();
            let x: f64 = v.parse().map_err(|_| Error::InvalidValue {
                path: path.to_path_buf(),
                column: num_cols[k].to_string(),
                row: kept_lines.len(),
                value: cut(v),
                reason: "not a number",
            })?;
            numbers[k].push(x);
        }
        kept_lines.push(n);
    }
    if empty_id > 0 {
        tracing::warn!(
            "{}: skipped {empty_id} rows with an empty {} (the first at line {first_empty})",
            path.display(),
            id_cols.join(" or ")
        );
    }
    if bad > 0 {
        tracing::warn!(
            "{}: skipped {bad} malformed rows (the first at line {first_bad})",
            path.display()
        );
    }
    let ids = raw_ids
        .into_iter()
        .zip(nums)
        .map(|(raw, num)| match num {
            Some(v) => IdColumn::Numbers(v),
            None => intern(raw),
        })
        .collect();
    Ok(Parsed {
        ids,
        numbers,
        lines: kept_lines,
    })
}

fn bad_line(path: &Path, line: usize, text: &str, why: &str) -> Error {
    Error::BadLine {
        path: path.to_path_buf(),
        line,
        text: cut(text),
        reason: format!("{why} (--skip-bad-rows skips such rows)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(
        name: &str,
        text: &[u8],
        layout: &Layout,
        ids: &[&str],
        nums: &[&str],
    ) -> Result<Parsed> {
        let dir = tempfile::tempdir().map_err(|e| Error::io(Path::new("tmp"), e))?;
        let path = dir.path().join(name);
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        read(&path, layout, ids, nums)
    }

    fn header() -> Layout {
        Layout::default()
    }

    #[test]
    fn hetrec_comment_header_tabs_and_counts() -> Result<()> {
        let p = parse(
            "user_artists.dat",
            b"//userID\tartistID\tweight\n2\t51\t13883\n2\t52\t11690\n\n# a comment\n3\t51\t7\n",
            &header(),
            &["userID", "artistID"],
            &["weight"],
        )?;
        assert_eq!(p.ids[0], IdColumn::Numbers(vec![2, 2, 3]));
        assert_eq!(p.ids[1], IdColumn::Numbers(vec![51, 52, 51]));
        assert_eq!(p.numbers[0], vec![13883.0, 11690.0, 7.0]);
        assert_eq!(p.lines, vec![2, 3, 6]);
        Ok(())
    }

    #[test]
    fn book_crossing_carriage_returns_tripled_quotes_and_empty_rows() -> Result<()> {
        let text = b"User-ID,ISBN,Book-Rating\r276725,\"\"\"034545104X\"\"\",0\r,,\r,,\r\
276726,\"\"\"0155061224\"\"\",5\r,\".0330486187\"\";\"\"6\"\"\",\r276725,\"\"\"0155061224\"\"\",3\r";
        let p = parse(
            "BX-Book-Ratings.csv",
            text,
            &header(),
            &["User-ID", "ISBN"],
            &["Book-Rating"],
        )?;
        assert_eq!(p.ids[0], IdColumn::Numbers(vec![276725, 276726, 276725]));
        // Leading zeros and letters: strings, in order of first appearance.
        assert_eq!(
            p.ids[1],
            IdColumn::Strings(
                vec![0, 1, 1],
                vec!["034545104X".into(), "0155061224".into()]
            )
        );
        assert_eq!(p.numbers[0], vec![0.0, 5.0, 3.0]);
        assert_eq!(p.lines, vec![2, 5, 7]);
        Ok(())
    }

    #[test]
    fn a_semicolon_csv_as_the_original_book_crossing_dump_reads_without_sep() -> Result<()> {
        let text = b"\"User-ID\";\"ISBN\";\"Book-Rating\"\r\n\"276725\";\"034545104X\";\"0\"\r\n\"276726\";\"0155061224\";\"5\"\r\n";
        let p = parse(
            "BX-Book-Ratings.csv",
            text,
            &header(),
            &["User-ID", "ISBN"],
            &["Book-Rating"],
        )?;
        assert_eq!(p.ids[0], IdColumn::Numbers(vec![276725, 276726]));
        assert_eq!(
            p.ids[1],
            IdColumn::Strings(vec![0, 1], vec!["034545104X".into(), "0155061224".into()])
        );
        assert_eq!(p.numbers[0], vec![0.0, 5.0]);
        // A comma in the header keeps `,` (a `;` inside a field is data).
        let p = parse("r.csv", b"u,i\n1,a;b\n", &header(), &["u", "i"], &[])?;
        assert_eq!(p.ids[1], IdColumn::Strings(vec![0], vec!["a;b".into()]));
        Ok(())
    }

    #[test]
    fn movielens_double_colon_and_crlf() -> Result<()> {
        let p = parse(
            "ratings.dat",
            b"1::1193::5::978300760\r\n1::661::3::978302109\r\n",
            &Layout {
                has_header: false,
                ..Layout::default()
            },
            &["column_1", "column_2"],
            &["column_3", "column_4"],
        )?;
        assert_eq!(p.ids[1], IdColumn::Numbers(vec![1193, 661]));
        assert_eq!(p.numbers[1], vec![978300760.0, 978302109.0]);
        assert_eq!(p.lines, vec![1, 2]);
        Ok(())
    }

    #[test]
    fn clear_errors_name_the_line() {
        // A header of one column under the separator given: name the likely one.
        let comma = Layout {
            separator: Some(",".into()),
            ..Layout::default()
        };
        let e = parse("r.csv", b"u;i\n1;2\n", &comma, &["u", "i"], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1") && e.contains("separator `;`"), "{e}");
        let e = parse("r.csv", b"u,x\n1,2\n", &header(), &["u", "i"], &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("missing column `i`") && e.contains("u, x"),
            "{e}"
        );
        let e = parse(
            "r.csv",
            b"u,i,w\n1,2,1\n3\n",
            &header(),
            &["u", "i"],
            &["w"],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 3") && e.contains("1 fields"), "{e}");
        let e = parse("r.csv", b"u,i\n1,\"2\n", &header(), &["u", "i"], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("quote"), "{e}");
        // A weight that is not a number names the column.
        let e = parse(
            "r.csv",
            b"u,i,w\n1,2,lots\n",
            &header(),
            &["u", "i"],
            &["w"],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("`w`") && e.contains("lots"), "{e}");
        // A megabyte of value is quoted cut.
        let mut long = b"u,i,w\n1,2,".to_vec();
        long.extend(std::iter::repeat_n(b'x', 1_000_000));
        let e = parse("r.csv", &long, &header(), &["u", "i"], &["w"])
            .unwrap_err()
            .to_string();
        assert!(e.len() < 400, "{}", e.len());
        // Skipping bad rows keeps the good ones.
        let skip = Layout {
            skip_bad_rows: true,
            ..header()
        };
        let p = parse("r.csv", b"u,i\n1,2\n3\n4,5\n", &skip, &["u", "i"], &[]).expect("skips");
        assert_eq!(p.ids[0], IdColumn::Numbers(vec![1, 4]));
    }
}
