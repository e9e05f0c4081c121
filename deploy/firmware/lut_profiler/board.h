// Board glue of the LUT profiler: one implementation file per board (boards/*.cc). main.cc only talks to the
// board through these functions, so porting the profiler to a new board means writing one such file.
#pragma once
#include <cstdint>

// Clocks, the console UART (115200 8N1 on a board; any rate under QEMU) and the counter. Called once at boot.
void board_init();

// The clock the counts refer to, in Hz (the header's clock_hz): the core clock for a cycle counter; for an
// emulator's instruction count, the clock at which value / clock_hz is the time at one instruction per cycle
// (boards/*.cc say which clock that is).
uint32_t board_clock_hz();

// What board_count() counts: "cycles" (a core cycle counter: DWT CYCCNT, mcycle) or "instructions" (guest
// instructions retired, as counted by an emulator; QEMU does not model cycles). Printed as count=... in the
// header, recorded as the LUT's unit by `edgenas lut collect`.
const char* board_count_unit();

// A free-running counter in that unit; differences of two reads are what the profiler reports.
uint64_t board_count();

// Blocking: one line from the UART without its "\n" (a "\r" is dropped too); longer lines are truncated to
// size - 1 characters.
void board_read_line(char* buf, int size);

// Blocking: write a NUL-terminated string to the UART.
void board_write(const char* s);
