"""MQTT 3.1.1 and 5 packet encoders and the load-generating worker processes.

Deliberately independent of the gateway's own codec: packets are encoded
here once, ahead of time, and incoming streams are only parsed as far as
the scenario needs (usually just the fixed header and remaining length).

At ``level`` 5 the traffic is what a typical MQTT 5 client sends: every
PUBLISH carries one user property (``USER_PROPERTY``), every subscription a
subscription identifier (1, as most clients number theirs), so a broker
delivers a subscription identifier and the user property with each message.

Every worker is a plain function meant to run in a forked
``multiprocessing`` process.  Workers report progress through shared
``RawArray`` counters that the parent samples at the start and end of the
measurement window, and put a final summary dict on a result queue.
"""

from __future__ import annotations

import resource
import selectors
import socket
import struct
import threading
import time
from typing import Any

PUBLISH = 0x30
PUBACK = 0x40
CONNACK = 0x20
SUBACK = 0x90
SUBSCRIPTION_ID = 0x0B  # MQTT 5 property identifiers
USER_PROP = 0x26
RECV_CHUNK = 1 << 18   # subscriber read size
NAP = 0.002            # subscriber pause after a small read, s


# --------------------------------------------------------------- encoders

def varint(n: int) -> bytes:
    """Encode an MQTT "remaining length" variable-byte integer."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8(s: str) -> bytes:
    """Length-prefixed UTF-8 string."""
    raw = s.encode()
    return struct.pack("!H", len(raw)) + raw


def packet(first: int, body: bytes) -> bytes:
    """Fixed header + body."""
    return bytes([first]) + varint(len(body)) + body


def properties(props: bytes) -> bytes:
    """An MQTT 5 property block: its length, then the properties."""
    return varint(len(props)) + props


USER_PROPERTY = bytes([USER_PROP]) + utf8("origin") + utf8("bench")


def connect(client_id: str, keepalive: int = 60, clean: bool = True, level: int = 4) -> bytes:
    """CONNECT at protocol ``level`` 4 or 5 (no properties), no will/username/password."""
    var = utf8("MQTT") + bytes([level, 0x02 if clean else 0]) + struct.pack("!H", keepalive)
    if level == 5:
        var += properties(b"")
    return packet(0x10, var + utf8(client_id))


def subscribe(packet_id: int, filters: list[tuple[str, int]], level: int = 4) -> bytes:
    """SUBSCRIBE with one or more (filter, qos) pairs; at level 5 with
    subscription identifier 1."""
    body = struct.pack("!H", packet_id)
    if level == 5:
        body += properties(bytes([SUBSCRIPTION_ID]) + varint(1))
    body += b"".join(utf8(f) + bytes([q]) for f, q in filters)
    return packet(0x82, body)


def publish(topic: str, payload: bytes, qos: int = 0, packet_id: int = 0,
            level: int = 4) -> bytes:
    """PUBLISH; packet_id is only encoded for qos > 0; at level 5 with
    ``USER_PROPERTY``."""
    var = utf8(topic) + (struct.pack("!H", packet_id) if qos else b"")
    if level == 5:
        var += properties(USER_PROPERTY)
    return packet(PUBLISH | (qos << 1), var + payload)


def puback(packet_id: int) -> bytes:
    """PUBACK."""
    return b"\x40\x02" + struct.pack("!H", packet_id)


# ---------------------------------------------------------------- parsing

def count_publishes(buf: bytearray) -> tuple[int, int]:
    """Count complete PUBLISH packets at the start of ``buf``.

    Returns (publish count, bytes consumed by complete packets).  Only the
    fixed header and remaining length are looked at.
    """
    n = len(buf)
    pos = count = 0
    while pos + 2 <= n:
        rl = buf[pos + 1]
        if rl < 128:
            end = pos + 2 + rl
        else:
            rl, hdr = _long_length(buf, pos + 1)
            if hdr < 0:
                break
            end = pos + 1 + hdr + rl
        if end > n:
            break
        if buf[pos] & 0xF0 == PUBLISH:
            count += 1
        pos = end
    return count, pos


def _long_length(buf: bytearray, start: int) -> tuple[int, int]:
    """Decode a multi-byte remaining length; (value, bytes used) or (0, -1)."""
    value = shift = 0
    for i in range(4):
        if start + i >= len(buf):
            return 0, -1
        b = buf[start + i]
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i + 1
    raise ValueError("malformed remaining length")


def split_packets(buf: bytearray) -> list[tuple[int, bytes]]:
    """Complete MQTT packets at the start of ``buf`` (removed from it)."""
    out = []
    pos = 0
    n = len(buf)
    while pos + 2 <= n:
        length = shift = 0
        i = pos + 1
        while i < n:
            b = buf[i]
            length |= (b & 0x7F) << shift
            shift += 7
            i += 1
            if not b & 0x80:
                break
        else:
            break
        if i + length > n:
            break
        out.append((buf[pos], bytes(buf[i : i + length])))
        pos = i + length
    del buf[:pos]
    return out


def recv_exact(sock: socket.socket, n: int) -> bytes:
    """Read exactly n bytes or raise ConnectionError."""
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        data += chunk
    return bytes(data)


def read_packet(sock: socket.socket) -> tuple[int, bytes]:
    """Blocking read of one whole packet (used during handshakes only)."""
    first = recv_exact(sock, 1)[0]
    length = shift = 0
    while True:
        b = recv_exact(sock, 1)[0]
        length |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return first, recv_exact(sock, length)


def session(host: str, port: int, client_id: str, keepalive: int = 60,
            subs: list[tuple[str, int]] | None = None,
            timeout: float = 10.0, level: int = 4) -> socket.socket:
    """Connect, check CONNACK, optionally subscribe and check SUBACK."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(connect(client_id, keepalive, level=level))
    first, body = read_packet(sock)
    if first != CONNACK or len(body) < 2 or body[1] != 0 or (level == 4 and len(body) != 2):
        refused = f" (level {level} refused)" if first == CONNACK and body[1:2] in (
            b"\x01", b"\x84") else ""
        raise ConnectionError(f"{client_id}: bad CONNACK {first:#x} {body!r}{refused}")
    if subs:
        sock.sendall(subscribe(1, subs, level))
        first, body = read_packet(sock)
        codes = body[2:]
        if level == 5:
            plen, used = _long_length(bytearray(body), 2)
            codes = body[2 + used + plen:]
        if first != SUBACK or any(q >= 0x80 for q in codes):
            raise ConnectionError(f"{client_id}: SUBSCRIBE refused {first:#x} {body!r}")
    sock.settimeout(None)
    return sock


def raise_nofile() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; return it."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _fail(results: Any, barrier: Any, who: str, exc: BaseException) -> None:
    results.put({"who": who, "error": f"{type(exc).__name__}: {exc}"})
    barrier.abort()


def _go(barrier: Any) -> bool:
    """Wait at the start barrier; False if another worker failed."""
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        return False
    return True


# ---------------------------------------------------------------- workers

def publisher(host: str, port: int, slot: int, topic: str, payload_len: int,
              batch: int, barrier: Any, stop: Any, sent: Any, results: Any,
              level: int = 4) -> None:
    """QoS 0 publisher: write ``batch`` pre-encoded PUBLISHes per sendall
    until ``stop`` is set; only TCP backpressure throttles it."""
    try:
        sock = session(host, port, f"bench-pub-{slot}", level=level)
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        _fail(results, barrier, f"publisher {slot}", exc)
        return
    data = publish(topic, b"x" * payload_len, level=level) * batch
    if not _go(barrier):
        return
    try:
        while not stop.is_set():
            sock.sendall(data)
            sent[slot] += batch
    except OSError as exc:
        results.put({"who": f"publisher {slot}", "error": str(exc)})
        return
    sock.close()
    results.put({"who": f"publisher {slot}", "sent": sent[slot]})


def paced_publisher(host: str, port: int, slot: int, topic: str, payload_len: int,
                    rate: float, barrier: Any, stop: Any, sent: Any, results: Any,
                    level: int = 4) -> None:
    """QoS 0 publisher at ``rate`` messages/s, one PUBLISH per send: the load of
    a sensor network trickling in, where the broker's cost per wake-up shows.
    A late wake-up sends what is due at once, so the average rate holds."""
    try:
        sock = session(host, port, f"bench-paced-{slot}", level=level)
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        _fail(results, barrier, f"paced publisher {slot}", exc)
        return
    data = publish(topic, b"x" * payload_len, level=level)
    if not _go(barrier):
        return
    period = 1.0 / rate
    start = time.monotonic()
    count = 0
    try:
        while not stop.is_set():
            due = int((time.monotonic() - start) * rate) + 1 - count
            if due > 0:
                sock.sendall(data * due)
                count += due
                sent[slot] = count
            time.sleep(max(0.0, start + count * period - time.monotonic()))
    except OSError as exc:
        results.put({"who": f"paced publisher {slot}", "error": str(exc)})
        return
    sock.close()
    results.put({"who": f"paced publisher {slot}", "sent": count})


def subscriber(host: str, port: int, slots: list[int], topic_filter: str,
               barrier: Any, stop: Any, received: Any, results: Any,
               level: int = 4) -> None:
    """QoS 0 subscriber(s): one session per slot, count PUBLISH packets."""
    try:
        socks = [session(host, port, f"bench-sub-{s}", subs=[(topic_filter, 0)],
                         level=level) for s in slots]
    except Exception as exc:  # noqa: BLE001
        _fail(results, barrier, f"subscriber {slots}", exc)
        return
    sel = selectors.DefaultSelector()
    for slot, sock in zip(slots, socks):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ, (slot, bytearray()))
    if not _go(barrier):
        return
    error = None
    while not stop.is_set():
        got = 0
        for key, _ in sel.select(0.2):
            slot, buf = key.data
            try:
                data = key.fileobj.recv(RECV_CHUNK)  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            except OSError as exc:
                data, error = b"", f"subscriber {slot}: {exc}"
            got += len(data)
            if not data:
                error = error or f"subscriber {slot}: broker closed the connection"
                sel.unregister(key.fileobj)
                continue
            buf += data
            n, used = count_publishes(buf)
            del buf[:used]
            received[slot] += n
        if got < RECV_CHUNK // 4:
            # Little data per wake-up: let more pile up in the kernel buffer
            # instead of paying a select+recv per packet or two.
            time.sleep(NAP)
    for sock in socks:
        sock.close()
    results.put({"who": f"subscriber {slots}", "error": error} if error
                else {"who": f"subscriber {slots}"})


def roundtrip(host: str, port: int, window: int, payload_len: int, quickack: bool,
              barrier: Any, stop: Any, measuring: Any, counters: Any,
              results: Any, level: int = 4) -> None:
    """QoS 1 pipelined round trip on one session subscribed to its own topic.

    Keeps ``window`` messages between PUBLISH sent and PUBLISH delivered;
    every delivery is PUBACKed.  The payload carries a sequence number.
    With ``quickack`` the client ACKs at once (TCP_QUICKACK) any segment it
    has nothing to answer with, so a broker that leaves Nagle on is not
    stalled by the client's 40 ms delayed ACK.
    counters[0] = delivered, counters[1] = sent.  Latencies are collected
    only while ``measuring.value`` is non-zero.  At level 5 the properties of
    each delivery (length first) are skipped to reach the sequence number.
    """
    topic = "bench/rt"
    try:
        sock = session(host, port, "bench-rt", subs=[(topic, 1)], level=level)
    except Exception as exc:  # noqa: BLE001
        _fail(results, barrier, "qos1 client", exc)
        return
    payload_len = max(payload_len, 8)
    template = bytearray(publish(topic, b"\0" * payload_len, qos=1, packet_id=1,
                                 level=level))
    v5 = level == 5
    props = len(properties(USER_PROPERTY)) if v5 else 0
    pid_off = len(template) - payload_len - props - 2
    seq_off = len(template) - payload_len
    sent_at: dict[int, float] = {}
    latencies: list[float] = []
    out = bytearray()
    seq = delivered = acked = dups = reorder = 0
    last = -1
    buf = bytearray()
    fresh: list[int] = []
    sock.settimeout(0.2)
    if not _go(barrier):
        return
    deadline = None
    try:
        while True:
            if deadline is None and stop.is_set():
                deadline = time.monotonic() + 5.0      # stop sending, drain
            if deadline is None:
                while len(sent_at) + len(fresh) < window:
                    struct.pack_into("!H", template, pid_off, seq % 65535 + 1)
                    struct.pack_into("!Q", template, seq_off, seq)
                    out += template
                    fresh.append(seq)
                    seq += 1
            elif (not sent_at and acked >= seq) or time.monotonic() > deadline:
                break
            if out:
                now = time.perf_counter()
                for n in fresh:
                    sent_at[n] = now
                fresh.clear()
                sock.sendall(out)
                out.clear()
                counters[1] = seq
            try:
                data = sock.recv(1 << 16)
            except socket.timeout:
                continue
            now = time.perf_counter()
            if not data:
                raise ConnectionError("broker closed the connection")
            buf += data
            pos, n_buf = 0, len(buf)
            while pos + 2 <= n_buf:
                rl = buf[pos + 1]
                if rl < 128:
                    start = pos + 2
                else:
                    rl, used = _long_length(buf, pos + 1)
                    if used < 0:
                        break
                    start = pos + 1 + used
                end = start + rl
                if end > n_buf:
                    break
                first = buf[pos]
                pos = end
                kind = first & 0xF0
                if kind == PUBACK:
                    acked += 1
                    continue
                if kind != PUBLISH:
                    continue
                p = start + 2 + (buf[start] << 8 | buf[start + 1])
                if first & 0x06:
                    out += b"\x40\x02"
                    out += buf[p:p + 2]
                    p += 2
                if v5:
                    plen = buf[p]
                    if plen < 128:
                        p += 1 + plen
                    else:
                        plen, used = _long_length(buf, p)
                        p += used + plen
                n = int.from_bytes(buf[p:p + 8], "big")
                t = sent_at.pop(n, None)
                if t is None:
                    dups += 1
                    continue
                if n < last:
                    reorder += 1
                last = n
                delivered += 1
                if measuring.value:
                    latencies.append(now - t)
            del buf[:pos]
            counters[0] = delivered
            if quickack and not out and len(sent_at) >= window:
                # Nothing to send back (no PUBACK, no new PUBLISH) would
                # leave this segment to the delayed-ACK timer: ACK it now.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    except OSError as exc:
        results.put({"who": "qos1 client", "error": str(exc)})
        return
    finally:
        counters[0] = delivered
    if out:
        sock.sendall(out)
    sock.close()
    results.put({"who": "qos1 client", "sent": seq, "delivered": delivered,
                 "acked": acked, "dups": dups, "reordered": reorder,
                 "lost": len(sent_at), "latencies": latencies})


def idle(host: str, port: int, slot: int, count: int, window: int,
         barrier: Any, release: Any, connected: Any, results: Any) -> None:
    """Open ``count`` idle sessions (keepalive 600) in batches of ``window``:
    connect + CONNECT for a batch, then collect its CONNACKs.  Reports the
    slowest connect-to-CONNACK time (>= 1 s means a dropped SYN, i.e. the
    broker's listen backlog overflowed)."""
    raise_nofile()
    socks: list[socket.socket] = []
    if not _go(barrier):
        return
    t0 = time.monotonic()
    slowest = 0.0
    try:
        for start in range(0, count, window):
            batch = []
            for i in range(start, min(start + window, count)):
                began = time.monotonic()
                sock = socket.create_connection((host, port), timeout=30)
                sock.sendall(connect(f"bench-idle-{slot}-{i}", keepalive=600))
                batch.append((began, sock))
            for began, sock in batch:
                head = recv_exact(sock, 4)
                if head[0] != CONNACK or head[3] != 0:
                    raise ConnectionError(f"bad CONNACK {head!r}")
                slowest = max(slowest, time.monotonic() - began)
                connected[slot] += 1
                socks.append(sock)
    except OSError as exc:
        results.put({"who": f"idle {slot}", "error": f"after {len(socks)}: {exc}"})
        release.wait()
        return
    t1 = time.monotonic()
    results.put({"who": f"idle {slot}", "t0": t0, "t1": t1, "slowest": slowest})
    release.wait()
    for sock in socks:
        sock.close()
