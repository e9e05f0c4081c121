"""``edgenas submit`` (a compiled pipeline to Kubeflow Pipelines) and ``edgenas push`` (a firmware bundle).

Both are meant for CI jobs: ``--json`` prints one JSON object on stdout, and every failure a user can act
on (bad path, unreachable host, refused credentials, a push that could not complete) is one ``error:`` line
with exit status 2. The work is done by deploy.kfp_submit and deploy.push.
"""

from __future__ import annotations

import argparse

from pipeline.commands._util import JSON_OUTPUT, emit


def register(sub) -> None:
    """Add ``edgenas submit`` and ``edgenas push`` to the subcommand parser ``sub``."""
    from deploy.kfp_submit import ENVIRONMENT  # cheap: kfp itself is imported only when submitting

    p = sub.add_parser(
        "submit",
        parents=[JSON_OUTPUT],
        help="submit a compiled pipeline YAML to Kubeflow Pipelines (a run, or a recurring run with --schedule)",
        description="Submit a pipeline spec compiled by `edgenas compile` with the kfp client.",
        epilog="environment (credentials and defaults; see README.md, Deploying):\n"
        + "\n".join(f"  {name:<38} {meaning}" for name, meaning in ENVIRONMENT.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("package", help="compiled pipeline spec (.yaml, schema 2.1.0)")
    p.add_argument(
        "--host", help="KFP API URL, e.g. https://kfp.example.com/pipeline (default: $KF_PIPELINES_ENDPOINT)"
    )
    p.add_argument("--experiment", help="experiment name, created if missing (default: Default)")
    p.add_argument(
        "--run-name", help="run name; with --schedule, the recurring run's name (one schedule per name)"
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="pipeline parameter, converted to its declared type; repeatable. EdgeNAS's own spec declares "
        "budgets_latency_ms, budgets_sram_bytes, budgets_flash_bytes, budgets_min_accuracy, seed, data_images "
        "(JSON list or one folder), data_annotations, data_minival_ids, push_dest (defaults: the compiled config)",
    )
    p.add_argument(
        "--schedule",
        metavar="CRON",
        help="create a recurring run: six-field cron, seconds first ('0 0 3 * * 1' = Mondays 03:00); "
        "a five-field cron gets second 0 prepended; replaces the recurring run of the same name",
    )
    p.add_argument("--namespace", help="Kubernetes namespace (multi-user Kubeflow)")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser(
        "push",
        parents=[JSON_OUTPUT],
        help="push a firmware bundle to DEST/<model-name>/<device>/<version>/ and update LATEST",
        description="Publish a bundle directory as an immutable version (UTC time + content hash) under a "
        "local folder or gs://bucket/prefix; identical content is pushed once. Uses Google application "
        "default credentials (GOOGLE_APPLICATION_CREDENTIALS) or STORAGE_EMULATOR_HOST.",
    )
    p.add_argument("bundle", help="bundle directory (e.g. the pipeline's bundle_dir)")
    p.add_argument("--dest", required=True, help="local folder or gs://bucket/prefix")
    p.add_argument("--model-name", required=True, help="model name, the first level under DEST")
    p.add_argument("--device", required=True, help="target device, e.g. cortex-m7")
    p.set_defaults(func=cmd_push)


def cmd_submit(args) -> int:
    """Submit the compiled pipeline spec as a run, or with ``--schedule`` as a recurring run
    (``deploy.kfp_submit.submit_pipeline``), and print its id and URL.

    Returns the exit status, 0; bad input raises ``UserError`` (exit 2 in ``pipeline.cli.main``): a bad
    package or ``--param``, no host, an unreachable host or refused credentials.
    """
    from deploy.kfp_submit import submit_pipeline

    result = submit_pipeline(
        args.package,
        host=args.host,
        experiment=args.experiment,
        run_name=args.run_name,
        params=args.param,
        schedule=args.schedule,
        namespace=args.namespace,
    )
    what = f"recurring run {result.name!r} ({result.schedule})" if result.schedule else f"run {result.name!r}"
    human = f"submitted {what}\n  id:  {result.id}\n  url: {result.url}"
    if result.replaced:
        human += f"\n  replaced recurring run(s): {', '.join(result.replaced)}"
    emit(args, result.to_dict(), human)
    return 0


def cmd_push(args) -> int:
    """Push the bundle folder to ``--dest/<model-name>/<device>/<version>/`` and update ``LATEST``
    (``deploy.push.push_bundle``); print the version and its URI.

    Returns the exit status, 0 whether a version was created or identical content was already there; bad input
    raises ``UserError`` (exit 2 in ``pipeline.cli.main``), and a failed upload (``OSError``, a Google API
    error including ``RetryError`` when a transient error outlasts the retries, ``PushVerificationError``) is
    re-raised as ``UserError``.
    """
    from google.api_core.exceptions import GoogleAPIError

    from deploy.push import PushVerificationError, push_bundle
    from edgenas_keras.errors import UserError
    from edgenas_keras.lut import device_of

    try:   # a shipped LUT alias (cortex-m7-analytical) pushes under its device's folder
        result = push_bundle(args.bundle, args.dest, args.model_name, device_of(args.device))
    except (OSError, GoogleAPIError, PushVerificationError) as exc:
        raise UserError(
            f"push of {args.bundle} to {args.dest} failed ({exc}); LATEST is unchanged and no partial version "
            "is visible: run the push again"
        ) from exc
    if result.created:
        human = f"pushed version {result.version} ({len(result.files)} files)\n  {result.uri}"
    else:
        human = f"already pushed as version {result.version}: nothing uploaded\n  {result.uri}"
    emit(args, result.to_dict(), human + f"\n  LATEST: {result.latest_uri}")
    return 0
