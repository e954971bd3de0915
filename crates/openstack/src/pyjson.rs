//! JSON text exactly as Python's `json.dumps` writes it with its defaults
//! (`", "` and `": "` separators, non-ASCII escaped as `\uXXXX`), for values
//! that upstream stores as `json.dumps` text and compares as text (the DHCP
//! subnet data).

use std::io;

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter, Serializer};

struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        for c in fragment.chars() {
            if c.is_ascii() {
                w.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    write!(w, "\\u{u:04x}")?;
                }
            }
        }
        Ok(())
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        escape: CharEscape,
    ) -> io::Result<()> {
        let s: &[u8] = match escape {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::Solidus => b"/",
            CharEscape::Backspace => b"\\b",
            CharEscape::FormFeed => b"\\f",
            CharEscape::LineFeed => b"\\n",
            CharEscape::CarriageReturn => b"\\r",
            CharEscape::Tab => b"\\t",
            CharEscape::AsciiControl(b) => return write!(w, "\\u{:04x}", b),
        };
        w.write_all(s)
    }
}

/// `json.dumps(value)` as Python writes it.
pub fn dumps<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ser = Serializer::with_formatter(&mut out, PythonFormatter);
    value
        .serialize(&mut ser)
        .expect("JSON values always serialise");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_python() {
        // Expected strings are what CPython 3.11's json.dumps prints.
        let v = json!({"network_id": "net-id-1", "cidr": "10.65.0.0/24",
                       "host_routes": [{"destination": "11.11.0.0/16", "nexthop": "10.65.0.1"}],
                       "gateway_ip": null, "dns_servers": ["a", "b"], "n": 1, "t": true, "e": {}, "l": []});
        assert_eq!(
            String::from_utf8(dumps(&v)).unwrap(),
            r#"{"network_id": "net-id-1", "cidr": "10.65.0.0/24", "host_routes": [{"destination": "11.11.0.0/16", "nexthop": "10.65.0.1"}], "gateway_ip": null, "dns_servers": ["a", "b"], "n": 1, "t": true, "e": {}, "l": []}"#
        );
        assert_eq!(
            String::from_utf8(dumps(&json!("é/\u{1f600}\"\\\n\u{1}"))).unwrap(),
            r#""\u00e9/\ud83d\ude00\"\\\n\u0001""#
        );
    }
}
