//! AS_PATH and AS4_PATH segments (RFC 4271 §4.3, RFC 6793), and the merge
//! that recovers 4-octet AS numbers from a 2-octet session.

use super::AS_TRANS;

/// One AS_PATH segment. Confederation segments are not modelled: calico-node
/// is never in a confederation, so a peer must not send them (RFC 5065 §5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AsSegment {
    Sequence(Vec<u32>),
    Set(Vec<u32>),
}

const SET: u8 = 1;
const SEQUENCE: u8 = 2;
const CONFED_SEQUENCE: u8 = 3;
const CONFED_SET: u8 = 4;

/// What to do with AS_CONFED_* segments: an error in AS_PATH from a peer
/// outside our (non-existent) confederation, skipped in AS4_PATH (RFC 6793 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Confed {
    Reject,
    Skip,
}

/// Parses segments of `width`-octet AS numbers; None if malformed (unknown
/// type, zero count, or a count that overruns the attribute: RFC 7606 §7.2).
pub(crate) fn decode(mut v: &[u8], width: usize, confed: Confed) -> Option<Vec<AsSegment>> {
    let mut out = Vec::new();
    while let [kind, count, rest @ ..] = v {
        let n = usize::from(*count);
        let body = rest.get(..n * width)?;
        v = &rest[n * width..];
        if n == 0 {
            return None;
        }
        let asns = body.chunks_exact(width).map(|c| match *c {
            [a, b] => u32::from(u16::from_be_bytes([a, b])),
            [a, b, c, d] => u32::from_be_bytes([a, b, c, d]),
            _ => 0,
        });
        match *kind {
            SEQUENCE => out.push(AsSegment::Sequence(asns.collect())),
            SET => out.push(AsSegment::Set(asns.collect())),
            CONFED_SEQUENCE | CONFED_SET if confed == Confed::Skip => {}
            _ => return None,
        }
    }
    // A single leftover octet is a truncated segment header.
    v.is_empty().then_some(out)
}

/// Encodes segments with `width`-octet AS numbers, 2-octet ones saying
/// AS_TRANS for what does not fit. Segments longer than 255 are split, empty
/// ones dropped.
pub(crate) fn encode(path: &[AsSegment], width: usize, out: &mut Vec<u8>) {
    for seg in path {
        let (kind, asns) = match seg {
            AsSegment::Sequence(a) => (SEQUENCE, a),
            AsSegment::Set(a) => (SET, a),
        };
        for chunk in asns.chunks(255) {
            out.extend_from_slice(&[kind, chunk.len() as u8]);
            for &asn in chunk {
                if width == 4 {
                    out.extend_from_slice(&asn.to_be_bytes());
                } else {
                    out.extend_from_slice(&two_octet(asn).to_be_bytes());
                }
            }
        }
    }
}

/// The 2-octet form of an AS number: itself, or AS_TRANS.
pub(crate) fn two_octet(asn: u32) -> u16 {
    u16::try_from(asn).unwrap_or(AS_TRANS)
}

/// Whether a path needs AS4_PATH beside it on a 2-octet session (RFC 6793 §4.2.2).
pub(crate) fn needs_as4(path: &[AsSegment]) -> bool {
    path.iter().any(|s| asns(s).iter().any(|&a| a > 0xffff))
}

fn asns(seg: &AsSegment) -> &[u32] {
    match seg {
        AsSegment::Sequence(a) | AsSegment::Set(a) => a,
    }
}

/// Path length for best-path selection: each AS in a sequence counts, a set
/// counts once (RFC 4271 §9.1.2.2).
pub(crate) fn path_len(path: &[AsSegment]) -> usize {
    path.iter()
        .map(|s| match s {
            AsSegment::Sequence(a) => a.len(),
            AsSegment::Set(a) => usize::from(!a.is_empty()),
        })
        .sum()
}

/// RFC 6793 §4.2.3: AS4_PATH replaces the trailing part of AS_PATH it
/// covers; the leading ASes it does not cover (added by 2-octet-only
/// speakers since) stay. An AS4_PATH longer than AS_PATH is ignored.
pub(crate) fn merge(as_path: &[AsSegment], as4_path: Vec<AsSegment>) -> Vec<AsSegment> {
    let (n, m) = (path_len(as_path), path_len(&as4_path));
    if n < m {
        return as_path.to_vec();
    }
    let mut keep = n - m;
    let mut out = Vec::new();
    for seg in as_path {
        if keep == 0 {
            break;
        }
        match seg {
            AsSegment::Sequence(a) => {
                let t = keep.min(a.len());
                out.push(AsSegment::Sequence(a[..t].to_vec()));
                keep -= t;
            }
            AsSegment::Set(a) => {
                out.push(AsSegment::Set(a.clone()));
                keep -= usize::from(!a.is_empty());
            }
        }
    }
    // Where the kept part meets AS4_PATH, two sequences are one.
    let mut as4 = as4_path.into_iter().peekable();
    if let (Some(AsSegment::Sequence(prev)), Some(AsSegment::Sequence(next))) =
        (out.last_mut(), as4.peek_mut())
    {
        prev.append(next);
        as4.next();
    }
    out.extend(as4);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use AsSegment::{Sequence, Set};

    #[test]
    fn decode_two_and_four_octet() {
        let two = [2, 2, 0xfd, 0xe8, 0x5b, 0xa0, 1, 1, 0, 1];
        assert_eq!(
            decode(&two, 2, Confed::Reject),
            Some(vec![Sequence(vec![65000, 23456]), Set(vec![1])])
        );
        let four = [2, 1, 0, 1, 0, 0];
        assert_eq!(
            decode(&four, 4, Confed::Reject),
            Some(vec![Sequence(vec![65536])])
        );
        let mut again = Vec::new();
        encode(&[Sequence(vec![65536])], 4, &mut again);
        assert_eq!(again, four);
    }

    #[test]
    fn malformed_segments() {
        assert_eq!(decode(&[2, 0], 2, Confed::Reject), None); // zero count
        assert_eq!(decode(&[2, 2, 0, 1], 2, Confed::Reject), None); // overrun
        assert_eq!(decode(&[5, 1, 0, 1], 2, Confed::Reject), None); // unknown type
        assert_eq!(decode(&[2, 1, 0, 1, 2], 2, Confed::Reject), None); // stray octet
        assert_eq!(decode(&[3, 1, 0, 1], 2, Confed::Reject), None); // confed
        assert_eq!(decode(&[3, 1, 0, 1], 2, Confed::Skip), Some(vec![]));
        assert_eq!(decode(&[], 2, Confed::Reject), Some(vec![]));
    }

    #[test]
    fn long_sequences_are_split_and_two_octet_uses_as_trans() {
        let path = vec![Sequence((1..=300).collect())];
        let mut out = Vec::new();
        encode(&path, 2, &mut out);
        assert_eq!(out.len(), 2 + 255 * 2 + 2 + 45 * 2);
        assert_eq!(path_len(&decode(&out, 2, Confed::Reject).unwrap()), 300);
        let mut out = Vec::new();
        encode(&[Sequence(vec![4_200_000_000])], 2, &mut out);
        assert_eq!(out, [2, 1, 0x5b, 0xa0]);
    }

    #[test]
    fn rfc6793_merge() {
        // A 2-octet speaker prepended 100 after AS_TRANS entered the path.
        let as_path = vec![Sequence(vec![100, 23456, 200]), Set(vec![300, 23456])];
        let as4 = vec![Sequence(vec![70000, 200]), Set(vec![300, 80000])];
        assert_eq!(
            merge(&as_path, as4),
            vec![Sequence(vec![100, 70000, 200]), Set(vec![300, 80000])]
        );
        // AS4_PATH longer than AS_PATH: ignored.
        let as_path = vec![Sequence(vec![23456])];
        assert_eq!(merge(&as_path, vec![Sequence(vec![1, 2])]), as_path);
        // Equal length: AS4_PATH wins outright.
        assert_eq!(
            merge(&as_path, vec![Sequence(vec![70000])]),
            vec![Sequence(vec![70000])]
        );
    }
}
