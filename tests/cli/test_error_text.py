"""The two places that read other projects' text, fed the shapes those projects really produce:

1. ``pipeline.runners._find_user_error``: a UserError raised inside a component comes back from Beam
   (BeamDagRunner runs each node as a DoFn; the Beam-based components run Beam pipelines) wrapped or
   re-typed, with Beam's step annotation; it must come out as one ``error: ...`` line.
2. ``pipeline.runners._ProgressHandler``: TFX's per-node INFO log records become one progress line each.

The message shapes are built here the way the installed versions build them (file:line cited, under
.venv/lib/python3.10/site-packages); a Beam or TFX upgrade that changes them should fail here first.
"""

from __future__ import annotations

import io
import logging
import traceback

import pytest

from edgenas_keras.errors import MissingLutKeysError, UserError
from pipeline.runners import _find_user_error, _ProgressHandler

STEP = "Run[Trainer]"
# apache_beam/runners/common.py:1593  step_annotation = " [while running '%s']" % self.step_name
ANNOTATION = f" [while running '{STEP}']"
MESSAGE = "search space s.yaml: blocks must be a non-empty list"
MISSING = MissingLutKeysError("cortex-m7", ["conv2d|a", "conv2d|b"], "rebuild the table with `edgenas lut build`")


def _beam_retyped(exn: BaseException) -> BaseException:
    """DoFnRunner._reraise_augmented (apache_beam/runners/common.py:1590-1605): the same type with the
    annotation appended to args[0] if the type can be built from its message, else a RuntimeError of
    ``traceback.format_exception_only(...)[-1].strip()`` + the annotation."""
    try:
        new = type(exn)(exn.args[0] + ANNOTATION, *exn.args[1:])
        new._tagged_with_step = True
    except Exception:  # noqa: BLE001  (Beam's own bare except)
        new = RuntimeError(traceback.format_exception_only(type(exn), exn)[-1].strip() + ANNOTATION)
        new._tagged_with_step = True
    return new


def _beam_from_worker(exn: BaseException) -> RuntimeError:
    """An SDK worker process (multi-process DirectRunner, portable runners): the worker answers with
    ``error=traceback.format_exc()`` (apache_beam/runners/worker/sdk_worker.py:725) and the runner raises
    ``RuntimeError(result.error)`` (apache_beam/runners/portability/fn_api_runner/fn_runner.py:1398)."""
    try:
        try:
            raise exn
        except BaseException as inner:  # noqa: BLE001
            raise _beam_retyped(inner) from None
    except BaseException:  # noqa: BLE001
        return RuntimeError(traceback.format_exc())


def _one_line(user: UserError) -> str:
    """What pipeline.cli.main prints for it."""
    return f"error: {user}"


def test_a_user_error_beam_rebuilds_keeps_its_type():
    wrapped = _beam_retyped(UserError(MESSAGE))
    assert type(wrapped) is UserError
    user = _find_user_error(wrapped)
    assert type(user) is UserError
    assert _one_line(user) == f"error: {MESSAGE}"


def test_a_user_error_beam_rebuilds_is_printed_without_the_step_annotation():
    assert _one_line(_find_user_error(_beam_retyped(UserError(MESSAGE)))) == f"error: {MESSAGE}"


def test_a_missing_lut_keys_error_beam_cannot_rebuild_is_read_from_the_runtime_error():
    wrapped = _beam_retyped(MISSING)
    # MissingLutKeysError takes three arguments, so Beam re-raises a RuntimeError naming the class
    assert type(wrapped) is RuntimeError
    assert str(wrapped) == f"edgenas_keras.errors.MissingLutKeysError: {MISSING}{ANNOTATION}"
    user = _find_user_error(wrapped)
    assert isinstance(user, UserError)
    assert _one_line(user) == f"error: {MISSING}"


@pytest.mark.parametrize("exn", [UserError(MESSAGE), MISSING], ids=["UserError", "MissingLutKeysError"])
def test_an_error_from_a_beam_worker_process_is_read_from_the_traceback_text(exn):
    wrapped = _beam_from_worker(exn)
    text = str(wrapped)
    assert text.startswith("Traceback (most recent call last):") and text.rstrip().endswith(ANNOTATION)
    user = _find_user_error(wrapped)
    assert isinstance(user, UserError)
    assert _one_line(user) == f"error: {exn}"


def test_a_user_error_under_another_exception_is_found_through_the_chain():
    try:
        try:
            raise UserError(MESSAGE)
        except UserError as inner:
            raise RuntimeError("component Trainer failed") from inner
    except RuntimeError as outer:
        assert _one_line(_find_user_error(outer)) == f"error: {MESSAGE}"


@pytest.mark.parametrize("exn", [
    _beam_retyped(ValueError("could not convert string to float: 'x'")),
    _beam_retyped(KeyError("UserError")),
    _beam_from_worker(TypeError("unsupported operand type(s) for +: 'int' and 'str'")),
    # a UserError named on an earlier line of the worker's traceback text only: the last line decides
    RuntimeError("Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n"
                 "    raise UserError('not this one')\nOSError: [Errno 28] No space left on device" + ANNOTATION),
], ids=["ValueError", "KeyError naming UserError", "worker TypeError", "UserError on an earlier line"])
def test_other_errors_are_not_taken_for_user_errors(exn):
    assert _find_user_error(exn) is None


# ---- TFX's progress log records --------------------------------------------------------------------------

def _record(msg: str, *args) -> logging.LogRecord:
    return logging.LogRecord("absl", logging.INFO, __file__, 0, msg, args, None)


@pytest.mark.parametrize("running, finished", [
    # tfx/orchestration/local/local_dag_runner.py:105 and :110
    ("Component %s is running.", "Component %s is finished."),
    # tfx/orchestration/beam/beam_dag_runner.py:89 and :91
    ("node %s is running.", "node %s is finished."),
], ids=["LocalDagRunner", "BeamDagRunner"])
def test_tfx_node_records_become_one_progress_line_each(running, finished):
    out = io.StringIO()
    h = _ProgressHandler(out)
    h.emit(_record(running, "Trainer"))
    h.emit(_record(finished, "Trainer"))
    # tfx/orchestration/portable/launcher.py:428  logging.info('A cached execution %d is used.', execution.id)
    h.emit(_record(running, "Pusher"))
    h.emit(_record("A cached execution %d is used.", 42))
    h.emit(_record(finished, "Pusher"))
    lines = [line.split("] ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines[0] == "Trainer ..." and lines[1].startswith("Trainer done (")
    assert lines[2] == "Pusher ..." and lines[3].startswith("Pusher cached (")
    assert len(lines) == 4


def test_other_tfx_records_print_nothing():
    out = io.StringIO()
    h = _ProgressHandler(out)
    for msg, args in [("Component %s is running with inputs %s", ("Trainer", "{}")),
                      ("Running launcher for %s", ("Trainer",)),
                      ("A cached execution is used for %s.", ("Trainer",)),
                      ("bad format %d", ("not a number",))]:  # a malformed record must not break the run
        h.emit(_record(msg, *args))
    assert out.getvalue() == ""


def test_the_handler_prints_to_stderr_by_default(capsys):
    h = _ProgressHandler()
    h.emit(_record("Component %s is running.", "Evaluator"))
    assert capsys.readouterr().err.endswith("Evaluator ...\n")
