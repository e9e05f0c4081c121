"""``edgenas arch check``: predicted latency, peak SRAM, flash, MACs and parameters of one architecture."""

from __future__ import annotations

from pipeline.commands._util import JSON_OUTPUT, LUT_SOURCE, SPACE_FILE, emit, load_space, parse_arch


def register(sub) -> None:
    """Add ``edgenas arch`` and ``arch check`` to the subcommand parser ``sub``."""
    p = sub.add_parser("arch", help="work with architecture strings")
    asub = p.add_subparsers(dest="arch_command", metavar="SUBCOMMAND")
    asub.required = True
    chk = asub.add_parser(
        "check", parents=[LUT_SOURCE, SPACE_FILE, JSON_OUTPUT], help="price one architecture on a device's LUT",
        description="Predict latency (from the device LUT), peak SRAM (the TFLM arena), flash, MACs and "
        "parameters of one architecture. ARCH is an architecture string such as "
        "ir_k3_e4_c16-dws_k5_c24-skip-ir_k3_e6_se4_c32-dws_k3_c32-ir_k5_e2_c48-skip.")
    chk.add_argument("arch", metavar="ARCH", help="architecture string")
    chk.add_argument("--resolution", type=int, help="input resolution (default: the space's)")
    chk.set_defaults(func=cmd_check)


def cmd_check(args) -> int:
    """Price one architecture string on the device's LUT: latency (ms), peak SRAM and flash (bytes), MACs and
    parameters.

    Returns the exit status, 0; bad input raises ``UserError`` (exit 2 in ``pipeline.cli.main``): a bad
    architecture, space, ``--resolution`` or LUT.
    """
    from edgenas_keras import lut as lutmod
    from edgenas_keras.cost.estimate import arch_cost
    from edgenas_keras.errors import UserError

    space = load_space(args.space)
    if args.resolution is not None and args.resolution <= 0:
        raise UserError(f"--resolution must be positive, got {args.resolution}")
    if args.resolution:
        try:
            space = space.with_resolution(args.resolution)
        except ValueError as exc:
            raise UserError(f"--resolution {args.resolution}: {exc}") from None
    arch = parse_arch(args.arch, space)
    lut = lutmod.resolve(args.device, args.lut, args.clock_mhz)
    cost = arch_cost(space, arch, lut)
    obj = {"arch": str(arch), "device": lut.device, "lut_sha256": lut.sha256, "resolution": space.resolution,
           **cost.as_dict()}
    human = (f"{arch}\n  device      {lut.device} ({lut.metadata.get('method')}, {lut.clock_mhz:g} MHz)\n"
             f"  latency     {cost.latency_ms:.3f} ms\n  peak SRAM   {cost.sram_bytes / 1024:.1f} KiB "
             f"({cost.sram_bytes} B; on target {cost.sram_target_bytes} B, TFLM on this host "
             f"{cost.sram_host_bytes} B: the larger is budgeted)\n  flash       {cost.flash_bytes / 1024:.1f} KiB ({cost.flash_bytes} B)\n"
             f"  MACs        {cost.macs / 1e6:.2f} M\n  params      {cost.params}")
    emit(args, obj, human)
    return 0
