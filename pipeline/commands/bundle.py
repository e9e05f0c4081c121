"""``edgenas bundle``: the firmware bundle (C array, op resolver, settings, manifest) of any int8 .tflite."""

from __future__ import annotations

from pipeline.commands._util import emit, existing_file


def register(sub) -> None:
    p = sub.add_parser("bundle", help="write the TFLite Micro firmware bundle of an int8 .tflite model",
                       description="Write model.tflite, <name>_model_data.cc/.h (16-byte aligned C array), "
                       "<name>_op_resolver.h (exactly the model's operators), <name>_model_settings.h "
                       "(input shape, quantisation, labels, kTensorArenaSize = measured arena + margin), "
                       "manifest.json and README.md to DIR.")
    p.add_argument("model", metavar="MODEL.tflite", help="a full-int8 TFLite model (ours or anyone's)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output directory (new, empty, or an earlier bundle to replace)")
    p.add_argument("--name", help="C identifier prefix of the generated files and symbols "
                   "(default: from the model file name)")
    p.add_argument("--device", help="target device recorded in the manifest (e.g. cortex-m7)")
    p.add_argument("--labels", help="comma-separated class labels in output order (default class_0, class_1, ...)")
    p.add_argument("--json", action="store_true", help="print one JSON object describing the bundle")
    p.set_defaults(func=run)


def run(args) -> int:
    from edgenas_keras.bundle import make_bundle

    model = existing_file(args.model, "model file")
    extra = {"labels": [s.strip() for s in args.labels.split(",")]} if args.labels else None
    b = make_bundle(model, args.out, name=args.name, device=args.device, extra_manifest=extra)
    emit(args, b.as_dict(),
         f"bundle {b.name} written to {b.out_dir}: {len(b.files)} files, ops {', '.join(b.ops)}, "
         f"kTensorArenaSize={b.tensor_arena_size} (host arena {b.host_arena_bytes})")
    return 0
