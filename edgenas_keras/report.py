"""Self-contained HTML reports of a pipeline run or of the benchmark (``edgenas report``).

One HTML file with everything inline: the figures are matplotlib SVG (text kept as SVG text,
``svg.fonttype: none``), the styles a ``<style>`` block, no script and no external resource, so the file
opens offline, attaches to a CI job or a mail and renders alike everywhere. Every figure's numbers are also
written as text: a caption, a list of facts (``<dd data-fact="NAME">``) and a table, so a reader can copy
them and a test can assert them.

The inputs are plain files; this module never reads ML Metadata and does not know TFX's folder layout
(``pipeline/report.py`` finds a run's files and calls ``run_report``):

- a run (``RunInputs``): the figures of ``summary.json``, the search's ``result.json`` and ``history.json``,
  the int8 model (``model_int8.tflite``) with its ``metrics.json``, ``validation.json`` of the final model and
  of every other model validated in the same output folder, the LUT the run priced with (``lut.json``) and
  the table's validation rows: ``<table>-validation.jsonl`` beside the shipped or user table file, as
  ``edgenas lut validate --rows`` writes them (``lut_validation_rows_file``);
- a benchmark result (``bench_report``): a JSON object with ``table1`` (``device``, ``budget_ms``,
  ``networks: [{name, kind, latency_ms, accuracy_int8_mean, ...}]``, optionally ``edgenas_vs_random``),
  ``table2``..``table4`` in the same spirit (any table holding ``networks`` gets the same figure; other
  tables are shown as tables of their rows) and ``command``, ``date``, ``machine``, ``load``.

Sections of a run report: the verdict (every check's figure against its budget); accuracy against latency
for every trained network with the Pareto front and the budget line; the search history (expected latency
and memory against the search's budgets, the penalty multipliers, alpha's entropy per block); the final
model's latency per operator (the LUT's price, and the instructions measured per operator on the emulated
core where the validator ran it); the LUT's predicted-against-measured scatter. A missing input leaves its
section with one line saying what is missing, never a failed report.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgenas_keras._fs import atomic_write_text
from edgenas_keras.errors import UserError

KB = 1024
TEMPLATE = Path(__file__).resolve().parent / "templates" / "report.html.j2"
_KIND_COLOURS = {"final": "#d62728", "edgenas": "#d62728", "earlier": "#1f77b4", "random-search": "#7f7f7f",
                 "hand": "#2ca02c", "fill": "#9467bd", "ablation": "#ff7f0e"}


# ---- the document ----------------------------------------------------------------------------------------


@dataclass
class Table:
    """Rows of text cells under ``columns``; ``open_`` False folds it (a ``<details>`` element, still in the DOM)."""

    columns: list[str]
    rows: list[list[str]]
    open_: bool = True
    title: str = ""


@dataclass
class Section:
    """One heading of the report: an inline SVG figure, its caption, facts (name -> (label, text)), tables,
    notes. ``missing`` replaces all of them with one line saying which input is absent."""

    id: str
    title: str
    svg: str = ""
    caption: str = ""
    facts: dict[str, tuple[str, str]] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    missing: str = ""


@dataclass
class Report:
    """A report: ``html()`` renders it (jinja2, autoescaped), ``write(path)`` writes it atomically."""

    title: str
    subtitle: str
    source: str
    sections: list[Section]

    def html(self) -> str:
        """The whole document as one HTML string."""
        import jinja2  # noqa: PLC0415

        import edgenas_keras  # noqa: PLC0415

        env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                                 lstrip_blocks=True)
        template = env.from_string(TEMPLATE.read_text(encoding="utf-8"))
        now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        return template.render(report=self, generated=now, version=edgenas_keras.__version__)

    def write(self, path: str | os.PathLike) -> Path:
        """Write the HTML to ``path`` through a temporary file in the same folder (nothing half-written)."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        text = self.html()
        atomic_write_text(out, text)
        return out


# ---- helpers ---------------------------------------------------------------------------------------------


def _ms(v) -> str:
    return "-" if v is None else f"{float(v):,.3f} ms"


def _bytes(v) -> str:
    return "-" if v is None else f"{int(round(float(v))):,} B"


def _acc(v) -> str:
    if v is None:
        return "-"
    v = float(v)
    return f"{v:.4f}" if abs(v) <= 1.0 else f"{v:.2f}"


def _num(v, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.{digits}f}" if abs(v) < 1e6 else f"{v:.4g}"
    return str(v)


def read_json(path: str | os.PathLike, what: str):
    """``path`` parsed as JSON; ``UserError`` naming ``what`` and the file when it is not valid JSON."""
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{what} {p} is not valid JSON ({exc})") from None


def _optional_json(path: Path | None, what: str):
    return read_json(path, what) if path is not None and path.is_file() else None


def _svg(fig, salt: str) -> str:
    """``fig`` (a matplotlib Figure) as an inline ``<svg>`` element: text as text, no XML prolog, no date."""
    import matplotlib  # noqa: PLC0415

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _figure(width: float, height: float, rows: int = 1, cols: int = 1):
    import logging  # noqa: PLC0415

    # matplotlib's own notices (building its font cache on a fresh machine) are not the user's business
    mpl_log = logging.getLogger("matplotlib")
    if mpl_log.level == logging.NOTSET:
        mpl_log.setLevel(logging.ERROR)
    from matplotlib.figure import Figure  # noqa: PLC0415  (no pyplot: no global state, no GUI backend)

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def pareto_front(points: Iterable[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates, by increasing latency: ``points`` are (latency,
    accuracy); a point is on the front iff every faster-or-equal point is strictly less accurate (ties in
    latency keep the more accurate one)."""
    pts = list(points)
    order = sorted(range(len(pts)), key=lambda i: (pts[i][0], -pts[i][1]))
    front, best = [], -math.inf
    for i in order:
        if pts[i][1] > best:
            front.append(i)
            best = pts[i][1]
    return front


# ---- accuracy against latency ----------------------------------------------------------------------------


def accuracy_latency_section(networks: list[dict], budget_ms: float | None, sid: str, title: str,
                             min_accuracy: float | None = None, context: str = "") -> Section:
    """Every trained network as a point (latency in ms, int8 accuracy), the Pareto front as a step line, the
    latency budget as a vertical line (and the accuracy floor as a horizontal one when set).

    ``networks``: dicts with ``name``, ``kind``, ``latency_ms``, ``accuracy`` and optional ``sram_bytes``,
    ``flash_bytes``, ``accuracy_per_seed``; networks without both figures are listed but not drawn."""
    sec = Section(sid, title)
    drawn = [n for n in networks if n.get("latency_ms") is not None and n.get("accuracy") is not None]
    if not networks:
        sec.missing = "no trained network with a validated latency and accuracy was found"
        return sec
    front = {id(drawn[i]) for i in pareto_front((n["latency_ms"], n["accuracy"]) for n in drawn)}
    fig, ax = _figure(7.0, 4.2)
    ax = ax[0][0]
    kinds = sorted({n["kind"] for n in drawn}, key=lambda k: (k not in ("final", "edgenas"), k))
    for kind in kinds:
        pts = [n for n in drawn if n["kind"] == kind]
        ax.scatter([n["latency_ms"] for n in pts], [n["accuracy"] for n in pts], s=46, zorder=3,
                   color=_KIND_COLOURS.get(kind), label=kind, edgecolors="black", linewidths=0.5)
    fr = sorted((n for n in drawn if id(n) in front), key=lambda n: n["latency_ms"])
    if fr:
        ax.step([n["latency_ms"] for n in fr], [n["accuracy"] for n in fr], where="post", color="black",
                linewidth=1.0, linestyle="--", label="Pareto front", zorder=2)
    for n in drawn:
        if n["kind"] in ("final", "edgenas") or len(drawn) <= 12:
            ax.annotate(n.get("label") or n["name"], (n["latency_ms"], n["accuracy"]), fontsize=7,
                        xytext=(4, 4), textcoords="offset points")
    if budget_ms:
        ax.axvline(budget_ms, color="#d62728", linewidth=1.2, label=f"latency budget {budget_ms:g} ms")
    if min_accuracy:
        ax.axhline(min_accuracy, color="#555555", linewidth=0.8, linestyle=":",
                   label=f"accuracy floor {min_accuracy:g}")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("int8 accuracy (TFLM)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    sec.svg = _svg(fig, sid)
    names = ", ".join(n["name"] for n in fr) or "-"
    sec.caption = (f"{len(networks)} trained network(s){context}; latency budget "
                   f"{_ms(budget_ms) if budget_ms else 'not set'}. Pareto front (fastest first): {names}.")
    sec.facts["networks"] = ("trained networks", str(len(networks)))
    if budget_ms:
        sec.facts["budget_ms"] = ("latency budget", _ms(budget_ms))
    sec.facts["pareto_front"] = ("Pareto front", names)
    cols = ["network", "kind", "latency", "int8 accuracy", "Pareto front", "within budget"]
    extra = [k for k in ("sram_bytes", "flash_bytes") if any(n.get(k) is not None for n in networks)]
    cols += [{"sram_bytes": "SRAM", "flash_bytes": "flash"}[k] for k in extra]
    seeds = any(n.get("accuracy_per_seed") for n in networks)
    if seeds:
        cols.append("int8 accuracy per seed")
    ci = any(n.get("accuracy_ci95") for n in networks)
    if ci:
        cols.append("95% CI of the mean")
    rows = []
    for n in sorted(networks, key=lambda n: (n.get("latency_ms") is None, n.get("latency_ms") or 0)):
        within = "-" if not budget_ms or n.get("latency_ms") is None else ("yes" if n["latency_ms"] <= budget_ms
                                                                           else "no")
        row = [n["name"], n["kind"], _ms(n.get("latency_ms")), _acc(n.get("accuracy")),
               "yes" if id(n) in front else "", within]
        row += [_bytes(n.get(k)) for k in extra]
        if seeds:
            row.append(", ".join(_acc(a) for a in n.get("accuracy_per_seed") or []))
        if ci:
            c = n.get("accuracy_ci95") or []
            row.append(f"{_acc(c[0])} .. {_acc(c[1])}" if len(c) == 2 else "-")
        rows.append(row)
    sec.tables.append(Table(cols, rows))
    return sec


# ---- the search history ----------------------------------------------------------------------------------


def _entropies(entry: dict) -> list[float] | None:
    if entry.get("alpha_entropy") is not None:
        return [float(v) for v in entry["alpha_entropy"]]
    if entry.get("probs") is not None:   # histories written before alpha_entropy was recorded
        from edgenas_keras.search.loop import block_entropy  # noqa: PLC0415

        return block_entropy(entry["probs"])
    return None


def evolution_history_section(candidates: list[dict], result: dict | None) -> Section:
    """A search that chose by accuracy evidence and stepped no alpha (``strategy: evolution``, either
    fitness): every scored candidate (``candidates.json``, best first), its proxy accuracy (fraction;
    inherited weights or a short stand-alone training, ``result.json``'s ``fitness``) by generation (best
    first within one) and against its LUT latency in ms with the search's latency budget, coloured by
    generation."""
    sec = Section("search", "Search history")
    budgets = (result or {}).get("budgets") or {}
    lat_b = budgets.get("latency_ms")
    fitness = (result or {}).get("fitness", "inherited")
    how = {"trained": "short stand-alone training", "inherited": "inherited supernet weights"}.get(fitness, fitness)
    order = sorted(range(len(candidates)), key=lambda n: (int(candidates[n].get("generation", 0)), n))
    gens = sorted({int(c.get("generation", 0)) for c in candidates})
    fig, axes = _figure(9.0, 3.2, 1, 2)
    for g in gens:
        pos = [k for k, n in enumerate(order) if int(candidates[n].get("generation", 0)) == g]
        rows = [candidates[order[k]] for k in pos]
        label = "first population" if g == 0 else f"generation {g}"
        axes[0][0].scatter([k + 1 for k in pos], [r["accuracy"] for r in rows], s=14, label=label)
        axes[0][1].scatter([r["latency_ms"] for r in rows], [r["accuracy"] for r in rows], s=14, label=label)
    best = candidates[0]
    axes[0][0].set_xlabel("candidate (by generation, best first within one)")
    axes[0][0].set_title(f"proxy accuracy ({how})", fontsize=9)
    axes[0][1].scatter([best["latency_ms"]], [best["accuracy"]], s=60, facecolors="none", edgecolors="#d62728",
                       label="returned")
    if lat_b:
        axes[0][1].axvline(lat_b, color="#d62728", linestyle="--", label=f"budget {lat_b:g} ms")
    axes[0][1].set_xlabel("latency (LUT, ms)")
    axes[0][1].set_title("proxy accuracy against latency", fontsize=9)
    for a in axes[0]:
        a.set_ylabel("accuracy")
        a.grid(alpha=0.3)
        a.legend(fontsize=6, loc="best")
    sec.svg = _svg(fig, "search")
    sec.facts["strategy"] = ("strategy", f"{(result or {}).get('strategy', 'evolution')}, fitness {fitness}")
    sec.facts["candidates_scored"] = ("candidates scored", str(len(candidates)))
    sec.facts["generations"] = ("generations after the first population", str(max(gens) if gens else 0))
    sec.facts["best_proxy_accuracy"] = ("best proxy accuracy", _acc(best["accuracy"]))
    sec.facts["returned_arch"] = ("returned", str(best.get("arch")))
    sec.facts["search_latency_budget_ms"] = ("latency budget (search)", _ms(lat_b) if lat_b else "-")
    sec.caption = (f"{len(candidates)} candidates scored by {how}, in [window_low B, B]; the best, "
                   f"{_acc(best['accuracy'])} at {_ms(best['latency_ms'])}, is returned.")
    sec.tables.append(Table(["rank", "architecture", "proxy accuracy", "cross-entropy", "latency", "SRAM",
                             "flash (model)", "origin", "generation"],
                            [[str(n + 1), str(c.get("arch")), _acc(c.get("accuracy")), _num(c.get("ce"), 4),
                              _ms(c.get("latency_ms")), _bytes(c.get("sram_bytes")), _bytes(c.get("flash_bytes")),
                              str(c.get("origin", "-")), str(c.get("generation", "-"))]
                             for n, c in enumerate(candidates)], open_=len(candidates) <= 40))
    return sec


def search_history_section(history: list[dict] | None, result: dict | None,
                           candidates: list[dict] | None = None) -> Section:
    """The search's epochs (``history.json``): expected latency and memory against the search's budgets
    (``result.json``'s ``budgets``: latency in ms, SRAM and flash in bytes; E[flash] is the model file's, so
    it is drawn against the model's share, ``model_flash_budget_bytes``: the flash budget minus the TFLM
    runtime), the penalty multipliers mu (latency), nu (SRAM) and
    the flash multiplier, and the entropy of alpha per block in nats (``alpha_entropy``; computed from
    ``probs`` for older histories). The derivation (alpha's argmax, repair, fill) from ``result.json``. A search
    with ``strategy: evolution`` (no alpha steps) and its ``candidates`` shows the evolution instead
    (``evolution_history_section``)."""
    if candidates and (not history or (result or {}).get("strategy") == "evolution"):
        return evolution_history_section(candidates, result)
    sec = Section("search", "Search history")
    if not history:
        sec.missing = "no search history (history.json) in this run"
        return sec
    budgets = (result or {}).get("budgets") or {}
    lat_b = budgets.get("latency_ms")
    sram_b = budgets.get("sram_bytes")
    flash_b = (result or {}).get("model_flash_budget_bytes")   # the model's share: flash budget - runtime
    epochs = [int(h["epoch"]) + 1 for h in history]

    def col(key):
        return [h.get(key) for h in history]

    lat, sram, flash = col("expected_latency_ms"), col("expected_sram_bytes"), col("expected_flash_bytes")
    mults = {"mu (latency)": col("mu"), "nu (SRAM)": col("nu"), "flash": col("flash_mult")}
    ent = [_entropies(h) for h in history]
    fig, axes = _figure(9.0, 6.0, 2, 2)
    a = axes[0][0]
    a.plot(epochs, lat, marker="o", label="E[latency]")
    if lat_b:
        a.axhline(lat_b, color="#d62728", label=f"budget {lat_b:g} ms")
    a.set_title("expected latency", fontsize=9)
    a.set_ylabel("ms")
    a = axes[0][1]
    if any(v is not None for v in sram):
        a.plot(epochs, [v / KB if v is not None else None for v in sram], marker="o", label="E[SRAM]")
    if sram_b:
        a.axhline(sram_b / KB, color="#d62728", label=f"SRAM budget {sram_b / KB:g} KiB")
    if flash_b and any(v is not None for v in flash):
        a.plot(epochs, [v / KB if v is not None else None for v in flash], marker="s", label="E[flash]")
        a.axhline(flash_b / KB, color="#9467bd", linestyle="--", label=f"flash budget, model's share {flash_b / KB:g} KiB")
    a.set_title("expected memory", fontsize=9)
    a.set_ylabel("KiB")
    a = axes[1][0]
    for name, vals in mults.items():
        if any(v is not None for v in vals):
            a.plot(epochs, vals, marker=".", label=name)
    a.set_yscale("log")
    a.set_title("penalty multipliers", fontsize=9)
    a = axes[1][1]
    if all(e is not None for e in ent):
        for b in range(len(ent[0])):
            a.plot(epochs, [e[b] for e in ent], marker=".", label=f"block {b}")
    a.set_title("alpha entropy per block", fontsize=9)
    a.set_ylabel("nats")
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415

    for row in axes:
        for a in row:
            a.xaxis.set_major_locator(MaxNLocator(integer=True))
            a.set_xlabel("epoch")
            a.grid(alpha=0.3)
            if a.get_legend_handles_labels()[0]:
                a.legend(fontsize=6, loc="best")
    sec.svg = _svg(fig, "search")
    last = history[-1]
    last_ent = ent[-1]
    sec.facts["epochs"] = ("epochs", str(len(history)))
    sec.facts["final_expected_latency_ms"] = ("E[latency] at the last epoch", _ms(last.get("expected_latency_ms")))
    sec.facts["search_latency_budget_ms"] = ("latency budget (search)", _ms(lat_b) if lat_b else "-")
    if last.get("expected_sram_bytes") is not None:
        sec.facts["final_expected_sram_bytes"] = ("E[SRAM] at the last epoch", _bytes(last["expected_sram_bytes"]))
    sec.facts["search_sram_budget_bytes"] = ("SRAM budget (search)", _bytes(sram_b) if sram_b else "not set")
    if flash_b:
        sec.facts["final_expected_flash_bytes"] = ("E[flash] at the last epoch",
                                                   _bytes(last.get("expected_flash_bytes")))
        sec.facts["search_flash_budget_bytes"] = ("flash budget (search, model's share)", _bytes(flash_b))
    sec.facts["final_mu"] = ("mu at the last epoch", _num(last.get("mu"), 4))
    sec.facts["final_nu"] = ("nu at the last epoch", _num(last.get("nu"), 4))
    if last_ent is not None:
        sec.facts["final_alpha_entropy"] = ("alpha entropy per block at the last epoch (nats)",
                                            ", ".join(f"{v:.3f}" for v in last_ent))
    sec.caption = (f"{len(history)} epoch(s). E[latency] {_ms(last.get('expected_latency_ms'))} at the last "
                   f"epoch against the search's budget {_ms(lat_b) if lat_b else '-'}; multipliers mu "
                   f"{_num(last.get('mu'), 4)}, nu {_num(last.get('nu'), 4)}.")
    if result:
        sec.notes.append(
            f"Derivation: alpha's argmax {result.get('derived_arch')} prices {_ms(result.get('derived_latency_ms'))}; "
            f"repair moves {result.get('repair_moves', '-')}, fill moves {result.get('fill_moves', '-')}; "
            f"found {result.get('arch')} at {_ms(result.get('latency_ms'))}, SRAM {_bytes(result.get('sram_bytes'))}, "
            f"flash (model) {_bytes(result.get('flash_bytes'))}.")
    cols = ["epoch", "tau", "train loss", "val CE", "E[latency]", "E[SRAM]", "E[flash]", "mu", "nu", "flash mult",
            "alpha entropy per block (nats)"]
    rows = []
    for h, e in zip(history, ent):
        rows.append([str(int(h["epoch"]) + 1), _num(h.get("tau"), 3), _num(h.get("train_loss"), 4),
                     _num(h.get("val_ce"), 4), _ms(h.get("expected_latency_ms")), _bytes(h.get("expected_sram_bytes")),
                     _bytes(h.get("expected_flash_bytes")), _num(h.get("mu"), 4), _num(h.get("nu"), 4),
                     _num(h.get("flash_mult"), 4), ", ".join(f"{v:.3f}" for v in e) if e is not None else "-"])
    sec.tables.append(Table(cols, rows, open_=len(rows) <= 40))
    return sec


# ---- the final model's latency per operator ---------------------------------------------------------------


def per_operator_section(model_file: Path | None, lut_file: Path | None, validation: dict | None) -> Section:
    """The int8 model's operators (subgraph 0, the one TFLM runs) priced from the run's LUT (``lut.json`` as
    the run used it, clock override included), in microseconds; beside them, where the validator ran the
    model on the emulated core and recorded it (``validation.json``: ``target_footprint.per_op``), each
    operator's measured instructions x the validator's cycles per instruction / the clock."""
    sec = Section("operators", "Final model: latency per operator")
    if model_file is None or not model_file.is_file():
        sec.missing = "no int8 model (model_int8.tflite) in this run"
        return sec
    if lut_file is None or not lut_file.is_file():
        sec.missing = "no LUT (lut.json) in this run"
        return sec
    from edgenas_keras import lut as lutmod  # noqa: PLC0415
    from edgenas_keras.tflite.model import read_int8_model  # noqa: PLC0415

    table = lutmod.load(lut_file)
    graph = read_int8_model(model_file).graph()
    missing = set(table.missing(graph.keys))
    ops = []
    for i, node in enumerate(graph.nodes):
        s = node.spec
        ops.append({"index": i, "op": s.op, "key": s.key, "in": "x".join(map(str, s.in_shape)),
                    "out": "x".join(map(str, s.out_shape)), "macs": s.macs,
                    "us": None if s.key in missing else table.op_us(s.key)})
    total_ms = sum(o["us"] for o in ops if o["us"] is not None) / 1000.0
    checks = (validation or {}).get("checks", {})
    emu_check = checks.get("latency_emulated") or {}
    detail = emu_check.get("detail") or {}
    per_op = ((validation or {}).get("target_footprint") or {}).get("per_op")
    emu_us = None
    if per_op and detail.get("cycles_per_instruction") and detail.get("clock_mhz") and len(per_op) == len(ops):
        cpi, mhz = float(detail["cycles_per_instruction"]), float(detail["clock_mhz"])
        emu_us = {int(o["index"]): o["instructions"] * cpi / mhz for o in per_op}
    n = len(ops)
    fig, ax = _figure(8.0, max(2.5, 0.24 * n + 1.0))
    ax = ax[0][0]
    y = np.arange(n)
    height = 0.4 if emu_us else 0.8
    ax.barh(y - (height / 2 if emu_us else 0), [o["us"] or 0 for o in ops], height=height, color="#1f77b4",
            label=f"LUT ({table.device}, {table.clock_mhz:g} MHz)")
    if emu_us:
        ax.barh(y + height / 2, [emu_us.get(o["index"], 0) for o in ops], height=height, color="#ff7f0e",
                label="emulated core (instructions x CPI / clock)")
    ax.set_yticks(y, [f"#{o['index']} {o['op']}" for o in ops], fontsize=7)
    ax.set_ylim(n - 0.5, -0.5)   # the first operator on top, no empty band
    ax.set_xlabel("latency per operator (us)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    sec.svg = _svg(fig, "operators")
    top = sorted((o for o in ops if o["us"] is not None), key=lambda o: -o["us"])[:3]
    share = ", ".join(f"#{o['index']} {o['op']} {o['us'] / 1000:.3f} ms ({100 * o['us'] / 1000 / total_ms:.1f}%)"
                      for o in top) if total_ms else "-"
    sec.facts["operators"] = ("operators", str(n))
    sec.facts["lut_total_ms"] = ("latency, sum of the LUT's entries", _ms(total_ms))
    sec.facts["lut_device"] = ("device and clock", f"{table.device} at {table.clock_mhz:g} MHz (LUT {table.source})")
    lat_check = checks.get("latency") or {}
    if lat_check.get("budget") is not None:
        sec.facts["latency_budget_ms"] = ("latency budget", _ms(lat_check["budget"]))
    if emu_check.get("figure") is not None:
        sec.facts["emulated_total_ms"] = ("latency measured on the emulated core (whole invoke)",
                                          _ms(emu_check["figure"]))
    sec.caption = (f"{n} operators; the LUT prices the model at {_ms(total_ms)} on {table.device} at "
                   f"{table.clock_mhz:g} MHz" + (f", the emulated core measured {_ms(emu_check['figure'])}"
                                                  if emu_check.get("figure") is not None else "")
                   + f". Costliest: {share}.")
    if missing:
        sec.notes.append(f"{len(missing)} operator key(s) are not in the LUT and are not priced.")
    if emu_check.get("figure") is not None and not emu_us:
        sec.notes.append("Per-operator instructions on the emulated core were not recorded for this model "
                         "(a footprint cached before they were); only its whole-invoke figure is shown.")
    elif emu_check.get("figure") is None:
        sec.notes.append("No emulated run of this model was recorded (the device has no emulated core here, or "
                         "its toolchain is missing): latencies are the LUT's.")
    cols = ["#", "op", "in", "out", "MACs", "LUT latency", "share"] + (["emulated"] if emu_us else [])
    rows = []
    for o in ops:
        row = [str(o["index"]), o["op"], o["in"], o["out"], f"{o['macs']:,}",
               "-" if o["us"] is None else f"{o['us']:,.1f} us",
               "-" if o["us"] is None or not total_ms else f"{100 * o['us'] / 1000 / total_ms:.1f}%"]
        if emu_us:
            row.append(f"{emu_us.get(o['index'], 0):,.1f} us")
        rows.append(row)
    sec.tables.append(Table(cols, rows, open_=n <= 60))
    return sec


# ---- the LUT's predicted-against-measured scatter ---------------------------------------------------------


def lut_validation_rows_file(lut_name: str | None = None, lut_file: str | os.PathLike | None = None) -> Path | None:
    """The validation rows of a LUT (``<table>-validation.jsonl`` beside the table file, as ``edgenas lut
    validate --rows`` writes them): of ``lut_file`` when given, else of the shipped table named ``lut_name``
    (``lut_assets/manifest.json``). ``None`` when there are none."""
    from edgenas_keras import lut as lutmod  # noqa: PLC0415

    table = None
    if lut_file:
        table = Path(lut_file)
    elif lut_name:
        entry = lutmod.manifest().get("luts", {}).get(lut_name)
        if entry is not None:
            table = lutmod.assets_dir() / entry["file"]
    if table is None:
        return None
    rows = table.with_name(f"{table.stem}-validation.jsonl")
    return rows if rows.is_file() else None


def lut_validation_section(rows_file: Path | None, table_label: str = "") -> Section:
    """Architectures priced by the LUT (sum of their operators' entries) against their end-to-end measured
    latency (``predicted_ms``, ``measured_ms`` per row), on log axes with the y = x line; MAPE, the worst
    error and Spearman's rank correlation as text."""
    sec = Section("lut", "LUT: predicted against measured")
    if rows_file is None:
        sec.missing = (f"no validation rows for the LUT{' ' + table_label if table_label else ''} "
                       "(<table>-validation.jsonl beside the table file; `edgenas lut validate --rows FILE` writes them)")
        return sec
    from edgenas_keras.lut.measure import read_validation_rows  # noqa: PLC0415

    rows = [r for r in read_validation_rows(rows_file).values()
            if isinstance(r.get("predicted_ms"), (int, float)) and isinstance(r.get("measured_ms"), (int, float))
            and r["measured_ms"] > 0 and r["predicted_ms"] > 0]
    if not rows:
        sec.missing = f"{rows_file} holds no row with predicted_ms and measured_ms"
        return sec
    pred = np.array([r["predicted_ms"] for r in rows], dtype=float)
    meas = np.array([r["measured_ms"] for r in rows], dtype=float)
    err = (pred - meas) / meas * 100.0
    mape = float(np.mean(np.abs(err)))
    worst = float(err[np.argmax(np.abs(err))])
    rho = _spearman(pred, meas)
    fig, ax = _figure(5.5, 5.0)
    ax = ax[0][0]
    ax.scatter(meas, pred, s=16, color="#1f77b4", edgecolors="none", alpha=0.8, label=f"{len(rows)} architectures")
    lo, hi = float(min(pred.min(), meas.min())) * 0.9, float(max(pred.max(), meas.max())) * 1.1
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8, linestyle="--", label="predicted = measured")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("measured end to end (ms)")
    ax.set_ylabel("predicted by the LUT (ms)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left")
    sec.svg = _svg(fig, "lut")
    sec.facts["rows"] = ("architectures", str(len(rows)))
    sec.facts["mape_pct"] = ("mean absolute error", f"{mape:.2f}%")
    sec.facts["worst_pct"] = ("worst error", f"{worst:+.2f}%")
    sec.facts["spearman_rho"] = ("Spearman rho", f"{rho:.4f}")
    sec.facts["rows_file"] = ("rows", str(rows_file))
    sec.caption = (f"{len(rows)} architectures{' for ' + table_label if table_label else ''}: mean absolute "
                   f"error {mape:.2f}%, worst {worst:+.2f}%, Spearman rho {rho:.4f} (rows: {rows_file.name}; "
                   "latencies at the table's own clock, as measured).")
    sec.tables.append(Table(["architecture", "predicted", "measured", "error"],
                            [[r["arch"], _ms(p), _ms(m), f"{e:+.2f}%"] for r, p, m, e in zip(rows, pred, meas, err)],
                            open_=False, title=f"the {len(rows)} rows"))
    return sec


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2:
        return float("nan")
    from scipy.stats import spearmanr  # noqa: PLC0415

    return float(spearmanr(a, b).statistic)


# ---- a pipeline run ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunInputs:
    """The plain files of one pipeline run a report reads; any may be ``None`` (its section then says so).

    ``summary``: the run's summary (``summary.json``: ``arch``, ``device``, ``budgets``, figures, ...).
    ``search_dir``: ``result.json``, ``history.json`` and (accuracy-evidence searches) ``candidates.json`` of
    the search. ``model_dir``: ``model_int8.tflite``
    and ``metrics.json``. ``validation``: the final model's ``validation.json``. ``validations``: every
    ``validation.json`` of the output folder (earlier configurations' models too), for the accuracy-latency
    figure. ``lut_file``: the ``lut.json`` the run priced with. ``lut_rows``: the table's validation rows.
    ``lut_label``: how the run named its table (``cortex-m7-emulated``, a file)."""

    summary: dict
    search_dir: Path | None = None
    model_dir: Path | None = None
    validation: Path | None = None
    validations: tuple[Path, ...] = ()
    lut_file: Path | None = None
    lut_rows: Path | None = None
    lut_label: str = ""
    source: str = ""


def _network_of(doc: dict, path: Path, final_sha: str | None) -> dict:
    checks = doc.get("checks", {})
    model = Path(doc.get("model", "")) if doc.get("model") else None
    metrics = _optional_json(model.parent / "metrics.json", "model metrics") if model else None
    arch = (metrics or {}).get("arch")
    sha = doc.get("model_sha256") or ""
    emu = (checks.get("latency_emulated") or {}).get("figure")
    return {"name": arch or f"model {sha[:12]}", "label": "final" if sha == final_sha else None,
            "kind": "final" if sha == final_sha else "earlier", "sha": sha,
            "latency_ms": (checks.get("latency") or {}).get("figure"), "latency_emulated_ms": emu,
            "accuracy": (checks.get("accuracy") or {}).get("figure"),
            "sram_bytes": (checks.get("sram") or {}).get("figure"),
            "flash_bytes": (checks.get("flash") or {}).get("figure"), "validation": str(path)}


def _verdict_section(summary: dict, validation: dict | None, metrics: dict | None) -> Section:
    sec = Section("verdict", "Verdict")
    blessed = summary.get("blessed")
    sec.facts["arch"] = ("architecture", summary.get("arch") or "-")
    sec.facts["device"] = ("device", str(summary.get("device") or (validation or {}).get("device") or "-"))
    sec.facts["blessed"] = ("blessed", "yes" if blessed else "no")
    if summary.get("reasons"):
        sec.facts["reasons"] = ("reasons", "; ".join(summary["reasons"]))
    sec.facts["bundle"] = ("bundle", summary.get("bundle_dir") or "not pushed")
    lut = (validation or {}).get("lut") or {}
    if lut:
        sec.facts["lut"] = ("LUT", f"{lut.get('source')} ({lut.get('method')}, sha256 {str(lut.get('sha256'))[:12]})")
    if summary.get("seconds") is not None:
        sec.facts["seconds"] = ("wall time", f"{summary['seconds']:.0f} s")
    units = {"ms": _ms, "bytes": _bytes, "fraction": _acc}
    rows = []
    for name, c in ((validation or {}).get("checks") or {}).items():
        fmt = units.get(c.get("unit"), _num)
        rows.append([name, fmt(c.get("figure")), fmt(c.get("budget")), "yes" if c.get("passed") else "NO",
                     str((c.get("detail") or {}).get("source") or (c.get("detail") or {}).get("rule") or "")])
    if metrics:
        rows.append(["accuracy (float, before QAT)", _acc(metrics.get("accuracy_float")), "-", "-",
                     "QatTrainer's metrics.json"])
    if rows:
        sec.tables.append(Table(["check", "figure", "budget", "passed", "source"], rows))
        per_class = ((((validation or {}).get("checks") or {}).get("accuracy") or {}).get("detail") or {}).get(
            "per_class") or []
        if per_class:   # beside top-1: each class's share of its eval images labelled correctly
            sec.tables.append(Table(["class", "label", "int8 accuracy (TFLM)", "correct", "eval images"], [
                [str(r.get("class")), str(r.get("label")), _acc(r.get("accuracy")), str(r.get("correct")),
                 str(r.get("count"))] for r in per_class], title="Per-class accuracy"))
    else:
        b = summary.get("budgets") or {}
        sec.tables.append(Table(["figure", "value", "budget"], [
            ["latency", _ms(summary.get("latency_ms")), _ms(b.get("latency_ms"))],
            ["SRAM", _bytes(summary.get("sram_bytes")), _bytes(b.get("sram_bytes"))],
            ["flash", _bytes(summary.get("flash_bytes")), _bytes(b.get("flash_bytes"))],
            ["int8 accuracy", _acc(summary.get("accuracy_int8")), _acc(b.get("min_accuracy"))]]))
    sec.facts["latency_ms"] = ("latency (LUT)", _ms(summary.get("latency_ms")))
    sec.facts["accuracy_int8"] = ("int8 accuracy (TFLM, eval split)", _acc(summary.get("accuracy_int8")))
    return sec


def run_report(inputs: RunInputs) -> Report:
    """The report of one pipeline run from its plain files (``RunInputs``). Raises ``UserError`` when one
    of them is not valid JSON; a missing one leaves its section saying so."""
    s = inputs.summary
    search = inputs.search_dir
    history = _optional_json(search / "history.json", "search history") if search else None
    result = _optional_json(search / "result.json", "search result") if search else None
    candidates = _optional_json(search / "candidates.json", "search candidates") if search else None
    validation = _optional_json(inputs.validation, "validation report")
    metrics = _optional_json(inputs.model_dir / "metrics.json", "model metrics") if inputs.model_dir else None
    final_sha = (validation or {}).get("model_sha256")
    networks, seen = [], set()
    docs = [(inputs.validation, validation)] if validation else []
    for p in sorted(inputs.validations):
        if inputs.validation is not None and Path(p) == Path(inputs.validation):
            continue
        docs.append((p, _optional_json(p, "validation report")))
    for path, doc in docs:
        if not doc or doc.get("model_sha256") in seen:
            continue
        seen.add(doc.get("model_sha256"))
        networks.append(_network_of(doc, Path(path), final_sha))
    budgets = s.get("budgets") or {}
    final = next((n for n in networks if n["kind"] == "final"), None)
    context = (f"; final model {_ms(final['latency_ms'])} (LUT), int8 accuracy {_acc(final['accuracy'])}"
               if final else "")
    acc_sec = accuracy_latency_section(networks, budgets.get("latency_ms"), "accuracy", "Accuracy against latency",
                                       min_accuracy=budgets.get("min_accuracy") or None,
                                       context=" validated in this output folder" + context)
    if final:
        acc_sec.facts["final_latency_ms"] = ("final model latency (LUT)", _ms(final["latency_ms"]))
        acc_sec.facts["final_accuracy"] = ("final model int8 accuracy", _acc(final["accuracy"]))
    sections = [
        _verdict_section(s, validation, metrics),
        acc_sec,
        search_history_section(history, result, candidates),
        per_operator_section(inputs.model_dir / "model_int8.tflite" if inputs.model_dir else None, inputs.lut_file,
                             validation),
        lut_validation_section(inputs.lut_rows, inputs.lut_label),
    ]
    verdict = "blessed" if s.get("blessed") else "not blessed"
    return Report(title=f"EdgeNAS run: {s.get('arch') or 'no architecture'}",
                  subtitle=f"{s.get('device') or '-'}; {verdict}; latency {_ms(s.get('latency_ms'))} "
                           f"(budget {_ms(budgets.get('latency_ms'))}), int8 accuracy {_acc(s.get('accuracy_int8'))}",
                  source=inputs.source, sections=sections)


# ---- the benchmark ---------------------------------------------------------------------------------------


def _bench_networks(table: dict) -> list[dict]:
    out = []
    for n in table.get("networks") or []:
        if not isinstance(n, dict):
            continue
        acc = n.get("accuracy_int8_mean")
        per_seed = n.get("accuracy_int8") if isinstance(n.get("accuracy_int8"), list) else None
        if acc is None and isinstance(n.get("accuracy_int8"), (int, float)):
            acc = n["accuracy_int8"]
        out.append({"name": str(n.get("name", "?")), "kind": str(n.get("kind", "?")),
                    "latency_ms": n.get("latency_ms"), "accuracy": acc, "accuracy_per_seed": per_seed,
                    "sram_bytes": n.get("sram_bytes"), "flash_bytes": n.get("flash_bytes"),
                    "accuracy_ci95": n.get("accuracy_int8_ci95")})
    return out


def _network_like(v) -> bool:
    return isinstance(v, dict) and "latency_ms" in v and ("accuracy_int8_mean" in v or "accuracy_int8" in v)


def _scalar(v) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _generic_table(name: str, rows: list) -> Table:
    cols: list[str] = []
    for r in rows:
        for k, v in r.items():
            if _scalar(v) and k not in cols:
                cols.append(k)
    return Table(cols, [[_num(r.get(k), 4) for k in cols] for r in rows], title=name)


def _bench_table_sections(key: str, table, prefix: str = "") -> list[Section]:
    title = f"{prefix}{key}"
    if not isinstance(table, dict):
        sec = Section(key.replace(" ", "-"), title)
        if isinstance(table, list) and all(isinstance(r, dict) for r in table):
            sec.tables.append(_generic_table(key, table))
        else:
            sec.notes.append(json.dumps(table, default=str)[:2000])
        return [sec]
    if isinstance(table.get("networks"), list):
        where = ", ".join(f"{k} {table[k]}" for k in ("device", "budget_ms", "eval_images", "seeds") if k in table)
        sec = accuracy_latency_section(_bench_networks(table), table.get("budget_ms"), key.replace(" ", "-"),
                                       f"{title}: accuracy against latency" + (f" ({where})" if where else ""))
        vs = table.get("edgenas_vs_random")
        if isinstance(vs, dict):
            sec.facts["edgenas_vs_random"] = (
                "EdgeNAS minus random search (points, paired by seed)",
                f"{_num(vs.get('mean_diff_points'), 2)} (95% CI {_num(vs.get('ci95_low'), 2)} .. "
                f"{_num(vs.get('ci95_high'), 2)})")
        for k, v in table.items():
            if k not in ("networks", "edgenas_vs_random", "budget_ms") and _scalar(v):
                sec.facts.setdefault(f"{key}_{k}", (k, _num(v, 4)))
        return [sec]
    rows = [v for v in table.values() if isinstance(v, list) and v and all(_network_like(r) for r in v)]
    if rows:   # e.g. table4: ablations as networks, beside the full search ("full")
        full = table.get("full")
        nets = ([{"name": "full", "kind": "edgenas", **full}] if _network_like(full) else []) + rows[0]
        return _bench_table_sections(key, {**{k: v for k, v in table.items() if _scalar(v)}, "networks": nets},
                                     prefix)
    sec = Section(key.replace(" ", "-"), title)
    subs = []
    for k, v in table.items():
        if _scalar(v):
            sec.facts[f"{key}_{k}"] = (k, _num(v, 4))
        elif isinstance(v, list) and v and all(isinstance(r, dict) for r in v):
            if all(isinstance(r.get("networks"), list) for r in v):
                for i, r in enumerate(v):
                    label = r.get("device") or r.get("name") or str(i)
                    subs += _bench_table_sections(f"{key} {k} {label}", r)
            else:
                sec.tables.append(_generic_table(k, v))
        elif isinstance(v, dict) and isinstance(v.get("networks"), list):
            subs += _bench_table_sections(f"{key} {k}", v)
        elif isinstance(v, dict):
            sec.tables.append(Table(["field", "value"], [[kk, _num(vv, 4) if _scalar(vv) else
                                                          json.dumps(vv, default=str)[:300]]
                                                         for kk, vv in v.items()], title=k))
    return ([sec] if sec.facts or sec.tables else []) + subs


def bench_report(tables: dict, source: str = "") -> Report:
    """The report of a benchmark result (``bench/results/paper_tables.json``): ``table1`` ... ``table4`` in key
    order. Raises ``UserError`` when ``tables`` has no ``table1`` object."""
    if not isinstance(tables, dict) or not isinstance(tables.get("table1"), dict):
        raise UserError(f"{source or 'the benchmark result'} has no table1 object: not a benchmark result "
                        "(bench/results/paper_tables.json)")
    sections = []
    head = Section("benchmark", "Benchmark")
    for k in ("command", "date", "machine", "load"):
        if k in tables:
            v = tables[k]
            head.facts[k] = (k, v if isinstance(v, str) else json.dumps(v, default=str))
    if head.facts:
        sections.append(head)
    for key in sorted(k for k in tables if k.startswith("table")):
        sections += _bench_table_sections(key, tables[key])
    if isinstance(tables.get("data"), dict):   # the data set and its yardstick (smallest and largest networks)
        sections += _bench_table_sections("data", tables["data"])
    t1 = tables["table1"]
    return Report(title="EdgeNAS benchmark", subtitle=f"table1: {t1.get('device', '-')} at "
                  f"{_ms(t1.get('budget_ms'))}; {len(t1.get('networks') or [])} networks",
                  source=source, sections=sections)
