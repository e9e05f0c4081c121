"""``edgenas bundle``: the firmware bundle (C array, op resolver, settings, manifest) of any int8 .tflite."""

from __future__ import annotations

from edgenas_keras import progress
from edgenas_keras.errors import UserError
from pipeline.commands._util import JSON_OUTPUT, emit, existing_file


def register(sub) -> None:
    """Add ``edgenas bundle`` to the subcommand parser ``sub``."""
    p = sub.add_parser("bundle", parents=[JSON_OUTPUT], help="write the TFLite Micro firmware bundle of an int8 .tflite model",
                       description="Write model.tflite, <name>_model_data.cc/.h (16-byte aligned C array), "
                       "<name>_op_resolver.h (exactly the model's operators), <name>_model_settings.h "
                       "(input shape, quantisation, preprocessing, labels, kTensorArenaSize = measured arena + "
                       "margin), manifest.json and README.md to DIR. The input preprocessing is the one "
                       "`edgenas train` recorded in metrics.json beside the model (matched by sha256); for any "
                       "other model it is stated as unknown unless --input-range gives it.")
    p.add_argument("model", metavar="MODEL.tflite", help="a full-int8 TFLite model (ours or anyone's)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output directory (new, empty, or an earlier bundle to replace)")
    p.add_argument("--name", help="C identifier prefix of the generated files and symbols "
                   "(default: from the model file name)")
    p.add_argument("--device", help="target device (e.g. cortex-m7), recorded in the manifest; for a device "
                   "with an emulated core (cortex-m4, cortex-m7, cortex-m33, riscv) kTensorArenaSize comes from "
                   "the model's arena on that 32-bit core in QEMU (`edgenas emulate`; the first run builds "
                   "TFLM for it), falling back to the 64-bit host bisection where its toolchain is not installed")
    p.add_argument("--host-arena", action="store_true",
                   help="size kTensorArenaSize from the 64-bit host bisection even where the core can be emulated")
    p.add_argument("--labels", help="comma-separated class labels in output order (default: the labels "
                   "training recorded, i.e. the class names of the data set it trained on, else class_0, "
                   "class_1, ...); any text: the header escapes each as a C string literal of its UTF-8 bytes")
    p.add_argument("--input-range", metavar="LO,HI",
                   help="the float range the model's input expects for pixels 0..255 (linear: x = LO + pixel * "
                   "(HI - LO) / 255), for a model without recorded preprocessing; write it with '=' when LO is "
                   "negative: --input-range=-1,1. Recorded in the README, settings header and manifest")
    p.set_defaults(func=run)


def _input_range(text: str) -> tuple[float, float]:
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        lo, hi = (float(v) for v in parts)
    except ValueError:
        raise UserError(f"--input-range wants two numbers LO,HI (e.g. --input-range=-1,1), got {text!r}") from None
    return lo, hi


def run(args) -> int:
    """Write the TFLM firmware bundle of MODEL.tflite to ``--out`` and print a summary; ``kTensorArenaSize``
    comes from the arena on ``--device``'s emulated core where it has one (unless ``--host-arena``), else from
    the host bisection.

    Returns the exit status, 0; bad input raises ``UserError`` (exit 2 in ``pipeline.cli.main``): a missing
    model, a bad ``--input-range``, a model TFLM cannot prepare.
    """
    from edgenas_keras.tflite.bundle import make_bundle

    model = existing_file(args.model, "model file")
    extra = {"labels": [s.strip() for s in args.labels.split(",")]} if args.labels else None
    rng = _input_range(args.input_range) if args.input_range is not None else None
    target_arena, note = None, None
    if args.device:   # a shipped LUT alias (cortex-m7-analytical, cortex-m7-emulated) is its device
        from edgenas_keras.lut import device_of

        args.device = device_of(args.device)
    if args.device and not args.host_arena:
        from deploy.emulate import measured_footprint
        from edgenas_keras.tflite.tflm import require_prepares

        require_prepares(model.read_bytes(), str(model))   # TFLM's own reason before any emulator build

        target_arena, note = measured_footprint(model, args.device, progress=progress.stderr)
        if target_arena is None:
            progress.stderr(f"note: kTensorArenaSize from the 64-bit host bisection: {note}")
    elif args.host_arena:
        note = "--host-arena"
    b = make_bundle(model, args.out, name=args.name, device=args.device, extra_manifest=extra, input_range=rng,
                    target_arena=target_arena, arena_note=None if target_arena else note)
    where = (f"{b.target_arena_bytes} on emulated {target_arena['target']}" if target_arena
             else "host bisection")
    emit(args, b.as_dict(),
         f"bundle {b.name} written to {b.out_dir}: {len(b.files)} files, ops {', '.join(b.ops)}, "
         f"kTensorArenaSize={b.tensor_arena_size} (arena {where}; host arena {b.host_arena_bytes})")
    return 0
