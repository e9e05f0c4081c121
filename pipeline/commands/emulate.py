"""``edgenas emulate MODEL.tflite --target T``: the model's firmware bundle built for a microcontroller core
and run once in QEMU (``deploy.emulate``): bit-exactness against the host TFLM runtime, the 32-bit arena,
instruction counts (whole invoke and per operator) and the linked image's flash."""

from __future__ import annotations

from edgenas_keras import progress
from pipeline.commands._util import JSON_OUTPUT, emit, existing_file, format_table


def register(sub) -> None:
    """Add ``edgenas emulate`` to the subcommand parser ``sub``."""
    from deploy.tflm_build import TARGETS

    p = sub.add_parser(
        "emulate", parents=[JSON_OUTPUT], help="build a model's firmware bundle for a Cortex-M/RISC-V core and run it in QEMU",
        description="Bundle MODEL.tflite (as `edgenas bundle` does), link it with TFLM (CMSIS-NN kernels on "
        "Cortex-M, reference kernels on RV32; the library is built once per target into "
        "${EDGENAS_CACHE:-~/.cache/edgenas}/tflm, about 8 minutes on 2 cores) and a small application, run it "
        "in QEMU (cortex-m4: mps2-an386, cortex-m7: mps2-an500, cortex-m33: mps2-an505, riscv32: virt) and "
        "report whether the int8 output equals the host TFLM runtime's byte for byte, arena_used_bytes() on "
        "the 32-bit target, guest instructions of the invoke and of each operator (Cortex-M: SysTick under "
        "-icount shift=0, resolution 40 instructions, 50 on cortex-m33; RV32: minstret, exact) and the linked "
        "image's text and model bytes. Needs the cross toolchain and QEMU (exit 2 naming the packages if absent).")
    p.add_argument("model", metavar="MODEL.tflite", help="a full-int8 TFLite model")
    p.add_argument("--target", required=True, choices=list(TARGETS), help="the emulated core")
    p.add_argument("--input", metavar="FILE.npy",
                   help="the input tensor (int8 values, or floats quantised with the input's scale); "
                   "default: a deterministic seeded int8 tensor")
    p.add_argument("--timeout", type=float, default=900.0, metavar="SECONDS",
                   help="give up on a QEMU run after this long (default 900)")
    p.add_argument("--keep", metavar="DIR", help="keep the generated sources, ELF and map file in DIR")
    p.set_defaults(func=run)


def run(args) -> int:
    """Build MODEL.tflite's bundle for ``--target``, run it once in QEMU (``deploy.emulate.emulate``) and
    print the arena, instruction counts, flash and whether the output matches the host TFLM runtime.

    Returns the exit status: 0 if the output matches byte for byte, 1 if not; bad input raises ``UserError``
    (exit 2 in ``pipeline.cli.main``), a missing toolchain or a failed build or QEMU run included.
    """
    from deploy.emulate import emulate

    model = existing_file(args.model, "model file")
    if args.input:
        existing_file(args.input, "input file")
    r = emulate(model, args.target, args.input, timeout_s=args.timeout, keep_dir=args.keep,
                progress=progress.stderr)
    d = r.as_dict()
    ops = format_table([[o["index"], o["op"], o["instructions"], o["lut_key"]] for o in r.per_op], intfmt=",",
                       indent="  ")
    human = (f"{r.target} on QEMU {r.qemu_machine} ({r.toolchain})\n"
             f"output matches the host TFLM runtime: {'yes' if r.output_matches_host else 'NO'}\n"
             f"arena_used_bytes: {r.arena_used_bytes:,} (kTensorArenaSize {r.settings_arena['tensor_arena_size']:,} "
             f"{'allocates' if r.settings_arena['allocates'] else 'does NOT allocate'})\n"
             f"instructions per invoke: {r.instructions:,} (resolution {r.counter['resolution_instructions']})\n"
             f"flash: text {r.image_text_bytes:,} + data {r.image_data_bytes:,} bytes, of which model "
             f"{r.model_bytes:,} and test input {r.input_bytes:,}\nper operator (instructions):\n{ops}")
    emit(args, d, human)
    return 0 if r.output_matches_host else 1
