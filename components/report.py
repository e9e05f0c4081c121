"""RunReport: the run's self-contained HTML report (``report.html``), an artifact of every run.

It runs last (after the pusher, whose outcome it states) and reads what the run produced: the search's
``result.json`` and ``history.json`` (architecture artifact), the int8 model and its ``metrics.json``,
``validation.json`` of the blessing (figures, budgets, the emulated core's per-operator instructions), the
``lut.json`` the run priced with, and the pushed bundle's destination. The report itself is
``edgenas_keras.report.run_report``; this adapter gathers its inputs. On one machine every model validated
in the same pipeline root (earlier configurations' too) joins the accuracy-latency figure; on Kubeflow only
this run's. The LUT's validation rows are those beside the table file (``lut_file``, or the shipped table
named by the LUT artifact's ``device``). ``edgenas report RUN_DIR`` renders the same report from a run
folder.
"""

from tfx import v1 as tfx

from components import Architecture, LatencyTable, RunReportFile
from components._io import input_dir, is_remote, log, output_dir, read_json

REPORT_FILE = "report.html"


@tfx.dsl.components.component
def RunReport(
    architecture: tfx.dsl.components.InputArtifact[Architecture],
    model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    blessing: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelBlessing],
    lut: tfx.dsl.components.InputArtifact[LatencyTable],
    pushed_model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.PushedModel],
    report: tfx.dsl.components.OutputArtifact[RunReportFile],
    lut_file: tfx.dsl.components.Parameter[str] = "",
) -> None:
    """Write ``report.html`` (edgenas_keras.report) for this run's search, model, validation, LUT and push."""
    from pathlib import Path

    from components.validator import VALIDATION_FILE
    from edgenas_keras.lut import device_of
    from edgenas_keras.report import RunInputs, lut_validation_rows_file, run_report

    blessing_dir = input_dir(blessing.uri)
    validation_file = blessing_dir / VALIDATION_FILE
    validation = read_json(validation_file) if validation_file.is_file() else {}
    checks = validation.get("checks", {})
    lut_name = lut.get_string_custom_property("device")
    pushed = pushed_model.get_int_custom_property("pushed") == 1

    def figure(name):
        return (checks.get(name) or {}).get("figure")

    summary = {
        "arch": architecture.get_string_custom_property("arch"), "device": device_of(lut_name) if lut_name else None,
        "accuracy_int8": figure("accuracy"), "latency_ms": figure("latency"), "sram_bytes": figure("sram"),
        "flash_bytes": figure("flash"), "budgets": validation.get("budgets", {}),
        "blessed": blessing.get_int_custom_property("blessed") == 1, "reasons": validation.get("reasons", []),
        "bundle_dir": pushed_model.get_string_custom_property("pushed_destination") if pushed else None,
    }
    # every model validated under this pipeline root: the blessing folders beside this one (one per execution)
    others = () if is_remote(blessing.uri) else tuple(sorted(Path(blessing.uri).parent.glob(f"*/{VALIDATION_FILE}")))
    inputs = RunInputs(
        summary=summary, search_dir=input_dir(architecture.uri), model_dir=input_dir(model.uri),
        validation=validation_file if validation_file.is_file() else None, validations=others,
        lut_file=input_dir(lut.uri) / "lut.json", lut_rows=lut_validation_rows_file(lut_name or None, lut_file or None),
        lut_label=lut_file or lut_name, source=f"pipeline run ({report.uri})")
    with output_dir(report.uri) as out:
        run_report(inputs).write(out / REPORT_FILE)
    log("RunReport", f"wrote {REPORT_FILE}")
