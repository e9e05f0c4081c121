/* EdgeNAS start-up code for Cortex-M under QEMU (MPS2 machines), with newlib + rdimon semihosting.
 *
 * Reset_Handler: enables the FPU where the build has one, copies .data from flash, zeroes .bss, opens the
 * semihosting console (initialise_monitor_handles), runs the C++ constructors, calls main() and exits through
 * semihosting with main's status. A fault prints one line and exits with status 1.
 *
 * The instruction counter (edgenas_counter.h): QEMU runs with `-icount shift=0`, so its virtual clock
 * advances exactly 1 ns per guest instruction; SysTick counts the processor clock (CLKSOURCE=1), which is
 * EDGENAS_CPU_HZ on the machine (MPS2 AN386/AN500: 25 MHz, one tick = 40 instructions; AN505: 20 MHz, one
 * tick = 50 instructions). SysTick is a 24-bit down-counter: we reload it with 0xFFFFFF and count its wraps
 * in SysTick_Handler, which makes a 64-bit tick count (resolution one tick).
 */
#include <stdint.h>
#include <stdlib.h>

#include "edgenas_counter.h"

extern uint32_t __data_start__, __data_end__, __data_load__, __bss_start__, __bss_end__, __StackTop;
extern int main(void);
extern void initialise_monitor_handles(void);
extern void __libc_init_array(void);

/* -nostartfiles drops crti/crtbegin: provide what they would. */
void *__dso_handle = 0;
void _init(void) {}
void _fini(void) {}

#define REG32(addr) (*(volatile uint32_t *)(addr))
#define SCB_CPACR REG32(0xE000ED88u)
#define SYST_CSR REG32(0xE000E010u)
#define SYST_RVR REG32(0xE000E014u)
#define SYST_CVR REG32(0xE000E018u)
#define SCB_CFSR REG32(0xE000ED28u)

static volatile uint32_t g_systick_wraps;

static void semihost_write0(const char *s) {
  register uint32_t r0 __asm__("r0") = 0x04; /* SYS_WRITE0 */
  register const char *r1 __asm__("r1") = s;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
}

static void semihost_exit_failure(void) {
  register uint32_t r0 __asm__("r0") = 0x18;      /* SYS_EXIT */
  register uint32_t r1 __asm__("r1") = 0x20023;   /* ADP_Stopped_RunTimeErrorUnknown: QEMU exits 1 */
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  for (;;) {
  }
}

void Reset_Handler(void) {
#if defined(__ARM_FP)
  SCB_CPACR |= (0xFu << 20); /* CP10, CP11 full access */
  __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
  uint32_t *src = &__data_load__;
  for (uint32_t *dst = &__data_start__; dst < &__data_end__;) *dst++ = *src++;
  for (uint32_t *dst = &__bss_start__; dst < &__bss_end__;) *dst++ = 0;
  initialise_monitor_handles();
  __libc_init_array();
  exit(main());
}

static void Fault_Handler(void) {
  static const char hex[] = "0123456789abcdef";
  char line[] = "EDGENAS-FAULT cfsr=0x00000000\n";
  uint32_t cfsr = SCB_CFSR;
  for (int i = 0; i < 8; ++i) line[21 + i] = hex[(cfsr >> (28 - 4 * i)) & 0xF];
  semihost_write0(line);
  semihost_exit_failure();
}

static void Default_Handler(void) { Fault_Handler(); }

void SysTick_Handler(void) { g_systick_wraps++; }

void edgenas_counter_init(void) {
  SYST_CSR = 0;
  SYST_RVR = 0x00FFFFFFu;
  SYST_CVR = 0;
  g_systick_wraps = 0;
  SYST_CSR = 7u; /* ENABLE | TICKINT | CLKSOURCE=processor clock */
}

uint64_t edgenas_counter_read(void) {
  uint32_t w1, v, w2;
  do {
    w1 = g_systick_wraps;
    v = SYST_CVR;
    w2 = g_systick_wraps;
  } while (w1 != w2);
  return ((uint64_t)w1 << 24) + (0x00FFFFFFu - (v & 0x00FFFFFFu));
}

__attribute__((section(".isr_vector"), used)) void (*const g_vectors[16])(void) = {
    (void (*)(void))(&__StackTop),
    Reset_Handler,
    Default_Handler, /* NMI */
    Fault_Handler,   /* HardFault */
    Fault_Handler,   /* MemManage */
    Fault_Handler,   /* BusFault */
    Fault_Handler,   /* UsageFault */
    Fault_Handler,   /* SecureFault (v8-M) */
    0,
    0,
    0,
    Default_Handler, /* SVCall */
    Default_Handler, /* DebugMonitor */
    0,
    Default_Handler, /* PendSV */
    SysTick_Handler,
};
