"""The paper's evaluation (issue 14, Tables 1-4) at this machine's scale, side by side in one run.

    .venv/bin/python bench/paper_tables.py --scale full --out bench/results/paper_tables.json
    .venv/bin/python bench/paper_tables.py --scale smoke --out /tmp/smoke.json --work /tmp/smoke-work

- Table 1: on cortex-m7 at the main budget (pipeline/configs/default.yaml) and a tighter one: EdgeNAS (the
  library's search, then the same retraining as the pipeline's trainer), hand-designed networks mapped into
  the space and scaled to the budget, random search at equal compute, and fill from the cheapest
  architecture (edgenas_keras/benchmark.py says how each baseline is made). Per network: int8 top-1 in the
  TFLM runtime per seed with mean and 95% t interval, latency, SRAM and flash; EdgeNAS minus each other
  network paired by seed.
- Table 2: the same protocol on every device in --devices (EdgeNAS, random search, fill and the best hand
  network of Table 1), each at the same multiple of its floor (cheapest architecture) as the main budget.
- Table 3: the search's cost in CPU seconds (set-up and supernet warm-up, alternating alpha epochs,
  derivation, retraining) beside a hardware-in-the-loop equivalent (bench/lut_vs_hil.py's measurement).
- Table 4: the ablations (no latency penalty, no multiplier schedule, MACs proxy, K = 3 blocks) under the
  same protocol, each against the full method paired by seed.

Resumable: every trained network, search and random-search candidate is kept in --work keyed by its inputs
(architecture, seed, data, schedule) and reused on a rerun (``reuse`` in the JSON counts them). Progress goes
to stderr; the JSON (also written to --out) is the last line of stdout. Figures come from the run; the
schedule used is written beside them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

import edgenas_keras  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from edgenas_keras import benchmark as bm  # noqa: E402
from edgenas_keras import lut as lutmod  # noqa: E402
from edgenas_keras import machine  # noqa: E402
from edgenas_keras import progress  # noqa: E402
from edgenas_keras.cost.estimate import LatencyTables, arch_cost  # noqa: E402
from edgenas_keras.errors import UserError  # noqa: E402
from edgenas_keras.search.config import KB  # noqa: E402
from edgenas_keras.search.derive import Pricer, cheapest_indices  # noqa: E402
from edgenas_keras.search import SearchConfig, space_with_blocks  # noqa: E402
from edgenas_keras.search.loop import reader_data  # noqa: E402
from edgenas_keras.arch.space import SearchSpace, decode  # noqa: E402
from edgenas_keras.train import TrainConfig  # noqa: E402
from edgenas_keras.budgets import runtime_footprint  # noqa: E402
from edgenas_keras.validate import validate_model  # noqa: E402

MAIN = yaml.safe_load((ROOT / "pipeline" / "configs" / "default.yaml").read_text())
MAIN_DEVICE = "cortex-m7"
DEVICES = ("cortex-m4", "cortex-m7", "riscv", "cortex-a53", "cortex-m33")
PAPER_CLOCK_MHZ = {"cortex-m4": 168, "cortex-m7": 480, "riscv": 320, "cortex-a53": 1200}  # DESIGN.md section 1
ABLATIONS = {
    "no-latency-penalty": {"penalty": False},
    "no-multiplier-schedule": {"schedule": False},
    "macs-proxy": {"latency_proxy": "macs"},
    "k3-blocks": {"num_blocks": 3},
}
RANDOM_WINDOW = 0.9   # random search keeps architectures with latency in [0.9 B, B]

SCALES = {
    "smoke": {
        "images": 240, "eval_fraction": 0.4, "seeds": [0, 1],
        "search": {"epochs": 2, "warmup_epochs": 1, "steps_per_epoch": 3, "batch_size": 16,
                   "train_resolution": 32, "check_every": 1},
        "train": {"epochs": 1, "qat_epochs": 1, "batch_size": 16, "representative_samples": 16,
                  "bn_batches": 2, "resolution": 32},
        "proxy": {"steps": 2, "val_batches": 1},
        "hil_archs": 1, "devices": ["cortex-m7"], "hand": ["mobilenet-v2"], "ablations": ["no-latency-penalty"],
        "tight": False, "yardstick_seeds": 1, "emulated": False,
    },
    "full": {
        # the data size (about 4,000 train / 2,000 eval images), at the space's resolution
        "images": 6000, "eval_fraction": 0.35, "seeds": [0, 1, 2],
        "search": dict(MAIN["search"]),                       # the main job's search schedule
        "train": {**MAIN["train"], "epochs": 15, "qat_epochs": 2},
        "proxy": {"steps": 24, "val_batches": 8},
        "hil_archs": 5, "devices": list(DEVICES), "hand": list(bm.HAND_DESIGNED), "ablations": list(ABLATIONS),
        "tight": True, "yardstick_seeds": 3, "emulated": True,
    },
}


logging.getLogger("tensorflow").setLevel(logging.ERROR)   # the proxy's many small models: retracing notes


say = progress.prefixed("[paper_tables] ")   # one progress line on stderr, "[paper_tables] <msg>"


class Bench:
    """One benchmark run: schedule, data, budgets and the store of trained networks."""

    def __init__(self, sched: dict, work: Path):
        self.s = sched
        self.work = work
        self.store = bm.Store(work, progress=say)
        self.space = SearchSpace.load()
        self.budgets = MAIN["budgets"]
        self.data_dir, self.data_fp, self.stats = self._data()
        self.train_res = sched["train"].get("resolution") or self.space.resolution
        self._validated: dict[str, dict] = {}

    # -- data ------------------------------------------------------------------------------------------
    def _data(self):
        from edgenas_keras.data.synth import SynthSpec, write_synth

        spec = SynthSpec(n=self.s["images"], seed=MAIN["data"]["seed"], resolution=self.space.resolution,
                         eval_fraction=self.s["eval_fraction"])
        out = self.work / "data" / bm.digest(spec.options())
        if not (out / "stats.json").is_file():
            say(f"drawing {spec.n} synthetic images at {spec.resolution} px into {out}")
            write_synth(out, spec)
        stats = json.loads((out / "stats.json").read_text())
        return out, stats["fingerprint"], stats

    def data_summary(self) -> dict:
        ev = self.stats["labels_per_split"]["eval"]
        n_eval = int(ev["0"]) + int(ev["1"])
        return {"source": "synth (edgenas_keras.data.synth)", "images": self.s["images"],
                "train_images": int(self.stats["written"]["train"]), "eval_images": n_eval,
                "resolution": self.space.resolution, "train_resolution": self.train_res,
                "majority_class_rate": max(int(ev["0"]), int(ev["1"])) / n_eval, "fingerprint": self.data_fp}

    # -- devices and budgets ----------------------------------------------------------------------------
    def lut(self, device: str):
        return lutmod.load_device(device, PAPER_CLOCK_MHZ.get(device))

    def runtime_bytes(self, device: str) -> int:
        """The TFLM runtime's documented flash on ``device`` in bytes (every shipped device has one)."""
        return runtime_footprint(device).bytes

    def search_config(self, device: str, budget_ms: float, seed: int, **override) -> SearchConfig:
        budgets = {"latency_ms": float(budget_ms), "sram_bytes": self.budgets["sram_bytes"],
                   "flash_bytes": self.budgets["flash_bytes"]}   # flash: model + the device's runtime
        return SearchConfig.from_dict({**self.s["search"], "budgets": budgets, "seed": seed, **override},
                                      source="benchmark search schedule")

    def random_proxy(self, cfg: SearchConfig) -> dict:
        """The short training random search scores its candidates with: the search's own fitness when it
        trains children (``fitness: trained``: same steps and validation batches, at its resolution), else
        the schedule's ``proxy``."""
        if cfg.fitness == "trained":
            proxy = {"steps": cfg.fitness_steps, "val_batches": cfg.score_batches}
            if cfg.fitness_lr_decay or cfg.fitness_bn_batches:   # keys of earlier runs stay as they were
                proxy.update(lr_decay=cfg.fitness_lr_decay, recalibrate_bn=cfg.fitness_bn_batches)
            return proxy
        return dict(self.s["proxy"])

    def train_config(self, seed: int) -> TrainConfig:
        return TrainConfig.from_dict({**self.s["train"], "seed": seed}, source="benchmark training schedule")

    def pricer(self, space, lut, config) -> Pricer:
        return Pricer(space, lut, config, LatencyTables.from_lut(space, lut))

    # -- figures of one trained network --------------------------------------------------------------------
    def figures(self, space, arch: str, lut, budget_ms: float, model_dir: str) -> dict:
        """Latency, SRAM and flash: the validator's on the trained int8 model when it runs at the priced
        resolution (with the emulated core's figures under --emulated), else the cost models'."""
        if self.train_res == space.resolution:
            model = Path(model_dir) / "model_int8.tflite"
            key = f"{lut.device}-{lut.sha256[:12]}-{hashlib.sha256(model.read_bytes()).hexdigest()[:16]}"
            path = self.work / "validation" / f"{key}-{int(self.s['emulated'])}.json"
            if path.is_file():
                return json.loads(path.read_text())
            footprint = None
            if self.s["emulated"]:
                from deploy.emulate import measured_footprint
                from deploy.lut_emulated import with_cycles_per_instruction

                footprint, note = measured_footprint(model, lut.device, progress=None)
                footprint = with_cycles_per_instruction(footprint, lut)
                if footprint is None:
                    say(f"no emulated figures for {lut.device}: {note}")
            doc = validate_model(model, lut, {**self.budgets, "latency_ms": budget_ms},
                                 target_footprint=footprint)
            c = doc["checks"]
            fig = {"latency_ms": c["latency"]["figure"], "sram_bytes": c["sram"]["figure"],
                   "flash_bytes": c["flash"]["figure"],
                   "figures": "validator: LUT sum over the int8 model's operators, "
                              + ("emulated arena and linked image" if footprint else
                                 "max(predicted on-target arena, host TFLM arena), model + runtime flash")}
            if "latency_emulated" in c:
                fig["latency_emulated_ms"] = c["latency_emulated"]["figure"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(fig))
            return fig
        cost = arch_cost(space, decode(arch), lut)
        runtime = self.runtime_bytes(lut.device)
        return {"latency_ms": round(cost.latency_ms, 4), "sram_bytes": cost.sram_bytes,
                "flash_bytes": cost.flash_bytes + runtime,
                "figures": f"cost models at {space.resolution} px (LUT sum, predicted TFLM arena, model flash + "
                           f"{lut.device} runtime {runtime} B): the network was trained at {self.train_res} px"}

    def network(self, name: str, kind: str, space, lut, budget_ms: float, archs: dict, seeds, **extra) -> dict:
        """Train ``archs[seed]`` for every seed (reused when stored) and summarise one table row."""
        rows = []
        for seed in seeds:
            m = self.store.train(space, archs[seed], self.data_dir, self.data_fp, self.train_config(seed))
            fig = self.figures(space, archs[seed], lut, budget_ms, m["out_dir"])
            rows.append({"seed": seed, "arch": archs[seed], **fig,
                         "accuracy_int8": m["accuracy_int8_tflm"], "accuracy_float": m["accuracy_float"],
                         "accuracy_ptq_int8": m["accuracy_ptq_int8_tflm"], "eval_images": m["eval_examples"],
                         "train_cpu_s": m["cpu_s"], "reused": m["reused"]})
        acc = [r["accuracy_int8"] for r in rows]
        ci = bm.mean_ci(acc)
        distinct = sorted({r["arch"] for r in rows})
        worst = {k: max(r[k] for r in rows) for k in ("latency_ms", "sram_bytes", "flash_bytes")}
        fits = all(r["latency_ms"] <= budget_ms and r["sram_bytes"] <= self.budgets["sram_bytes"]
                   and r["flash_bytes"] <= self.budgets["flash_bytes"] for r in rows)
        return {"name": name, "kind": kind, "arch": distinct[0] if len(distinct) == 1 else [r["arch"] for r in rows],
                **worst, "fits": fits, "figures": rows[0]["figures"],
                "accuracy_int8": acc, "accuracy_int8_mean": ci["mean"],
                "accuracy_int8_ci95": [ci["ci95_low"], ci["ci95_high"]],
                "accuracy_float_mean": bm.mean_ci([r["accuracy_float"] for r in rows])["mean"],
                "seeds": list(seeds), "per_seed": rows, **extra}

    # -- one budget: Table 1's protocol ------------------------------------------------------------------
    def edgenas(self, device, lut, budget_ms, name="edgenas", kind="edgenas", **override):
        archs, searches = {}, []
        space = space_with_blocks(self.space, override.get("num_blocks"))
        for seed in self.s["seeds"]:
            cfg = self.search_config(device, budget_ms, seed, **override)
            result, cost = self.store.search(self.data_dir, lut, cfg, self.space, self.data_fp)
            archs[seed] = result.arch
            searches.append({"seed": seed, "argmax_arch": result.derived_arch,
                             "argmax_latency_ms": round(result.derived_latency_ms, 4),
                             "repaired": result.repaired, "filled": result.filled, "cost": cost})
        return self.network(name, kind, space, lut, budget_ms, archs, self.s["seeds"],
                            search={"config": {k: v for k, v in cfg.as_dict().items() if k != "seed"},
                                    "per_seed": searches})

    def budget_table(self, device: str, budget_ms: float, hands: list[str], rule: str = "") -> dict:
        lut = self.lut(device)
        say(f"{device} at {budget_ms:.3f} ms")
        en = self.edgenas(device, lut, budget_ms)
        nets = [en]
        # random search at equal compute, per seed
        archs, logs = {}, []
        for s, seed in zip(en["search"]["per_seed"], self.s["seeds"]):
            cfg = self.search_config(device, budget_ms, seed)
            pricer = self.pricer(self.space, lut, cfg)
            data = reader_data(self.data_dir, cfg, cfg.train_resolution or self.space.resolution,
                               self.space.in_channels)
            key = {"budgets": cfg.budgets.as_dict(), "lut": lut.sha256, "data": self.data_fp, "seed": seed,
                   "proxy": self.s["proxy"], "space": self.space.to_dict(), "window": RANDOM_WINDOW,
                   "search": cfg.as_dict()}
            proxy = self.random_proxy(cfg)
            key["proxy"] = proxy
            rs = self.store.random_search(pricer, data, cfg.train_resolution or self.space.resolution, key,
                                          s["cost"]["total_cpu_s"], RANDOM_WINDOW, proxy["steps"],
                                          proxy["val_batches"], seed, lr_decay=proxy.get("lr_decay", False),
                                          recalibrate_bn=proxy.get("recalibrate_bn", 0))
            archs[seed] = rs["best"]
            logs.append({"seed": seed, **rs})
        nets.append(self.network("random-search", "random-search", self.space, lut, budget_ms, archs,
                                 self.s["seeds"], random_search={"window": [RANDOM_WINDOW, 1.0],
                                                                 "proxy": self.random_proxy(cfg),
                                                                 "per_seed": logs}))
        pricer = self.pricer(self.space, lut, self.search_config(device, budget_ms, 0))
        fill = str(bm.fill_from_cheapest(pricer))
        nets.append(self.network("fill", "fill", self.space, lut, budget_ms, dict.fromkeys(self.s["seeds"], fill),
                                 self.s["seeds"], rule="search.fill from the cheapest architecture, no learning"))
        for h in hands:
            net = bm.HAND_DESIGNED[h]
            arch, scaling = bm.scale_to_budget(self.space, net, lambda a, p=pricer: bm.fits_all(p, a))
            row = {"source": net.source, "mapping": net.mapping, "scaling": scaling}
            if not scaling["fits"]:
                nets.append({"name": h, "kind": "hand", "arch": str(arch), "fits": False, **row,
                             "note": "no uniform scaling fits the budgets: not trained"})
                continue
            nets.append(self.network(h, "hand", self.space, lut, budget_ms,
                                     dict.fromkeys(self.s["seeds"], str(arch)), self.s["seeds"], **row))
        acc = {n["name"]: dict(zip(n["seeds"], n["accuracy_int8"])) for n in nets if "accuracy_int8" in n}
        versus = {name: bm.paired_diff(acc["edgenas"], a) for name, a in acc.items() if name != "edgenas"}
        return {"device": device, "clock_mhz": lut.clock_mhz, "lut": lutmod.manifest()["luts"][device]["file"],
                "budget_ms": round(budget_ms, 4), "budget_rule": rule,
                "sram_budget_bytes": self.budgets["sram_bytes"], "flash_budget_bytes": self.budgets["flash_bytes"],
                "eval_images": en["per_seed"][0]["eval_images"], "seeds": self.s["seeds"], "networks": nets,
                "edgenas_vs_random": {k: versus["random-search"][k] for k in
                                      ("mean_diff_points", "ci95_low", "ci95_high")},
                "edgenas_minus": versus}

    # -- the other tables --------------------------------------------------------------------------------
    def yardstick(self, lut, budget_ms: float) -> dict:
        """The space's smallest and largest architectures trained with the same schedule: how far apart
        architectures can be on this data (their ``fits`` against ``budget_ms`` is not the point)."""
        from edgenas_keras.model.supernet import largest_arch

        seeds = self.s["seeds"][: self.s["yardstick_seeds"]]
        small = str(self.space.from_indices(cheapest_indices(self.space)))
        large = str(largest_arch(self.space))
        out = {}
        for name, arch in (("smallest", small), ("largest", large)):
            n = self.network(name, "yardstick", self.space, lut, budget_ms, dict.fromkeys(seeds, arch), seeds)
            out[name] = {"arch": arch, "latency_ms": n["latency_ms"], "accuracy_int8": n["accuracy_int8"],
                         "accuracy_int8_mean": n["accuracy_int8_mean"]}
        out["spread_points"] = 100 * (out["largest"]["accuracy_int8_mean"] - out["smallest"]["accuracy_int8_mean"])
        out["seeds"] = seeds
        return out

    def hil(self, lut, archs: list[str]) -> dict:
        """bench/lut_vs_hil.py's measurement on ``archs`` (architectures at the budget, as a search would
        measure): seconds per architecture to price it from the LUT and to build, convert and time it."""
        archs = archs[: self.s["hil_archs"]]
        path = self.work / f"hil-{bm.digest(archs)}.json"
        if path.is_file():
            return json.loads(path.read_text())
        from edgenas_keras.lut import measure as lut_build
        from edgenas_keras.cost.graph import arch_graph

        say(f"hardware-in-the-loop equivalent: {len(archs)} architecture(s) built, converted, timed")
        many = [decode(a) for a in archs] * max(1, 500 // len(archs))
        t0 = time.perf_counter()
        for a in many:
            lut.latency_ms(arch_graph(self.space, a).keys)
        lut_s = (time.perf_counter() - t0) / len(many)
        t0 = time.perf_counter()
        for i, a in enumerate(archs):
            lut_build.measure_model(lut_build.arch_int8_model(self.space, decode(a), seed=i))
        hil_s = (time.perf_counter() - t0) / len(archs)
        doc = {"lut_s_per_arch": lut_s, "hil_s_per_arch": hil_s, "hil_archs": archs,
               "method": "bench/lut_vs_hil.py's measurement on Table 1's architectures at the budget: per "
                         "architecture, LUT pricing (operator graph + table sum) against building, converting "
                         "to int8 and timing it in the TFLM runtime on this host (a board in the loop would add "
                         "flashing and a serial round trip)"}
        path.write_text(json.dumps(doc))
        return doc

    def cost_table(self, t1: dict, lut) -> dict:
        en = next(n for n in t1["networks"] if n["kind"] == "edgenas")
        rs = next(n for n in t1["networks"] if n["kind"] == "random-search")
        per_seed = []
        for s, r, rr in zip(en["search"]["per_seed"], en["per_seed"], rs["random_search"]["per_seed"]):
            c = s["cost"]
            per_seed.append({"seed": s["seed"], "supernet_cpu_s": c["supernet_cpu_s"], "alpha_cpu_s": c["alpha_cpu_s"],
                             "derivation_cpu_s": c["derivation_cpu_s"], "search_cpu_s": c["total_cpu_s"],
                             "retraining_cpu_s": r["train_cpu_s"], "alpha_steps": c["alpha_steps"],
                             "complete": c["complete"], "random_search_cpu_s": rr["cpu_s"],
                             "random_search_priced": rr["priced"], "random_search_scored": rr["candidates"]})
        keys = ("supernet_cpu_s", "alpha_cpu_s", "derivation_cpu_s", "search_cpu_s", "retraining_cpu_s")
        mean = {k: bm.mean_ci([p[k] for p in per_seed])["mean"] for k in keys}
        seen = []
        for n in t1["networks"]:
            for r in n.get("per_seed", []):
                if r["arch"] not in seen and n["kind"] in ("edgenas", "random-search", "fill"):
                    seen.append(r["arch"])
        h = self.hil(lut, seen)
        steps = per_seed[0]["alpha_steps"]
        priced = bm.mean_ci([p["random_search_priced"] for p in per_seed])["mean"]
        return {"device": t1["device"], "budget_ms": t1["budget_ms"], "per_seed": per_seed, "mean": mean,
                "unit": "CPU seconds (time.process_time: every thread of this process)",
                "hil_equivalent": {**h, "search_sampled_paths": steps,
                                   "search_paths_hil_s": steps * h["hil_s_per_arch"],
                                   "search_paths_lut_s": steps * h["lut_s_per_arch"],
                                   "random_search_priced": priced,
                                   "random_search_hil_s": priced * h["hil_s_per_arch"],
                                   "note": "a search without a LUT would measure each path it samples (one per "
                                           "alpha step; the expected latency over the whole space is not "
                                           "measurable at all) and random search each architecture it prices "
                                           "to find the window"}}

    def ablation_table(self, t1: dict, names: list[str]) -> dict:
        lut = self.lut(MAIN_DEVICE)
        full = next(n for n in t1["networks"] if n["kind"] == "edgenas")
        rows = []
        ref = dict(zip(full["seeds"], full["accuracy_int8"]))
        for name in names:
            say(f"ablation {name}")
            n = self.edgenas(MAIN_DEVICE, lut, t1["budget_ms"], name=name, kind="ablation", **ABLATIONS[name])
            n["override"] = ABLATIONS[name]
            n["full_minus_ablation"] = bm.paired_diff(ref, dict(zip(n["seeds"], n["accuracy_int8"])))
            rows.append(n)
        return {"device": MAIN_DEVICE, "budget_ms": t1["budget_ms"], "seeds": self.s["seeds"],
                "full": {k: full[k] for k in ("arch", "latency_ms", "accuracy_int8", "accuracy_int8_mean",
                                               "accuracy_int8_ci95")},
                "ablations": rows}


# -- the README's tables from a result file --------------------------------------------------------------


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def _diff(d: dict | None) -> str:
    if not d:
        return "-"
    text = f"{d['mean_diff_points']:+.2f} ({d['ci95_low']:+.2f}..{d['ci95_high']:+.2f})"
    return f"**{text}**" if d["ci95_low"] > 0 or d["ci95_high"] < 0 else text


def _arch_cell(n: dict) -> str:
    return f"`{n['arch']}`" if isinstance(n["arch"], str) else f"one per seed, e.g. `{n['arch'][0]}`"


def _kib(n: dict, key: str) -> str:
    return "-" if n.get(key) is None else f"{n[key] / KB:.1f}"


def budget_markdown(t: dict, title: str) -> str:
    """One budget table (``table1``, ``table1_tight``, a ``table2`` device) as GitHub Markdown: per network its
    architecture, worst latency / SRAM / flash over the seeds, int8 accuracy per seed, mean and 95% CI, and
    EdgeNAS minus it paired by seed (bold when the interval excludes zero)."""
    from tabulate import tabulate

    rows = []
    for n in t["networks"]:
        if "accuracy_int8" not in n:
            rows.append([n["name"], n["kind"], _arch_cell(n), "-", "-", "-", "does not fit", "-", "-"])
            continue
        ci = n.get("accuracy_int8_ci95") or [None, None]
        rows.append([n["name"], n["kind"], _arch_cell(n), f"{n['latency_ms']:.2f}", _kib(n, "sram_bytes"),
                     _kib(n, "flash_bytes"), " / ".join(_pct(a) for a in n["accuracy_int8"]),
                     f"{_pct(n['accuracy_int8_mean'])} ({_pct(ci[0])}..{_pct(ci[1])})",
                     "-" if n["kind"] == "edgenas" else _diff(t.get("edgenas_minus", {}).get(n["name"]))])
    head = ["network", "kind", "architecture", "latency (ms)", "SRAM (KiB)", "flash (KiB)",
            "int8 accuracy per seed (%)", "mean (95% CI)", "EdgeNAS minus it, paired (95% CI)"]
    return (f"{title}: {t['device']} at {t['budget_ms']:g} ms ({t.get('budget_rule', '')}), seeds "
            f"{', '.join(map(str, t['seeds']))}, {t['eval_images']} eval images\n\n"
            + tabulate(rows, head, tablefmt="github", disable_numparse=True))


def markdown(doc: dict) -> str:
    """The README's view of a ``paper_tables.json`` document: Tables 1-4 as GitHub Markdown (the tables a
    run did not make are left out)."""
    from tabulate import tabulate

    parts = [f"Command: `{doc['command']}`; date {doc['date']}; load average (1 min) {doc['load']['start'][0]} at the "
             f"start, {doc['load']['end'][0]} at the end; "
             f"{doc['data'].get('train_images')} train / {doc['data'].get('eval_images')} eval images, majority "
             f"class {100 * doc['data'].get('majority_class_rate', 0):.1f}%."]
    yard = doc["data"].get("yardstick")
    if yard and "skipped" in yard:
        parts.append(f"Yardstick not run ({yard['skipped']}).")
    elif yard:
        ends = [f"{name} `{yard[name]['arch']}` ({yard[name]['latency_ms']:.1f} ms) "
                f"{_pct(yard[name]['accuracy_int8_mean'])}%" for name in ("smallest", "largest")]
        parts.append(f"Yardstick (the space's ends, seeds {', '.join(map(str, yard['seeds']))}): {'; '.join(ends)}; "
                     f"spread {yard['spread_points']:.1f} points.")
    for key, title in (("table1", "Table 1"), ("table1_tight", "Table 1, tighter budget")):
        if key in doc:
            parts.append(budget_markdown(doc[key], title))
    if "table2" in doc:
        rows = []
        for t in doc["table2"]["devices"]:
            by = {n["name"]: n for n in t["networks"]}
            hand = doc["table2"]["hand"][0] if doc["table2"]["hand"] else None
            rows.append([t["device"], f"{t['budget_ms']:g}", *[_pct(by[k]["accuracy_int8_mean"]) if k in by and
                                                               "accuracy_int8" in by[k] else "-" for k in
                                                               ("edgenas", "random-search", "fill", hand)],
                         _diff(t["edgenas_vs_random"]), _diff(t["edgenas_minus"].get(hand))])
        parts.append("Table 2: int8 accuracy means (%) per device, EdgeNAS minus random search and minus the best "
                     f"hand network of Table 1 ({', '.join(doc['table2']['hand'])}), paired by seed\n\n"
                     + tabulate(rows, ["device", "budget (ms)", "EdgeNAS", "random search", "fill",
                                       "best hand network", "EdgeNAS - random", "EdgeNAS - hand"],
                                tablefmt="github", disable_numparse=True))
    if "table3" in doc:
        t = doc["table3"]
        rows = [[p["seed"], p["supernet_cpu_s"], p["alpha_cpu_s"], p["derivation_cpu_s"], p["search_cpu_s"],
                 p["retraining_cpu_s"], p["random_search_cpu_s"], p["random_search_scored"]] for p in t["per_seed"]]
        h = t["hil_equivalent"]
        parts.append("Table 3: search cost in CPU seconds (time.process_time)\n\n"
                     + tabulate(rows, ["seed", "set-up + warm-up", "alpha epochs", "derivation", "search total",
                                       "retraining", "random search", "random candidates scored"],
                                tablefmt="github", disable_numparse=True)
                     + f"\n\nPricing one architecture: LUT {1e3 * h['lut_s_per_arch']:.2f} ms, build + convert + "
                       f"time in the TFLM runtime {h['hil_s_per_arch']:.1f} s; the search's {h['search_sampled_paths']} "
                       f"sampled paths would cost {h['search_paths_hil_s']:.0f} s measured instead of "
                       f"{h['search_paths_lut_s']:.2f} s from the LUT; random search priced "
                       f"{h['random_search_priced']:.0f} architectures ({h['random_search_hil_s']:.0f} s measured).")
    if "table4" in doc:
        t = doc["table4"]
        rows = [["full method", _arch_cell(t["full"]), f"{t['full']['latency_ms']:.2f}",
                 " / ".join(_pct(a) for a in t["full"]["accuracy_int8"]), _pct(t["full"]["accuracy_int8_mean"]), "-"]]
        for n in t["ablations"]:
            rows.append([n["name"], _arch_cell(n), f"{n['latency_ms']:.2f}",
                         " / ".join(_pct(a) for a in n["accuracy_int8"]), _pct(n["accuracy_int8_mean"]),
                         _diff(n["full_minus_ablation"])])
        parts.append(f"Table 4: ablations on {t['device']} at {t['budget_ms']:g} ms\n\n"
                     + tabulate(rows, ["search", "architecture", "latency (ms)", "int8 accuracy per seed (%)",
                                       "mean (%)", "full minus ablation, paired (95% CI)"],
                                tablefmt="github", disable_numparse=True))
    notes = [f"{key}: {doc[key]['measured_with']}" for key in ("table1", "table1_tight", "table2", "table3", "table4")
             if isinstance(doc.get(key), dict) and doc[key].get("measured_with")]
    if notes:   # tables carried over from an earlier run of another search (the JSON says which)
        parts.append("Carried over from an earlier run:\n\n" + "\n".join(f"- {n}" for n in notes))
    return "\n\n".join(parts) + "\n"


def schedule(args) -> dict:
    s = json.loads(json.dumps(SCALES[args.scale]))
    if args.seeds:
        s["seeds"] = [int(x) for x in args.seeds.split(",")]
    for flag, where, key in (("images", None, "images"), ("eval_fraction", None, "eval_fraction"),
                             ("train_epochs", "train", "epochs"), ("qat_epochs", "train", "qat_epochs"),
                             ("train_resolution", "train", "resolution"), ("search_epochs", "search", "epochs"),
                             ("search_steps", "search", "steps_per_epoch"), ("proxy_steps", "proxy", "steps"),
                             ("hil_archs", None, "hil_archs"), ("yardstick_seeds", None, "yardstick_seeds")):
        v = getattr(args, flag)
        if v is not None:
            (s[where] if where else s)[key] = v
    for item in args.search_set or []:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise UserError(f"--search-set takes KEY=VALUE (a search: field of the pipeline config), got {item!r}")
        s["search"][k] = yaml.safe_load(v)
    SearchConfig.from_dict({**s["search"], "budgets": {"latency_ms": 1.0}}, source="--search-set")   # fail before any work
    for flag in ("devices", "hand", "ablations"):
        v = getattr(args, flag)
        if v is not None:
            s[flag] = [x for x in v.split(",") if x]
    if args.tight is not None:
        s["tight"] = args.tight
    if args.emulated is not None:
        s["emulated"] = args.emulated
    bad = [h for h in s["hand"] if h not in bm.HAND_DESIGNED] + [a for a in s["ablations"] if a not in ABLATIONS]
    bad += [d for d in s["devices"] if d not in lutmod.shipped_devices()]
    if bad:
        raise UserError(f"unknown name(s) {', '.join(bad)}; hand: {', '.join(bm.HAND_DESIGNED)}; ablations: "
                        f"{', '.join(ABLATIONS)}; devices: {', '.join(lutmod.shipped_devices())}")
    s["scale"] = args.scale
    s["random_window"] = [RANDOM_WINDOW, 1.0]
    return s


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--scale", choices=sorted(SCALES), default="smoke",
                    help="smoke: minutes, plumbing only (2 seeds, 32 px, 1+1 epochs, cortex-m7); full: the paper "
                         "protocol (3 seeds, 96 px, 15+2 epochs, 5 devices, 5 hand networks, 4 ablations)")
    ap.add_argument("--out", help="write the JSON here (atomically)")
    ap.add_argument("--work", default=str(ROOT / "runs" / "paper_tables"),
                    help="keeps every trained network and search, reused on a rerun (default runs/paper_tables)")
    ap.add_argument("--tables", default="1,2,3,4", help="which tables (Table 1 is always run: the others use it)")
    ap.add_argument("--seeds", help="comma-separated training seeds (full: 0,1,2)")
    ap.add_argument("--images", type=int, help="synthetic images drawn (full: 6000)")
    ap.add_argument("--eval-fraction", type=float, help="share of them in the eval split (full: 0.35)")
    ap.add_argument("--train-epochs", type=int, help="float retraining epochs (full: 15)")
    ap.add_argument("--qat-epochs", type=int, help="QAT fine-tune epochs (full: 2)")
    ap.add_argument("--train-resolution", type=int, help="retraining input side (default: the space's, 96)")
    ap.add_argument("--search-epochs", type=int)
    ap.add_argument("--search-steps", type=int, help="weight steps per search epoch")
    ap.add_argument("--proxy-steps", type=int, help="random search: training steps per candidate (a search "
                    "with fitness: trained makes random search use its own fitness_steps instead)")
    ap.add_argument("--search-set", action="append", metavar="KEY=VALUE",
                    help="set a field of the search schedule (SearchConfig; VALUE read as YAML), e.g. "
                    "--search-set strategy=evolution --search-set fitness=trained; repeatable")
    ap.add_argument("--hil-archs", type=int, help="Table 3: architectures timed the HIL way (full: 5)")
    ap.add_argument("--yardstick-seeds", type=int, help="seeds for the smallest/largest yardstick networks (0: skip them; the largest trains for about an hour per seed at the full scale)")
    ap.add_argument("--devices", help=f"Table 2 devices (full: {','.join(DEVICES)})")
    ap.add_argument("--hand", help=f"hand-designed networks (full: {','.join(bm.HAND_DESIGNED)})")
    ap.add_argument("--ablations", help=f"Table 4 ablations (full: {','.join(ABLATIONS)})")
    ap.add_argument("--budget-ms", type=float, default=MAIN["budgets"]["latency_ms"], help="main budget (45)")
    ap.add_argument("--tight-ms", type=float, help="the tighter Table 1 budget (default 0.6 x the main one)")
    ap.add_argument("--tight", dest="tight", action="store_true", default=None,
                    help="also Table 1 at the tighter budget (full's default)")
    ap.add_argument("--no-tight", dest="tight", action="store_false")
    ap.add_argument("--emulated", dest="emulated", action="store_true", default=None,
                    help="SRAM, flash and a latency from the model run on the emulated core (full's default)")
    ap.add_argument("--no-emulated", dest="emulated", action="store_false")
    ap.add_argument("--markdown", metavar="RESULT_JSON",
                    help="print the README's tables (GitHub Markdown) of a finished result file and exit")
    ap.add_argument("--debug", action="store_true")
    args = ap.parse_args(argv)
    try:
        return run(args)
    except UserError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run(args) -> int:
    if args.markdown:
        try:
            doc = json.loads(Path(args.markdown).read_text())
            text = markdown(doc)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{args.markdown} is not a readable bench/paper_tables.py result ({exc})") from None
        print(text, end="")
        return 0
    tables = {int(t) for t in args.tables.split(",") if t}
    sched = schedule(args)
    load0, t0 = bm.load_average(), time.perf_counter()
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    b = Bench(sched, work)
    ident = machine.identity()
    doc = {"command": shlex.join([sys.executable.split("/")[-1], "bench/paper_tables.py", *sys.argv[1:]]),
           "date": date,
           "machine": {"cpu": ident.get("model_name"), "cores": ident.get("cores"), "identity": ident},
           "schedule": sched, "data": b.data_summary()}
    hands = sched["hand"]
    t1 = b.budget_table(MAIN_DEVICE, args.budget_ms, hands, rule="pipeline/configs/default.yaml budgets")
    doc["table1"] = t1
    if sched["tight"]:
        tight = args.tight_ms or 0.6 * args.budget_ms
        doc["table1_tight"] = b.budget_table(MAIN_DEVICE, tight, hands, rule=f"{tight / args.budget_ms:.2f} x main")
    if sched["yardstick_seeds"] > 0:
        doc["data"]["yardstick"] = b.yardstick(b.lut(MAIN_DEVICE), args.budget_ms)
    else:   # the largest architecture trains for about an hour per seed at the full scale
        doc["data"]["yardstick"] = {"skipped": "--yardstick-seeds 0"}
    if 2 in tables:
        hand_rows = [n for n in t1["networks"] if n["kind"] == "hand" and n.get("accuracy_int8_mean") is not None]
        best = [max(hand_rows, key=lambda n: n["accuracy_int8_mean"])["name"]] if hand_rows else []
        floor_main = arch_cost(b.space, b.space.from_indices(cheapest_indices(b.space)), b.lut(MAIN_DEVICE)).latency_ms
        ratio = args.budget_ms / floor_main
        rows = []
        for device in sched["devices"]:
            lut = b.lut(device)
            floor = arch_cost(b.space, b.space.from_indices(cheapest_indices(b.space)), lut).latency_ms
            budget = args.budget_ms if device == MAIN_DEVICE else round(floor * ratio, 3)
            rows.append(b.budget_table(device, budget, best,
                                       rule=f"{ratio:.3f} x the device's floor {floor:.3f} ms (the main budget's "
                                            f"multiple of the cortex-m7 floor)"))
        doc["table2"] = {"devices": rows, "hand": best,
                         "note": "networks per device: edgenas, random-search, fill and the hand-designed network "
                                 "with the best mean int8 accuracy in Table 1"}
    if 3 in tables:
        doc["table3"] = b.cost_table(t1, b.lut(MAIN_DEVICE))
    if 4 in tables:
        doc["table4"] = b.ablation_table(t1, sched["ablations"])
    doc["reuse"] = dict(b.store.counts)
    doc["load"] = {"start": load0, "end": bm.load_average()}
    doc["wall_s"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(doc, sort_keys=False, default=float)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1, default=float) + "\n")
        tmp.replace(out)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
