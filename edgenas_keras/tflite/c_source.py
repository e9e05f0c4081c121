"""C source text shared by the generators of firmware sources (the bundle's model array, the emulator's input
array, the LUT profiler's model arrays): one writer of byte arrays."""

from __future__ import annotations


def c_array(data: bytes, per_line: int, *, indent: str = "    ", trailing_comma: bool = True) -> str:
    """The body of a C array initialiser holding ``data``: ``per_line`` bytes a line as lowercase two-digit
    hex literals (``0x0a``) separated by ``", "``, every line but the last ending in ``,``.

    Args:
        data: the bytes, in order.
        per_line: how many bytes go on one line (>= 1).
        indent: text before every line (the bundle indents by four spaces, the emulator's glue not at all).
        trailing_comma: end the last line with ``,`` too (allowed in C initialisers; the bundle's convention).

    Returns:
        The lines joined by ``\\n``, without braces and without a final newline; ``""`` for no data.

    Raises:
        ValueError: ``per_line`` is less than 1.
    """
    if per_line < 1:
        raise ValueError(f"per_line must be at least 1, got {per_line}")
    rows = [indent + ", ".join(f"0x{b:02x}" for b in data[i:i + per_line]) for i in range(0, len(data), per_line)]
    text = ",\n".join(rows)
    return text + "," if trailing_comma and rows else text
