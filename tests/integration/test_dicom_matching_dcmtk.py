"""C-FIND matching checked against DCMTK's worklist examples and a live wlmscpfs."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pydicom.dataelem import DataElement

from pacsflow.adapters.dicom.matching import matches, project

pytestmark = [
    pytest.mark.dcmtk,
    pytest.mark.skipif(shutil.which("dump2dcm") is None, reason="DCMTK dump2dcm not installed"),
]

_EXAMPLES = Path("/usr/share/doc/dcmtk/examples")
_ENTRIES = _EXAMPLES / "wlistdb" / "OFFIS"
_QUERIES = _EXAMPLES / "wlistqry"

# Recorded from wlmscpfs 3.6.7 over the ten OFFIS entries; the live test re-checks them.
_EXPECTED_COUNTS = {
    "wlistqry0": 10,
    "wlistqry1": 10,
    "wlistqry2": 0,
    "wlistqry3": 10,
    "wlistqry4": 0,
    "wlistqry5": 6,
    "wlistqry6": 0,
    "wlistqry7": 0,
    "wlistqry8": 0,
    "wlistqry9": 0,
    "wlistqry10": 10,
    "wlistqry11": 10,
    "wlistqry12": 0,
}

# wlmscpfs binds every interface, so it runs with findscu in a private network namespace;
# a PID namespace makes the kernel kill whatever is left when the shell (its init) exits.
# The namespace's loopback is fresh, so any fixed port is free.
_ORACLE_PORT = "11112"
_ORACLE_SCRIPT = r"""
set -eu
ip link set lo up
wlmscpfs -q -s -dfp "$WL_DB" "$WL_PORT" &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT
tries=0
until echoscu -q -aec OFFIS 127.0.0.1 "$WL_PORT" 2>/dev/null; do
    tries=$((tries + 1))
    [ "$tries" -lt 100 ] || { echo "wlmscpfs did not start" >&2; exit 3; }
    sleep 0.05
done
for query in "$WL_QUERIES"/*.dcm; do
    out="$WL_OUT/$(basename "$query" .dcm)"
    mkdir -p "$out"
    findscu -q -W -aec OFFIS -od "$out" -X 127.0.0.1 "$WL_PORT" "$query"
done
"""


@dataclass(frozen=True, slots=True)
class _Examples:
    """The DCMTK worklist examples converted from dump to DICOM files."""

    database: Path
    query_dir: Path
    queries: dict[str, Path]
    entries: tuple[Dataset, ...]


def _dump2dcm(dump: Path, target: Path) -> None:
    subprocess.run(["dump2dcm", "-q", str(dump), str(target)], check=True, timeout=30)


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> _Examples:
    if not _ENTRIES.is_dir() or not _QUERIES.is_dir():
        pytest.skip("DCMTK worklist examples not installed")
    root = tmp_path_factory.mktemp("dcmtk")
    database = root / "wlistdb"
    offis = database / "OFFIS"
    offis.mkdir(parents=True)
    (offis / "lockfile").touch()
    for dump in sorted(_ENTRIES.glob("wklist*.dump")):
        _dump2dcm(dump, offis / f"{dump.stem}.wl")
    queries = root / "wlistqry"
    queries.mkdir()
    converted = {}
    for dump in sorted(_QUERIES.glob("wlistqry*.dump")):
        converted[dump.stem] = queries / f"{dump.stem}.dcm"
        _dump2dcm(dump, converted[dump.stem])
    entries = tuple(dcmread(path) for path in sorted(offis.glob("*.wl")))
    return _Examples(database, queries, converted, entries)


def _our_matches(examples: _Examples, name: str) -> list[Dataset]:
    query = dcmread(examples.queries[name])
    return [entry for entry in examples.entries if matches(query, entry)]


def _content(ds: Dataset) -> frozenset[tuple[object, ...]]:
    """The non-empty leaves of a dataset, paths included, for comparing responses."""
    leaves: set[tuple[object, ...]] = set()
    for elem in ds:
        leaves.update(_leaves(elem))
    return frozenset(leaves)


def _leaves(elem: DataElement) -> set[tuple[object, ...]]:
    if elem.VR == "SQ":
        return {
            (int(elem.tag), index, *leaf)
            for index, item in enumerate(elem.value)
            for leaf in _content(item)
        }
    if elem.is_empty:
        return set()
    return {(int(elem.tag), str(elem.value))}


def test_examples_cover_every_recorded_query(examples: _Examples) -> None:
    assert set(examples.queries) == set(_EXPECTED_COUNTS)
    assert len(examples.entries) == 10


@pytest.mark.parametrize(("name", "expected"), sorted(_EXPECTED_COUNTS.items()))
def test_matches_selects_as_many_entries_as_wlmscpfs(
    examples: _Examples, name: str, expected: int
) -> None:
    assert len(_our_matches(examples, name)) == expected


def test_matches_and_project_agree_with_live_wlmscpfs(examples: _Examples, tmp_path: Path) -> None:
    tools = ("wlmscpfs", "findscu", "echoscu", "unshare", "ip")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"missing for the live oracle: {', '.join(missing)}")
    probe = subprocess.run(
        ["unshare", "--net", "--pid", "--fork", "--kill-child", "true"],
        capture_output=True,
        check=False,
        timeout=10,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot create network namespaces: {probe.stderr.decode().strip()}")

    out = tmp_path / "responses"
    out.mkdir()
    env = {
        **os.environ,
        "TCP_NODELAY": "1",
        "WL_DB": str(examples.database),
        "WL_PORT": _ORACLE_PORT,
        "WL_QUERIES": str(examples.query_dir),
        "WL_OUT": str(out),
    }
    oracle = subprocess.run(
        ["unshare", "--net", "--pid", "--fork", "--kill-child", "sh", "-c", _ORACLE_SCRIPT],
        env=env,
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert oracle.returncode == 0, oracle.stderr.decode()

    for name, expected in _EXPECTED_COUNTS.items():
        responses = [dcmread(path) for path in sorted((out / name).glob("rsp*.dcm"))]
        assert len(responses) == expected, name
        query = dcmread(examples.queries[name])
        ours = [project(query, entry) for entry in _our_matches(examples, name)]
        assert Counter(map(_content, ours)) == Counter(map(_content, responses)), name
