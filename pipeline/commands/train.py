"""``edgenas train`` (float training, QAT, int8 export, TFLM accuracy) and ``edgenas validate`` (budget checks
and the blessing decision for an int8 model on a device)."""

from __future__ import annotations

from pathlib import Path

from edgenas_keras import progress
from pipeline.commands._util import (
    JSON_OUTPUT,
    LUT_SOURCE,
    SPACE_FILE,
    emit,
    existing_dir,
    existing_file,
    kib_to_bytes,
    load_space,
    parse_arch,
)


def register(sub) -> None:
    """Add ``edgenas train`` and ``edgenas validate`` to the subcommand parser ``sub``."""
    t = sub.add_parser(
        "train", parents=[SPACE_FILE, JSON_OUTPUT], help="train an architecture (float, then QAT) and export it to int8",
        description="Train ARCH from scratch in float, fine-tune it with quantization-aware training, export "
        "full-int8 TFLite models (QAT, and plain post-training quantisation as the baseline) and evaluate all of "
        "them, the int8 ones in the TFLite Micro runtime. The model has one output per class of --data (the "
        "class names in its stats.json; a --space that states another head.num_classes is overridden, with a "
        "warning): top-1 accuracy for all, top-5 too for more than 5 classes, and the int8 model's per-class "
        "accuracy. Writes float_model.keras, qat_model.h5, model_int8.tflite, model_ptq_int8.tflite, "
        "history.json, metrics.json (with class_names and the preprocessing labels the bundle states) and "
        "config.json to --out.")
    t.add_argument("--arch", required=True, metavar="ARCH", help="architecture string (see `edgenas arch check`)")
    t.add_argument("--data", required=True, metavar="DIR",
                   help="Examples folder with Split-train and Split-eval (from `edgenas data synth|ingest`)")
    t.add_argument("--out", required=True, metavar="DIR", help="output folder")
    t.add_argument("--epochs", type=int, help="float training epochs (default: TrainConfig's)")
    t.add_argument("--qat-epochs", type=int, help="QAT fine-tune epochs (default: TrainConfig's)")
    t.add_argument("--seed", type=int, help="seed for init, shuffling, augmentation and calibration")
    t.add_argument("--batch-size", type=int, help="batch size")
    t.add_argument("--lr", type=float, help="peak learning rate of the float phase")
    t.add_argument("--resolution", type=int, help="input resolution (default: the space's)")
    t.add_argument("--eval-limit", type=int, help="evaluate on the first N eval images only")
    t.set_defaults(func=cmd_train)

    v = sub.add_parser(
        "validate", parents=[LUT_SOURCE, JSON_OUTPUT], help="check an int8 model against a device's budgets and decide its blessing",
        description="Check an int8 .tflite against latency (the device LUT; for host-tflm also measured), SRAM "
        "(the 32-bit arena on the device's emulated core where it has one, else the larger of the predicted "
        "on-target arena and the arena TFLM needs on this host), flash (the linked image on an emulated core, else "
        "model + the TFLM runtime's documented footprint) and int8 accuracy in the TFLM runtime: top-1 (the check), with "
        "per-class accuracy (share of each class's eval images labelled correctly, classes named from the data "
        "set's stats.json) and, for more than 5 classes, top-5 beside it. Exit status 0 if blessed, "
        "1 if not (the reasons name the failing checks), 2 on a usage error.")
    v.add_argument("model", metavar="MODEL.tflite", help="full-int8 TFLite model")
    v.add_argument("--latency-ms", type=float, required=True, help="latency budget per inference (ms)")
    v.add_argument("--sram-kb", type=float, required=True, help="SRAM budget for the arena (KiB)")
    v.add_argument("--flash-kb", type=float, required=True, help="flash budget: model + TFLM runtime (KiB)")
    v.add_argument("--min-accuracy", type=float, required=True,
                   help="minimum int8 top-1 accuracy on the eval split, a fraction (0.8 = 80%%); per-class "
                   "accuracy is reported, not checked")
    v.add_argument("--data", metavar="DIR", help="Examples folder whose Split-eval measures accuracy (default: "
                   "the figure `edgenas train` recorded in metrics.json beside the model, if it is this model's)")
    v.add_argument("--eval-limit", type=int, help="measure accuracy on the first N eval images only")
    v.add_argument("--runtime-flash-kb", type=float,
                   help="the TFLM runtime's flash footprint from your link map (default: the emulated core's linked "
                   "image where there is one, else documented per device)")
    v.add_argument("--out", metavar="FILE", help="also write the blessing JSON here")
    v.set_defaults(func=cmd_validate)


def cmd_train(args) -> int:
    """Train ``--arch`` on ``--data`` in float, then with QAT, export the int8 models (QAT and PTQ) to
    ``--out`` and print their accuracies (the int8 ones in the TFLM runtime).

    Returns the exit status, 0; bad input raises ``UserError`` (exit 2 in ``pipeline.cli.main``): a bad
    architecture or space, a missing data folder, a bad setting.
    """
    from edgenas_keras.train import TrainConfig, train_and_export

    space = load_space(args.space)
    arch = parse_arch(args.arch, space)
    data = existing_dir(args.data, "data folder")
    given = {"epochs": args.epochs, "qat_epochs": args.qat_epochs, "seed": args.seed, "batch_size": args.batch_size,
             "lr": args.lr, "resolution": args.resolution, "eval_limit": args.eval_limit}
    config = TrainConfig.from_dict({k: v for k, v in given.items() if v is not None}, source="edgenas train")
    result = train_and_export(space, arch, data, args.out, config, progress=progress.stderr)
    m = result.metrics
    human = (f"{m['arch']} -> {result.out_dir}\n"
             f"  accuracy float            {m['accuracy_float']:.4f}\n"
             f"  accuracy QAT (TensorFlow) {m['accuracy_qat']:.4f}\n"
             f"  accuracy int8 QAT (TFLM)  {m['accuracy_int8_tflm']:.4f}\n"
             f"  accuracy int8 PTQ (TFLM)  {m['accuracy_ptq_int8_tflm']:.4f}\n"
             f"  eval images {m['eval_examples']}, int8 model {m['model_bytes']} bytes")
    if "top5_accuracy_int8_tflm" in m:
        human += f"\n  top-5 int8 QAT (TFLM)     {m['top5_accuracy_int8_tflm']:.4f}"
    rows = m.get("per_class_int8_tflm") or []
    if rows:
        width = max(len(r["class"]) for r in rows)
        human += "\n  per-class accuracy, int8 QAT (TFLM):" + "".join(
            f"\n    {r['class']:{width}}  " + ("no eval images" if r["accuracy"] is None
                                              else f"{r['accuracy']:.4f} ({r['correct']}/{r['count']})")
            for r in rows)
    emit(args, {**m, "out_dir": str(result.out_dir)}, human)
    return 0


def cmd_validate(args) -> int:
    """Check MODEL.tflite against the latency, SRAM, flash and accuracy budgets on the device, print each
    check and, with ``--out``, write the blessing JSON.

    Returns the exit status: 0 if the model is blessed, 1 if not; bad input raises ``UserError`` (exit 2 in
    ``pipeline.cli.main``).
    """
    from edgenas_keras import lut as lutmod
    from edgenas_keras.errors import UserError
    from edgenas_keras.budgets import Budgets
    from edgenas_keras.validate import per_class_lines, validate_model, write_blessing

    model = existing_file(args.model, "model file")
    if args.data is not None:
        existing_dir(args.data, "data folder")
    if args.out and not Path(args.out).absolute().parent.is_dir():   # refused now, not after every check ran
        raise UserError(f"--out {args.out}: its folder {Path(args.out).absolute().parent} does not exist")
    if args.eval_limit is not None and args.eval_limit < 1:
        raise UserError(f"--eval-limit must be >= 1, got {args.eval_limit}")
    budgets = Budgets(args.latency_ms, kib_to_bytes(args.sram_kb, "--sram-kb"),
                      kib_to_bytes(args.flash_kb, "--flash-kb"), args.min_accuracy)
    runtime = kib_to_bytes(args.runtime_flash_kb, "--runtime-flash-kb", allow_zero=True)
    lut = lutmod.resolve(args.device, args.lut, args.clock_mhz)
    from deploy.emulate import measured_footprint
    from edgenas_keras.tflite.tflm import require_prepares

    require_prepares(model.read_bytes(), str(model))   # TFLM's own reason before any emulator build
    # SRAM and flash on the device's emulated core (QEMU) where it has one and its toolchain is installed.
    footprint, note = measured_footprint(model, lut.device, progress=progress.stderr)
    # ... and its latency there: instructions x the table's (else the core's anchor) cycles per instruction
    from deploy.lut_emulated import with_cycles_per_instruction

    footprint = with_cycles_per_instruction(footprint, lut, progress=progress.stderr)
    doc = validate_model(model, lut, budgets, args.data, args.eval_limit, runtime, target_footprint=footprint)
    doc["target_footprint"] = footprint or {"note": note}
    if args.out:
        write_blessing(doc, args.out)
    lines = [f"{model}: {'BLESSED' if doc['blessed'] else 'NOT BLESSED'} for {doc['device']}"]
    for name, c in doc["checks"].items():
        figure = "no figure" if c["figure"] is None else f"{c['figure']} {c['unit']}"
        lines.append(f"  {c['verdict']:4}  {name:17} {figure} (budget {c['budget']} {c['unit']})")
        if name == "accuracy":
            if "top5_accuracy" in c["detail"]:
                lines.append(f"        top-5 {c['detail']['top5_accuracy']}")
            lines += per_class_lines(doc)
    lines += [f"  reason: {r}" for r in doc["reasons"]]
    emit(args, doc, "\n".join(lines))
    return 0 if doc["blessed"] else 1
