"""Firmware builds for emulation: toolchains, the cached TFLM library per target, compile/link, QEMU.

Public API (used by ``deploy.emulate`` and the LUT profiler firmware; keep it stable):

- ``TARGETS``: name -> ``Target`` (``cortex-m4``, ``cortex-m7``, ``cortex-m33``, ``riscv32``): the TFLM
  target/arch/kernels, the toolchain prefix, the QEMU binary and machine, the platform directory
  (``deploy/firmware/platform/<dir>``) and the counter scale.
- ``get_target(name) -> Target``: the target or a ``UserError`` naming the valid ones.
- ``check_tools(target)``: raises ``ToolchainMissing`` (a ``UserError``; the CLI prints one ``error:`` line
  and exits 2) naming the Debian packages to install when the compiler, its C/C++ library or QEMU is absent.
- ``tflm_library(target, progress=print_to_stderr) -> TflmLibrary`` (``edgenas_keras.progress.stderr``):
  builds (once) and returns the cached ``libtensorflow-microlite.a`` with the exact compile flags and include
  directories the application must use. Cached under ``cache_root()/tflm/lib/<target>-<key>``; the key hashes
  the target, the TFLM and dependency source identity, the compiler version and the make arguments. A file
  lock serialises builds (never two at once on these 2-core machines); the finished directory is renamed into
  place.
- ``compile_and_link(target, lib, sources, out_elf, include_dirs=(), defines=(), extra_flags=())
  -> Path``: compiles C/C++ sources with the library's flags, adds the platform's start-up code and linker
  script, links, returns the ELF. Raises ``BuildError`` with the compiler's message.
- ``qemu_command(target, elf, serial=None, semihosting=True, icount=True) -> list[str]``: the QEMU command
  line (``serial="pty"`` puts the machine's first UART on a pseudo-terminal; ``None`` leaves none).
- ``run_qemu(target, elf, timeout_s) -> QemuRun``: runs to the program's semihosting exit; stdout, stderr,
  return code; raises ``EmulationError`` on a timeout.
- ``elf_sizes(target, elf, symbols=()) -> dict``: ``text``, ``data``, ``bss`` (``size``) and the byte size of
  each named symbol (``nm -S``).

Sources of TFLM (``tflm_sources()``): ``$EDGENAS_TFLM_SOURCES`` (a tflite-micro tree whose
``tensorflow/lite/micro/tools/make/downloads`` is filled), else the offline mirror
``tflite-micro-offline.tar.xz`` (``$EDGENAS_THIRD_PARTY``, or ``shared/third_party`` in any folder above the
checkout) unpacked into the cache, else a mirror an earlier run unpacked into the cache (its ``source.json``:
a clean checkout elsewhere on the same machine reuses it and its built libraries), else a git clone of the
pinned commits into the cache (``clone_commands()``). The tree used is always a private copy in the cache: the
RISC-V build adds a target makefile to it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgenas_keras._fs import atomic_write_json, sha256_file
from edgenas_keras.errors import UserError
from edgenas_keras.progress import stderr as print_to_stderr

FIRMWARE_DIR = Path(__file__).resolve().parent / "firmware"
PLATFORM_DIR = FIRMWARE_DIR / "platform"
BUILD_FORMAT = 1            # bump to invalidate every cached library
TFLM_COMMIT = "90b983c2b3f1480642e040bbd2ddb37b998f3424"   # the commit the offline mirror holds
MIRROR_NAME = "tflite-micro-offline.tar.xz"
MAKEFILE = "tensorflow/lite/micro/tools/make/Makefile"
RISCV_TARGET_MAKEFILE = "tensorflow/lite/micro/tools/make/targets/edgenas_riscv32_makefile.inc"

ARM_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib"
RISCV_PACKAGES = "gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf libstdc++-arm-none-eabi-newlib"


class ToolchainMissing(UserError):
    """A compiler, C/C++ library, QEMU or make is not installed (the message says what to install)."""


class BuildError(UserError):
    """The TFLM library or the application failed to build (the message carries the compiler's error)."""


class EmulationError(UserError):
    """QEMU failed, timed out, or the program did not report what it should."""


@dataclass(frozen=True)
class Target:
    """One emulated microcontroller core.

    ``instructions_per_tick``: guest instructions per unit of the app's counter (``-icount shift=0`` makes
    QEMU's clock 1 ns per instruction; SysTick counts the machine's processor clock: 25 MHz on MPS2 AN386
    and AN500 -> 40, 20 MHz on AN505 -> 50; RISC-V reads ``minstret`` -> 1).
    """

    name: str
    tflm_target: str
    tflm_arch: str | None
    kernels: str                 # "cmsis_nn" or "reference"
    prefix: str                  # toolchain prefix, e.g. "arm-none-eabi-"
    qemu: str
    machine: str
    platform: str                # directory under deploy/firmware/platform
    instructions_per_tick: int
    packages: str                # Debian packages of the toolchain
    qemu_package: str
    cpu_flags: tuple[str, ...]   # the CPU/ABI flags TFLM's makefile uses for this target (for code without TFLM)

    @property
    def is_arm(self) -> bool:
        """True for the Cortex-M targets (``arm-none-eabi-`` toolchain), False for RISC-V."""
        return self.prefix.startswith("arm")

    def make_args(self) -> list[str]:
        """The TFLM make variables of this target (without BASE_GENDIR)."""
        args = [f"TARGET={self.tflm_target}", f"TARGET_TOOLCHAIN_ROOT={_tool_root(self.prefix + 'gcc')}",
                f"TARGET_TOOLCHAIN_PREFIX={self.prefix}"]
        if self.tflm_arch:
            args.append(f"TARGET_ARCH={self.tflm_arch}")
        if self.kernels != "reference":
            args.append(f"OPTIMIZED_KERNEL_DIR={self.kernels}")
        if not self.is_arm:
            args.append("EDGENAS_CXX_INCLUDES=" + " ".join(f"-isystem {d}" for d in riscv_cxx_includes()))
        return args


def _arm(name, arch, machine, platform, ipt) -> Target:
    cpu = ("-mcpu=" + name, "-mfpu=auto", "-mthumb", "-mfloat-abi=hard")
    return Target(name, "cortex_m_generic", arch, "cmsis_nn", "arm-none-eabi-", "qemu-system-arm", machine,
                  platform, ipt, ARM_PACKAGES, "qemu-system-arm", cpu)


TARGETS: dict[str, Target] = {
    "cortex-m4": _arm("cortex-m4", "cortex-m4+fp", "mps2-an386", "mps2-an386", 40),
    "cortex-m7": _arm("cortex-m7", "cortex-m7+fp", "mps2-an500", "mps2-an500", 40),
    "cortex-m33": _arm("cortex-m33", "cortex-m33", "mps2-an505", "mps2-an505", 50),
    "riscv32": Target("riscv32", "edgenas_riscv32", "riscv32", "reference", "riscv64-unknown-elf-",
                      "qemu-system-riscv32", "virt", "riscv32-virt", 1, RISCV_PACKAGES, "qemu-system-misc",
                      ("-march=rv32imc", "-mabi=ilp32", "-mcmodel=medlow", "--specs=picolibc.specs")),
}
# Which emulated core stands for each device name of the LUTs (lut_assets/*.json).
DEVICE_TARGETS = {"cortex-m4": "cortex-m4", "cortex-m7": "cortex-m7", "cortex-m33": "cortex-m33",
                  "riscv": "riscv32", "riscv32": "riscv32"}


def get_target(name: str) -> Target:
    """The ``Target`` called ``name``; ``UserError`` naming the valid names otherwise."""
    if name not in TARGETS:
        raise UserError(f"unknown target {name!r}: choose one of {', '.join(TARGETS)}")
    return TARGETS[name]


def _tool_root(tool: str) -> str:
    path = shutil.which(tool)
    return str(Path(path).resolve().parent) + "/" if path else "/usr/bin/"


def _apt_hint(packages: str) -> str:
    return f"install the Debian packages: apt-get install {packages}"


def riscv_cxx_includes() -> list[str]:
    """The C++ standard headers for RV32: libstdc++'s from Debian's libstdc++-arm-none-eabi-newlib.

    ``$EDGENAS_RISCV_CXX_INCLUDES`` (colon-separated directories) overrides. Debian ships no C++ library for
    riscv64-unknown-elf; TFLM uses only header-only parts (templates, <cmath> over picolibc's libm).
    """
    env = os.environ.get("EDGENAS_RISCV_CXX_INCLUDES")
    if env:
        return [d for d in env.split(":") if d]
    roots = sorted(Path("/usr/include/newlib/c++").glob("*/"), key=lambda p: [int(x) for x in
                   re.findall(r"\d+", p.name)] or [0])
    if not roots:
        return []
    root = roots[-1]
    return [str(root), str(root / "arm-none-eabi")]


def check_tools(target: Target) -> None:
    """Raise ``ToolchainMissing`` naming what to install if anything ``target`` needs is absent."""
    missing = []
    for tool in ("gcc", "g++", "ar", "size", "nm"):
        if not shutil.which(target.prefix + tool):
            missing.append(target.prefix + tool)
    if missing:
        raise ToolchainMissing(f"{', '.join(missing)} not found (target {target.name}): "
                               + _apt_hint(target.packages))
    if target.is_arm:
        lib = _run_text([target.prefix + "gcc", "-print-file-name=librdimon.a"]).strip()
        if not os.path.isabs(lib):
            raise ToolchainMissing("newlib for arm-none-eabi (librdimon.a) not found: "
                                   + _apt_hint("libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib"))
        lib = _run_text([target.prefix + "g++", "-print-file-name=libstdc++_nano.a"]).strip()
        if not os.path.isabs(lib):
            raise ToolchainMissing("the C++ library for arm-none-eabi not found: "
                                   + _apt_hint("libstdc++-arm-none-eabi-newlib"))
    else:
        specs = _run_text([target.prefix + "gcc", "-print-file-name=picolibc.specs"]).strip()
        if not os.path.isabs(specs):
            raise ToolchainMissing("picolibc for riscv64-unknown-elf not found: "
                                   + _apt_hint("picolibc-riscv64-unknown-elf"))
        inc = riscv_cxx_includes()
        if not inc or not (Path(inc[0]) / "algorithm").is_file():
            raise ToolchainMissing("C++ standard headers for the RISC-V build (libstdc++ 12 from "
                                   "libstdc++-arm-none-eabi-newlib) not found: "
                                   + _apt_hint("libstdc++-arm-none-eabi-newlib"))
    if not shutil.which(target.qemu):
        raise ToolchainMissing(f"{target.qemu} not found (target {target.name}): "
                               + _apt_hint(target.qemu_package))
    if not shutil.which("make"):
        raise ToolchainMissing("make not found: " + _apt_hint("make"))


def _run_text(cmd: Sequence[str], **kw) -> str:
    try:
        return subprocess.run(list(cmd), capture_output=True, text=True, timeout=60, **kw).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def compiler_version(target: Target) -> str:
    """First line of ``<prefix>gcc --version`` (part of the cache key)."""
    return _run_text([target.prefix + "gcc", "--version"]).splitlines()[0:1][0] if shutil.which(
        target.prefix + "gcc") else "absent"


# ----------------------------------------------------------------------------------------------------------
# Cache and sources


def cache_root() -> Path:
    """``$EDGENAS_CACHE`` or ``~/.cache/edgenas`` (outside the checkout; shared by runs and CI)."""
    return Path(os.environ.get("EDGENAS_CACHE") or Path.home() / ".cache" / "edgenas")


def _third_party_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("EDGENAS_THIRD_PARTY"):
        dirs.append(Path(os.environ["EDGENAS_THIRD_PARTY"]))
    # The workplace keeps it in a `shared/third_party` folder beside (or above) the checkout; a clean checkout
    # elsewhere (CI) finds it in any ancestor's `shared/`.
    repo = Path(__file__).resolve().parent.parent
    for start in (repo, Path.cwd()):
        dirs += [p / "shared" / "third_party" for p in start.parents]
    return list(dict.fromkeys(dirs))


def find_mirror() -> Path | None:
    """The offline mirror tarball, if one of the known places has it."""
    for d in _third_party_dirs():
        if (d / MIRROR_NAME).is_file():
            return d / MIRROR_NAME
    return None


# The pinned upstream commits (tflite-micro's own pins for its downloads); what `clone_commands` fetches.
PINNED = {
    "tflite-micro": ("https://github.com/tensorflow/tflite-micro", TFLM_COMMIT),
}


def clone_commands(dest: Path) -> list[list[str]]:
    """Commands that fetch the sources on a machine with network access (untested here: no network).

    Clones tflite-micro at ``TFLM_COMMIT``, then lets TFLM's own Makefile download its dependencies at the
    commits it pins (``third_party_downloads`` target of the Makefile, run while building)."""
    url, commit = PINNED["tflite-micro"]
    return [["git", "init", "-q", str(dest)],
            ["git", "-C", str(dest), "fetch", "-q", "--depth", "1", url, commit],
            ["git", "-C", str(dest), "checkout", "-q", "FETCH_HEAD"]]


def _tree_fingerprint(root: Path) -> str:
    """A cheap identity of a source tree: its git HEAD if any, else a hash of paths, sizes and mtimes."""
    head = _run_text(["git", "-C", str(root), "rev-parse", "HEAD"]).strip()
    h = hashlib.sha256(head.encode())
    if not head:
        for sub in ("tensorflow/lite/micro", "tensorflow/lite/micro/tools/make/downloads"):
            for dirpath, dirnames, filenames in os.walk(root / sub):
                dirnames.sort()
                for fn in sorted(filenames):
                    st = os.stat(os.path.join(dirpath, fn))
                    h.update(f"{os.path.join(dirpath, fn)}:{st.st_size}:{int(st.st_mtime)}\n".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class TflmSources:
    """The TFLM source tree a library build uses (what ``tflm_sources`` returns).

    Attributes:
        root: the private tflite-micro tree in the cache that is built.
        origin: where it came from: ``"EDGENAS_TFLM_SOURCES"``, ``"mirror <tarball path>"`` or ``"git clone"``
            (a mirror unpacked by an earlier run: ``"mirror <tarball path> (unpacked in the cache)"``).
        identity: the hash that enters the library's cache key (a fingerprint of the user's tree, the mirror
            tarball's sha256, or the cloned commit).
        commits: project -> commit (or ``url@revision``) as far as known.
    """

    root: Path          # the private tflite-micro tree (in the cache)
    origin: str         # "EDGENAS_TFLM_SOURCES", "mirror" or "git clone"
    identity: str       # hash that enters the cache key
    commits: dict       # project -> commit as far as known


class _Lock:
    """An exclusive ``flock`` on ``path`` (waits; tells ``progress`` when it has to)."""

    def __init__(self, path: Path, progress: Callable[[str], None] | None = None, what: str = "a build"):
        self.path, self.progress, self.what = path, progress, what

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if self.progress:
                self.progress(f"waiting for {self.what} in another process ({self.path})")
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def _mirror_commits(mirror: Path) -> dict:
    """Project -> commit/tag from the README table next to the mirror tarball (best effort)."""
    readme = mirror.parent / "README.md"
    commits = {}
    if readme.is_file():
        for m in re.finditer(r"^\|\s*`([^`]+)`\s*\|\s*([^|]+?)\s*\|\s*([^|]+?)\s*\|", readme.read_text(), re.M):
            path, url, rev = m.groups()
            if url.strip() != "-":
                commits[path.strip().rstrip("/").split("/")[-1]] = f"{url.strip()}@{rev.split()[0]}"
    return commits


SOURCE_RECORD = "source.json"   # beside an unpacked mirror in the cache: its origin, identity and commits


def _write_json_atomic(path: Path, doc: dict) -> None:
    atomic_write_json(path, doc, indent=1, sort_keys=True)


def _cached_mirror_tree(base: Path) -> TflmSources | None:
    """A mirror unpacked into the cache by an earlier run (its ``source.json`` says which), for a checkout that
    no longer sees the tarball (a CI checkout elsewhere on the same machine); the newest if there are several."""
    found = []
    for record in base.glob(f"mirror-*/{SOURCE_RECORD}"):
        tree = record.parent / "tflite-micro"
        if (tree / MAKEFILE).is_file():
            try:
                doc = json.loads(record.read_text())
                found.append((record.stat().st_mtime, TflmSources(tree, doc["origin"] + " (unpacked in the cache)",
                                                                   doc["identity"], doc.get("commits", {}))))
            except (OSError, ValueError, KeyError):
                continue
    return max(found, key=lambda f: f[0])[1] if found else None


def _materialise(dest: Path, progress: Callable[[str], None] | None, what: str, message: str | None,
                 fill: Callable[[Path], None]) -> None:
    """Make ``dest`` (a ``tflite-micro`` tree in the cache) exist, once across processes: under the sources lock,
    ``fill`` writes the tree into a private temporary folder, which is then renamed into place (a failed
    ``fill`` leaves nothing behind)."""
    if (dest / MAKEFILE).is_file():
        return
    with _Lock(cache_root() / "tflm" / "sources.lock", progress, what):
        if (dest / MAKEFILE).is_file():
            return
        if progress and message:
            progress(message)
        tmp = dest.parent.with_name(dest.parent.name + f".tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            fill(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(dest.parent, ignore_errors=True)
        tmp.rename(dest.parent)


def tflm_sources(progress: Callable[[str], None] | None = print_to_stderr) -> TflmSources:
    """The TFLM tree to build from, as a private copy in the cache (see the module docstring)."""
    base = cache_root() / "tflm" / "src"
    env = os.environ.get("EDGENAS_TFLM_SOURCES")
    if env:
        user = Path(env).expanduser()
        if not (user / MAKEFILE).is_file() or not (user / MAKEFILE).parent.joinpath("downloads").is_dir():
            raise UserError(f"EDGENAS_TFLM_SOURCES={env} is not a tflite-micro tree with "
                            "tensorflow/lite/micro/tools/make/downloads filled")
        ident = _tree_fingerprint(user)
        dest = base / f"user-{ident[:16]}" / "tflite-micro"
        head = _run_text(["git", "-C", str(user), "rev-parse", "HEAD"]).strip() or None
        _materialise(dest, progress, "a source copy", f"copying the TFLM sources from {user} into {dest.parent}",
                     lambda tmp: shutil.copytree(user, tmp / "tflite-micro", symlinks=True,
                                                 ignore=shutil.ignore_patterns("gen", ".git")))
        return TflmSources(dest, "EDGENAS_TFLM_SOURCES", ident, {"tflite-micro": head})
    mirror = find_mirror()
    if mirror is not None:
        ident = sha256_file(mirror)
        dest = base / f"mirror-{ident[:16]}" / "tflite-micro"

        def unpack(tmp: Path) -> None:
            with tarfile.open(mirror) as tar:
                tar.extractall(tmp)  # our own mirror (shared/third_party), not user input

        _materialise(dest, progress, "a source unpack", f"unpacking {mirror} into {dest.parent}", unpack)
        commits = _mirror_commits(mirror)
        record = dest.parent / SOURCE_RECORD
        if not record.is_file():
            _write_json_atomic(record, {"origin": f"mirror {mirror}", "identity": ident, "commits": commits})
        return TflmSources(dest, f"mirror {mirror}", ident, commits)
    cached = _cached_mirror_tree(base)
    if cached is not None:
        return cached
    dest = base / f"git-{TFLM_COMMIT[:12]}" / "tflite-micro"

    def clone(tmp: Path) -> None:
        for cmd in clone_commands(tmp / "tflite-micro"):
            if progress:
                progress("$ " + " ".join(cmd))
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise BuildError(
                    "no TFLM sources: set EDGENAS_TFLM_SOURCES to a tflite-micro tree, or "
                    f"EDGENAS_THIRD_PARTY to a folder holding {MIRROR_NAME}, or give this machine "
                    f"network access for a git clone ({' '.join(cmd)} failed: "
                    f"{(r.stderr or r.stdout).strip().splitlines()[-1:]})")

    _materialise(dest, progress, "a source clone", None, clone)
    return TflmSources(dest, "git clone", TFLM_COMMIT, {"tflite-micro": TFLM_COMMIT})


# ----------------------------------------------------------------------------------------------------------
# The TFLM library


@dataclass(frozen=True)
class TflmLibrary:
    """A built ``libtensorflow-microlite.a`` and how to compile code against it.

    ``cxxflags``/``ccflags``: TFLM's own compile flags for the target (CPU, float ABI, the
    ``TF_LITE_STATIC_MEMORY`` and kernel defines that must match the library), with the optimisation level;
    ``include_dirs``: absolute. ``info``: the build record (key, sources, compiler, seconds).
    """

    target: Target
    path: Path
    directory: Path
    cxxflags: tuple[str, ...]
    ccflags: tuple[str, ...]
    include_dirs: tuple[str, ...]
    info: dict


_PRINT_VARS = ("CXXFLAGS", "CCFLAGS", "INCLUDES", "CORE_OPTIMIZATION_LEVEL", "GENDIR")


def _make_env() -> dict:
    env = dict(os.environ)
    # TFLM's Makefile runs `python3` (with numpy) while it parses: ours first on the PATH.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def _library_key(target: Target, src: TflmSources) -> tuple[str, dict]:
    material = {
        "format": BUILD_FORMAT,
        "target": target.name,
        "make_args": target.make_args(),
        "sources": src.identity,
        "compiler": compiler_version(target),
    }
    if not target.is_arm:
        material["target_makefile"] = sha256_file(PLATFORM_DIR / target.platform / "tflm_target_makefile.inc")
    key = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]
    return key, material


def library_dir(target: Target, src: TflmSources | None = None) -> Path:
    """Where ``tflm_library`` keeps (or will keep) ``target``'s library."""
    src = src or tflm_sources(progress=None)
    key, _ = _library_key(target, src)
    return cache_root() / "tflm" / "lib" / f"{target.name}-{key}"


def _load_library(target: Target, d: Path) -> TflmLibrary:
    info = json.loads((d / "build.json").read_text())
    cxx, cc, incs = info["cxxflags"], info["ccflags"], info["include_dirs"]
    if not info.get("shell_split"):
        # Written before make's shell quoting was undone (-D"ARMCM4" and the like): undo it once here.
        cxx, cc = ([t for t in shlex.split(" ".join(f)) if t != "-MD"] for f in (cxx, cc))
        incs = [shlex.split(p)[0] for p in incs]
    return TflmLibrary(target, d / "libtensorflow-microlite.a", d, tuple(cxx), tuple(cc), tuple(incs), info)


def _split_includes(toks: list[str], root: Path) -> list[str]:
    out, i = [], 0
    while i < len(toks):
        t = toks[i]
        if t in ("-I", "-isystem") and i + 1 < len(toks):
            path, i = toks[i + 1], i + 2
        elif t.startswith("-I"):
            path, i = t[2:], i + 1
        else:
            i += 1
            continue
        p = Path(path)
        out.append(str(p if p.is_absolute() else (root / p).resolve()))
    return list(dict.fromkeys(out))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale_build(final: Path) -> Path | None:
    """The ``gen`` directory of an interrupted build of ``final`` (its process is gone), if any; other stale
    temporary directories of that key are removed."""
    found = None
    for d in sorted(final.parent.glob(final.name + ".tmp-*"), key=lambda p: p.stat().st_mtime, reverse=True):
        pid = d.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid() or _pid_alive(int(pid)):
            continue
        if found is None and (d / "gen").is_dir():
            found = d / "gen"
        else:
            shutil.rmtree(d, ignore_errors=True)
    return found


def tflm_library(target: Target | str, progress: Callable[[str], None] | None = print_to_stderr,
                 jobs: int | None = None, adopt_gen_dir: Path | None = None) -> TflmLibrary:
    """The TFLM ``microlite`` library for ``target``, built with TFLM's own Makefile on first use.

    About 8 minutes per target on 2 idle cores, once per cache key. ``adopt_gen_dir``: the ``BASE_GENDIR``
    of a build of the same sources with the same make arguments run by hand; it is moved in and TFLM's make
    only completes it. Raises ``ToolchainMissing`` or ``BuildError`` (with the end of the build log)."""
    target = get_target(target) if isinstance(target, str) else target
    check_tools(target)
    src = tflm_sources(progress)
    if not target.is_arm:
        tm = src.root / RISCV_TARGET_MAKEFILE
        want = (PLATFORM_DIR / target.platform / "tflm_target_makefile.inc").read_bytes()
        if not tm.is_file() or tm.read_bytes() != want:
            tm.write_bytes(want)
    key, material = _library_key(target, src)
    final = cache_root() / "tflm" / "lib" / f"{target.name}-{key}"
    if (final / "build.json").is_file():
        return _load_library(target, final)
    with _Lock(cache_root() / "tflm" / "build.lock", progress, "a TFLM library build"):
        if (final / "build.json").is_file():
            return _load_library(target, final)
        tmp = final.with_name(final.name + f".tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        gen = tmp / "gen"
        stale = _stale_build(final)
        if adopt_gen_dir is None and stale is not None:
            adopt_gen_dir = stale   # an interrupted build of the same key: make completes it
            if progress:
                progress(f"resuming the interrupted build in {stale.parent}")
        if adopt_gen_dir is not None:
            shutil.move(str(adopt_gen_dir), str(gen))
        args = target.make_args() + [f"BASE_GENDIR={gen}"]
        jobs = jobs or max(1, os.cpu_count() or 1)
        cmd = ["make", "-f", MAKEFILE, *args, "microlite", f"-j{jobs}"]
        if progress:
            progress(f"building the TFLM library for {target.name} (once; about 8 min on 2 cores) in {final}")
        t0 = time.time()
        with open(tmp / "build.log", "w") as log:
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            r = subprocess.run(cmd, cwd=src.root, env=_make_env(), stdout=log, stderr=subprocess.STDOUT)
        seconds = round(time.time() - t0, 1)
        built = sorted(gen.glob("*/lib/libtensorflow-microlite.a"))
        if r.returncode != 0 or not built:
            tail = (tmp / "build.log").read_text(errors="replace").strip().splitlines()[-15:]
            raise BuildError(f"TFLM library build for {target.name} failed (log {tmp / 'build.log'}):\n"
                             + "\n".join(tail))
        printer = tmp / "print_vars.mk"
        printer.write_text("edgenas-print-vars:\n" + "".join(
            f"\t@echo 'EDGENAS_VAR {v}=$({v})'\n" for v in _PRINT_VARS))
        out = subprocess.run(["make", "-f", MAKEFILE, "-f", str(printer), *args, "edgenas-print-vars"],
                             cwd=src.root, env=_make_env(), capture_output=True, text=True)
        vars_ = dict(m.groups() for m in re.finditer(r"^EDGENAS_VAR (\w+)=(.*)$", out.stdout, re.M))
        if set(vars_) != set(_PRINT_VARS):
            raise BuildError(f"could not read TFLM's compile flags for {target.name}: {out.stderr[-2000:]}")
        shutil.copy2(built[0], tmp / "libtensorflow-microlite.a")
        for obj in gen.glob("*/obj"):
            shutil.rmtree(obj, ignore_errors=True)   # keep genfiles (headers), drop 100+ MB of objects
        opt = vars_["CORE_OPTIMIZATION_LEVEL"].split()

        def flags(text: str) -> list[str]:
            # make hands these to a shell: undo its quoting (-D"ARMCM4" -> -DARMCM4); no -Werror, no -MD for us
            return [f for f in shlex.split(text) if f not in ("-Werror", "-MD")] + opt

        includes = [p.replace(str(tmp), str(final))
                    for p in _split_includes(shlex.split(vars_["INCLUDES"]), src.root)]
        info = {
            "key": key, "key_material": material, "target": target.name, "sources": src.origin,
            "source_root": str(src.root), "commits": src.commits, "compiler": compiler_version(target),
            "make_command": " ".join(cmd), "seconds": seconds,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "cxxflags": flags(vars_["CXXFLAGS"].replace(str(tmp), str(final))),
            "ccflags": flags(vars_["CCFLAGS"].replace(str(tmp), str(final))),
            "include_dirs": includes,
            "shell_split": True,
        }
        (tmp / "build.json").write_text(json.dumps(info, indent=2) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        if progress:
            progress(f"TFLM library for {target.name} built in {seconds:.0f} s")
    return _load_library(target, final)


# ----------------------------------------------------------------------------------------------------------
# Applications


def platform_sources(target: Target) -> list[Path]:
    """The platform's start-up / counter / runtime sources compiled into every application."""
    if target.is_arm:
        return [PLATFORM_DIR / "cortex-m" / "startup.c"]
    return [PLATFORM_DIR / target.platform / "counter.c", PLATFORM_DIR / target.platform / "cxx_runtime.cc"]


def platform_include_dirs(target: Target) -> list[Path]:
    """Directories holding the platform's headers (``edgenas_counter.h``)."""
    return [PLATFORM_DIR / ("cortex-m" if target.is_arm else target.platform)]


def _cpu_flags(flags: Iterable[str]) -> list[str]:
    return [f for f in flags if f.startswith(("-mcpu=", "-mfpu=", "-mfloat-abi=", "-mthumb", "-march=", "-mabi=",
                                              "-mcmodel="))]


# RV32 memory layout for picolibc.ld on QEMU virt (DRAM at 0x80000000, 128 MiB by default).
RISCV_LINK = ("-Wl,--defsym=__flash=0x80000000", "-Wl,--defsym=__flash_size=0x01000000",
              "-Wl,--defsym=__ram=0x81000000", "-Wl,--defsym=__ram_size=0x00800000",
              "-Wl,--defsym=__stack_size=0x10000")


def link_flags(target: Target, lib: TflmLibrary | None, map_file: Path | None = None) -> list[str]:
    """The link command's flags (start-up files, C library with semihosting, linker script)."""
    if target.is_arm:
        flags = _cpu_flags(lib.cxxflags if lib else target.cpu_flags) + [
            "--specs=nano.specs", "--specs=rdimon.specs", "-nostartfiles",
            f"-L{PLATFORM_DIR / target.platform}", f"-T{PLATFORM_DIR / 'cortex-m' / 'link.ld'}",
            "-Wl,--gc-sections"]
    else:
        # Link with the rv32imac multilib of picolibc (Debian has no rv32imc one); TFLM objects are rv32imc.
        flags = ["-march=rv32imac", "-mabi=ilp32", "-mcmodel=medlow", "--specs=picolibc.specs",
                 "--oslib=semihost", "--crt0=semihost", "-mno-relax", "-Wl,--gc-sections", *RISCV_LINK]
    if map_file is not None:
        flags.append(f"-Wl,-Map={map_file}")
    return flags


def _run_build(cmd: list[str], what: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        msg = (r.stderr or r.stdout).strip()
        raise BuildError(f"{what} failed:\n$ {' '.join(cmd)}\n{msg[-4000:]}")


def compile_and_link(target: Target | str, lib: TflmLibrary | None, sources: Sequence[Path | str], out_elf: Path | str,
                     include_dirs: Sequence[Path | str] = (), defines: Sequence[str] = (),
                     extra_flags: Sequence[str] = ()) -> Path:
    """Compile ``sources`` (.c/.cc/.cpp) with the library's flags plus the platform's start-up code, and link
    them against ``lib`` into ``out_elf`` (a map file ``<out_elf>.map`` is written beside it). With
    ``lib=None`` (programs without TFLM) the target's ``cpu_flags`` and ``-Os`` are used instead.

    ``defines`` are ``NAME`` or ``NAME=VALUE`` (``-D`` added). Objects go to ``<out_elf>.obj/``.
    Raises ``BuildError`` with the compiler's or linker's message."""
    target = get_target(target) if isinstance(target, str) else target
    out_elf = Path(out_elf)
    objdir = out_elf.with_name(out_elf.name + ".obj")
    objdir.mkdir(parents=True, exist_ok=True)
    lib_incs = lib.include_dirs if lib else ()
    incs = [f"-I{d}" for d in [*include_dirs, *platform_include_dirs(target), *lib_incs]]
    defs = [f"-D{d}" for d in defines]
    objs = []
    for i, src in enumerate([*map(Path, sources), *platform_sources(target)]):
        is_c = src.suffix == ".c"
        cc = target.prefix + ("gcc" if is_c else "g++")
        if lib is not None:
            base = list(lib.ccflags if is_c else lib.cxxflags)
        else:
            base = [*target.cpu_flags, "-Os", "-ffunction-sections", "-fdata-sections"]
            if not is_c:
                base += ["-fno-exceptions", "-fno-rtti", "-fno-threadsafe-statics"]
                if not target.is_arm:
                    base += [f"-isystem{d}" for d in riscv_cxx_includes()]
        if not target.is_arm and src.name == "counter.c":
            base.append("-march=rv32imc_zicsr")
        obj = objdir / f"{i:03d}_{src.stem}.o"
        _run_build([cc, *base, *defs, *incs, *extra_flags, "-c", str(src), "-o", str(obj)], f"compiling {src.name}")
        objs.append(str(obj))
    driver = target.prefix + ("g++" if target.is_arm else "gcc")
    libs = [str(lib.path)] if lib else []
    cmd = [driver, *link_flags(target, lib, out_elf.with_suffix(out_elf.suffix + ".map")), *objs, *libs,
           "-lm", "-o", str(out_elf)]
    _run_build(cmd, f"linking {out_elf.name}")
    return out_elf


# ----------------------------------------------------------------------------------------------------------
# QEMU and sizes


def qemu_command(target: Target | str, elf: Path | str, serial: str | None = None, semihosting: bool = True,
                 icount: bool = True) -> list[str]:
    """The QEMU command line that runs ``elf`` on ``target``'s machine.

    ``serial``: a QEMU chardev for the machine's first UART (``"pty"``, ``"stdio"``, ...) or ``None`` for
    none. ``semihosting``: console and exit through semihosting (the program's stdout is QEMU's stdout).
    ``icount``: ``-icount shift=0`` (1 ns of virtual time per instruction: what the SysTick counter relies on).
    """
    target = get_target(target) if isinstance(target, str) else target
    cmd = [target.qemu, "-M", target.machine, "-nographic", "-monitor", "none", "-serial", serial or "none"]
    if not target.is_arm:
        cmd += ["-bios", "none"]
    if semihosting:
        cmd += ["-semihosting-config", "enable=on,target=native"]
    if icount:
        cmd += ["-icount", "shift=0"]
    return cmd + ["-kernel", str(elf)]


@dataclass(frozen=True)
class QemuRun:
    """One finished QEMU run (what ``run_qemu`` returns).

    Attributes:
        command: the QEMU argv.
        returncode: QEMU's exit status (a program that exits through semihosting sets it).
        stdout: QEMU's standard output as text (the program's semihosting console).
        stderr: QEMU's standard error as text.
        seconds: wall-clock time of the run in seconds, rounded to 0.01 s.
    """

    command: list
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def run_qemu(target: Target | str, elf: Path | str, timeout_s: float = 600.0) -> QemuRun:
    """Run ``elf`` until it exits through semihosting; ``EmulationError`` after ``timeout_s`` seconds."""
    target = get_target(target) if isinstance(target, str) else target
    cmd = qemu_command(target, elf)
    t0 = time.time()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        raise EmulationError(f"QEMU ({target.machine}) did not finish within {timeout_s:.0f} s; last output: "
                             f"{out.strip().splitlines()[-1:]}") from None
    return QemuRun(cmd, r.returncode, r.stdout, r.stderr, round(time.time() - t0, 2))


def elf_sizes(target: Target | str, elf: Path | str, symbols: Sequence[str] = ()) -> dict:
    """``text``, ``data``, ``bss`` of ``elf`` (Berkeley ``size``: text includes read-only data) and the size
    in bytes of each symbol in ``symbols`` (``nm -S``; absent symbols are left out)."""
    target = get_target(target) if isinstance(target, str) else target
    out = _run_text([target.prefix + "size", "-B", str(elf)]).splitlines()
    text, data, bss = (int(x) for x in out[1].split()[:3])
    sizes = {"text": text, "data": data, "bss": bss}
    if symbols:
        want = set(symbols)
        for line in _run_text([target.prefix + "nm", "-S", str(elf)]).splitlines():
            parts = line.split()
            if len(parts) == 4 and parts[3] in want:
                sizes[parts[3]] = int(parts[1], 16)
    return sizes
