#!/usr/bin/env python3
"""pcap_check.py: proves from a packet capture that a TCP port carried only TLS.

Reads a classic pcap file (tcpdump -w), reassembles each direction of every
TCP connection on PORT, and walks the TLS record layer: every record must
start with a content type 0x14-0x17 (change_cipher_spec, alert, handshake,
application_data) and version 0x03 0x0X. The client's first bytes must be a
handshake record (0x16 0x03), and MARKER (the page's text) must never appear
in any packet. Standard library only; importable (analyse()) and a command:

    pcap_check.py CAPTURE.pcap --port 8443 --marker 'secret page text'

exits 0 and prints a one-line summary when the capture holds only TLS,
1 with the reason otherwise (3 with --require-closed while the capture
does not yet hold every connection's end: FIN both ways, or a RST).
"""

import argparse
import ipaddress
import struct
import sys

CONTENT_TYPES = {0x14: "change_cipher_spec", 0x15: "alert",
                 0x16: "handshake", 0x17: "application_data"}
MAX_RECORD = (1 << 14) + 2048


class NotTLS(Exception):
    """The capture shows something other than TLS on the port."""


class Incomplete(NotTLS):
    """The capture does not (yet) hold a whole exchange on the port."""


def _packets(data):
    """Yields (link_type, packet bytes) for each record of a pcap file."""
    if len(data) < 24:
        raise NotTLS("capture is not a pcap file (%d bytes)" % len(data))
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise NotTLS("capture is not a classic pcap file (magic %s)" % magic.hex())
    link_type = struct.unpack(endian + "I", data[20:24])[0] & 0x0FFFFFFF
    off = 24
    while off + 16 <= len(data):
        incl_len = struct.unpack(endian + "I", data[off + 8:off + 12])[0]
        off += 16
        yield link_type, data[off:off + incl_len]
        off += incl_len


def _ip_packet(link_type, pkt):
    """Returns (ethertype-like protocol, network-layer bytes) or None."""
    if link_type == 1:  # Ethernet
        if len(pkt) < 14:
            return None
        proto = struct.unpack("!H", pkt[12:14])[0]
        body = pkt[14:]
        if proto == 0x8100 and len(body) >= 4:  # one VLAN tag
            proto = struct.unpack("!H", body[2:4])[0]
            body = body[4:]
        return proto, body
    if link_type == 113:  # Linux cooked (SLL)
        if len(pkt) < 16:
            return None
        return struct.unpack("!H", pkt[14:16])[0], pkt[16:]
    if link_type == 276:  # Linux cooked v2 (SLL2)
        if len(pkt) < 20:
            return None
        return struct.unpack("!H", pkt[0:2])[0], pkt[20:]
    if link_type in (12, 14, 101):  # raw IP
        if not pkt:
            return None
        return (0x0800 if pkt[0] >> 4 == 4 else 0x86DD), pkt
    raise NotTLS("unsupported capture link type %d" % link_type)


def _tcp_segments(data):
    """Yields (src, sport, dst, dport, seq, flags, payload) for TCP packets."""
    for link_type, pkt in _packets(data):
        ip = _ip_packet(link_type, pkt)
        if ip is None:
            continue
        proto, body = ip
        if proto == 0x0800 and len(body) >= 20 and body[9] == 6:
            ihl = (body[0] & 0x0F) * 4
            total = struct.unpack("!H", body[2:4])[0]
            src = str(ipaddress.IPv4Address(body[12:16]))
            dst = str(ipaddress.IPv4Address(body[16:20]))
            tcp = body[ihl:total]
        elif proto == 0x86DD and len(body) >= 40 and body[6] == 6:
            plen = struct.unpack("!H", body[4:6])[0]
            src = str(ipaddress.IPv6Address(body[8:24]))
            dst = str(ipaddress.IPv6Address(body[24:40]))
            tcp = body[40:40 + plen]
        else:
            continue
        if len(tcp) < 20:
            continue
        sport, dport, seq = struct.unpack("!HHI", tcp[0:8])
        doff = (tcp[12] >> 4) * 4
        flags = tcp[13]
        yield src, sport, dst, dport, seq, flags, bytes(tcp[doff:])


def _reassemble(segments):
    """Joins (seq, payload) pieces in sequence order, dropping retransmissions."""
    out = bytearray()
    next_seq = None
    for seq, payload in sorted(segments, key=lambda s: s[0]):
        if next_seq is None:
            next_seq = seq
        if seq + len(payload) <= next_seq:
            continue
        if seq > next_seq:
            raise Incomplete("capture misses %d bytes of a TCP stream" % (seq - next_seq))
        out += payload[next_seq - seq:]
        next_seq = seq + len(payload)
    return bytes(out)


def _walk_records(stream, label):
    """Returns the list of record content types of a TLS byte stream."""
    types = []
    off = 0
    while off < len(stream):
        hdr = stream[off:off + 5]
        if hdr[0] not in CONTENT_TYPES:
            raise NotTLS("%s: byte %d starts a record with content type 0x%02x, "
                         "not TLS (bytes %r)" % (label, off, hdr[0], stream[off:off + 16]))
        if len(hdr) < 5:
            break  # capture ended inside a record header
        if hdr[1] != 0x03 or hdr[2] > 0x04:
            raise NotTLS("%s: record at byte %d has version %02x %02x, not TLS"
                         % (label, off, hdr[1], hdr[2]))
        length = struct.unpack("!H", hdr[3:5])[0]
        if length > MAX_RECORD:
            raise NotTLS("%s: record at byte %d is %d bytes long, not TLS"
                         % (label, off, length))
        types.append(hdr[0])
        off += 5 + length
    return types


def analyse(data, port, marker=None):
    """Checks a pcap capture (bytes) for port |port|.

    Returns a summary dict: connections, records, first_client_bytes,
    payload_bytes. Raises NotTLS with the reason when anything but TLS
    crossed, or when |marker| appears in clear in any packet."""
    needle = None
    if marker:
        needle = marker.encode() if isinstance(marker, str) else marker
        if needle in data:
            raise NotTLS("the marker %r appears in clear in the capture" % marker)
    streams = {}
    fins = set()
    clients = set()
    order = []
    for src, sport, dst, dport, seq, flags, payload in _tcp_segments(data):
        if port not in (sport, dport):
            continue
        key = (src, sport, dst, dport)
        if flags & 0x02 and not flags & 0x10:  # SYN without ACK: the client
            clients.add(key)
        if flags & 0x01:
            fins.add(key)
        if flags & 0x04:  # a reset ends both directions
            fins.add(key)
            fins.add((dst, dport, src, sport))
        if payload:
            if key not in streams:
                streams[key] = []
                order.append(key)
            streams[key].append((seq, payload))
    if not streams:
        raise Incomplete("no TCP payload on port %d in the capture" % port)
    summary = {"connections": 0, "records": 0, "payload_bytes": 0,
               "first_client_bytes": None, "types": set()}
    conns = set()
    for key in order:
        src, sport, dst, dport = key
        reverse = (dst, dport, src, sport)
        if key in clients:
            is_client = True
        elif reverse in clients:
            is_client = False
        else:  # no SYN captured: the side that dials the port is the client
            is_client = dport == port
        stream = _reassemble(streams[key])
        if needle is not None and needle in stream:
            raise NotTLS("the marker %r appears in clear in a TCP stream" % marker)
        label = "%s %s:%d -> %s:%d" % ("client" if is_client else "server",
                                       src, sport, dst, dport)
        if is_client:
            conns.add(key)
            if stream[:2] != b"\x16\x03":
                raise NotTLS("%s: first bytes are %r, not a TLS handshake record"
                             % (label, stream[:8]))
            if summary["first_client_bytes"] is None:
                summary["first_client_bytes"] = stream[:3].hex(" ")
        types = _walk_records(stream, label)
        summary["records"] += len(types)
        summary["types"].update(CONTENT_TYPES[t] for t in types)
        summary["payload_bytes"] += len(stream)
    if not conns:
        raise Incomplete("no client-to-server payload on port %d in the capture" % port)
    summary["connections"] = len(conns)
    summary["closed"] = all(
        k in fins and (k[2], k[3], k[0], k[1]) in fins for k in conns)
    summary["types"] = sorted(summary["types"])
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capture")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--marker")
    parser.add_argument("--require-closed", action="store_true",
                        help="exit 3 until every connection has ended (FIN both ways or RST)")
    args = parser.parse_args(argv)
    try:
        with open(args.capture, "rb") as f:
            data = f.read()
        s = analyse(data, args.port, args.marker)
    except Incomplete as e:
        print("pcap_check: %s" % e)
        return 3 if args.require_closed else 1
    except (OSError, NotTLS) as e:
        print("pcap_check: %s" % e)
        return 1
    if args.require_closed and not s["closed"]:
        print("pcap_check: the capture does not show every connection closed yet")
        return 3
    print("%d connection(s), %d TLS records (%s), %d bytes, client's first bytes %s"
          % (s["connections"], s["records"], ", ".join(s["types"]),
             s["payload_bytes"], s["first_client_bytes"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
