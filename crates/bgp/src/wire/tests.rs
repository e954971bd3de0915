//! Whole messages as bytes: hand-written vectors (RFC layouts), captures of
//! BIRD 2.0.12 (tests/fixtures, see capture.sh there), and the error cases
//! of RFC 4271 §6 and RFC 7606.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::notification::{header_error, open_error, update_error, CEASE, UPDATE_MESSAGE_ERROR};
use super::*;

const BIRD_EBGP_AS4: &[u8] = include_bytes!("../../tests/fixtures/bird-ebgp-as4.bin");
const BIRD_IBGP_ADDPATH: &[u8] = include_bytes!("../../tests/fixtures/bird-ibgp-addpath.bin");

fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    m.push(kind);
    m.extend_from_slice(body);
    m
}

/// An UPDATE from its three sections.
fn update(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut b = (withdrawn.len() as u16).to_be_bytes().to_vec();
    b.extend_from_slice(withdrawn);
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(nlri);
    msg(2, &b)
}

fn decode_one(codec: &Codec, bytes: &[u8]) -> Result<Message, Notification> {
    let (m, used) = codec.decode(bytes)?.expect("a whole message");
    assert_eq!(used, bytes.len());
    Ok(m)
}

fn decode_update(codec: &Codec, bytes: &[u8]) -> Update {
    match decode_one(codec, bytes) {
        Ok(Message::Update(u)) => u,
        other => panic!("not an update: {other:?}"),
    }
}

fn decode_stream(codec: &Codec, mut bytes: &[u8]) -> Vec<Message> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (m, used) = codec.decode(bytes).unwrap().unwrap();
        out.push(m);
        bytes = &bytes[used..];
    }
    out
}

fn net(s: &str) -> Nlri {
    Nlri::new(s.parse().unwrap(), None)
}

fn four() -> Codec {
    Codec {
        four_octet_as: true,
        ..Codec::default()
    }
}

/// ORIGIN IGP, AS_PATH [65001] (4-octet), NEXT_HOP 10.0.0.1.
const BASE_ATTRS: [u8; 20] = [
    0x40, 1, 1, 0, 0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe9, 0x40, 3, 4, 10, 0, 0, 1,
];

#[test]
fn keepalive_notification_route_refresh() {
    let c = Codec::default();
    assert_eq!(decode_one(&c, &msg(4, &[])), Ok(Message::Keepalive));
    let n = decode_one(&c, &msg(3, &[6, 2, 1, b'x'])).unwrap();
    assert_eq!(
        n,
        Message::Notification(Notification::new(CEASE, 2, vec![1, b'x']))
    );
    let rr = decode_one(&c, &msg(5, &[0, 2, 0, 1])).unwrap();
    assert_eq!(
        rr,
        Message::RouteRefresh {
            afi: 2,
            safi: 1,
            subtype: 0
        }
    );
    for m in [Message::Keepalive, n, rr] {
        let mut out = Vec::new();
        c.encode(&m, &mut out);
        assert_eq!(decode_one(&c, &out), Ok(m));
    }
}

#[test]
fn partial_input_waits() {
    let c = Codec::default();
    let whole = msg(4, &[]);
    for cut in 0..whole.len() {
        assert_eq!(c.decode(&whole[..cut]), Ok(None), "cut at {cut}");
    }
    let mut two = whole.clone();
    two.extend_from_slice(&whole);
    assert_eq!(c.decode(&two), Ok(Some((Message::Keepalive, 19))));
}

#[test]
fn header_errors() {
    let c = Codec::default();
    let err = |code, sub, data: &[u8]| Err(Notification::new(code, sub, data.to_vec()));
    let mut bad_marker = msg(4, &[]);
    bad_marker[3] = 0;
    assert_eq!(
        c.decode(&bad_marker),
        err(1, header_error::CONNECTION_NOT_SYNCHRONIZED, &[])
    );
    // Detected before the header is complete.
    assert!(c.decode(&bad_marker[..5]).is_err());
    let mut long_keepalive = msg(4, &[0]);
    long_keepalive[17] = 20;
    assert_eq!(
        c.decode(&long_keepalive),
        err(1, header_error::BAD_MESSAGE_LENGTH, &[0, 20])
    );
    assert_eq!(c.decode(&msg(2, &[0, 0])), err(1, 2, &[0, 21])); // UPDATE < 23
    assert_eq!(
        c.decode(&msg(9, &[])),
        err(1, header_error::BAD_MESSAGE_TYPE, &[9])
    );
    let mut huge = msg(2, &[0, 0, 0, 0]);
    huge[16..18].copy_from_slice(&5000u16.to_be_bytes());
    assert_eq!(c.decode(&huge), err(1, 2, &5000u16.to_be_bytes()));
    // With Extended Message the same header is fine: wait for the rest.
    let ext = Codec {
        extended_message: true,
        ..Codec::default()
    };
    assert_eq!(ext.decode(&huge), Ok(None));
    // RFC 7313: BoRR must be exactly 23 bytes.
    let borr = msg(5, &[0, 1, 1, 1, 0]);
    assert_eq!(c.decode(&borr), Err(Notification::new(7, 1, borr.clone())));
}

/// RFC 4271 §4.2 layout, with MP (RFC 4760) and 4-octet AS (RFC 6793) capabilities.
const OPEN_BYTES: [u8; 24] = [
    4, 0xfd, 0xe8, 0, 90, 192, 0, 2, 1, 14, 2, 12, 1, 4, 0, 1, 0, 1, 65, 4, 0, 0, 0xfd, 0xe8,
];

#[test]
fn open_round_trip() {
    let body = &OPEN_BYTES[..];
    let m = decode_one(&Codec::default(), &msg(1, body)).unwrap();
    let Message::Open(open) = &m else { panic!() };
    assert_eq!(open.my_as, 65000);
    assert_eq!(open.hold_time, 90);
    assert_eq!(open.bgp_id, Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(open.asn(), 65000);
    assert_eq!(open.families(), vec![Family::Ipv4Unicast]);
    let mut out = Vec::new();
    Codec::default().encode(&m, &mut out);
    assert_eq!(out, msg(1, body));
}

#[test]
fn open_for_a_four_octet_as() {
    let open = Open::new(4_200_000_001, 90, Ipv4Addr::new(10, 0, 0, 1), vec![]);
    assert_eq!(open.my_as, AS_TRANS);
    assert_eq!(open.asn(), 4_200_000_001);
    assert_eq!(open.families(), vec![Family::Ipv4Unicast]);
}

#[test]
fn open_errors() {
    let c = Codec::default();
    let with = |i: usize, v: u8| {
        let mut b = OPEN_BYTES.to_vec();
        b[i] = v;
        c.decode(&msg(1, &b))
    };
    assert_eq!(
        with(0, 3),
        Err(Notification::open_error(
            open_error::UNSUPPORTED_VERSION,
            vec![0, 4]
        ))
    );
    assert_eq!(with(4, 2), Err(Notification::unacceptable_hold_time()));
    assert!(with(4, 0).is_ok()); // 0 means no keepalives: fine
    let mut zero_id = OPEN_BYTES.to_vec();
    zero_id[5..9].fill(0);
    assert_eq!(
        c.decode(&msg(1, &zero_id)).unwrap_err().subcode,
        open_error::BAD_BGP_IDENTIFIER
    );
    assert_eq!(
        with(10, 1).unwrap_err().subcode,
        open_error::UNSUPPORTED_OPTIONAL_PARAMETER
    );
    assert_eq!(
        with(9, 40).unwrap_err(),
        Notification::open_error(0, vec![])
    ); // params overrun
    assert_eq!(
        with(11, 40).unwrap_err(),
        Notification::open_error(0, vec![])
    ); // capability overrun
}

#[test]
fn capabilities_round_trip_and_malformed_ones_stay_unknown() {
    let caps = vec![
        Capability::Multiprotocol { afi: 2, safi: 1 },
        Capability::Multiprotocol { afi: 25, safi: 70 },
        Capability::RouteRefresh,
        Capability::ExtendedMessage,
        Capability::GracefulRestart {
            restarting: true,
            restart_time: 120,
            families: vec![(1, 1, true), (2, 1, false)],
        },
        Capability::FourOctetAs(4_200_000_001),
        Capability::AddPath(vec![
            (1, 1, AddPathMode::Both),
            (2, 1, AddPathMode::Receive),
        ]),
        Capability::EnhancedRouteRefresh,
        Capability::Unknown {
            code: 73,
            value: b"fqdn".to_vec(),
        },
        // Known codes with the wrong shape.
        Capability::Unknown {
            code: 65,
            value: vec![1, 2],
        },
        Capability::Unknown {
            code: 69,
            value: vec![0, 1, 1, 7],
        },
    ];
    let open = Open {
        version: 4,
        my_as: AS_TRANS,
        hold_time: 240,
        bgp_id: Ipv4Addr::new(1, 2, 3, 4),
        capabilities: caps,
    };
    let mut out = Vec::new();
    Codec::default().encode(&Message::Open(open.clone()), &mut out);
    assert_eq!(
        decode_one(&Codec::default(), &out),
        Ok(Message::Open(open.clone()))
    );
    assert_eq!(open.families(), vec![Family::Ipv6Unicast]);
}

#[test]
fn rfc9072_extended_optional_parameters() {
    // 300 bytes of capabilities need the extended length.
    let caps: Vec<Capability> = (0..50)
        .map(|i| Capability::Unknown {
            code: 200,
            value: vec![i; 4],
        })
        .collect();
    let open = Open {
        version: 4,
        my_as: 1,
        hold_time: 90,
        bgp_id: Ipv4Addr::new(1, 1, 1, 1),
        capabilities: caps,
    };
    let mut out = Vec::new();
    Codec::default().encode(&Message::Open(open.clone()), &mut out);
    assert_eq!(&out[28..31], &[255, 255, 1]); // length 255, type 255, then 2 octets
    assert_eq!(decode_one(&Codec::default(), &out), Ok(Message::Open(open)));
    // More than an OPEN can hold is refused, not truncated.
    let caps = (0..20)
        .map(|_| Capability::Unknown {
            code: 200,
            value: vec![0; 255],
        })
        .collect();
    let open = Open {
        version: 4,
        my_as: 1,
        hold_time: 90,
        bgp_id: Ipv4Addr::new(1, 1, 1, 1),
        capabilities: caps,
    };
    let mut out = Vec::new();
    assert!(matches!(
        Codec::default().encode_checked(&Message::Open(open), &mut out),
        Err(EncodeError::OpenTooLarge(_))
    ));
    assert!(out.is_empty());
}

#[test]
fn negotiation() {
    let id = Ipv4Addr::new(1, 1, 1, 1);
    let ours = Open::new(
        64512,
        90,
        id,
        vec![
            Capability::ExtendedMessage,
            Capability::AddPath(vec![
                (1, 1, AddPathMode::Both),
                (2, 1, AddPathMode::Receive),
            ]),
        ],
    );
    let theirs = Open::new(
        64512,
        90,
        id,
        vec![Capability::AddPath(vec![
            (1, 1, AddPathMode::Send),
            (2, 1, AddPathMode::Both),
        ])],
    );
    let c = Codec::negotiate(&ours, &theirs);
    assert!(c.four_octet_as);
    assert!(!c.extended_message);
    assert_eq!(
        c.add_path_rx,
        vec![Family::Ipv4Unicast, Family::Ipv6Unicast]
    );
    assert_eq!(c.add_path_tx, Vec::<Family>::new());
    let old = Open {
        version: 4,
        my_as: 65001,
        hold_time: 90,
        bgp_id: id,
        capabilities: vec![],
    };
    assert!(!Codec::negotiate(&ours, &old).four_octet_as);
}

#[test]
fn ipv4_update_with_every_attribute() {
    let mut attrs = BASE_ATTRS.to_vec();
    attrs.extend_from_slice(&[0x80, 4, 4, 0, 0, 0, 50]); // MED 50
    attrs.extend_from_slice(&[0x40, 5, 4, 0, 0, 0, 100]); // LOCAL_PREF 100
    attrs.extend_from_slice(&[0x40, 6, 0]); // ATOMIC_AGGREGATE
    attrs.extend_from_slice(&[0xc0, 7, 8, 0, 0, 0xfd, 0xe9, 10, 0, 0, 9]); // AGGREGATOR
    attrs.extend_from_slice(&[0xc0, 8, 4, 0xfc, 0, 0, 100]); // COMMUNITIES 64512:100
    attrs.extend_from_slice(&[0x80, 9, 4, 10, 0, 0, 7]); // ORIGINATOR_ID
    attrs.extend_from_slice(&[0x80, 10, 4, 10, 0, 0, 8]); // CLUSTER_LIST
    attrs.extend_from_slice(&[0xc0, 32, 12, 0, 0, 0xfc, 0, 0, 0, 0, 1, 0, 0, 0, 2]); // LARGE 64512:1:2
    attrs.extend_from_slice(&[0xc0, 99, 2, 0xab, 0xcd]); // unknown optional transitive
    attrs.extend_from_slice(&[0x80, 98, 1, 0]); // unknown optional non-transitive: dropped
    let bytes = update(&[24, 10, 9, 9], &attrs, &[32, 192, 0, 2, 1]);
    let u = decode_update(&four(), &bytes);
    assert_eq!(u.withdrawn, vec![net("10.9.9.0/24")]);
    assert_eq!(u.announced, vec![net("192.0.2.1/32")]);
    assert!(!u.treat_as_withdraw);
    let want = PathAttributes {
        origin: Origin::Igp,
        as_path: vec![AsSegment::Sequence(vec![65001])],
        next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
        mp_next_hop: None,
        med: Some(50),
        local_pref: Some(100),
        atomic_aggregate: true,
        aggregator: Some((65001, Ipv4Addr::new(10, 0, 0, 9))),
        communities: vec![0xfc00_0064],
        large_communities: vec![[64512, 1, 2]],
        originator_id: Some(Ipv4Addr::new(10, 0, 0, 7)),
        cluster_list: vec![Ipv4Addr::new(10, 0, 0, 8)],
        other: vec![RawAttribute {
            flags: 0xc0,
            code: 99,
            value: vec![0xab, 0xcd],
        }],
    };
    assert_eq!(u.attrs, want);
    assert_eq!(u.attrs.as_path_len(), 1);
    assert_eq!(u.attrs.first_as(), Some(65001));
    // Our encoding is the same bytes, but the unknown attribute now says Partial.
    let mut out = Vec::new();
    four().encode(&Message::Update(u.clone()), &mut out);
    let mut expect_attrs = attrs[..attrs.len() - 9].to_vec();
    expect_attrs.extend_from_slice(&[0xe0, 99, 2, 0xab, 0xcd]);
    assert_eq!(
        out,
        update(&[24, 10, 9, 9], &expect_attrs, &[32, 192, 0, 2, 1])
    );
}

#[test]
fn ipv6_update_in_mp_reach_and_unreach() {
    let mut mp = vec![0x90, 14, 0, 46, 0, 2, 1, 32];
    mp.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
    mp.extend_from_slice(&"fe80::1".parse::<Ipv6Addr>().unwrap().octets());
    mp.extend_from_slice(&[0, 64, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1]);
    mp.extend_from_slice(&[0x80, 15, 6, 0, 2, 1, 16, 0xfd, 0]); // withdraw fd00::/16
    mp.extend_from_slice(&BASE_ATTRS[..13]);
    let u = decode_update(&four(), &update(&[], &mp, &[]));
    assert_eq!(u.announced, vec![net("2001:db8:0:1::/64")]);
    assert_eq!(u.withdrawn, vec![net("fd00::/16")]);
    let nh = u.attrs.mp_next_hop.unwrap();
    assert_eq!(nh.global, "2001:db8::1".parse::<Ipv6Addr>().unwrap());
    assert_eq!(nh.link_local, Some("fe80::1".parse().unwrap()));
    assert_eq!(u.attrs.next_hop, None);
    assert!(!u.treat_as_withdraw);
    // Round trip through our encoder (which puts MP_UNREACH and MP_REACH first).
    let mut out = Vec::new();
    four().encode(&Message::Update(u.clone()), &mut out);
    assert_eq!(decode_update(&four(), &out), u);
    assert_eq!(&out[23..25], &[0x90, 15]);
}

#[test]
fn end_of_rib_markers() {
    let c = Codec::default();
    let v4 = update(&[], &[], &[]);
    assert_eq!(
        decode_update(&c, &v4),
        Update::end_of_rib(Family::Ipv4Unicast)
    );
    let v6 = update(&[], &[0x80, 15, 3, 0, 2, 1], &[]);
    assert_eq!(
        decode_update(&c, &v6),
        Update::end_of_rib(Family::Ipv6Unicast)
    );
    for family in Family::ALL {
        let mut out = Vec::new();
        c.encode(&Message::Update(Update::end_of_rib(family)), &mut out);
        assert_eq!(decode_update(&c, &out), Update::end_of_rib(family));
    }
    // Nothing to say is no message at all (an empty UPDATE would mean End-of-RIB).
    let mut out = Vec::new();
    c.encode(&Message::Update(Update::default()), &mut out);
    assert!(out.is_empty());
}

/// BASE_ATTRS with one attribute replaced or added.
fn attrs_with(extra: &[u8]) -> Vec<u8> {
    let mut a = BASE_ATTRS.to_vec();
    a.extend_from_slice(extra);
    a
}

fn treat_as_withdraw(attrs: &[u8]) -> bool {
    let u = decode_update(&four(), &update(&[], attrs, &[32, 10, 1, 1, 1]));
    assert_eq!(u.announced.len(), 1);
    u.treat_as_withdraw
}

#[test]
fn rfc7606_treat_as_withdraw() {
    assert!(!treat_as_withdraw(&BASE_ATTRS));
    assert!(treat_as_withdraw(
        &[&[0x40, 1, 1, 3], &BASE_ATTRS[4..]].concat()
    )); // ORIGIN 3
    assert!(treat_as_withdraw(
        &[&[0x40, 1, 2, 0, 0], &BASE_ATTRS[4..]].concat()
    )); // ORIGIN length
    assert!(treat_as_withdraw(
        &[&BASE_ATTRS[..4], &[0x40, 2, 2, 2, 0], &BASE_ATTRS[13..]].concat()
    )); // AS_PATH count 0
    assert!(treat_as_withdraw(
        &[
            &BASE_ATTRS[..4],
            &[0x40, 2, 6, 3, 1, 0, 0, 0, 1],
            &BASE_ATTRS[13..]
        ]
        .concat()
    )); // confed
    assert!(treat_as_withdraw(
        &[&BASE_ATTRS[..13], &[0x40, 3, 3, 10, 0, 0]].concat()
    )); // NEXT_HOP length
    assert!(treat_as_withdraw(&attrs_with(&[0x80, 4, 2, 0, 1]))); // MED
    assert!(treat_as_withdraw(&attrs_with(&[0x40, 5, 3, 0, 0, 1]))); // LOCAL_PREF
    assert!(treat_as_withdraw(&attrs_with(&[0xc0, 8, 3, 0, 0, 1]))); // COMMUNITIES
    assert!(treat_as_withdraw(&attrs_with(&[0xc0, 8, 0]))); // empty COMMUNITIES
    assert!(treat_as_withdraw(&attrs_with(&[0xc0, 32, 4, 0, 0, 0, 1]))); // LARGE_COMMUNITY
    assert!(treat_as_withdraw(&attrs_with(&[0x80, 9, 2, 0, 1]))); // ORIGINATOR_ID
    assert!(treat_as_withdraw(&attrs_with(&[0x80, 10, 0]))); // CLUSTER_LIST
    assert!(treat_as_withdraw(&attrs_with(&[0xc0, 5, 4, 0, 0, 0, 1]))); // LOCAL_PREF flags
                                                                        // Missing well-known mandatory attributes.
    assert!(treat_as_withdraw(&BASE_ATTRS[4..])); // no ORIGIN
    assert!(treat_as_withdraw(
        &[&BASE_ATTRS[..4], &BASE_ATTRS[13..]].concat()
    )); // no AS_PATH
    assert!(treat_as_withdraw(&BASE_ATTRS[..13])); // no NEXT_HOP
                                                   // An attribute that overruns the section; the NLRI are still found.
    assert!(treat_as_withdraw(&attrs_with(&[0xc0, 8, 9, 0, 0])));
    assert!(treat_as_withdraw(&attrs_with(&[0xc0]))); // a stray octet
}

#[test]
fn rfc7606_attribute_discard() {
    let discarded = |extra: &[u8]| {
        let u = decode_update(
            &four(),
            &update(&[], &attrs_with(extra), &[32, 10, 1, 1, 1]),
        );
        assert!(!u.treat_as_withdraw, "{extra:?}");
        u.attrs
    };
    assert!(!discarded(&[0x40, 6, 1, 0]).atomic_aggregate);
    assert_eq!(discarded(&[0xc0, 7, 6, 0, 1, 10, 0, 0, 1]).aggregator, None); // 6 bytes on a 4-octet session
                                                                              // Duplicates: the first one counts.
    assert_eq!(discarded(&[0x40, 1, 1, 2]).origin, Origin::Igp);
    // AS4_PATH between 4-octet speakers is ignored.
    assert_eq!(
        discarded(&[0xc0, 17, 6, 2, 1, 0, 0, 0, 9]).as_path,
        vec![AsSegment::Sequence(vec![65001])]
    );
}

#[test]
fn rfc7606_session_reset() {
    let reset = |attrs: &[u8], nlri: &[u8]| four().decode(&update(&[], attrs, nlri)).unwrap_err();
    let nlri = [32, 10, 1, 1, 1];
    // MP_REACH with a next-hop length that IPv6 cannot have.
    let bad_nh = attrs_with(&[0x80, 14, 9, 0, 2, 1, 4, 1, 2, 3, 4, 0]);
    assert_eq!(
        reset(&bad_nh, &nlri).subcode,
        update_error::OPTIONAL_ATTRIBUTE_ERROR
    );
    // MP_UNREACH whose NLRI do not parse.
    assert_eq!(
        reset(&attrs_with(&[0x80, 15, 4, 0, 2, 1, 129]), &nlri).subcode,
        update_error::OPTIONAL_ATTRIBUTE_ERROR
    );
    // Two MP_UNREACH.
    let twice = attrs_with(&[0x80, 15, 3, 0, 2, 1, 0x80, 15, 3, 0, 2, 1]);
    assert_eq!(
        reset(&twice, &nlri).subcode,
        update_error::MALFORMED_ATTRIBUTE_LIST
    );
    // MP_REACH overrunning the section.
    assert_eq!(
        reset(&attrs_with(&[0x80, 14, 40, 0, 2]), &nlri).subcode,
        update_error::MALFORMED_ATTRIBUTE_LIST
    );
    // Body NLRI: prefix too long, or truncated.
    assert_eq!(
        reset(&BASE_ATTRS, &[33, 1, 1, 1, 1, 1]).subcode,
        update_error::INVALID_NETWORK_FIELD
    );
    assert_eq!(
        reset(&BASE_ATTRS, &[24, 1]).subcode,
        update_error::INVALID_NETWORK_FIELD
    );
    // Unrecognised well-known attribute.
    let n = reset(&attrs_with(&[0x40, 99, 0]), &nlri);
    assert_eq!(
        (n.code, n.subcode, n.data),
        (UPDATE_MESSAGE_ERROR, 2, vec![0x40, 99, 0])
    );
    // Section lengths that overrun the message.
    let mut b = update(&[], &BASE_ATTRS, &[]);
    b[19..21].copy_from_slice(&[0, 50]);
    assert_eq!(
        four().decode(&b).unwrap_err().subcode,
        update_error::MALFORMED_ATTRIBUTE_LIST
    );
}

#[test]
fn next_hop_is_ignored_without_body_nlri() {
    // Only MP_REACH routes: a malformed NEXT_HOP does not matter (RFC 4760 §3).
    let mut mp = vec![0x80, 14, 24, 0, 2, 1, 16];
    mp.extend_from_slice(&[
        0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 16, 0x20, 1,
    ]);
    mp.extend_from_slice(&BASE_ATTRS[..13]);
    mp.extend_from_slice(&[0x40, 3, 1, 0]);
    let u = decode_update(&four(), &update(&[], &mp, &[]));
    assert_eq!(u.announced, vec![net("2001::/16")]);
    assert!(!u.treat_as_withdraw);
    assert_eq!(u.attrs.next_hop, None);
}

#[test]
fn two_octet_session_as4_merge() {
    let c = Codec::default();
    let mut attrs = vec![0x40, 1, 1, 0];
    attrs.extend_from_slice(&[0x40, 2, 6, 2, 2, 0xfd, 0xe9, 0x5b, 0xa0]); // [65001, AS_TRANS]
    attrs.extend_from_slice(&[0x40, 3, 4, 10, 0, 0, 1]);
    attrs.extend_from_slice(&[0xc0, 7, 6, 0x5b, 0xa0, 10, 0, 0, 9]); // AGGREGATOR AS_TRANS
    attrs.extend_from_slice(&[0xc0, 17, 6, 2, 1, 0xfa, 0x56, 0xea, 0x01]); // AS4_PATH [4200000001]
    attrs.extend_from_slice(&[0xc0, 18, 8, 0xfa, 0x56, 0xea, 0x01, 10, 0, 0, 9]);
    let u = decode_update(&c, &update(&[], &attrs, &[8, 10]));
    assert_eq!(
        u.attrs.as_path,
        vec![AsSegment::Sequence(vec![65001, 4_200_000_001])]
    );
    assert_eq!(
        u.attrs.aggregator,
        Some((4_200_000_001, Ipv4Addr::new(10, 0, 0, 9)))
    );
    // And back: AS_TRANS in the 2-octet attributes, the truth in AS4_*.
    let mut out = Vec::new();
    c.encode(&Message::Update(u.clone()), &mut out);
    assert_eq!(decode_update(&c, &out), u);
    assert!(out.windows(2).any(|w| w == [0xc0, 17]));
    // A real 2-octet AGGREGATOR makes the AS4_* attributes stale.
    let mut stale = attrs.clone();
    stale[23..25].copy_from_slice(&[0, 7]);
    let u = decode_update(&c, &update(&[], &stale, &[8, 10]));
    assert_eq!(
        u.attrs.as_path,
        vec![AsSegment::Sequence(vec![65001, 23456])]
    );
    assert_eq!(u.attrs.aggregator, Some((7, Ipv4Addr::new(10, 0, 0, 9))));
    // A malformed AS4_PATH is discarded, not fatal.
    let mut bad = attrs[..29].to_vec();
    bad.extend_from_slice(&[0xc0, 17, 2, 2, 0]);
    let u = decode_update(&c, &update(&[], &bad, &[8, 10]));
    assert!(!u.treat_as_withdraw);
    assert_eq!(
        u.attrs.as_path,
        vec![AsSegment::Sequence(vec![65001, 23456])]
    );
}

#[test]
fn add_path_ids_per_family_and_direction() {
    let c = Codec {
        add_path_rx: vec![Family::Ipv4Unicast],
        add_path_tx: vec![Family::Ipv6Unicast],
        ..four()
    };
    let u = decode_update(
        &c,
        &update(&[], &BASE_ATTRS, &[0, 0, 0, 5, 32, 10, 1, 1, 1]),
    );
    assert_eq!(
        u.announced,
        vec![Nlri::new("10.1.1.1/32".parse().unwrap(), Some(5))]
    );
    // Sending IPv4 to this peer: no path ids, whatever the Nlri says.
    let mut out = Vec::new();
    c.encode(&Message::Update(u), &mut out);
    assert!(out.ends_with(&[32, 10, 1, 1, 1]) && !out.ends_with(&[0, 0, 0, 5, 32, 10, 1, 1, 1]));
}

#[test]
fn large_updates_are_split_within_the_limit() {
    let attrs = PathAttributes {
        as_path: vec![AsSegment::Sequence(vec![64512])],
        next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
        mp_next_hop: Some(MpNextHop {
            global: "fd00::1".parse().unwrap(),
            link_local: None,
        }),
        ..PathAttributes::default()
    };
    let v4 = (0..3000u32).map(|i| {
        Nlri::new(
            ipnet::Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + i), 32)
                .unwrap()
                .into(),
            Some(i),
        )
    });
    let v6 = (0..1000u128).map(|i| {
        Nlri::new(
            ipnet::Ipv6Net::new(Ipv6Addr::from(0xfd00 << 112 | i), 128)
                .unwrap()
                .into(),
            Some(1),
        )
    });
    let u = Update {
        withdrawn: v4.clone().take(1500).chain(v6.clone().take(500)).collect(),
        announced: v4.skip(1500).chain(v6.skip(500)).collect(),
        attrs,
        end_of_rib: None,
        treat_as_withdraw: false,
    };
    for c in [
        Codec {
            add_path_rx: Family::ALL.to_vec(),
            add_path_tx: Family::ALL.to_vec(),
            ..four()
        },
        Codec {
            extended_message: true,
            add_path_rx: Family::ALL.to_vec(),
            add_path_tx: Family::ALL.to_vec(),
            ..four()
        },
    ] {
        let mut out = Vec::new();
        c.encode_checked(&Message::Update(u.clone()), &mut out)
            .unwrap();
        let msgs = decode_stream(&c, &out);
        let max = c.max_message_len();
        assert!(msgs.len() > out.len() / max);
        let mut merged = Update::default();
        for m in msgs {
            let Message::Update(part) = m else { panic!() };
            merged.withdrawn.extend(part.withdrawn);
            merged.announced.extend(part.announced);
        }
        assert_eq!(merged.withdrawn, u.withdrawn);
        assert_eq!(merged.announced, u.announced);
    }
}

#[test]
fn attributes_too_large_are_reported_and_withdrawals_still_sent() {
    let u = Update {
        withdrawn: vec![net("10.0.0.0/8")],
        announced: vec![net("10.1.0.0/16")],
        attrs: PathAttributes {
            next_hop: Some(Ipv4Addr::LOCALHOST),
            communities: (0..1100).collect(),
            ..PathAttributes::default()
        },
        ..Update::default()
    };
    let mut out = Vec::new();
    let r = four().encode_checked(&Message::Update(u.clone()), &mut out);
    assert!(matches!(r, Err(EncodeError::AttributesTooLarge(_))));
    assert_eq!(decode_update(&four(), &out).withdrawn, u.withdrawn);
    // Extended messages make room.
    let ext = Codec {
        extended_message: true,
        ..four()
    };
    let mut out = Vec::new();
    ext.encode_checked(&Message::Update(u.clone()), &mut out)
        .unwrap();
    assert_eq!(decode_update(&ext, &out), u);
    // No next hop: nothing announced.
    let mut no_nh = u.clone();
    no_nh.attrs.next_hop = None;
    let mut out = Vec::new();
    assert_eq!(
        ext.encode_checked(&Message::Update(no_nh), &mut out),
        Err(EncodeError::MissingNextHop(Family::Ipv4Unicast))
    );
}

#[test]
fn bird_ebgp_from_a_four_octet_as_to_a_two_octet_peer() {
    let msgs = decode_stream(&Codec::default(), BIRD_EBGP_AS4);
    let Message::Open(open) = &msgs[0] else {
        panic!()
    };
    assert_eq!(
        (open.my_as, open.asn(), open.hold_time),
        (AS_TRANS, 4_200_000_001, 240)
    );
    assert_eq!(open.families(), Family::ALL.to_vec());
    assert_eq!(msgs[1], Message::Keepalive);
    let updates: Vec<&Update> = msgs
        .iter()
        .filter_map(|m| {
            if let Message::Update(u) = m {
                Some(u)
            } else {
                None
            }
        })
        .collect();
    let v6 = updates
        .iter()
        .find(|u| u.announced == vec![net("fd00:10::/122")])
        .unwrap();
    assert_eq!(
        v6.attrs.as_path,
        vec![AsSegment::Sequence(vec![4_200_000_001])]
    );
    assert_eq!(
        v6.attrs.mp_next_hop.unwrap().global,
        "fd00::2".parse::<Ipv6Addr>().unwrap()
    );
    let v4 = updates
        .iter()
        .find(|u| u.announced == vec![net("192.168.10.0/26")])
        .unwrap();
    assert_eq!(v4.attrs.next_hop, Some(Ipv4Addr::new(127, 0, 0, 2)));
    assert_eq!(v4.attrs.first_as(), Some(4_200_000_001));
    let eors: Vec<Family> = updates.iter().filter_map(|u| u.end_of_rib).collect();
    assert_eq!(eors.len(), 2);
    // Our encoding of BIRD's OPEN is BIRD's bytes.
    let mut out = Vec::new();
    Codec::default().encode(&msgs[0], &mut out);
    assert_eq!(out, BIRD_EBGP_AS4[..out.len()]);
}

#[test]
fn bird_ibgp_with_add_path_and_communities() {
    let c = Codec {
        add_path_rx: Family::ALL.to_vec(),
        add_path_tx: Family::ALL.to_vec(),
        ..four()
    };
    let msgs = decode_stream(&c, BIRD_IBGP_ADDPATH);
    let mut v4 = Vec::new();
    for m in &msgs[2..] {
        let Message::Update(u) = m else {
            panic!("{m:?}")
        };
        assert!(!u.treat_as_withdraw);
        if u.announced.first().map(Nlri::family) == Some(Family::Ipv6Unicast) {
            assert_eq!(u.attrs.communities, vec![(64512 << 16) | 100]);
            assert_eq!(u.attrs.large_communities, vec![[64512, 1, 2]]);
            assert_eq!((u.attrs.med, u.attrs.local_pref), (Some(50), Some(100)));
            assert!(u.announced.iter().all(|n| n.path_id.is_some()));
        }
        v4.extend(
            u.announced
                .iter()
                .filter(|n| n.family() == Family::Ipv4Unicast)
                .copied(),
        );
        // Re-encoding and decoding gives the same update.
        let mut out = Vec::new();
        c.encode(m, &mut out);
        let again = decode_stream(&c, &out);
        assert_eq!(again, vec![m.clone()]);
    }
    assert_eq!(v4.len(), 1001);
    assert!(v4.contains(&Nlri::new(
        "192.168.10.0/26".parse().unwrap(),
        v4[0].path_id
    )));
}
