"""Retrain a found architecture for real: float training from scratch, QAT fine-tune, int8 export, and the
accuracy figures that matter on the device.

Why the steps are what they are:

- **From scratch, then QAT.** The supernet's shared weights are not the weights of the discrete network, so
  the chosen architecture is trained anew in float (Adam with decoupled weight decay, linear warm-up then a
  cosine schedule, light augmentation from the data reader), then fine-tuned a few epochs with fake-quant
  nodes (``edgenas_keras.model.qat``) at about 1% of the float peak learning rate, so the weights adapt to int8
  rounding, without moving away from the float optimum (README.md, "Retraining", has the rates and BatchNorm
  treatments tried).
- **Activation ranges calibrated before the fine-tune** (``qat.calibrate_ranges``, on the representative
  images): tfmot starts them at [-6, 6] and moves them 0.1% per step, far too slowly for a short fine-tune.
- **BatchNorm statistics recomputed** on the (unaugmented) train split after the float phase and again after
  the QAT fine-tune (``recalibrate_batch_norm``): the converter folds them into the int8 weights, short
  schedules end with stale ones, and the fine-tune leaves the statistics of its last augmented batches
  (measured on one float model: QAT 17 of 4,255 eval images below PTQ without the second pass, 1 with
  it).
- **Representative data from the TRAIN split** (a seeded sample, no augmentation, the reader's input range):
  calibration must never see the eval split that the accuracy figures are measured on.
- **Accuracy measured in the TFLM runtime**, the interpreter the device runs, on the eval split: the int8
  figure is that of the flatbuffer we ship, not of TensorFlow's simulation of it.
- **A baseline in the same run**: plain post-training quantisation (PTQ) of the float model, calibrated on
  the same representative set. QAT is worth its cost only if it beats PTQ; ``metrics.json`` says by how much.

Outputs (``out_dir``): ``float_model.keras``, ``qat_model.h5`` (HDF5: tf_keras' ``.keras`` format does not
restore tfmot's quantize layers; load it with ``qat.load_qat_model``),
``model_int8.tflite`` (QAT), ``model_ptq_int8.tflite`` (PTQ baseline), ``history.json``, ``metrics.json``
(figures, both models' sha256 and the input ``preprocessing`` they were trained and evaluated with, which
``edgenas bundle`` states to the firmware), ``config.json`` (the resolved configuration, architecture and
data fingerprint). Everything is written to a
staging folder and moved into place at the end, ``metrics.json`` last, so a crashed run leaves nothing that
looks finished.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import tf_keras as keras

from edgenas_keras.arch.space import Arch, SearchSpace, encode
from edgenas_keras.data import reader
from edgenas_keras.errors import UserError
from edgenas_keras.model import qat
from edgenas_keras.model.builder import build_model
from edgenas_keras.model.export import to_int8_tflite
from edgenas_keras.tflite.evaluate import TOP5_MIN_CLASSES, dataset_info, eval_dataset, tflm_evaluate

OUTPUT_FILES = ("float_model.keras", "qat_model.h5", "model_int8.tflite", "model_ptq_int8.tflite",
                "history.json", "config.json", "metrics.json")   # metrics.json last: it marks a finished run


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (with the architecture, the data and the space)."""

    epochs: int = 20                  # float training from scratch
    qat_epochs: int = 2               # QAT fine-tune (>= 1: the fake-quant ranges are learned in training)
    batch_size: int = 64
    lr: float = 3e-3                  # peak Adam learning rate of the float phase
    warmup_epochs: float = 1.0        # linear warm-up to ``lr`` (at most half the phase), then cosine decay
    final_lr_fraction: float = 0.02   # ... to ``lr * final_lr_fraction``
    qat_lr: float = 3e-5              # peak of the QAT phase (cosine to 0, no warm-up); ~1% of ``lr``
    weight_decay: float = 1e-4        # decoupled (AdamW)
    dropout: float = 0.0              # before the classifier
    augment: bool = True              # random flip and shift (edgenas_keras.data.reader)
    seed: int = 0                     # weights init, shuffling, augmentation, representative sample
    representative_samples: int = 256  # train images the int8 converter calibrates on
    bn_batches: int = 20              # train batches the BN statistics are recomputed on after the float phase
    eval_limit: int | None = None     # evaluate on the first N eval images only (None: all)
    resolution: int | None = None     # input side; None: the search space's

    def __post_init__(self):
        def need(name, ok, what):
            if not ok:
                raise UserError(f"training config: {name} must be {what}, got {getattr(self, name)!r}")

        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v):
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        need("epochs", is_int(self.epochs) and self.epochs >= 1, "an integer >= 1")
        need("qat_epochs", is_int(self.qat_epochs) and self.qat_epochs >= 1, "an integer >= 1")
        need("batch_size", is_int(self.batch_size) and self.batch_size >= 1, "an integer >= 1")
        for name in ("lr", "qat_lr"):
            need(name, is_num(getattr(self, name)) and getattr(self, name) > 0, "a positive number")
        need("warmup_epochs", is_num(self.warmup_epochs) and self.warmup_epochs >= 0, "a number >= 0")
        need("final_lr_fraction", is_num(self.final_lr_fraction) and 0 <= self.final_lr_fraction <= 1,
             "a number in [0, 1]")
        need("weight_decay", is_num(self.weight_decay) and self.weight_decay >= 0, "a number >= 0")
        need("dropout", is_num(self.dropout) and 0 <= self.dropout < 1, "a number in [0, 1)")
        need("augment", isinstance(self.augment, bool), "true or false")
        need("seed", is_int(self.seed) and self.seed >= 0, "an integer >= 0")
        need("bn_batches", is_int(self.bn_batches) and self.bn_batches >= 1, "an integer >= 1")
        need("representative_samples", is_int(self.representative_samples) and self.representative_samples >= 1,
             "an integer >= 1")
        need("eval_limit", self.eval_limit is None or (is_int(self.eval_limit) and self.eval_limit >= 1),
             "null or an integer >= 1")
        need("resolution", self.resolution is None or (is_int(self.resolution) and self.resolution >= 8),
             "null or an integer >= 8")

    @classmethod
    def from_dict(cls, d: dict, source: str = "training config") -> TrainConfig:
        """A config from a mapping of field names to values (missing fields take their defaults).

        Raises:
            UserError: ``{source}: unknown field(s) ...`` (listing the known ones) for a name that is not a
                field; ``training config: NAME must be ...`` for a value of the wrong type or out of range.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"{source}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**d)

    def to_dict(self) -> dict:
        """Every field by name (``from_dict``'s input); written to ``config.json`` under ``train``."""
        return asdict(self)


@dataclass(frozen=True)
class TrainResult:
    """A finished training run: its ``out_dir``, ``metrics`` (the content of ``metrics.json``) and
    ``history`` (of ``history.json``: per-epoch Keras logs, ``{"float": {...}, "qat": {...}}``)."""

    out_dir: Path
    metrics: dict
    history: dict

    @property
    def int8_model(self) -> Path:
        """The QAT int8 model, ``out_dir/model_int8.tflite`` (the one to ship)."""
        return self.out_dir / "model_int8.tflite"

    @property
    def ptq_model(self) -> Path:
        """The PTQ baseline, ``out_dir/model_ptq_int8.tflite``: the float model quantised after training,
        calibrated on the same representative images."""
        return self.out_dir / "model_ptq_int8.tflite"


# -- data --------------------------------------------------------------------------------------------------

def representative_images(data_dir, resolution: int, channels: int, n: int, seed: int) -> np.ndarray:
    """A seeded sample of ``n`` TRAIN images in the model's input range, unaugmented (converter calibration)."""
    ds = reader.make_dataset(data_dir, "train", 1, resolution, channels, shuffle_seed=seed).unbatch().take(n)
    return np.stack([x.numpy() for x, _ in ds])


def _batches(images: np.ndarray, size: int):
    return [images[i:i + size] for i in range(0, len(images), size)]


def representative_fn(images: np.ndarray):
    """The converter's representative dataset over ``images`` ((n, H, W, C), the model's input range): a
    generator function yielding each image as ``[(1, H, W, C) float32]``, in order."""

    def gen():
        for x in images:
            yield [x[None].astype(np.float32)]

    return gen


# -- training ----------------------------------------------------------------------------------------------

def _schedule(peak: float, steps: int, warmup: int, final_fraction: float):
    if warmup:
        return keras.optimizers.schedules.CosineDecay(peak * 0.1, max(1, steps - warmup), alpha=final_fraction,
                                                      warmup_target=peak, warmup_steps=warmup)
    return keras.optimizers.schedules.CosineDecay(peak, max(1, steps), alpha=final_fraction)


def _compile(model, schedule, weight_decay: float, num_classes: int = 2):
    """Adam(W) on sparse categorical cross-entropy over ``num_classes``; metrics: top-1 ``accuracy`` and,
    for more than 5 classes, ``top5_accuracy``."""
    metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    if num_classes >= TOP5_MIN_CLASSES:
        metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5_accuracy"))
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=weight_decay),
                  loss=keras.losses.SparseCategoricalCrossentropy(), metrics=metrics)


class _EpochLog(keras.callbacks.Callback):
    def __init__(self, phase: str, epochs: int, progress: Callable[[str], None] | None):
        super().__init__()
        self.phase, self.epochs, self.progress = phase, epochs, progress
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if self.progress:
            logs = logs or {}
            self.progress(f"{self.phase} epoch {epoch + 1}/{self.epochs}: loss {logs.get('loss', float('nan')):.4f} "
                          f"accuracy {logs.get('accuracy', float('nan')):.4f} "
                          f"({time.perf_counter() - self.t0:.0f} s)")


def recalibrate_batch_norm(model: keras.Model, dataset, batches: int) -> None:
    """Recompute every BatchNormalization's moving mean and variance as the plain average over ``batches``
    batches of ``dataset`` (forward passes in training mode, no weight update), in place.

    Why: the converter folds the *moving* statistics into the int8 weights, and with Keras' momentum of 0.99
    they trail the weights by about a hundred steps; a short schedule ends with statistics that no longer
    match the network (measured: 64x64 inputs, 15 epochs of 26 steps, train-mode accuracy 0.87 but
    inference-mode 0.43, the moving variance up to 100x too large in the last blocks)."""
    inner = [getattr(layer, "layer", layer) for layer in model.layers]   # QAT wraps each layer: look inside
    bns = [layer for layer in inner if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [bn.momentum for bn in bns]
    try:
        for k, (x, _) in enumerate(dataset.take(batches)):
            for bn in bns:
                bn.momentum = k / (k + 1.0)   # moving = (k * moving + batch) / (k + 1): the running mean
            model(x, training=True)
    finally:
        for bn, m in zip(bns, saved):
            bn.momentum = m


def _history(h) -> dict:
    return {k: [float(v) for v in vals] for k, vals in h.history.items()}


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def train_and_export(space: SearchSpace, arch: Arch, data_dir: str | Path, out_dir: str | Path,
                     config: TrainConfig = TrainConfig(),
                     progress: Callable[[str], None] | None = None) -> TrainResult:
    """Train ``arch`` on ``data_dir`` (an Examples folder: ``Split-train``, ``Split-eval``), quantise, export
    and evaluate it; write the outputs listed in the module docstring to ``out_dir``.

    The model's head has one output per class of the data set (``classes.dataset_class_names``): the data
    wins over ``space.num_classes``, with a warning through ``progress`` when they differ. ``metrics.json``
    records the class names (``class_names``, and as the ``preprocessing`` labels the bundle states), the
    int8 model's per-class accuracy in the TFLM runtime (``per_class_int8_tflm``, ``tflm_evaluate``) and,
    for more than 5 classes, top-5 accuracies beside the top-1 ones."""
    from edgenas_keras.data.classes import dataset_class_names, space_for_data  # noqa: PLC0415

    space.check(arch)
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if not data_dir.is_dir():
        raise UserError(f"data folder {data_dir} does not exist; run `edgenas data synth` or `edgenas data ingest`")
    info = dataset_info(data_dir)
    if info["train"] < 1 or info["eval"] < 1:
        raise UserError(f"{data_dir} needs records in both Split-train and Split-eval, has {info}")
    say = progress or (lambda _msg: None)
    names = dataset_class_names(data_dir)
    space = space_for_data(space, names, warn=say)
    top5 = len(names) >= TOP5_MIN_CLASSES
    res = config.resolution or space.resolution
    ch = space.in_channels
    timings: dict[str, float] = {}

    out_dir.mkdir(parents=True, exist_ok=True)
    stage = out_dir / f".staging-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        keras.utils.set_random_seed(config.seed)
        steps = max(1, info["train"] // config.batch_size)
        train_ds = reader.make_dataset(data_dir, "train", config.batch_size, res, ch, augment=config.augment,
                                       shuffle_seed=config.seed, repeat=True, drop_remainder=True)
        eval_ds = eval_dataset(data_dir, res, ch, config.batch_size, config.eval_limit)

        t = time.perf_counter()
        model = build_model(space, arch, res, dropout=config.dropout)
        total = steps * config.epochs
        warmup = min(round(steps * config.warmup_epochs), total // 2)
        _compile(model, _schedule(config.lr, total, warmup, config.final_lr_fraction), config.weight_decay,
                 space.num_classes)
        say(f"float training: {config.epochs} epoch(s) x {steps} steps of {config.batch_size}")
        h_float = model.fit(train_ds, epochs=config.epochs, steps_per_epoch=steps, verbose=0,
                            callbacks=[_EpochLog("float", config.epochs, progress)])
        # unaugmented train batches for the BatchNorm statistics, after the float phase and after QAT
        bn_ds = reader.make_dataset(data_dir, "train", config.batch_size, res, ch, shuffle_seed=config.seed + 1)
        recalibrate_batch_norm(model, bn_ds, config.bn_batches)
        timings["float_train_s"] = time.perf_counter() - t
        ev_float = model.evaluate(eval_ds, verbose=0, return_dict=True)
        acc_float = float(ev_float["accuracy"])
        say(f"float accuracy {acc_float:.4f}")
        model.save(stage / "float_model.keras")

        t = time.perf_counter()
        rep_images = representative_images(data_dir, res, ch, config.representative_samples, config.seed)
        qmodel = qat.quantize_model(model)
        qat.calibrate_ranges(qmodel, model, _batches(rep_images, config.batch_size))
        _compile(qmodel, _schedule(config.qat_lr, steps * config.qat_epochs, 0, 0.0), config.weight_decay,
                 space.num_classes)
        say(f"QAT fine-tune: {config.qat_epochs} epoch(s)")
        h_qat = qmodel.fit(train_ds, epochs=config.qat_epochs, steps_per_epoch=steps, verbose=0,
                           callbacks=[_EpochLog("qat", config.qat_epochs, progress)])
        recalibrate_batch_norm(qmodel, bn_ds, config.bn_batches)
        timings["qat_train_s"] = time.perf_counter() - t
        ev_qat = qmodel.evaluate(eval_ds, verbose=0, return_dict=True)
        acc_qat = float(ev_qat["accuracy"])
        say(f"QAT accuracy (TensorFlow) {acc_qat:.4f}")
        with warnings.catch_warnings():   # HDF5 is deliberate here (module docstring); don't warn the user
            warnings.filterwarnings("ignore", message="You are saving your model as an HDF5 file")
            qmodel.save(stage / "qat_model.h5")

        t = time.perf_counter()
        rep = representative_fn(rep_images)
        say("int8 export (QAT and PTQ baseline)")
        int8 = to_int8_tflite(qmodel, rep)
        ptq = to_int8_tflite(model, rep)
        (stage / "model_int8.tflite").write_bytes(int8)
        (stage / "model_ptq_int8.tflite").write_bytes(ptq)
        timings["export_s"] = time.perf_counter() - t

        t = time.perf_counter()
        say("evaluating both int8 models in the TFLM runtime")
        ev_int8 = tflm_evaluate(int8, data_dir, config.eval_limit, "model_int8.tflite", names)
        ev_ptq = tflm_evaluate(ptq, data_dir, config.eval_limit, "model_ptq_int8.tflite", names)
        acc_int8, n_eval, acc_ptq = ev_int8["accuracy"], ev_int8["examples"], ev_ptq["accuracy"]
        timings["tflm_eval_s"] = time.perf_counter() - t

        history = {"float": _history(h_float), "qat": _history(h_qat)}
        metrics = {
            "arch": encode(arch),
            "accuracy_float": acc_float,
            "accuracy_qat": acc_qat,
            "accuracy_int8_tflm": acc_int8,
            "accuracy_ptq_int8_tflm": acc_ptq,
            "int8_minus_float_points": 100 * (acc_int8 - acc_float),
            "qat_minus_ptq_points": 100 * (acc_int8 - acc_ptq),
            "eval_examples": n_eval,
            "train_examples": info["train"],
            "model_bytes": len(int8),
            "int8_sha256": hashlib.sha256(int8).hexdigest(),   # lets `edgenas validate` trust these figures
            "ptq_model_bytes": len(ptq),
            "ptq_int8_sha256": hashlib.sha256(ptq).hexdigest(),
            # what the reader fed both models: `edgenas bundle` states it to the firmware (matched by sha256)
            # ... with the data set's class names as its labels, in output order
            "preprocessing": dataclasses.replace(reader.preprocessing(ch), labels=tuple(names)).to_dict(),
            "class_names": list(names),
            "per_class_int8_tflm": ev_int8["per_class"],
            "params": int(model.count_params()),
            "seconds": {k: round(v, 1) for k, v in timings.items()},
        }
        if top5:
            metrics.update({"top5_accuracy_float": float(ev_float["top5_accuracy"]),
                            "top5_accuracy_qat": float(ev_qat["top5_accuracy"]),
                            "top5_accuracy_int8_tflm": ev_int8["top5_accuracy"],
                            "top5_accuracy_ptq_int8_tflm": ev_ptq["top5_accuracy"]})
        resolved = {"arch": encode(arch), "space": space.name, "resolution": res, "data_dir": str(data_dir),
                    "dataset_fingerprint": info["fingerprint"], "train": config.to_dict()}
        _write_json(stage / "history.json", history)
        _write_json(stage / "config.json", resolved)
        _write_json(stage / "metrics.json", metrics)
        stale = out_dir / "metrics.json"
        if stale.exists():
            stale.unlink()   # a half-replaced folder must not keep the previous run's "finished" marker
        for name in OUTPUT_FILES:
            os.replace(stage / name, out_dir / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return TrainResult(out_dir, metrics, history)
