#!/usr/bin/env python3
"""Generate the two deterministic DICOM test corpora used by the peer benchmarks.

  ct    : 20 studies x 2 series x 50 instances = 2000 CT Image Storage objects,
          512x512 16-bit (BitsStored 12), explicit VR little endian, ~514 KB each
  small : 100 studies x 1 series x 50 instances = 5000 Secondary Capture objects,
          64x64 8-bit MONOCHROME2, explicit VR little endian, ~5 KB each

Layout: <out>/<corpus>/st<NNN>/se<N>/<NNNN>.dcm (so a corpus can be split by study
directory for parallel associations).  UIDs are derived deterministically from a seed
with pydicom.uid.generate_uid(entropy_srcs=...), so every run produces identical files.

Copied from the shared peer-benchmark harness (numpy replaced by the stdlib so that it runs
in the project venv); the same seeds give the same UIDs and pixel layout.

usage: python gen_corpus.py OUTDIR [--corpus ct|small|both] [--ct-studies 20]
                            [--small-studies 100] [--small-per-study 50]
"""

import argparse
import datetime as dt
import os
import random
import sys
import time
from array import array

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SC_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"

SURNAMES = [
    "SMITH",
    "JOHNSON",
    "WILLIAMS",
    "BROWN",
    "JONES",
    "GARCIA",
    "MILLER",
    "DAVIS",
    "RODRIGUEZ",
    "MARTINEZ",
    "HERNANDEZ",
    "LOPEZ",
    "GONZALEZ",
    "WILSON",
    "ANDERSON",
    "THOMAS",
    "TAYLOR",
    "MOORE",
    "JACKSON",
    "MARTIN",
    "LEE",
    "PEREZ",
    "THOMPSON",
    "WHITE",
    "HARRIS",
    "SANCHEZ",
    "CLARK",
    "RAMIREZ",
    "LEWIS",
    "ROBINSON",
    "MUELLER",
    "SCHMIDT",
    "SCHNEIDER",
    "FISCHER",
    "WEBER",
    "MEYER",
    "WAGNER",
    "BECKER",
    "SCHULZ",
    "HOFFMANN",
]
GIVEN = [
    "JAMES",
    "MARY",
    "JOHN",
    "PATRICIA",
    "ROBERT",
    "JENNIFER",
    "MICHAEL",
    "LINDA",
    "WILLIAM",
    "ELIZABETH",
    "DAVID",
    "BARBARA",
    "RICHARD",
    "SUSAN",
    "JOSEPH",
    "JESSICA",
    "THOMAS",
    "SARAH",
    "ANNA",
    "LUKAS",
]


def uid(*parts):
    # pydicom hashes "".join(entropy_srcs): join with a separator ourselves so that
    # (1, 10, 0) and (11, 0, 0) cannot collide
    return generate_uid(entropy_srcs=["/".join(["pacsflow-bench-v1", *map(str, parts)])])


def make_patients(rng, n, corpus):
    pats = []
    for i in range(n):
        sex = rng.choice("MF")
        birth = dt.date(1935, 1, 1) + dt.timedelta(days=rng.randrange(0, 30000))
        pats.append(
            {
                "PatientName": f"{rng.choice(SURNAMES)}^{rng.choice(GIVEN)}",
                "PatientID": f"PF{'C' if corpus == 'ct' else 'S'}{100000 + i:06d}",
                "PatientBirthDate": birth.strftime("%Y%m%d"),
                "PatientSex": sex,
            }
        )
    return pats


def base_dataset(meta_sop_class, sop_uid):
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = meta_sop_class
    fm.MediaStorageSOPInstanceUID = sop_uid
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    fm.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    fm.ImplementationVersionName = "PACSFLOWBENCH"
    ds = Dataset()
    ds.file_meta = fm
    ds.preamble = b"\x00" * 128
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = meta_sop_class
    ds.SOPInstanceUID = sop_uid
    return ds


def fill_study(ds, pat, st):
    for k, v in pat.items():
        setattr(ds, k, v)
    ds.StudyInstanceUID = st["uid"]
    ds.StudyDate = st["date"]
    ds.StudyTime = st["time"]
    ds.AccessionNumber = st["acc"]
    ds.StudyID = st["id"]
    ds.StudyDescription = st["desc"]
    ds.ReferringPhysicianName = "WELBY^MARCUS"
    ds.InstitutionName = "PACSFLOW GENERAL HOSPITAL"
    ds.Manufacturer = "PACSFLOW-BENCH"
    ds.ManufacturerModelName = "SYNTH-1"
    ds.StationName = "BENCH01"


def set_ct_pixel_module(ds: Dataset) -> None:
    """The image pixel attributes of a 512x512 CT slice: 12 of 16 bits stored, rescaled to HU."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = 512
    ds.Columns = 512
    ds.PixelSpacing = ["0.976562", "0.976562"]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"


def _u16le(values):
    arr = array("H", values)
    if sys.byteorder == "big":
        arr.byteswap()
    return arr.tobytes()


def write(ds, path):
    ds.save_as(path, enforce_file_format=True)


def gen_ct(out, n_studies, rng):
    n_series, n_inst = 2, 50
    pats = make_patients(rng, max(1, n_studies // 2), "ct")
    noise_rng = random.Random(1234)
    # water-ish body inside a circle, air outside, plus 4 bits of noise (stdlib only: no numpy)
    base = [
        (1064 if (y - 256) ** 2 + (x - 256) ** 2 < 220**2 else 0) + noise_rng.randrange(16)
        for y in range(512)
        for x in range(512)
    ]
    frames: dict[int, bytes] = {}
    count = 0
    for s in range(n_studies):
        pat = pats[s % len(pats)]
        d = dt.date(2023, 1, 2) + dt.timedelta(days=rng.randrange(0, 700))
        st = {
            "uid": uid("ct", "study", s),
            "date": d.strftime("%Y%m%d"),
            "time": f"{rng.randrange(7, 19):02d}{rng.randrange(60):02d}00",
            "acc": f"ACC{d.strftime('%y%m%d')}{s:05d}",
            "id": f"CT{s:05d}",
            "desc": rng.choice(
                ["CT CHEST W/O CONTRAST", "CT ABDOMEN PELVIS W CONTRAST", "CT HEAD W/O CONTRAST"]
            ),
        }
        for se in range(n_series):
            ser_uid = uid("ct", "series", s, se)
            for_uid = uid("ct", "for", s)
            ddir = os.path.join(out, "ct", f"st{s:03d}", f"se{se}")
            os.makedirs(ddir, exist_ok=True)
            for i in range(n_inst):
                sop = uid("ct", "sop", s, se, i)
                ds = base_dataset(CT_IMAGE_STORAGE, sop)
                fill_study(ds, pat, st)
                ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
                ds.Modality = "CT"
                ds.SeriesInstanceUID = ser_uid
                ds.SeriesNumber = se + 1
                ds.SeriesDescription = ["AXIAL 5.0 SOFT", "AXIAL 5.0 LUNG"][se]
                ds.BodyPartExamined = "CHEST"
                ds.FrameOfReferenceUID = for_uid
                ds.PositionReferenceIndicator = ""
                ds.InstanceNumber = i + 1
                ds.AcquisitionNumber = 1
                ds.ContentDate = st["date"]
                ds.ContentTime = st["time"]
                ds.KVP = "120"
                ds.SliceThickness = "5.0"
                ds.PatientPosition = "HFS"
                ds.ImagePositionPatient = ["-250.0", "-250.0", f"{-i * 5.0:.1f}"]
                ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
                ds.SliceLocation = f"{-i * 5.0:.1f}"
                set_ct_pixel_module(ds)
                ds.WindowCenter = "40"
                ds.WindowWidth = "400"
                if i % 64 not in frames:
                    frames[i % 64] = _u16le([(v + i % 64) & 0x0FFF for v in base])
                ds.PixelData = frames[i % 64]
                ds["PixelData"].VR = "OW"
                write(ds, os.path.join(ddir, f"{i:04d}.dcm"))
                count += 1
    return count


def gen_small(out, n_studies, rng, per_study=50):
    pats = make_patients(rng, max(1, (n_studies * 2) // 5), "small")  # ~2.5 studies/patient
    img = [(y + x) * 2 % 256 for y in range(64) for x in range(64)]
    count = 0
    for s in range(n_studies):
        pat = pats[s % len(pats)]
        d = dt.date(2023, 1, 2) + dt.timedelta(days=rng.randrange(0, 700))
        st = {
            "uid": uid("sm", "study", s),
            "date": d.strftime("%Y%m%d"),
            "time": f"{rng.randrange(7, 19):02d}{rng.randrange(60):02d}00",
            "acc": f"ACS{d.strftime('%y%m%d')}{s:05d}",
            "id": f"SC{s:05d}",
            "desc": rng.choice(["DOSE REPORT", "SCANNED DOCUMENT", "KEY IMAGES"]),
        }
        ser_uid = uid("sm", "series", s)
        ddir = os.path.join(out, "small", f"st{s:03d}", "se0")
        os.makedirs(ddir, exist_ok=True)
        for i in range(per_study):
            sop = uid("sm", "sop", s, i)
            ds = base_dataset(SC_IMAGE_STORAGE, sop)
            fill_study(ds, pat, st)
            ds.Modality = "OT"
            ds.ConversionType = "WSD"
            ds.SeriesInstanceUID = ser_uid
            ds.SeriesNumber = 900
            ds.SeriesDescription = "SECONDARY CAPTURE"
            ds.InstanceNumber = i + 1
            ds.ContentDate = st["date"]
            ds.ContentTime = st["time"]
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows = 64
            ds.Columns = 64
            ds.BitsAllocated = 8
            ds.BitsStored = 8
            ds.HighBit = 7
            ds.PixelRepresentation = 0
            ds.PixelData = bytes((v + i) % 256 for v in img)
            ds["PixelData"].VR = "OB"
            write(ds, os.path.join(ddir, f"{i:04d}.dcm"))
            count += 1
    return count


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("outdir")
    ap.add_argument("--corpus", choices=["ct", "small", "both"], default="both")
    ap.add_argument("--ct-studies", type=int, default=20)
    ap.add_argument("--small-studies", type=int, default=100)
    ap.add_argument("--small-per-study", type=int, default=50)
    a = ap.parse_args()
    for name in ["ct", "small"] if a.corpus == "both" else [a.corpus]:
        t0 = time.perf_counter()
        rng = random.Random(f"pacsflow-{name}")
        n = (
            gen_ct(a.outdir, a.ct_studies, rng)
            if name == "ct"
            else gen_small(a.outdir, a.small_studies, rng, a.small_per_study)
        )
        root = os.path.join(a.outdir, name)
        size = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(root) for f in fs)
        print(
            f"{name}: {n} files, {size} bytes ({size / n / 1024:.1f} KiB avg)"
            f" in {time.perf_counter() - t0:.1f}s",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
