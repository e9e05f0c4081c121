/* EdgeNAS instruction counter, RV32 under QEMU: edgenas_counter_read() returns minstret (retired
 * instructions, exact; EDGENAS_INSTRUCTIONS_PER_TICK is 1). */
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
#define EDGENAS_COUNTER_UNIT "minstret"
#endif
