// Board glue for the Arm MPS2 machines QEMU emulates: mps2-an386 (Cortex-M4), mps2-an500 (Cortex-M7) and
// mps2-an505 (Cortex-M33). Console: the CMSDK APB UART0, which QEMU connects to its first -serial (a
// pseudo-terminal with -serial pty). Counter: SysTick on the core clock, as instructions (see below).
//
// Build with -DMPS2_AN505 for the an505, nothing for an386/an500. Memory maps (QEMU hw/arm/mps2.c, mps2-tz.c,
// checked with `info mtree` in QEMU 7.2's monitor):
//   an386/an500: UART0 at 0x40004000; system clock 25 MHz.
//   an505: the core runs in the Secure state (it resets there and nothing here leaves it); UART0 is at
//          0x40200000 in the Non-secure alias and 0x50200000 in the Secure one, which is the one to use: the
//          peripheral protection controller leaves the expansion peripherals Secure at reset. System clock
//          20 MHz.
//
// The counter. QEMU models no cycles: DWT->CYCCNT reads as zero on every M-profile machine (DWT is not
// implemented; checked in QEMU 7.2), so a cycle count is impossible. With `-icount shift=0` QEMU advances its
// virtual clock by exactly 1 ns per guest instruction and SysTick counts the core clock of that virtual time, so
// one SysTick tick is 1e9 / clock_hz instructions: 40 at 25 MHz, 50 at 20 MHz (a loop of 20,000 instructions
// reads 500 ticks on an386/an500, 400 on an505). The tick counter is the platform's (deploy/firmware/platform/
// cortex-m: startup.c extends SysTick to 64 bits in its SysTick_Handler); board_count() scales it to
// instructions, resolution one tick (40 or 50 instructions). Without -icount the same figure would be host time,
// not instructions: always run it with -icount shift=0 (deploy/lut_profiler_qemu.py does).
//
// -DPROFILER_COUNTER_DWT builds the counter a real Cortex-M board uses instead (DWT->CYCCNT, core cycles); under
// QEMU it never advances, and the profiler answers every RUN with an ERROR saying so.
#include <cstdint>

#include "../board.h"
#include "edgenas_counter.h"  // the platform's SysTick tick counter (deploy/firmware/platform/cortex-m)

namespace {

#if defined(MPS2_AN505)
constexpr uint32_t kUartBase = 0x50200000u;  // UART0, Secure alias
constexpr uint32_t kSysClkHz = 20000000u;
#else
constexpr uint32_t kUartBase = 0x40004000u;  // UART0
constexpr uint32_t kSysClkHz = 25000000u;
#endif
constexpr uint32_t kInstructionsPerTick = 1000000000u / kSysClkHz;
#if defined(EDGENAS_INSTRUCTIONS_PER_TICK)
static_assert(EDGENAS_INSTRUCTIONS_PER_TICK == kInstructionsPerTick, "the build's machine is not this one");
#endif

// CMSDK APB UART registers (Arm DDI 0479C, 4.3): DATA, STATE (bit 0 TX full, bit 1 RX full), CTRL (bit 0 TX
// enable, bit 1 RX enable), BAUDDIV.
inline volatile uint32_t& reg(uint32_t addr) { return *reinterpret_cast<volatile uint32_t*>(addr); }
inline volatile uint32_t& uart(uint32_t offset) { return reg(kUartBase + offset); }
constexpr uint32_t kData = 0x0, kState = 0x4, kCtrl = 0x8, kBaudDiv = 0x10;

#if defined(PROFILER_COUNTER_DWT)
constexpr uint32_t kDemcr = 0xE000EDFCu, kDwtCtrl = 0xE0001000u, kDwtCyccnt = 0xE0001004u;
#else
constexpr uint32_t kSystCvr = 0xE000E018u;  // SysTick current value
#endif

}  // namespace

void board_init() {
  uart(kBaudDiv) = kSysClkHz / 115200u;
  uart(kCtrl) = 0x3u;  // TX and RX enabled, no interrupts
#if defined(PROFILER_COUNTER_DWT)
  reg(kDemcr) |= 1u << 24;  // TRCENA
  reg(kDwtCyccnt) = 0;
  reg(kDwtCtrl) |= 1u;      // CYCCNTENA
#else
  edgenas_counter_init();
  // SysTick reads 0 until its first tick loads the reload value, and a count read then is a whole period
  // (2^24 ticks) ahead of the counts that follow it: wait for that first tick.
  while (reg(kSystCvr) == 0u) {}
#endif
}

uint32_t board_clock_hz() { return kSysClkHz; }

#if defined(PROFILER_COUNTER_DWT)
const char* board_count_unit() { return "cycles"; }
uint64_t board_count() { return reg(kDwtCyccnt); }
#else
const char* board_count_unit() { return "instructions"; }
uint64_t board_count() { return edgenas_counter_read() * kInstructionsPerTick; }
#endif

void board_write(const char* s) {
  for (; *s; ++s) {
    while (uart(kState) & 0x1u) {}
    uart(kData) = static_cast<uint8_t>(*s);
  }
}

void board_read_line(char* buf, int size) {
  int n = 0;
  for (;;) {
    while (!(uart(kState) & 0x2u)) {}
    const char c = static_cast<char>(uart(kData) & 0xFFu);
    if (c == '\n') break;
    if (c != '\r' && n < size - 1) buf[n++] = c;
  }
  buf[n] = '\0';
}
