"""LutImporter: a shipped LUT by device name, or a user's LUT file, validated and emitted with its sha256.

The LUT is parsed and checked by the library loader (shipped tables also against the checksum manifest),
then copied byte for byte into the artifact as ``lut.json``; with a clock override the re-clocked table is
written instead, and a host-measured table timed on another machine is re-based to this one
(``host_rebase``: its ``metadata.rebase`` factors travel with it). The artifact's ``sha256`` is that of
``lut.json``, so every later step (search, validation, the bundle manifest) can say exactly which table
priced the model.
"""

import shutil

from tfx import v1 as tfx

from components import LatencyTable
from components._io import log, output_dir

LUT_FILE = "lut.json"


@tfx.dsl.components.component
def LutImporter(
    lut: tfx.dsl.components.OutputArtifact[LatencyTable],
    device: tfx.dsl.components.Parameter[str],
    lut_file: tfx.dsl.components.Parameter[str] = "",
    clock_mhz: tfx.dsl.components.Parameter[float] = 0.0,
) -> None:
    """Resolve the device's LUT (or ``lut_file``), validate it, write ``lut.json`` and record its sha256."""
    from edgenas_keras import lut as lut_lib
    from edgenas_keras import machine

    table = lut_lib.load(lut_file) if lut_file else lut_lib.load_device(device)
    if machine.is_host_measured(table):   # timed on another machine: re-based here (one stderr line)
        from edgenas_keras.lut import host_rebase

        table = host_rebase.for_this_machine(table)
    with output_dir(lut.uri) as out:
        if clock_mhz or table.metadata.get("rebase"):   # the re-based table carries its factors
            sha256 = table.with_clock(clock_mhz or None).save(out / LUT_FILE)
        else:
            shutil.copyfile(table.source, out / LUT_FILE)
            sha256 = table.sha256
    # the device, not the name that picked its table (cortex-m7-analytical and cortex-m7 are one device)
    lut.set_string_custom_property("device", lut_lib.device_of(device))
    lut.set_string_custom_property("sha256", sha256)
    log("LutImporter", f"{device}: {len(table.entries)} entries, sha256 {sha256[:12]}")
