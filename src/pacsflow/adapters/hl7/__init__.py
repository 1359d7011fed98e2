"""HL7 v2 over MLLP: framing, ER7 parse/build, ACK/ERR, ADT/ORM/OMI -> commands."""

from pacsflow.adapters.hl7.ack import AckBuilder, AckCode, AckError, ErrorCode, new_control_id
from pacsflow.adapters.hl7.building import (
    Repeated,
    encode_field,
    encode_message,
    encode_msh,
    encode_segment,
)
from pacsflow.adapters.hl7.charsets import python_codec
from pacsflow.adapters.hl7.codec import (
    Header,
    Location,
    Message,
    Repetition,
    Segment,
    parse,
    read_header,
)
from pacsflow.adapters.hl7.er7 import (
    DEFAULT_DELIMITERS,
    Delimiters,
    escape,
    unescape,
)
from pacsflow.adapters.hl7.errors import (
    FrameTooLarge,
    RequiredFieldMissing,
    SegmentSequenceError,
    UnknownTableValue,
    UnsupportedCharset,
    UnsupportedEvent,
)
from pacsflow.adapters.hl7.field_map import ORU_DEFAULTS, SenderFieldMaps
from pacsflow.adapters.hl7.listener import Hl7Service, MessageReceiver
from pacsflow.adapters.hl7.mllp import (
    DEFAULT_MAX_MESSAGE_BYTES,
    FrameDecoder,
    MllpClient,
    MllpServer,
    frame,
)
from pacsflow.adapters.hl7.translate import (
    FIELD_MAP_KEYS,
    OMI_DEFAULTS,
    ORM_DEFAULTS,
    FieldMap,
    OrderFieldLocations,
    parse_timestamp,
    read_patient,
    translate,
)

__all__ = [
    "DEFAULT_DELIMITERS",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "FIELD_MAP_KEYS",
    "OMI_DEFAULTS",
    "ORM_DEFAULTS",
    "ORU_DEFAULTS",
    "AckBuilder",
    "AckCode",
    "AckError",
    "Delimiters",
    "ErrorCode",
    "FieldMap",
    "FrameDecoder",
    "FrameTooLarge",
    "Header",
    "Hl7Service",
    "Location",
    "Message",
    "MessageReceiver",
    "MllpClient",
    "MllpServer",
    "OrderFieldLocations",
    "Repeated",
    "Repetition",
    "RequiredFieldMissing",
    "Segment",
    "SegmentSequenceError",
    "SenderFieldMaps",
    "UnknownTableValue",
    "UnsupportedCharset",
    "UnsupportedEvent",
    "encode_field",
    "encode_message",
    "encode_msh",
    "encode_segment",
    "escape",
    "frame",
    "new_control_id",
    "parse",
    "parse_timestamp",
    "python_codec",
    "read_header",
    "read_patient",
    "translate",
    "unescape",
]
