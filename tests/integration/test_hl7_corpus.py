"""69 real-world HL7 v2 messages from public repositories, sent over MLLP to a running node.

The corpus (tests/samples/hl7/corpus, SOURCES.md says where each message comes from and what
to expect) is sent on one connection in the table's order, as a sender would: several
messages reuse another's sender and MSH-10. Every message is answered, nothing crashes, every
AE/AR says why in a readable ERR, AA means applied, and every accepted order is on the
modality worklist.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from pacsflow.adapters.db.tables import hl7_messages
from pacsflow.adapters.hl7.codec import Message, parse
from pacsflow.adapters.hl7.mllp import MllpClient
from pacsflow.app import Pacsflow
from tests.conftest import make_settings

CORPUS = Path(__file__).parents[1] / "samples" / "hl7" / "corpus"
_ROW = re.compile(r"^\| ((?:adt|orm|omi|oru|other|malformed)/\S+\.hl7) \| .*? \| (\w+) \|")
_ACK_CODES = {"AA", "AE", "AR", "CA", "CE", "CR"}
_ACCEPTED = {"AA", "CA"}
_TABLE_0357 = {"100", "101", "102", "103", "200", "201", "202", "203", "204", "205", "206"}


@dataclass(frozen=True)
class Sample:
    """One corpus message as the table lists it."""

    name: str
    expect: str  # accept, lenient or reject

    @property
    def wire(self) -> bytes:
        """The message as a sender puts it in an MLLP frame: no BOM, segments end in CR."""
        data = (CORPUS / self.name).read_bytes().removeprefix(b"\xef\xbb\xbf")
        return b"\r".join(data.rstrip(b"\n").split(b"\n")) + b"\r"


def corpus() -> list[Sample]:
    rows = (CORPUS / "SOURCES.md").read_text(encoding="utf-8").splitlines()
    return [Sample(m[1], m[2]) for m in map(_ROW.match, rows) if m]


@dataclass(frozen=True)
class Answered:
    sample: Sample
    ack: Message
    status: str  # of its journal entry


class _Errors(logging.Handler):
    """Keeps the ERROR records (a traceback logged by a last-resort handler) of the run."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_ERRORS = _Errors()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pacsflow, list[Answered]]]:
    node = Pacsflow(make_settings(tmp_path_factory.mktemp("corpus")))
    node.start()
    logging.getLogger("pacsflow").addHandler(_ERRORS)
    try:
        samples = corpus()
        with MllpClient("127.0.0.1", node.hl7.port, timeout=30) as client:
            acks = [parse(client.send(sample.wire)) for sample in samples]
        with node.engine.connect() as conn:
            statuses = conn.execute(
                sa.select(hl7_messages.c.status).order_by(hl7_messages.c.pk)
            ).scalars()
            journal = list(statuses)
        assert len(journal) == len(samples), "every message is journaled once"
        yield node, [Answered(*row) for row in zip(samples, acks, journal, strict=True)]
    finally:
        logging.getLogger("pacsflow").removeHandler(_ERRORS)
        node.stop()


def test_the_corpus_has_every_message_of_its_table() -> None:
    samples = corpus()

    assert len(samples) == 69
    assert {s.expect for s in samples} == {"accept", "lenient", "reject"}
    assert all((CORPUS / s.name).is_file() for s in samples)


def test_every_message_is_answered_for_itself(run: tuple[Pacsflow, list[Answered]]) -> None:
    _, answered = run
    for one in answered:
        assert one.ack.get("MSA-1") in _ACK_CODES, one.sample.name
        sent = one.sample.wire.split(b"\r", 1)[0]
        if sent.startswith(b"MSH") and len(sent) > 8:
            control_id = sent.split(sent[3:4])[9].decode("latin-1")
            assert one.ack.get("MSA-2") == control_id.strip(), one.sample.name


def test_nothing_crashes(run: tuple[Pacsflow, list[Answered]]) -> None:
    node, answered = run
    assert not [a.sample.name for a in answered if _err_code(a.ack) == "207"]
    assert [r.getMessage() for r in _ERRORS.records] == []
    with MllpClient("127.0.0.1", node.hl7.port, timeout=30) as client:  # still serving
        assert parse(client.send(corpus()[0].wire)).get("MSA-1") in _ACCEPTED


def test_every_refusal_says_why_in_a_readable_err(run: tuple[Pacsflow, list[Answered]]) -> None:
    _, answered = run
    for one in answered:
        if one.ack.get("MSA-1") in _ACCEPTED:
            continue
        name = one.sample.name
        assert one.ack.segment("ERR") is not None, name
        assert _err_code(one.ack) in _TABLE_0357, name
        text = one.ack.get("MSA-3")
        assert len(text) > 20, name
        assert text.isprintable(), name
        assert "\\\\" not in text, name  # values quoted as received, not Python's repr


def test_aa_only_for_what_was_applied(run: tuple[Pacsflow, list[Answered]]) -> None:
    _, answered = run
    for one in answered:
        if one.ack.get("MSA-1") in _ACCEPTED:
            assert one.status == "applied", one.sample.name
        else:
            assert one.status in ("rejected", "failed"), one.sample.name


def test_every_well_formed_supported_message_is_accepted(
    run: tuple[Pacsflow, list[Answered]],
) -> None:
    _, answered = run
    refused = [
        a.sample.name
        for a in answered
        if a.sample.expect == "accept" and a.ack.get("MSA-1") not in _ACCEPTED
    ]
    assert refused == []


def test_different_messages_reusing_a_control_id_are_applied(
    run: tuple[Pacsflow, list[Answered]],
) -> None:
    _, answered = run
    status = {a.sample.name: (a.ack.get("MSA-1"), a.status) for a in answered}
    for name in (
        "adt/mirth_nonbatch_05_ADT-A04.hl7",
        "adt/fhirconv_ADT-A04-01.hl7",
        "adt/fhirconv_ADT-A31-01.hl7",
        "adt/fhirconv_ADT-A40-02.hl7",
        "adt/dcm4che_ADT-A08_2022.hl7",
    ):
        assert status[name] == ("AA", "applied"), name
    assert status["adt/fhirconv_ADT-A03-01.hl7"][0] == "AE"  # A03 is not handled


def test_every_accepted_order_is_on_the_worklist(run: tuple[Pacsflow, list[Answered]]) -> None:
    node, answered = run
    expected: set[str] = set()
    for one in answered:
        if one.sample.name.split("/")[0] in ("orm", "omi") and one.ack.get("MSA-1") in _ACCEPTED:
            expected |= _new_order_accessions(parse(one.sample.wire))
    on_worklist = {item.order.accession_number for item in node.queries.worklist()}

    assert expected  # the corpus has accepted orders
    assert expected <= on_worklist


def _new_order_accessions(message: Message) -> set[str]:
    """By the documented chain: OBR-18 (ORM) or IPC-1 (OMI), else ORC-3, else OBR-3."""
    found: set[str] = set()
    is_omi = message.msh.message_code == "OMI"
    group: dict[str, str] = {}
    control = ""

    def close() -> None:
        if control in ("NW", "XO"):
            own = group.get("IPC-1") if is_omi else group.get("OBR-18")
            found.add(own or group.get("ORC-3") or group.get("OBR-3") or "")

    for segment in message.segments:
        if segment.name == "ORC":
            close()
            control, group = segment.get(1).upper(), {"ORC-3": segment.get(3)}
        elif segment.name == "OBR":
            group |= {"OBR-18": segment.get(18), "OBR-3": segment.get(3)}
        elif segment.name == "IPC":
            group["IPC-1"] = segment.get(1)
    close()
    return found - {""}


def _err_code(ack: Message) -> str:
    return ack.get("ERR-3") or ack.get("ERR-1.4.1")
