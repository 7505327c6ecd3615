"""Reader of Mosquitto's persistence file (``mosquitto.db``).

A user replacing Mosquitto keeps its retained messages, persistent sessions,
subscriptions and queued messages: ``read_mosquitto_db(path_or_bytes)`` turns the file
into plain dataclasses, and the persistence layer imports those into the hub. No I/O
beyond reading the file, no protocol or hub imports. Any problem with the file is a
``StoreError`` naming the file and what is wrong, so startup stops rather than
silently starting without the user's state.

The layout (Mosquitto's ``src/persist*.c``): a 15-byte magic, a CRC field Mosquitto
always leaves at zero, a big-endian format version, then chunks.

* Versions 5 (Mosquitto 1.6.0 to 1.6.10) and 6 (1.6.11 on, 2.0): chunk header ``u32
  type, u32 length``, big-endian. Each body starts with a C struct written as is, so database ids
  and times are in the writing host's byte order (little-endian: x86 and ARM, the only
  hosts this reader knows) and the structs carry padding. Message chunks end with an
  MQTT 5 property block.
* Versions 2 to 4 (Mosquitto 1.5.x and older; 1.5.6 wrote 4): chunk header ``u16 type, u32 length``,
  fields written one at a time, strings with a u16 length.

As in Mosquitto, chunks of unknown type are skipped (listed in ``unknown_chunks``) and
references to a missing stored message are dropped (Mosquitto's "probably expired"
case), here counted. Mosquitto reads field by field and treats a short chunk header as
the end of the file; this reader insists that every chunk fits its declared length and
that the file ends on a chunk boundary, since a cut file would lose state silently.
"""

from __future__ import annotations

import os
import struct
from typing import Any, Callable

from gateway.errors import StoreError
from gateway.store.mosquitto_records import (
    ChunkType,
    ClientMessage,
    ClientRecord,
    CONTENT_TYPE,
    CORRELATION_DATA,
    DbConfig,
    Delivery,
    Direction,
    MESSAGE_EXPIRY_INTERVAL,
    MessageState,
    MosquittoState,
    NEVER_EXPIRES,
    PAYLOAD_FORMAT_INDICATOR,
    Properties,
    properties_dict,
    REPEATABLE,
    RESPONSE_TOPIC,
    Session,
    StoredMessage,
    Subscription,
    SUBSCRIPTION_IDENTIFIER,
    TOPIC_ALIAS,
    USER_PROPERTY,
)

__all__ = [
    "ChunkType",
    "ClientMessage",
    "ClientRecord",
    "CONTENT_TYPE",
    "CORRELATION_DATA",
    "DbConfig",
    "Delivery",
    "Direction",
    "MAGIC",
    "MESSAGE_EXPIRY_INTERVAL",
    "MessageState",
    "MosquittoState",
    "NEVER_EXPIRES",
    "PAYLOAD_FORMAT_INDICATOR",
    "Properties",
    "properties_dict",
    "read_mosquitto_db",
    "REPEATABLE",
    "RESPONSE_TOPIC",
    "Session",
    "StoredMessage",
    "StoreError",
    "Subscription",
    "SUBSCRIPTION_IDENTIFIER",
    "SUPPORTED_VERSIONS",
    "TOPIC_ALIAS",
    "USER_PROPERTY",
]

MAGIC = b"\x00\xb5\x00mosquitto db"
SUPPORTED_VERSIONS = (2, 3, 4, 5, 6)
MAX_PAYLOAD = 268_435_455  # the largest payload MQTT can carry, as Mosquitto checks


# --- parsing --------------------------------------------------------------------------


class _Corrupt(Exception):
    """A chunk's content is wrong; the reader adds where."""


_U8 = struct.Struct("B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_ID = struct.Struct("<Q")  # dbid_t, host order
_TIME = struct.Struct("<q")  # int64_t / time_t, host order
_TIME32 = struct.Struct("<i")  # time_t of a 32-bit host (versions 3 and 4)
_HEADER_V56 = struct.Struct(">II")
_HEADER_V234 = struct.Struct(">HI")
_CFG_V56 = struct.Struct("<QBB")  # PF_cfg; 16 bytes with padding (12 on 32-bit x86)
_CFG_V234 = struct.Struct("<BBQ")
_MSG_STORE_IDS = struct.Struct("<Qq")  # PF_msg_store: store_id, expiry_time
_MSG_STORE_REST = struct.Struct(">IHHHHHBB")  # ... payloadlen .. qos, retain
_CLIENT_MSG_V56 = struct.Struct("<Q")  # PF_client_msg: store_id, then big-endian fields
_CLIENT_MSG_REST = struct.Struct(">HHBBBB")  # mid, id_len, qos, state, retain_dup, direction
_CLIENT_V5 = struct.Struct("<q")  # PF_client: session_expiry_time, then big-endian fields
_CLIENT_V5_REST = struct.Struct(">IHH")  # session_expiry_interval, last_mid, id_len
_CLIENT_V6_TAIL = struct.Struct(">HH")  # listener_port, username_len
_SUB_V56 = struct.Struct(">IHHBBxx")  # PF_sub, padded to 12 bytes
_QOS_RETAIN_V234 = struct.Struct("BB")
_STATES = tuple(MessageState)  # by value: 0 to 11, no gaps
_DIRECTIONS = tuple(Direction)
_FLAGS_V234 = struct.Struct("5B")  # qos, retain, direction, state, dup


class _Cursor:
    """Reads the fields of one chunk body; nothing may run past its end."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data = data
        self.pos = pos
        self.end = end

    @property
    def left(self) -> int:
        return self.end - self.pos

    def unpack(self, st: struct.Struct, what: str) -> tuple:
        if self.end - self.pos < st.size:
            raise _Corrupt(f"{what} overruns the chunk")
        values = st.unpack_from(self.data, self.pos)
        self.pos += st.size
        return values

    def take(self, n: int, what: str) -> bytes:
        if self.end - self.pos < n:
            raise _Corrupt(f"{what} ({n} bytes) overruns the chunk")
        start = self.pos
        self.pos += n
        return self.data[start : self.pos]

    def text(self, n: int, what: str) -> str:
        return _decode(self.take(n, what), what)

    def text16(self, what: str) -> str:
        """A string with a two-byte length, as versions 2 to 4 write them."""
        (n,) = self.unpack(_U16, f"length of {what}")
        return self.text(n, what)

    def varint(self, what: str) -> int:
        value = 0
        for shift in (0, 7, 14, 21):
            (byte,) = self.unpack(_U8, what)
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise _Corrupt(f"{what} is longer than four bytes")

    def done(self, what: str) -> None:
        if self.pos != self.end:
            raise _Corrupt(f"{self.end - self.pos} unexpected bytes after the {what}")


def _decode(raw: bytes, what: str) -> str:
    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _Corrupt(f"{what} is not valid UTF-8") from None
    if "\x00" in s:
        raise _Corrupt(f"{what} contains a NUL character")
    return s


def _stale_username(raw: bytes, length: int) -> bool:
    """Mosquitto before 2.0.16 saved a client without a username with the previous
    client's username, its length byte-swapped, and heap bytes after it: a NUL right
    after a name whose swapped length is the one written gives it away."""
    cut = raw.find(b"\0")
    return cut > 0 and ((cut & 0xFF) << 8 | cut >> 8) == length


def _prop_str(cur: _Cursor, what: str) -> str:
    return cur.text16(what)


def _prop_bin(cur: _Cursor, what: str) -> bytes:
    (n,) = cur.unpack(_U16, f"length of {what}")
    return cur.take(n, what)


def _prop_pair(cur: _Cursor, what: str) -> tuple[str, str]:
    return cur.text16(f"{what} name"), cur.text16(f"{what} value")


_PROPERTY_READERS: dict[int, tuple[str, Callable[[_Cursor, str], Any]]] = {
    PAYLOAD_FORMAT_INDICATOR: ("payload format indicator", lambda c, w: c.unpack(_U8, w)[0]),
    MESSAGE_EXPIRY_INTERVAL: ("message expiry interval", lambda c, w: c.unpack(_U32, w)[0]),
    CONTENT_TYPE: ("content type", _prop_str),
    RESPONSE_TOPIC: ("response topic", _prop_str),
    CORRELATION_DATA: ("correlation data", _prop_bin),
    SUBSCRIPTION_IDENTIFIER: ("subscription identifier", lambda c, w: c.varint(w)),
    TOPIC_ALIAS: ("topic alias", lambda c, w: c.unpack(_U16, w)[0]),
    USER_PROPERTY: ("user property", _prop_pair),
}


def _properties(cur: _Cursor) -> Properties:
    """The MQTT 5 property block that fills the rest of a version 5/6 message chunk."""
    if not cur.left:
        return ()
    size = cur.varint("property length")
    if size != cur.left:
        raise _Corrupt(f"property length {size} does not match the {cur.left} bytes left")
    pairs: list[tuple[int, Any]] = []
    seen: set[int] = set()
    while cur.left:
        ident = cur.varint("property identifier")
        spec = _PROPERTY_READERS.get(ident)
        if spec is None:
            raise _Corrupt(f"property {ident:#04x} is not a PUBLISH property")
        name, read = spec
        if ident in seen and ident not in REPEATABLE:
            raise _Corrupt(f"{name} property given twice")
        seen.add(ident)
        pairs.append((ident, read(cur, name)))
    return tuple(pairs)


def _check_qos(qos: int) -> int:
    if qos > 2:
        raise _Corrupt(f"QoS {qos} (not 0, 1 or 2)")
    return qos


def _check_flag(value: int, what: str) -> bool:
    if value > 1:
        raise _Corrupt(f"{what} flag {value} (not 0 or 1)")
    return bool(value)


def _check_topic(topic: str) -> str:
    if "+" in topic or "#" in topic:
        raise _Corrupt(f"wildcard in the topic {topic!r}")
    return topic


class _Parser:
    def __init__(self, data: bytes, path: str) -> None:
        self.data = data
        self.path = path
        self.version = 0
        self.config: DbConfig | None = None
        self.messages: dict[int, StoredMessage] = {}
        self.retained_ids: list[int] = []
        self.clients: list[ClientRecord] = []
        self.client_messages: list[ClientMessage] = []
        self.subscriptions: list[Subscription] = []
        self.unknown: list[tuple[int, int]] = []
        self.dropped_clients = 0

    def fail(self, reason: str) -> StoreError:
        return StoreError(reason, self.path)

    def parse(self) -> MosquittoState:
        data = self.data
        if not data:
            raise self.fail(
                "empty file, not a Mosquitto database (Mosquitto ignores an empty file; "
                "remove it to start without Mosquitto's state)"
            )
        if data[: len(MAGIC)] != MAGIC:
            if MAGIC.startswith(data):
                raise self.fail(f"truncated: {len(data)} bytes, shorter than the file header")
            start = data[: len(MAGIC)]
            raise self.fail(f"not a Mosquitto persistence file (bad magic: starts {start!r})")
        header = len(MAGIC) + 8  # magic, CRC (always 0), version
        if len(data) < header:
            raise self.fail(f"truncated: {len(data)} bytes, shorter than the file header")
        (version,) = _U32.unpack_from(data, len(MAGIC) + 4)
        if version > max(SUPPORTED_VERSIONS):
            raise self.fail(
                f"database format version {version} is newer than this reader knows "
                "(it reads versions 2 to 6, written by Mosquitto 1.x and 2.0)"
            )
        if version not in SUPPORTED_VERSIONS:
            raise self.fail(
                f"unsupported database format version {version} (this reader reads versions 2 to 6)"
            )
        self.version = version
        self._chunks(header)
        return self._resolve()

    def _chunks(self, pos: int) -> None:
        data, size = self.data, len(self.data)
        header = _HEADER_V56 if self.version >= 5 else _HEADER_V234
        handlers = self._handlers()
        while pos < size:
            if size - pos < header.size:
                raise self.fail(
                    f"truncated: {size - pos} bytes at offset {pos} are too few for a chunk header"
                )
            ctype, length = header.unpack_from(data, pos)
            body = pos + header.size
            if length > size - body:
                raise self.fail(
                    f"{_chunk_name(ctype)} chunk at offset {pos} declares {length} bytes but only "
                    f"{size - body} remain (the file is truncated or the length is corrupt)"
                )
            handler = handlers.get(ctype)
            if handler is None:
                self.unknown.append((ctype, pos))  # Mosquitto warns and skips it too
            else:
                try:
                    handler(_Cursor(data, body, body + length))
                except _Corrupt as e:
                    raise self.fail(f"{_chunk_name(ctype)} chunk at offset {pos}: {e}") from None
            pos = body + length

    def _handlers(self) -> dict[int, Callable[[_Cursor], None]]:
        if self.version >= 5:
            return {
                ChunkType.CONFIG: self._config_v56,
                ChunkType.MESSAGE_STORE: self._message_v56,
                ChunkType.CLIENT_MESSAGE: self._client_message_v56,
                ChunkType.RETAIN: self._retain,
                ChunkType.SUBSCRIPTION: self._subscription_v56,
                ChunkType.CLIENT: self._client_v56,
            }
        return {
            ChunkType.CONFIG: self._config_v234,
            ChunkType.MESSAGE_STORE: self._message_v234,
            ChunkType.CLIENT_MESSAGE: self._client_message_v234,
            ChunkType.RETAIN: self._retain,
            ChunkType.SUBSCRIPTION: self._subscription_v234,
            ChunkType.CLIENT: self._client_v234,
        }

    # --- chunks, versions 5 and 6 -----------------------------------------------------

    def _config_v56(self, cur: _Cursor) -> None:
        if cur.left not in (12, 16):
            raise _Corrupt(f"{cur.left} bytes, expected 16")
        last_db_id, shutdown, dbid_size = cur.unpack(_CFG_V56, "config")
        self._set_config(last_db_id, shutdown, dbid_size)

    def _message_v56(self, cur: _Cursor) -> None:
        store_id, expiry_time = cur.unpack(_MSG_STORE_IDS, "message header")
        payload_len, source_mid, id_len, username_len, topic_len, port, qos, retain = cur.unpack(
            _MSG_STORE_REST, "message header"
        )
        if payload_len > MAX_PAYLOAD:
            raise _Corrupt(f"payload length {payload_len} exceeds MQTT's maximum")
        source_id = cur.text(id_len, "source client id") if id_len else None
        username = cur.text(username_len, "source username") if username_len else None
        topic = _check_topic(cur.text(topic_len, "topic"))
        payload = cur.take(payload_len, "payload")
        self._add_message(
            StoredMessage(
                store_id,
                topic,
                payload,
                _check_qos(qos),
                _check_flag(retain, "retain"),
                expiry_time,
                source_id,
                username,
                source_mid,
                port,
                _properties(cur),
            )
        )

    def _client_message_v56(self, cur: _Cursor) -> None:
        (store_id,) = cur.unpack(_CLIENT_MSG_V56, "client message header")
        mid, id_len, qos, state, retain_dup, direction = cur.unpack(
            _CLIENT_MSG_REST, "client message header"
        )
        client_id = cur.text(id_len, "client id")
        retain, dup = retain_dup >> 4, retain_dup & 0x0F
        self._add_client_message(
            client_id, store_id, mid, qos, direction, state, retain, dup, _properties(cur)
        )

    def _retain(self, cur: _Cursor) -> None:
        (store_id,) = cur.unpack(_ID, "store id")
        cur.done("store id")
        self.retained_ids.append(store_id)

    def _subscription_v56(self, cur: _Cursor) -> None:
        identifier, id_len, topic_len, qos, options = cur.unpack(_SUB_V56, "subscription header")
        client_id = cur.text(id_len, "client id")
        topic_filter = cur.text(topic_len, "topic filter")
        cur.done("topic filter")
        self._add_subscription(client_id, topic_filter, qos, options, identifier)

    def _client_v56(self, cur: _Cursor) -> None:
        (expiry_time,) = cur.unpack(_CLIENT_V5, "client header")
        interval, last_mid, id_len = cur.unpack(_CLIENT_V5_REST, "client header")
        port, username_len = 0, 0
        if self.version == 6:
            port, username_len = cur.unpack(_CLIENT_V6_TAIL, "client header")
            # PF_client is padded to 24 bytes, except on 32-bit x86 (20 bytes).
            padding = cur.left - id_len - username_len
            if padding not in (0, 4):
                raise _Corrupt("length does not match the client id and username lengths")
            cur.take(padding, "client header padding")
        client_id = cur.text(id_len, "client id")
        username = None
        if username_len:
            raw = cur.take(username_len, "username")
            if not _stale_username(raw, username_len):
                username = _decode(raw, "username")
        cur.done("client")
        self._add_client(ClientRecord(client_id, expiry_time, interval, last_mid, port, username))

    # --- chunks, versions 2 to 4 ------------------------------------------------------

    def _config_v234(self, cur: _Cursor) -> None:
        shutdown, dbid_size, last_db_id = cur.unpack(_CFG_V234, "config")
        cur.done("config")
        self._set_config(last_db_id, shutdown, dbid_size)

    def _message_v234(self, cur: _Cursor) -> None:
        (store_id,) = cur.unpack(_ID, "store id")
        source_id = cur.text16("source client id") or None
        username, port = None, 0
        if self.version == 4:
            username = cur.text16("source username") or None
            (port,) = cur.unpack(_U16, "source port")
        (source_mid,) = cur.unpack(_U16, "source mid")
        cur.unpack(_U16, "mid")  # the broker's own mid, unused since version 3
        topic = _check_topic(cur.text16("topic"))
        qos, retain = cur.unpack(_QOS_RETAIN_V234, "QoS and retain")
        (payload_len,) = cur.unpack(_U32, "payload length")
        payload = cur.take(payload_len, "payload")
        cur.done("payload")
        self._add_message(
            StoredMessage(
                store_id,
                topic,
                payload,
                _check_qos(qos),
                _check_flag(retain, "retain"),
                0,
                source_id,
                username,
                source_mid,
                port,
            )
        )

    def _client_message_v234(self, cur: _Cursor) -> None:
        client_id = cur.text16("client id")
        (store_id,) = cur.unpack(_ID, "store id")
        (mid,) = cur.unpack(_U16, "mid")
        qos, retain, direction, state, dup = cur.unpack(_FLAGS_V234, "flags")
        cur.done("flags")
        self._add_client_message(client_id, store_id, mid, qos, direction, state, retain, dup, ())

    def _subscription_v234(self, cur: _Cursor) -> None:
        client_id = cur.text16("client id")
        topic_filter = cur.text16("topic filter")
        (qos,) = cur.unpack(_U8, "QoS")
        cur.done("QoS")
        self._add_subscription(client_id, topic_filter, qos, 0, 0)

    def _client_v234(self, cur: _Cursor) -> None:
        client_id = cur.text16("client id")
        (last_mid,) = cur.unpack(_U16, "last mid")
        disconnect_time = None
        if self.version >= 3:  # time_t: 8 bytes, or 4 from a 32-bit host
            st = _TIME32 if cur.left == 4 else _TIME
            (disconnect_time,) = cur.unpack(st, "disconnect time")
        cur.done("client")
        record = ClientRecord(client_id, 0, NEVER_EXPIRES, last_mid, 0, None, disconnect_time)
        self._add_client(record)

    # --- shared checks ----------------------------------------------------------------

    def _set_config(self, last_db_id: int, shutdown: int, dbid_size: int) -> None:
        if dbid_size != 8:
            raise _Corrupt(f"database ids of {dbid_size} bytes, expected 8")
        self.config = DbConfig(last_db_id, _check_flag(shutdown, "shutdown"))

    def _add_message(self, message: StoredMessage) -> None:
        if message.store_id in self.messages:
            raise _Corrupt(f"store id {message.store_id} used twice")
        self.messages[message.store_id] = message

    def _add_client_message(
        self,
        client_id: str,
        store_id: int,
        mid: int,
        qos: int,
        direction: int,
        state: int,
        retain: int,
        dup: int,
        properties: Properties,
    ) -> None:
        if direction > 1:
            raise _Corrupt(f"direction {direction}")
        if state >= len(_STATES):
            raise _Corrupt(f"message state {state}")
        self.client_messages.append(
            ClientMessage(
                client_id,
                store_id,
                mid,
                _check_qos(qos),
                _DIRECTIONS[direction],
                _STATES[state],
                _check_flag(retain, "retain"),
                _check_flag(dup, "dup"),
                properties,
            )
        )

    def _add_subscription(
        self, client_id: str, topic_filter: str, qos: int, options: int, identifier: int
    ) -> None:
        if not client_id or not topic_filter:
            raise _Corrupt("subscription without a client id or topic filter")
        sub = Subscription(client_id, topic_filter, _check_qos(qos), options, identifier)
        self.subscriptions.append(sub)

    def _add_client(self, record: ClientRecord) -> None:
        if record.client_id:
            self.clients.append(record)
        else:
            self.dropped_clients += 1  # Mosquitto: "Empty client entry found"

    # --- joining references -----------------------------------------------------------

    def _resolve(self) -> MosquittoState:
        messages = self.messages
        retained: list[StoredMessage] = []
        dropped_retained = 0
        for store_id in self.retained_ids:
            message = messages.get(store_id)
            if message is None or not message.topic:
                dropped_retained += 1
            else:
                retained.append(message)

        records: dict[str, ClientRecord] = {}
        for record in self.clients:
            records[record.client_id] = _merge_client(records.get(record.client_id), record)
        outgoing: dict[str, list[Delivery]] = {}
        incoming: dict[str, list[Delivery]] = {}
        dropped_client_messages = 0
        for cmsg in self.client_messages:
            message = messages.get(cmsg.store_id)
            if message is None or not message.topic or not cmsg.client_id:
                dropped_client_messages += 1
                continue
            ids = tuple(v for k, v in cmsg.properties if k == SUBSCRIPTION_IDENTIFIER)
            delivery = Delivery(message, cmsg.mid, cmsg.qos, cmsg.state, cmsg.retain, cmsg.dup, ids)
            target = outgoing if cmsg.direction == Direction.OUT else incoming
            target.setdefault(cmsg.client_id, []).append(delivery)
            records.setdefault(cmsg.client_id, ClientRecord(cmsg.client_id))
        subscriptions: dict[str, list[Subscription]] = {}
        for sub in self.subscriptions:
            subscriptions.setdefault(sub.client_id, []).append(sub)
            records.setdefault(sub.client_id, ClientRecord(sub.client_id))

        sessions = {
            client_id: Session(
                record,
                tuple(subscriptions.get(client_id, ())),
                tuple(outgoing.get(client_id, ())),
                tuple(incoming.get(client_id, ())),
            )
            for client_id, record in records.items()
        }
        return MosquittoState(
            path=self.path,
            version=self.version,
            config=self.config,
            messages=messages,
            retained_ids=tuple(self.retained_ids),
            clients=tuple(self.clients),
            client_messages=tuple(self.client_messages),
            subscriptions=tuple(self.subscriptions),
            retained=tuple(retained),
            sessions=sessions,
            unknown_chunks=tuple(self.unknown),
            dropped_client_messages=dropped_client_messages,
            dropped_retained=dropped_retained,
            dropped_clients=self.dropped_clients,
        )


def _merge_client(old: ClientRecord | None, new: ClientRecord) -> ClientRecord:
    """A second chunk for one client id updates it, as Mosquitto's restore does."""
    if old is None:
        return new
    return ClientRecord(
        new.client_id,
        new.session_expiry_time,
        new.session_expiry_interval,
        new.last_mid or old.last_mid,
        new.listener_port,
        old.username or new.username,
        new.disconnect_time,
    )


def _chunk_name(ctype: int) -> str:
    try:
        return ChunkType(ctype).name.lower().replace("_", " ")
    except ValueError:
        return f"type {ctype}"


def read_mosquitto_db(
    source: str | os.PathLike[str] | bytes, name: str | None = None
) -> MosquittoState:
    """Read a Mosquitto persistence file, given as a path or as its bytes.

    ``name`` is what errors call the file (for bytes, ``<bytes>`` by default).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        path = name or "<bytes>"
    else:
        path = name or os.fspath(source)
        try:
            with open(source, "rb") as fh:
                data = fh.read()
        except OSError as e:
            raise StoreError(f"cannot read: {e.strerror or e}", path) from None
    return _Parser(data, path).parse()
