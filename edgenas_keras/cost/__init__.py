"""Cost models, pure numpy: the int8 operator graph of an architecture and its LUT keys (``graph``), latency,
SRAM (the TFLM arena) and flash (``estimate``)."""
