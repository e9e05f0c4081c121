/* EdgeNAS instruction counter, Cortex-M under QEMU with -icount shift=0: see startup.c.
 * edgenas_counter_read() returns SysTick ticks of the processor clock since edgenas_counter_init();
 * one tick is EDGENAS_INSTRUCTIONS_PER_TICK guest instructions (set by the build: 40 on MPS2 AN386/AN500
 * at 25 MHz, 50 on AN505 at 20 MHz), so the resolution is one tick. */
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
#define EDGENAS_COUNTER_UNIT "systick"
#endif
