"""An ICC profile of Display P3 for the image tests, built from its published chromaticities (Pillow cannot make
one and none ships with the venv); also used by data/make_heic.py, so it imports nothing of ours."""

from __future__ import annotations

import struct

import numpy as np


def s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def display_p3_icc() -> bytes:
    """An ICC v4 matrix/TRC profile of Display P3 (P3 primaries, D65 white, sRGB curve), built from the
    published chromaticities: Pillow cannot make one and none ships with the venv. Primaries are adapted
    to the D50 connection space with the Bradford matrix, as ICC.1:2022 Annex E describes."""
    xy = np.array([[0.680, 0.320], [0.265, 0.690], [0.150, 0.060]])
    white = np.array([0.3127 / 0.3290, 1.0, (1 - 0.3127 - 0.3290) / 0.3290])
    primaries = np.column_stack([xy[:, 0] / xy[:, 1], np.ones(3), (1 - xy.sum(1)) / xy[:, 1]])  # XYZ, Y = 1
    to_xyz = primaries.T * np.linalg.solve(primaries.T, white)  # columns: XYZ of R, G, B at full intensity
    bradford = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])
    d50 = np.array([0.9642, 1.0, 0.8249])
    adapt = np.linalg.inv(bradford) @ np.diag((bradford @ d50) / (bradford @ white)) @ bradford
    colorants = (adapt @ to_xyz).T

    def xyz(v) -> bytes:
        return b"XYZ \0\0\0\0" + b"".join(s15(c) for c in v)

    curve = b"para\0\0\0\0" + struct.pack(">HH", 3, 0) + b"".join(
        s15(v) for v in (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045))
    name = "Display P3".encode("utf-16-be")
    desc = b"mluc\0\0\0\0" + struct.pack(">II2s2sII", 1, 12, b"en", b"US", len(name), 28) + name
    tags = [(b"desc", desc), (b"wtpt", xyz(d50)), (b"rXYZ", xyz(colorants[0])), (b"gXYZ", xyz(colorants[1])),
            (b"bXYZ", xyz(colorants[2])), (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    offset, table, body = 128 + 4 + 12 * len(tags), b"", b""
    for signature, data in tags:
        data += b"\0" * (-len(data) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = (struct.pack(">I4sI", size, b"", 0x04300000) + b"mntrRGB XYZ " + bytes(12) + b"acsp"
              + bytes(28) + s15(d50[0]) + s15(d50[1]) + s15(d50[2]) + bytes(48))
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body
