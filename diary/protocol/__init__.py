"""Protocol files: the data model, the validating loader and schedule computation."""

from .loader import ProtocolError, load_protocol, parse_protocol, protocol_sha256, shipped_protocol_path
from .model import Protocol, TimePoint

__all__ = [
    "Protocol",
    "ProtocolError",
    "TimePoint",
    "load_protocol",
    "parse_protocol",
    "protocol_sha256",
    "shipped_protocol_path",
]
