"""``edgenas space show``: the search space, its per-block choices and exact cardinality."""

from __future__ import annotations

from pipeline.commands._util import JSON_OUTPUT, SPACE_FILE, emit, format_table, load_space


def register(sub) -> None:
    """Add ``edgenas space`` and ``space show`` to the subcommand parser ``sub``."""
    p = sub.add_parser("space", help="inspect the search space")
    ssub = p.add_subparsers(dest="space_command", metavar="SUBCOMMAND")
    ssub.required = True
    show = ssub.add_parser("show", parents=[SPACE_FILE, JSON_OUTPUT], help="per-block choices and the exact cardinality",
                           description="Show the search space: stem, per-block stride, input resolution and "
                           "choices, head, and the exact number of architectures.")
    show.set_defaults(func=cmd_show)


def cmd_show(args) -> int:
    """Print the search space (``--space``, default the shipped one): stem, per-block stride, input
    resolution, choices and configurations, head, and the exact number of architectures.

    Returns the exit status, 0; bad input raises ``UserError`` (exit 2 in ``pipeline.cli.main``): a space file
    that does not load.
    """
    space = load_space(args.space)
    blocks = [{"index": s.index + 1, "stride": s.stride, "in_resolution": s.in_res, "ops": list(s.ops),
               "choices": {k: list(v) for k, v in s.choices.items() if k != "op"}, "cardinality": s.cardinality}
              for s in space.slots]
    obj = {"name": space.name, "num_blocks": space.num_blocks, "cardinality": space.cardinality,
           "resolution": space.resolution, "in_channels": space.in_channels,
           "stem": {"out_channels": space.stem_channels, "kernel": space.stem_kernel, "stride": space.stem_stride},
           "blocks": blocks, "num_classes": space.num_classes}
    lines = [f"search space {space.name}: {space.num_blocks} blocks, input {space.resolution}x{space.resolution}"
             f"x{space.in_channels}",
             f"stem: CONV_2D {space.stem_kernel}x{space.stem_kernel}/{space.stem_stride} -> {space.stem_channels} ch",
             format_table([[b["index"], b["stride"], b["in_resolution"], ",".join(b["ops"]),
                            *(",".join(map(str, b["choices"][k])) for k in ("kernel", "expansion", "se", "channels")),
                            b["cardinality"]] for b in blocks],
                          ["block", "stride", "in res", "ops", "kernel", "expansion", "se", "channels", "configs"])]
    lines.append(f"head: MEAN -> FULLY_CONNECTED({space.num_classes}) -> SOFTMAX")
    lines.append(f"cardinality: {space.cardinality} (= {space.cardinality:.3e}; product of the per-block counts)")
    emit(args, obj, "\n".join(lines))
    return 0
