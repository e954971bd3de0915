//! Bordered tables as upstream calicoctl prints them for `ipam show` and
//! `node status` (Go's olekukonko/tablewriter with its defaults): `+---+`
//! rules above and below the header and at the bottom, `| cell |` columns,
//! headers centred (odd padding goes right), cells that look like decimal
//! numbers right-aligned and all others left-aligned.
//!
//! Not reproduced: tablewriter wraps cells wider than 30 characters at
//! spaces; such cells are printed on one line here.

/// tablewriter's "looks like a number" test (`^-*\d*\.?\d*$`, which also
/// matches an empty cell).
fn is_decimal(s: &str) -> bool {
    let s = s.trim().trim_start_matches('-');
    let mut dot = false;
    s.chars().all(|c| {
        if c == '.' && !dot {
            dot = true;
            true
        } else {
            c.is_ascii_digit()
        }
    })
}

fn width(s: &str) -> usize {
    s.chars().count()
}

/// Renders a table: `header` and `rows` of the same length.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut w: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            w[i] = w[i].max(width(c));
        }
    }
    let rule = {
        let mut s = String::from("+");
        for wi in &w {
            s.push_str(&"-".repeat(wi + 2));
            s.push('+');
        }
        s.push('\n');
        s
    };
    let mut out = rule.clone();
    out.push('|');
    for (h, wi) in header.iter().zip(&w) {
        let gap = wi - width(h);
        let left = gap / 2;
        out.push(' ');
        out.push_str(&" ".repeat(left));
        out.push_str(&h.to_uppercase());
        out.push_str(&" ".repeat(gap - left));
        out.push_str(" |");
    }
    out.push('\n');
    out.push_str(&rule);
    for r in rows {
        out.push('|');
        for (i, wi) in w.iter().enumerate() {
            let c = r.get(i).map(String::as_str).unwrap_or("");
            let pad = " ".repeat(wi - width(c));
            out.push(' ');
            if is_decimal(c) {
                out.push_str(&pad);
                out.push_str(c);
            } else {
                out.push_str(c);
                out.push_str(&pad);
            }
            out.push_str(" |");
        }
        out.push('\n');
    }
    out.push_str(&rule);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_as_tablewriter() {
        let s = render(
            &["GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS FREE"],
            &[
                vec![
                    "IP Pool".into(),
                    "10.0.0.0/16".into(),
                    "65536".into(),
                    "5 (0%)".into(),
                    "65531 (100%)".into(),
                ],
                vec![
                    "Block".into(),
                    "10.0.0.0/26".into(),
                    "64".into(),
                    "5 (8%)".into(),
                    "59 (92%)".into(),
                ],
            ],
        );
        assert_eq!(
            s,
            "\
+----------+-------------+-----------+------------+--------------+
| GROUPING |    CIDR     | IPS TOTAL | IPS IN USE |   IPS FREE   |
+----------+-------------+-----------+------------+--------------+
| IP Pool  | 10.0.0.0/16 |     65536 | 5 (0%)     | 65531 (100%) |
| Block    | 10.0.0.0/26 |        64 | 5 (8%)     | 59 (92%)     |
+----------+-------------+-----------+------------+--------------+
"
        );
    }

    #[test]
    fn empty_table_and_alignment_rules() {
        assert_eq!(render(&["IP"], &[]), "+----+\n| IP |\n+----+\n+----+\n");
        assert!(is_decimal("65536") && is_decimal("") && is_decimal("1.5") && is_decimal("-3"));
        assert!(!is_decimal("1.0486e+06") && !is_decimal("10.0.0.1") && !is_decimal("true"));
    }
}
