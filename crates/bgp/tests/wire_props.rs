//! Property tests of the wire codec: everything encodes, decodes back to
//! itself (merging an Update split over several messages), and an
//! independent implementation (netgauze-bgp-pkt) reads our bytes the same way.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};

use calico_bgp::wire::*;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;

/// Unknown optional transitive codes: unassigned by IANA, so no
/// implementation (the oracle included) gives them a meaning.
const UNKNOWN_CODES: std::ops::RangeInclusive<u8> = 150..=199;

fn asn() -> impl Strategy<Value = u32> {
    prop_oneof![1u32..65536, Just(u32::from(AS_TRANS)), 65536u32..=u32::MAX]
}

fn segment() -> impl Strategy<Value = AsSegment> {
    let asns = || prop::collection::vec(asn(), 1..8);
    prop_oneof![
        3 => asns().prop_map(AsSegment::Sequence),
        1 => asns().prop_map(AsSegment::Set),
    ]
}

fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

fn ipv6() -> impl Strategy<Value = Ipv6Addr> {
    any::<u128>().prop_map(Ipv6Addr::from)
}

/// Unicast-looking prefixes (the oracle refuses multicast and broadcast ones).
fn prefix(family: Family) -> BoxedStrategy<IpNet> {
    match family {
        Family::Ipv4Unicast => (1u32..224, any::<u32>(), 8u8..=32)
            .prop_map(|(first, rest, len)| {
                let addr = Ipv4Addr::from(first << 24 | (rest & 0x00ff_ffff));
                IpNet::V4(Ipv4Net::new(addr, len).unwrap().trunc())
            })
            .boxed(),
        Family::Ipv6Unicast => (0u128..0xff00, any::<u128>(), 8u8..=128)
            .prop_map(|(first, rest, len)| {
                let addr = Ipv6Addr::from(first << 112 | (rest >> 16));
                IpNet::V6(Ipv6Net::new(addr, len).unwrap().trunc())
            })
            .boxed(),
    }
}

fn nlri(family: Family, path_id: bool) -> impl Strategy<Value = Nlri> {
    (prefix(family), any::<u32>()).prop_map(move |(p, id)| Nlri::new(p, path_id.then_some(id)))
}

fn nlri_list(codec: &Codec, max: usize) -> impl Strategy<Value = Vec<Nlri>> {
    let v4 = nlri(
        Family::Ipv4Unicast,
        codec.add_path_tx.contains(&Family::Ipv4Unicast),
    );
    let v6 = nlri(
        Family::Ipv6Unicast,
        codec.add_path_tx.contains(&Family::Ipv6Unicast),
    );
    prop::collection::vec(prop_oneof![v4, v6], 0..max)
}

fn codec() -> impl Strategy<Value = Codec> {
    (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(four, ext, ap4, ap6)| {
            let families: Vec<Family> = [(ap4, Family::Ipv4Unicast), (ap6, Family::Ipv6Unicast)]
                .into_iter()
                .filter_map(|(on, f)| on.then_some(f))
                .collect();
            Codec {
                four_octet_as: four,
                extended_message: ext,
                add_path_rx: families.clone(),
                add_path_tx: families,
            }
        },
    )
}

fn origin() -> impl Strategy<Value = Origin> {
    prop_oneof![
        Just(Origin::Igp),
        Just(Origin::Egp),
        Just(Origin::Incomplete)
    ]
}

fn attrs() -> impl Strategy<Value = PathAttributes> {
    let basics = (
        origin(),
        prop::collection::vec(segment(), 0..4),
        ipv4(),
        (ipv6(), prop::option::of(ipv6())),
        prop::option::of(any::<u32>()),
        prop::option::of(any::<u32>()),
        any::<bool>(),
        prop::option::of((asn(), ipv4())),
    );
    let lists = (
        prop::collection::vec(any::<u32>(), 0..6),
        prop::collection::vec(any::<[u32; 3]>(), 0..4),
        prop::option::of(ipv4()),
        prop::collection::vec(ipv4(), 0..4),
        prop::collection::btree_map(
            UNKNOWN_CODES,
            prop::collection::vec(any::<u8>(), 0..20),
            0..3,
        ),
    );
    (basics, lists).prop_map(
        |((origin, as_path, nh, (g, ll), med, lp, atomic, aggregator), lists)| {
            let (communities, large_communities, originator_id, cluster_list, other) = lists;
            PathAttributes {
                origin,
                as_path,
                next_hop: Some(nh),
                mp_next_hop: Some(MpNextHop {
                    global: g,
                    link_local: ll,
                }),
                med,
                local_pref: lp,
                atomic_aggregate: atomic,
                aggregator,
                communities,
                large_communities,
                originator_id,
                cluster_list,
                other: raw(other),
            }
        },
    )
}

/// Unknown attributes as a receiver keeps them: Partial set.
fn raw(map: BTreeMap<u8, Vec<u8>>) -> Vec<RawAttribute> {
    map.into_iter()
        .map(|(code, value)| RawAttribute {
            flags: 0xe0,
            code,
            value,
        })
        .collect()
}

fn update_for(codec: Codec, max_routes: usize) -> impl Strategy<Value = (Codec, Update)> {
    let lists = (nlri_list(&codec, max_routes), nlri_list(&codec, max_routes));
    let eor = prop::option::of(prop_oneof![
        Just(Family::Ipv4Unicast),
        Just(Family::Ipv6Unicast)
    ]);
    (lists, attrs(), eor).prop_map(move |((withdrawn, announced), attrs, end_of_rib)| {
        let attrs = if announced.is_empty() {
            PathAttributes::default()
        } else {
            attrs
        };
        (
            codec.clone(),
            Update {
                withdrawn,
                announced,
                attrs,
                end_of_rib,
                treat_as_withdraw: false,
            },
        )
    })
}

fn any_update(max_routes: usize) -> impl Strategy<Value = (Codec, Update)> {
    codec().prop_flat_map(move |c| update_for(c, max_routes))
}

fn decode_all(codec: &Codec, mut bytes: &[u8]) -> Vec<Message> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (m, used) = codec
            .decode(bytes)
            .expect("our own bytes decode")
            .expect("whole messages");
        assert!(used <= codec.max_message_len());
        out.push(m);
        bytes = &bytes[used..];
    }
    out
}

fn by_family(list: &[Nlri]) -> Vec<Nlri> {
    let mut v: Vec<Nlri> = list
        .iter()
        .filter(|n| n.family() == Family::Ipv4Unicast)
        .copied()
        .collect();
    v.extend(list.iter().filter(|n| n.family() == Family::Ipv6Unicast));
    v
}

/// What the decoder says about `a` on this session, family by family: each
/// family's messages carry only its own next hop, and RFC 6793 §4.2.3 makes
/// a 2-octet session lose 4-octet ASes when AGGREGATOR names a real 2-octet AS.
fn expected_attrs(codec: &Codec, a: &PathAttributes, family: Family) -> PathAttributes {
    let mut e = a.clone();
    match family {
        Family::Ipv4Unicast => e.mp_next_hop = None,
        Family::Ipv6Unicast => e.next_hop = None,
    }
    let stale_as4 =
        matches!(e.aggregator, Some((asn, _)) if asn <= 0xffff && asn != u32::from(AS_TRANS));
    if !codec.four_octet_as && stale_as4 {
        let trans = |v: &Vec<u32>| {
            v.iter()
                .map(|&x| if x > 0xffff { u32::from(AS_TRANS) } else { x })
                .collect()
        };
        e.as_path = e
            .as_path
            .iter()
            .map(|s| match s {
                AsSegment::Sequence(v) => AsSegment::Sequence(trans(v)),
                AsSegment::Set(v) => AsSegment::Set(trans(v)),
            })
            .collect();
    }
    e
}

fn check_round_trip(codec: &Codec, u: &Update) -> Result<(), TestCaseError> {
    let mut out = Vec::new();
    codec
        .encode_checked(&Message::Update(u.clone()), &mut out)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut merged = Update::default();
    for m in decode_all(codec, &out) {
        let Message::Update(part) = m else {
            return Err(TestCaseError::fail("not an UPDATE"));
        };
        prop_assert!(!part.treat_as_withdraw);
        prop_assert!(merged.end_of_rib.is_none(), "End-of-RIB comes last");
        if let Some(first) = part.announced.first() {
            prop_assert_eq!(
                &part.attrs,
                &expected_attrs(codec, &u.attrs, first.family())
            );
        }
        merged.withdrawn.extend(part.withdrawn);
        merged.announced.extend(part.announced);
        merged.end_of_rib = part.end_of_rib;
    }
    prop_assert_eq!(merged.withdrawn, by_family(&u.withdrawn));
    prop_assert_eq!(merged.announced, by_family(&u.announced));
    prop_assert_eq!(merged.end_of_rib, u.end_of_rib);
    Ok(())
}

/// Capability codes we do not know: any of them, or (for the oracle, which
/// checks the pre-standard codes 128-131 too) ones IANA left unassigned.
fn unknown_codes(any_code: bool) -> BoxedStrategy<u8> {
    if any_code {
        prop_oneof![Just(0u8), 3u8..=5, 7u8..=63, 66u8..=68, 71u8..=255].boxed()
    } else {
        (100u8..=127).boxed()
    }
}

/// Capabilities; `any_family` false keeps AFI/SAFI to assigned values (the
/// oracle refuses others inside graceful-restart and add-path).
fn capability(any_family: bool) -> impl Strategy<Value = Capability> {
    let family = move || {
        if any_family {
            (any::<u16>(), any::<u8>()).boxed()
        } else {
            prop::sample::select(vec![
                (1u16, 1u8),
                (2, 1),
                (1, 2),
                (2, 2),
                (1, 128),
                (2, 128),
            ])
            .boxed()
        }
    };
    let mode = prop_oneof![
        Just(AddPathMode::Receive),
        Just(AddPathMode::Send),
        Just(AddPathMode::Both)
    ];
    prop_oneof![
        family().prop_map(|(afi, safi)| Capability::Multiprotocol { afi, safi }),
        Just(Capability::RouteRefresh),
        Just(Capability::ExtendedMessage),
        (
            any::<bool>(),
            0u16..4096,
            prop::collection::vec(
                (family(), any::<bool>()).prop_map(|((a, s), f)| (a, s, f)),
                0..4
            )
        )
            .prop_map(
                |(restarting, restart_time, families)| Capability::GracefulRestart {
                    restarting,
                    restart_time,
                    families
                }
            ),
        any::<u32>().prop_map(Capability::FourOctetAs),
        prop::collection::vec((family(), mode).prop_map(|((a, s), m)| (a, s, m)), 1..4)
            .prop_map(Capability::AddPath),
        Just(Capability::EnhancedRouteRefresh),
        (
            unknown_codes(any_family),
            prop::collection::vec(any::<u8>(), 0..12)
        )
            .prop_map(|(code, value)| Capability::Unknown { code, value }),
    ]
}

/// OPENs; `any_family` false also keeps the BGP identifier a unicast
/// address, as RFC 4271 asked and the oracle still does (RFC 6286 allows any
/// non-zero value, and so do we).
fn open(any_family: bool) -> impl Strategy<Value = Open> {
    let hold = prop_oneof![Just(0u16), 3u16..=u16::MAX];
    let id = if any_family {
        (1u32..=u32::MAX).boxed()
    } else {
        (0x0100_0000u32..0xe000_0000).boxed()
    };
    (
        any::<u16>(),
        hold,
        id,
        prop::collection::vec(capability(any_family), 0..12),
    )
        .prop_map(|(my_as, hold_time, id, capabilities)| Open {
            version: 4,
            my_as,
            hold_time,
            bgp_id: Ipv4Addr::from(id),
            capabilities,
        })
}

fn other_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        open(true).prop_map(Message::Open),
        (
            any::<u8>(),
            any::<u8>(),
            prop::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(c, s, d)| Message::Notification(Notification::new(c, s, d))),
        Just(Message::Keepalive),
        (any::<u16>(), any::<u8>(), 0u8..3)
            .prop_map(|(afi, safi, subtype)| Message::RouteRefresh { afi, safi, subtype }),
    ]
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400)
}

proptest! {
    // PROPTEST_CASES=N runs more (or fewer) than the default 400.
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn update_round_trip((codec, u) in any_update(40)) {
        check_round_trip(&codec, &u)?;
    }

    #[test]
    fn large_updates_split_and_merge_back((codec, u) in any_update(1500)) {
        check_round_trip(&codec, &u)?;
    }

    #[test]
    fn other_messages_round_trip(m in other_message(), c in codec()) {
        let mut out = Vec::new();
        c.encode_checked(&m, &mut out).unwrap();
        prop_assert_eq!(decode_all(&c, &out), vec![m]);
    }

    #[test]
    fn oracle_reads_our_updates_the_same((codec, u) in any_update(60)) {
        let mut out = Vec::new();
        codec.encode_checked(&Message::Update(u.clone()), &mut out).unwrap();
        oracle::check_update(&codec, &u, &out)?;
    }

    #[test]
    fn oracle_reads_our_opens_the_same(o in open(false)) {
        let mut out = Vec::new();
        Codec::default().encode_checked(&Message::Open(o.clone()), &mut out).unwrap();
        oracle::check_open(&o, &out)?;
    }
}

/// netgauze-bgp-pkt as an independent reader of what we send.
mod oracle {
    use super::*;
    use netgauze_bgp_pkt::nlri::{Ipv4UnicastAddress, Ipv6UnicastAddress};
    use netgauze_bgp_pkt::path_attribute::{self as pa, PathAttributeValue as V};
    use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
    use netgauze_bgp_pkt::BgpMessage;
    use netgauze_iana::address_family::AddressType;
    use netgauze_parse_utils::reader::SliceReader;
    use netgauze_parse_utils::traits::ParseFromWithOneInput;

    fn parse(codec: &Codec, bytes: &[u8]) -> Result<Vec<BgpMessage>, TestCaseError> {
        let mut add_path = HashMap::new();
        for f in &codec.add_path_rx {
            let t = if *f == Family::Ipv4Unicast {
                AddressType::Ipv4Unicast
            } else {
                AddressType::Ipv6Unicast
            };
            add_path.insert(t, true);
        }
        let mut ctx = BgpParsingContext::new(
            codec.four_octet_as,
            HashMap::new(),
            add_path,
            true,
            true,
            true,
            true,
        );
        let mut out = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let len = usize::from(u16::from_be_bytes([rest[16], rest[17]]));
            let mut reader = SliceReader::new(&rest[..len]);
            let msg = BgpMessage::parse(&mut reader, &mut ctx).map_err(|e| {
                TestCaseError::fail(format!("oracle rejected {:02x?}: {e:?}", &rest[..len]))
            })?;
            out.push(msg);
            rest = &rest[len..];
        }
        Ok(out)
    }

    fn v4(a: &Ipv4UnicastAddress) -> Nlri {
        Nlri {
            prefix: IpNet::V4(a.network().address()),
            path_id: a.path_id(),
        }
    }

    fn v6(a: &Ipv6UnicastAddress) -> Nlri {
        Nlri {
            prefix: IpNet::V6(a.network().address()),
            path_id: a.path_id(),
        }
    }

    /// Our PathAttributes as the oracle saw them, plus AS4_PATH / AS4_AGGREGATOR
    /// kept apart (the oracle does not merge them).
    #[derive(Debug, Default, PartialEq)]
    struct Seen {
        attrs: PathAttributes,
        as4_path: Option<Vec<AsSegment>>,
        as4_aggregator: Option<(u32, Ipv4Addr)>,
    }

    fn segments<T: Copy + Into<u32>>(
        list: impl Iterator<Item = (pa::AsPathSegmentType, Vec<T>)>,
    ) -> Vec<AsSegment> {
        list.map(|(t, asns)| {
            let asns = asns.into_iter().map(Into::into).collect();
            match t {
                pa::AsPathSegmentType::AsSet => AsSegment::Set(asns),
                pa::AsPathSegmentType::AsSequence => AsSegment::Sequence(asns),
            }
        })
        .collect()
    }

    fn as_path(p: &pa::AsPath) -> Vec<AsSegment> {
        match p {
            pa::AsPath::As2PathSegments(s) => segments(
                s.iter()
                    .map(|s| (s.segment_type(), s.as_numbers().to_vec())),
            ),
            pa::AsPath::As4PathSegments(s) => segments(
                s.iter()
                    .map(|s| (s.segment_type(), s.as_numbers().to_vec())),
            ),
        }
    }

    fn record(
        attr: &pa::PathAttribute,
        seen: &mut Seen,
        reach: &mut Vec<Nlri>,
        unreach: &mut Vec<Nlri>,
    ) -> Result<(), TestCaseError> {
        let a = &mut seen.attrs;
        match attr.value() {
            V::Origin(o) => a.origin = [Origin::Igp, Origin::Egp, Origin::Incomplete][*o as usize],
            V::AsPath(p) => a.as_path = as_path(p),
            V::As4Path(p) => {
                seen.as4_path = Some(segments(
                    p.segments()
                        .iter()
                        .map(|s| (s.segment_type(), s.as_numbers().to_vec())),
                ))
            }
            V::NextHop(n) => a.next_hop = Some(n.next_hop()),
            V::MultiExitDiscriminator(m) => a.med = Some(m.metric()),
            V::LocalPreference(l) => a.local_pref = Some(l.metric()),
            V::AtomicAggregate(_) => a.atomic_aggregate = true,
            V::Aggregator(pa::Aggregator::As2Aggregator(g)) => {
                a.aggregator = Some((u32::from(*g.asn()), g.origin()))
            }
            V::Aggregator(pa::Aggregator::As4Aggregator(g)) => {
                a.aggregator = Some((*g.asn(), g.origin()))
            }
            V::Communities(c) => {
                a.communities = c.communities().iter().map(|c| c.value()).collect()
            }
            V::LargeCommunities(c) => {
                a.large_communities = c
                    .communities()
                    .iter()
                    .map(|l| {
                        let b = l.to_bytes();
                        let w = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
                        [w(0), w(4), w(8)]
                    })
                    .collect()
            }
            V::Originator(o) => a.originator_id = Some(o.id()),
            V::ClusterList(c) => a.cluster_list = c.cluster_list().iter().map(|c| c.id()).collect(),
            V::MpReach(pa::MpReach::Ipv6Unicast {
                next_hop_global,
                next_hop_local,
                nlri,
            }) => {
                a.mp_next_hop = Some(MpNextHop {
                    global: *next_hop_global,
                    link_local: *next_hop_local,
                });
                reach.extend(nlri.iter().map(v6));
            }
            V::MpUnreach(pa::MpUnreach::Ipv6Unicast { nlri }) => {
                unreach.extend(nlri.iter().map(v6))
            }
            // The oracle does not know AS4_AGGREGATOR (RFC 6793).
            V::UnknownAttribute(u) if u.code() == 18 => {
                let b = u.value();
                prop_assert_eq!(b.len(), 8);
                let asn = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                seen.as4_aggregator = Some((asn, Ipv4Addr::new(b[4], b[5], b[6], b[7])));
            }
            V::UnknownAttribute(u) => {
                prop_assert!(
                    attr.optional() && attr.transitive() && attr.partial(),
                    "unknown attributes go on as Partial"
                );
                a.other.push(RawAttribute {
                    flags: 0xe0,
                    code: u.code(),
                    value: u.value().to_vec(),
                })
            }
            other => {
                return Err(TestCaseError::fail(format!(
                    "unexpected attribute {other:?}"
                )))
            }
        }
        Ok(())
    }

    /// What the oracle must see for `u`'s attributes on a `family` message.
    fn expected(codec: &Codec, u: &Update, family: Family) -> Seen {
        let mut e = Seen {
            attrs: u.attrs.clone(),
            ..Seen::default()
        };
        match family {
            Family::Ipv4Unicast => e.attrs.mp_next_hop = None,
            Family::Ipv6Unicast => e.attrs.next_hop = None,
        }
        if !codec.four_octet_as {
            let needs_as4 = u.attrs.as_path.iter().any(|s| match s {
                AsSegment::Sequence(v) | AsSegment::Set(v) => v.iter().any(|&x| x > 0xffff),
            });
            if needs_as4 {
                e.as4_path = Some(u.attrs.as_path.clone());
            }
            let t = |x: u32| if x > 0xffff { u32::from(AS_TRANS) } else { x };
            e.attrs.as_path = u
                .attrs
                .as_path
                .iter()
                .map(|s| match s {
                    AsSegment::Sequence(v) => {
                        AsSegment::Sequence(v.iter().map(|&x| t(x)).collect())
                    }
                    AsSegment::Set(v) => AsSegment::Set(v.iter().map(|&x| t(x)).collect()),
                })
                .collect();
            if let Some((asn, id)) = u.attrs.aggregator {
                e.attrs.aggregator = Some((t(asn), id));
                e.as4_aggregator = (asn > 0xffff).then_some((asn, id));
            }
        }
        e
    }

    pub fn check_update(codec: &Codec, u: &Update, bytes: &[u8]) -> Result<(), TestCaseError> {
        let (mut withdrawn, mut announced, mut eor) = (Vec::new(), Vec::new(), None);
        for msg in parse(codec, bytes)? {
            let BgpMessage::Update(m) = msg else {
                return Err(TestCaseError::fail("not an UPDATE"));
            };
            if let Some(t) = m.end_of_rib() {
                eor = Some(if t == AddressType::Ipv4Unicast {
                    Family::Ipv4Unicast
                } else {
                    Family::Ipv6Unicast
                });
                continue;
            }
            withdrawn.extend(m.withdraw_routes().iter().map(v4));
            let (mut seen, mut reach, mut unreach) = (Seen::default(), Vec::new(), Vec::new());
            for attr in m.path_attributes() {
                record(attr, &mut seen, &mut reach, &mut unreach)?;
            }
            let body: Vec<Nlri> = m.nlri().iter().map(v4).collect();
            let family = if body.is_empty() {
                Family::Ipv6Unicast
            } else {
                Family::Ipv4Unicast
            };
            if !body.is_empty() || !reach.is_empty() {
                prop_assert_eq!(&seen, &expected(codec, u, family));
            }
            announced.extend(body);
            announced.extend(reach);
            withdrawn.extend(unreach);
        }
        prop_assert_eq!(withdrawn, by_family(&u.withdrawn));
        prop_assert_eq!(announced, by_family(&u.announced));
        prop_assert_eq!(eor, u.end_of_rib);
        Ok(())
    }

    pub fn check_open(o: &Open, bytes: &[u8]) -> Result<(), TestCaseError> {
        let msgs = parse(&Codec::default(), bytes)?;
        let BgpMessage::Open(m) = &msgs[0] else {
            return Err(TestCaseError::fail("not an OPEN"));
        };
        prop_assert_eq!(
            (m.version(), m.my_as(), m.hold_time(), m.bgp_id()),
            (o.version, o.my_as, o.hold_time, o.bgp_id)
        );
        prop_assert_eq!(m.capabilities().len(), o.capabilities.len());
        Ok(())
    }
}
