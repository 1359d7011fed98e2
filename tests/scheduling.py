"""Scheduled studies for tests: orders placed through intake, images that match them."""

from __future__ import annotations

from pathlib import Path

from pacsflow.app import Pacsflow
from pacsflow.domain import commands as cmd
from pacsflow.domain.orders import Order
from pacsflow.domain.patients import Patient
from tests import factories as f
from tests.conftest import restamp, storescu
from tests.receiving import receive


def place(node: Pacsflow, *commands: cmd.Command) -> None:
    """Apply commands as if an HL7 message had carried them."""
    receive(node.intake, *commands, peer="test")


def scheduled(node: Pacsflow, **order_kw: object) -> tuple[Patient, Order]:
    """A registered patient with a scheduled order (CT unless told otherwise)."""
    p = f.patient(family="Dvořák", given="Antonín", sex="M")
    o = f.order(p, **order_kw)
    place(node, cmd.PlaceOrder(o, p))
    return p, o


def send_scheduled(
    node: Pacsflow, tmp: Path, sample: str, name: str, **order_kw: object
) -> tuple[str, Order]:
    """Store (storescu) a pydicom sample as the study of a new order, so it is published.

    Returns the SOP Instance UID sent and the order.
    """
    patient, order = scheduled(node, **order_kw)
    path, ds = restamp(
        sample,
        tmp / f"{name}.dcm",
        patient_id=str(patient.primary.value),
        accession=str(order.accession_number),
        study_uid=str(order.study_instance_uid) if order.study_instance_uid else None,
        name_pn="Dvořák^Antonín",
        issuer="HOSP",
        birth="19700102",
        sex="M",
    )
    storescu(node.dicom.port, path)
    return str(ds.SOPInstanceUID), order
