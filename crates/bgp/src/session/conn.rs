//! One TCP connection of a session and where it is in the OPEN exchange.

use std::time::Instant;

use crate::wire::Codec;

use super::{Negotiated, Side, State};

#[derive(Clone, Debug)]
pub(super) enum ConnState {
    /// Outgoing TCP connection requested, not up yet.
    Connecting,
    /// Our OPEN is sent; waiting for the peer's.
    OpenSent,
    /// OPENs exchanged; waiting for the peer's KEEPALIVE.
    OpenConfirm(Box<Negotiated>),
    Established(Box<Negotiated>),
}

pub(super) struct Conn {
    pub side: Side,
    pub state: ConnState,
    /// Bytes received and not yet decoded (a partial message).
    pub rx: Vec<u8>,
    pub hold_deadline: Option<Instant>,
    pub keepalive_deadline: Option<Instant>,
    /// When it reached Established.
    pub established_at: Option<Instant>,
}

impl Conn {
    pub fn new(side: Side) -> Self {
        Conn {
            side,
            state: ConnState::Connecting,
            rx: Vec::new(),
            hold_deadline: None,
            keepalive_deadline: None,
            established_at: None,
        }
    }

    pub fn negotiated(&self) -> Option<&Negotiated> {
        match &self.state {
            ConnState::OpenConfirm(n) | ConnState::Established(n) => Some(n),
            _ => None,
        }
    }

    /// How messages on this connection are encoded: before the OPENs are
    /// exchanged, with no optional capability.
    pub fn codec(&self) -> Codec {
        self.negotiated()
            .map(|n| n.codec.clone())
            .unwrap_or_default()
    }

    pub fn public_state(&self) -> State {
        match self.state {
            ConnState::Connecting => State::Connect,
            ConnState::OpenSent => State::OpenSent,
            ConnState::OpenConfirm(_) => State::OpenConfirm,
            ConnState::Established(_) => State::Established,
        }
    }
}
