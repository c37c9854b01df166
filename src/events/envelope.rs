//! The envelope a listener reads on stdin (reference 6.2), and the serial counters.
//!
//! `ver:3.0 server:<identifier> serial:<n> pool:<pool> poolserial:<n> eventname:<NAME> len:<len>\n`
//! followed by the payload.

use super::types::EventType;

/// A serial counter: 0, 1, 2 ... and back to 0 after Python's `sys.maxsize`, as `new_serial`.
/// One counts every event (the global serial, taken when a pool first accepts the event), and one
/// per pool counts what that pool accepted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Serial {
    next: u64,
}

impl Serial {
    pub fn new() -> Serial {
        Serial { next: 0 }
    }

    pub fn take(&mut self) -> u64 {
        let n = self.next;
        self.next = if n >= i64::MAX as u64 { 0 } else { n + 1 };
        n
    }
}

/// The length that goes in `len:`.
///
/// Quirk Q4, copied on purpose: Supervisor builds the envelope as a Python str and writes
/// `len(payload)`, which counts characters (code points), not bytes; the envelope is then encoded
/// as UTF-8. Python listeners (`childutils.listener.wait`) read stdin as text with
/// `read(len)`, so a byte count would make them wait for characters that never come whenever a
/// payload holds non-ASCII. Payloads built by `Event` are always valid UTF-8 (undecodable child
/// output is turned into `Undecodable: b'...'` first, as Supervisor does); should invalid bytes
/// get here anyway, each maximal invalid sequence counts as one character, as a lossy decode
/// would show it.
pub fn payload_len(payload: &[u8]) -> usize {
    String::from_utf8_lossy(payload).chars().count()
}

/// Header line plus payload, ready to be written to the listener's stdin.
pub fn envelope(
    identifier: &str,
    serial: u64,
    pool: &str,
    pool_serial: u64,
    kind: EventType,
    payload: &[u8],
) -> Vec<u8> {
    let header = format!(
        "ver:3.0 server:{identifier} serial:{serial} pool:{pool} poolserial:{pool_serial} eventname:{} len:{}\n",
        kind.name(),
        payload_len(payload)
    );
    let mut out = Vec::with_capacity(header.len() + payload.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::types::{Channel, Event};

    #[test]
    fn envelope_matches_supervisor_byte_for_byte() {
        // Captured from Supervisor 4.3.0 with identifier=myid.
        let e = Event::remote_communication("mytype", "hello data");
        assert_eq!(
            envelope("myid", 15, "lis", 15, e.kind, &e.payload),
            b"ver:3.0 server:myid serial:15 pool:lis poolserial:15 eventname:REMOTE_COMMUNICATION len:22\n\
              type:mytype\nhello data"
        );
        let e = Event::supervisor_running();
        assert_eq!(
            envelope("myid", 2, "lis", 2, e.kind, &e.payload),
            b"ver:3.0 server:myid serial:2 pool:lis poolserial:2 eventname:SUPERVISOR_STATE_CHANGE_RUNNING len:0\n"
        );
        let e = Event::tick(crate::events::EventType::Tick5, 1795798280);
        assert_eq!(
            envelope("myid", 14, "lis", 14, e.kind, &e.payload),
            b"ver:3.0 server:myid serial:14 pool:lis poolserial:14 eventname:TICK_5 len:15\nwhen:1795798280"
        );
    }

    #[test]
    fn len_counts_characters_not_bytes() {
        // Captured from Supervisor 4.3.0: 'captured é data' is 16 bytes but 15 characters.
        let e =
            Event::process_communication(Channel::Stdout, "emitter", "emitter", 11171, "captured é data".as_bytes());
        let mut want =
            b"ver:3.0 server:myid serial:8 pool:lis poolserial:8 eventname:PROCESS_COMMUNICATION_STDOUT len:63\n\
processname:emitter groupname:emitter pid:11171\n"
                .to_vec();
        want.extend_from_slice("captured é data".as_bytes());
        assert_eq!(envelope("myid", 8, "lis", 8, e.kind, &e.payload), want);
        assert_eq!(payload_len("h\u{e9}llo \u{20ac}".as_bytes()), 7);
        assert_eq!(payload_len(b"a\xffb"), 3);
    }

    #[test]
    fn serials_start_at_zero_and_wrap_after_maxsize() {
        let mut s = Serial::new();
        assert_eq!((s.take(), s.take(), s.take()), (0, 1, 2));
        let mut s = Serial { next: i64::MAX as u64 };
        assert_eq!((s.take(), s.take()), (i64::MAX as u64, 0));
    }
}
