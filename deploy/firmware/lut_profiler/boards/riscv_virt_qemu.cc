// Board glue for QEMU's RISC-V `virt` machine (qemu-system-riscv32 -M virt -bios none): console on the NS16550A
// UART at 0x10000000, which QEMU connects to its first -serial (a pseudo-terminal with -serial pty); counter:
// the minstret CSR (instructions retired).
//
// QEMU models no cycles: with `-icount shift=0` mcycle and minstret both count guest instructions exactly (they
// read the same value; without -icount both read host time, not instructions: checked in QEMU 7.2 with a loop
// of 20,000 instructions). board_count() is the platform's minstret counter (deploy/firmware/platform/
// riscv32-virt/counter.c), resolution one instruction. The virt machine models no
// core clock either, so board_clock_hz() reports 1 GHz, the rate at which -icount shift=0 retires instructions
// in virtual time: value / clock_hz is the emulated time, and a LUT made from it is rescaled to a real core's
// clock with --clock-mhz.
//
// A real RISC-V board with a cycle counter would read mcycle here and report "cycles" at its core clock.
#include <cstdint>

#include "../board.h"
#include "edgenas_counter.h"  // minstret (deploy/firmware/platform/riscv32-virt)

namespace {

constexpr uintptr_t kUartBase = 0x10000000u;
// NS16550A registers (byte-wide): RBR/THR, IER, FCR, LCR, MCR, LSR (bit 0 data ready, bit 5 THR empty).
inline volatile uint8_t& uart(uint32_t offset) { return *reinterpret_cast<volatile uint8_t*>(kUartBase + offset); }
constexpr uint32_t kRbrThr = 0, kIer = 1, kFcr = 2, kLcr = 3, kLsr = 5;

}  // namespace

void board_init() {
  uart(kIer) = 0x00;       // no interrupts
  uart(kLcr) = 0x80;       // divisor latch: 1 (115200 baud from a 1.8432 MHz clock; QEMU ignores the rate)
  uart(kRbrThr) = 0x01;
  uart(kIer) = 0x00;
  uart(kLcr) = 0x03;       // 8N1
  uart(kFcr) = 0x07;       // FIFOs on and cleared
  edgenas_counter_init();
}

uint32_t board_clock_hz() { return 1000000000u; }

const char* board_count_unit() { return "instructions"; }

uint64_t board_count() { return edgenas_counter_read(); }

void board_write(const char* s) {
  for (; *s; ++s) {
    while (!(uart(kLsr) & 0x20)) {}
    uart(kRbrThr) = static_cast<uint8_t>(*s);
  }
}

void board_read_line(char* buf, int size) {
  int n = 0;
  for (;;) {
    while (!(uart(kLsr) & 0x01)) {}
    const char c = static_cast<char>(uart(kRbrThr));
    if (c == '\n') break;
    if (c != '\r' && n < size - 1) buf[n++] = c;
  }
  buf[n] = '\0';
}
