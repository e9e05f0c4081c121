/* EdgeNAS instruction counter for RV32 under QEMU (machine virt): the minstret/minstreth CSRs count retired
 * instructions exactly. Start-up, .data/.bss and the semihosting console are picolibc's crt0 (--crt0=semihost
 * --oslib=semihost); the memory map is picolibc.ld with __flash/__ram at the virt machine's DRAM
 * (0x80000000), set by the build with --defsym. Compile this file with -march=..._zicsr. */
#include <stdint.h>

#include "edgenas_counter.h"

void edgenas_counter_init(void) {}

uint64_t edgenas_counter_read(void) {
  uint32_t hi, lo, hi2;
  do {
    __asm__ volatile("csrr %0, minstreth" : "=r"(hi));
    __asm__ volatile("csrr %0, minstret" : "=r"(lo));
    __asm__ volatile("csrr %0, minstreth" : "=r"(hi2));
  } while (hi != hi2);
  return ((uint64_t)hi << 32) | lo;
}
