"""XML from untrusted bytes, parsed with every door of libxml2 shut.

No entity resolution, no DTD loading, no network; a document whose DOCTYPE declares entities
is refused before libxml2 sees it (billion laughs, quadratic blow-up, XXE). Size, depth and
element count are bounded while parsing, so a hostile file is refused before it is built. A
UTF-8 byte-order mark is dropped; the XML declaration decides the encoding (UTF-8 and
ISO-8859-1 are both common in received invoices). Callers find elements by namespace URI,
never by prefix.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import TypedDict

from lxml import etree

from facturasd.errors import NotXml, TooLarge, Truncated, UnsafeXml
from facturasd.findings import Phrase, phrase

_BOM = b"\xef\xbb\xbf"
# Entity declarations can only live in the DOCTYPE; one after it is refused.
_ENTITY = re.compile(rb"<!ENTITY", re.IGNORECASE)
_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
_CHUNK = 64 * 1024
_LIBXML2_DEPTH = 256
# lxml parsers must not be shared between threads, so each thread keeps its own: the daemon
# parses in worker processes, but `read` is a library call a caller may make from threads.
_local = threading.local()


class _SafeOptions(TypedDict):
    resolve_entities: bool
    load_dtd: bool
    no_network: bool
    huge_tree: bool
    remove_comments: bool
    remove_pis: bool


# The one set of parser options, for the tree parser and the pull parser alike.
_SAFE = _SafeOptions(
    resolve_entities=False,
    load_dtd=False,
    no_network=True,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
)


def _tree_parser() -> etree.XMLParser:
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = etree.XMLParser(**_SAFE)
    return parser


# libxml2's own safety limits speak in these words: its depth limit, and the others (huge text
# nodes, huge input lookups), all of which it names with XML_PARSE_HUGE.
_LIBXML2_DEPTH_LIMIT = re.compile(r"Excessive depth")
_LIBXML2_LIMIT = re.compile(r"huge text node|Huge input lookup|XML_PARSE_HUGE")


@dataclass(frozen=True)
class Limits:
    """Every limit of the formats layer; `[formats]` in the configuration has the same keys."""

    max_file_bytes: int = 20 * 1024 * 1024
    # libxml2's own ceiling without XML_PARSE_HUGE, which stays off.
    max_xml_depth: int = _LIBXML2_DEPTH
    max_xml_elements: int = 1_000_000
    zip_max_members: int = 50
    zip_max_total_bytes: int = 100 * 1024 * 1024
    zip_max_ratio: int = 100
    zip_max_depth: int = 2


def parse(data: bytes, limits: Limits | None = None) -> etree._Element:
    """The root element of `data`, or a FormatError naming what is wrong."""
    limits = limits or Limits()
    if len(data) > limits.max_file_bytes:
        raise TooLarge(too_large(len(data), limits))
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    if not data.strip():
        raise NotXml(phrase("empty"))
    _check_encoding(data)
    doctype = _DOCTYPE.search(data)
    if doctype and _ENTITY.search(data, doctype.start()):
        raise UnsafeXml(phrase("entities"))
    # Every element starts with "<" and every attribute or namespace declaration has a "=":
    # more of those than the limit is refused before libxml2 builds anything.
    nodes = data.count(b"<") + data.count(b"=")
    if nodes > limits.max_xml_elements:
        raise UnsafeXml(phrase("too_many_nodes", limit=limits.max_xml_elements))
    if limits.max_xml_depth >= _LIBXML2_DEPTH:
        # libxml2 enforces this depth itself: the tree is built in one call. Errors take the
        # careful path below, which also tells a truncated file from a broken one.
        try:
            root = etree.fromstring(data, _tree_parser())
            return _no_entities(root) if doctype else root
        except etree.XMLSyntaxError:
            pass
    root = _parse_in_chunks(data, limits)
    return _no_entities(root) if doctype else root


def _parse_in_chunks(data: bytes, limits: Limits) -> etree._Element:
    parser = etree.XMLPullParser(events=("start", "end"), **_SAFE)
    depth = elements = 0
    root: etree._Element | None = None
    try:
        # Fed in chunks, so the limits stop a hostile file long before it is built whole.
        for start in range(0, len(data), _CHUNK):
            parser.feed(data[start : start + _CHUNK])
            for event, element in parser.read_events():
                if event == "end":
                    depth -= 1
                    continue
                depth += 1
                elements += 1 + len(element.attrib)
                root = element if root is None else root
                if depth > limits.max_xml_depth:
                    raise UnsafeXml(phrase("too_deep", limit=limits.max_xml_depth))
                if elements > limits.max_xml_elements:
                    raise UnsafeXml(phrase("too_many_nodes", limit=limits.max_xml_elements))
    except etree.XMLSyntaxError as exc:
        if _LIBXML2_DEPTH_LIMIT.search(_first_line(exc)):
            raise UnsafeXml(phrase("too_deep", limit=_LIBXML2_DEPTH)) from None
        if _LIBXML2_LIMIT.search(_first_line(exc)):
            raise UnsafeXml(phrase("huge_text")) from None
        raise NotXml(phrase("not_well_formed", text=_first_line(exc))) from None
    try:
        parser.close()
    except etree.XMLSyntaxError as exc:
        # Every byte was accepted: an error now means the document stops short.
        if data.lstrip().startswith(b"<"):
            raise Truncated(phrase("cut_short", text=_first_line(exc))) from None
        raise NotXml(phrase("not_well_formed", text=_first_line(exc))) from None
    if root is None:
        raise NotXml(phrase("no_element"))
    return root


# Only ASCII-compatible encodings: the entity check above reads bytes, and invoices are
# UTF-8 or ISO-8859-1 (Windows-1252 and ASCII occur too).
_ACCEPTED = {
    "utf-8",
    "utf8",
    "iso-8859-1",
    "iso8859-1",
    "latin1",
    "latin-1",
    "us-ascii",
    "ascii",
    "windows-1252",
    "cp1252",
}
_DECLARED = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")
_WIDE_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")


def _check_encoding(data: bytes) -> None:
    if data.startswith(_WIDE_BOMS) or b"\x00" in data[:4]:
        raise NotXml(phrase("wide_encoding"))
    if (declared := _DECLARED.match(data)) and declared.group(1).decode().lower() not in _ACCEPTED:
        raise NotXml(phrase("encoding", name=declared.group(1).decode()))


def _no_entities(root: etree._Element) -> etree._Element:
    """A tree parsed from a file with a DOCTYPE must not carry entity declarations either
    (belt and braces: the byte check before parsing should have caught them)."""
    dtd = root.getroottree().docinfo.internalDTD
    if dtd is not None and any(True for _ in dtd.iterentities()):
        raise UnsafeXml(phrase("entities"))
    return root


def too_large(size: int, limits: Limits) -> Phrase:
    """Why a file of `size` bytes is refused unread."""
    return phrase("too_large", size=size, limit=limits.max_file_bytes)


def _first_line(exc: etree.XMLSyntaxError) -> str:
    return str(exc.msg or exc).splitlines()[0]
