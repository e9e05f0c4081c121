"""A tiny pipeline configuration for whole-pipeline tests: 240 synthetic images at 32x32, a 2-epoch search
of a few steps, one epoch of float training and one of QAT. Small enough for CI on 2 cores; every component
still does its real work. The LUT is the test fixture table (tests/lut_fixtures.py) for the space at 32x32,
labelled cortex-m7, so the validator runs the int8 model on the emulated Cortex-M7 (32-bit arena, linked
image, emulated latency)."""

import yaml

TINY = {
    "name": "edgenas-tiny",
    "seed": 0,
    "data": {"source": "synth", "synth_images": 240, "resolution": 32, "eval_fraction": 0.25,
             "direct_num_workers": 1},
    "space": {"resolution": 32},
    # The validator also runs the int8 model on the emulated Cortex-M7 (QEMU) and links its firmware image, so
    # the budgets meet real figures: the fixture LUT's prices are not a core's, so the search is in effect
    # unconstrained and may pick the space's largest 32x32 model (185 ms there, a 226 KB arena, a 1.1 MB
    # image seen in one run). These budgets hold any model of the space; the test is of the plumbing.
    "budgets": {"latency_ms": 500.0, "sram_bytes": 1024 * 1024, "flash_bytes": 4 * 1024 * 1024},
    "search": {"epochs": 2, "warmup_epochs": 1, "steps_per_epoch": 4, "batch_size": 16, "train_resolution": 32,
               "check_every": 2},
    "train": {"epochs": 1, "qat_epochs": 1, "batch_size": 32, "representative_samples": 16},
    "push": {"model_name": "vww-tiny"},
}


def write_config(folder, **overrides) -> str:
    """The tiny config (with top-level section overrides merged in) and its fixture LUT, under ``folder``."""
    from lut_fixtures import fixture_lut

    from edgenas_keras.arch.space import SearchSpace

    lut_path = folder / "lut.json"
    if not lut_path.exists():
        fixture_lut(SearchSpace.load().with_resolution(32), device="cortex-m7").save(lut_path)
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}
    cfg["lut"] = {"device": "cortex-m7", "file": str(lut_path)}
    for section, values in overrides.items():
        cfg[section] = {**cfg.get(section, {}), **values} if isinstance(values, dict) else values
    path = folder / f"tiny-{len(list(folder.glob('tiny-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)
