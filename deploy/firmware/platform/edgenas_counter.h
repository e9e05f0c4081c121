/* EdgeNAS instruction counter under QEMU: one interface, implemented per platform. edgenas_counter_read()
 * returns the count since edgenas_counter_init():
 * - Cortex-M (platform/cortex-m/startup.c; QEMU with -icount shift=0): SysTick ticks of the processor clock;
 *   one tick is EDGENAS_INSTRUCTIONS_PER_TICK guest instructions (set by the build: 40 on MPS2 AN386/AN500
 *   at 25 MHz, 50 on AN505 at 20 MHz), so the resolution is one tick.
 * - RV32 (platform/riscv32-virt/counter.c): minstret, retired instructions, exact
 *   (EDGENAS_INSTRUCTIONS_PER_TICK is 1). */
#ifndef EDGENAS_COUNTER_H_
#define EDGENAS_COUNTER_H_
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif
void edgenas_counter_init(void);
uint64_t edgenas_counter_read(void);
#ifdef __cplusplus
}
#endif
#if defined(__riscv)
#define EDGENAS_COUNTER_UNIT "minstret"
#else
#define EDGENAS_COUNTER_UNIT "systick"
#endif
#endif
