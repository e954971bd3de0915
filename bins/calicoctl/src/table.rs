//! Aligned text tables laid out as Go's tabwriter does for upstream
//! calicoctl (minimum cell width 5, padding 3, spaces).

const MIN_WIDTH: usize = 5;
const PADDING: usize = 3;

/// Renders rows (the first is the header) into aligned lines. Each column is
/// as wide as its widest cell plus the padding. Upstream ends every cell with
/// a tab, so its last column is padded too: lines end in spaces.
pub fn render(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![MIN_WIDTH; cols];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count() + PADDING);
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            let pad = widths[i] - cell.chars().count();
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let rows = vec![
            vec![
                "NAME".to_string(),
                "CIDR".to_string(),
                "SELECTOR".to_string(),
            ],
            vec![
                "default-ipv4-pool".to_string(),
                "10.10.0.0/16".to_string(),
                "all()".to_string(),
            ],
        ];
        let s = render(&rows);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "NAME                CIDR           SELECTOR   ");
        assert_eq!(lines[1], "default-ipv4-pool   10.10.0.0/16   all()      ");
        assert_eq!(lines[0].find("CIDR"), lines[1].find("10.10"));
    }

    #[test]
    fn matches_upstreams_own_expected_output() {
        // calicoctl/tests/st/utils/data.py (ippool_name1_rev1_table) and
        // test_crud.py, which adds the last row's padding: "   \n".
        let rows = vec![
            vec!["NAME".into(), "CIDR".into(), "SELECTOR".into()],
            vec![
                "ippool-name1".into(),
                "10.0.1.0/24".into(),
                "foo == 'bar'".into(),
            ],
        ];
        assert_eq!(
            render(&rows),
            "NAME           CIDR          SELECTOR       \nippool-name1   10.0.1.0/24   foo == 'bar'   \n"
        );
    }

    #[test]
    fn short_cells_use_min_width() {
        let s = render(&[vec!["A".into(), "B".into()]]);
        assert_eq!(s, "A    B    \n");
    }
}
