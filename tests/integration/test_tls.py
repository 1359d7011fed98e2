"""TLS on all three listeners, with DCMTK, an MLLP client and an HTTP client."""

from __future__ import annotations

import ssl
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pacsflow.adapters.hl7 import MllpClient
from pacsflow.adapters.security import client_context
from pacsflow.app import Pacsflow
from pacsflow.config import DicomPeer
from tests.conftest import Pki, dcmtk, make_settings, requires_dcmtk, restamp

ADT = "MSH|^~\\&|HIS|H|PACSFLOW|R|20261128090000||ADT^A01|TLS1|P|2.5.1\rPID|1||7^^^H||TLS^ONE\r"


@pytest.fixture
def tls_node(tmp_path: Path, pki: Pki) -> Iterator[Pacsflow]:
    node = Pacsflow(
        make_settings(
            tmp_path,
            tls_cert_file=pki.server_cert,
            tls_key_file=pki.server_key,
            tls_ca_file=pki.ca,
            peers=[DicomPeer(ae_title="FINDSCU", host="127.0.0.1", port=9)],
        )
    )
    node.start()
    yield node
    node.stop()


@pytest.mark.dcmtk
@requires_dcmtk
def test_dcmtk_stores_and_finds_over_tls(tls_node: Pacsflow, pki: Pki, tmp_path: Path) -> None:
    tls: list[str | Path | int] = ["+tls", pki.client_key, pki.client_cert, "+cf", pki.ca]
    path, ds = restamp("CT_small.dcm", tmp_path / "a.dcm", patient_id="TLS1")
    res = dcmtk("storescu", *tls, "-aec", "PACSFLOW", "127.0.0.1", tls_node.dicom.port, path)
    assert res.returncode == 0, res.stderr
    assert tls_node.queries.instances(sop_uids=[ds.SOPInstanceUID], is_published_only=False)
    found = dcmtk(
        "findscu", *tls, "-W", "-aec", "PACSFLOW", "-k", "PatientName",
        "127.0.0.1", tls_node.dicom.port,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    plain = dcmtk("echoscu", "-aec", "PACSFLOW", "127.0.0.1", tls_node.dicom.port)
    assert plain.returncode != 0  # no downgrade to plain TCP


def test_mllp_over_tls(tls_node: Pacsflow, pki: Pki) -> None:
    ctx = client_context(pki.ca)
    with MllpClient(
        "127.0.0.1", tls_node.hl7.port, timeout=10, ssl_context=ctx, server_hostname="127.0.0.1"
    ) as client:
        ack = client.send(ADT.encode()).decode()
    assert "MSA|AA|TLS1" in ack


def test_https_and_no_old_protocols(tls_node: Pacsflow, pki: Pki) -> None:
    url = f"https://127.0.0.1:{tls_node.http.port}/healthz"
    assert httpx.get(url, verify=client_context(pki.ca), timeout=10).status_code == 200
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(str(pki.ca))
    with warnings.catch_warnings():  # the point is to try a deprecated protocol
        warnings.simplefilter("ignore", DeprecationWarning)
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, verify=old, timeout=10)
