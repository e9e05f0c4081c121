/* EdgeNAS counter check: runs loops of known instruction counts and prints, for each, the loop's
 * instructions and the counter's delta ("calib <instructions> <delta>"), between EDGENAS-BEGIN/END.
 * Each iteration is 2 instructions (decrement, branch); the test compares delta * instructions_per_tick
 * with the count (tests/firmware/test_counter.py). 700 M instructions is more than one 24-bit SysTick period
 * (2^24 ticks = 671 M instructions at 40 per tick): the wrap count is exercised. Built without TFLM. */
#include <stdint.h>
#include <stdio.h>

#include "edgenas_counter.h"

__attribute__((noinline)) static void loop(uint32_t n) {
#if defined(__arm__)
  __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b\n\t" : "+r"(n)::"cc");
#else
  __asm__ volatile("1: addi %0, %0, -1\n\tbnez %0, 1b\n\t" : "+r"(n));
#endif
}

int main(void) {
  static const uint32_t lengths[] = {1000, 10000, 100000, 1000000, 10000000, 700000000};
  edgenas_counter_init();
  printf("EDGENAS-BEGIN\n");
  for (unsigned i = 0; i < sizeof(lengths) / sizeof(lengths[0]); ++i) {
    uint64_t t0 = edgenas_counter_read();
    loop(lengths[i] / 2);
    uint64_t t1 = edgenas_counter_read();
    printf("calib %lu %lu\n", (unsigned long)lengths[i], (unsigned long)(t1 - t0));
  }
  printf("EDGENAS-END\n");
  return 0;
}
