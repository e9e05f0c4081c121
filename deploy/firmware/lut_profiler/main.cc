// EdgeNAS on-board LUT profiler (TFLM). Speaks line protocol v1 (deploy/lut_profiler.py) on the console UART:
// prints a header at boot and on "HELLO"; for each "RUN <i>" from the host times model i and answers
// "RESULT <i> <median_cycles> <mad_cycles> <samples> <sha8>"; "END" -> "BYE". Cycles come from DWT->CYCCNT on Cortex-M and
// from the mcycle CSR on RISC-V. Board glue (UART, clocks) is in board.h, one small file per board.
#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "board.h"  // board_init(), board_clock_hz(), board_read_line(char*, int), board_write(const char*)
#include "profile_set.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {

constexpr int kWarmup = 3;
constexpr int kMaxSamples = 31;
constexpr uint32_t kBudgetCycles = 200u * 1000u * 1000u;  // stop repeating after ~0.2-1 s of timing
alignas(16) uint8_t g_arena[ARENA_BYTES];                 // -DARENA_BYTES=<largest arena_bytes in the set>

#if defined(__riscv)
inline uint32_t cycles() { uint32_t c; asm volatile("csrr %0, mcycle" : "=r"(c)); return c; }
inline void cycles_init() {}
#else
#define DEMCR (*(volatile uint32_t*)0xE000EDFCu)
#define DWT_CTRL (*(volatile uint32_t*)0xE0001000u)
#define DWT_CYCCNT (*(volatile uint32_t*)0xE0001004u)
inline uint32_t cycles() { return DWT_CYCCNT; }
inline void cycles_init() { DEMCR |= 1u << 24; DWT_CYCCNT = 0; DWT_CTRL |= 1u; }
#endif

void say(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void say(const char* fmt, ...) {
  char buf[160];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  board_write(buf);
  board_write("\n");
}

uint32_t median(uint32_t* v, int n) { std::sort(v, v + n); return v[n / 2]; }

void run(int i) {
  if (i < 0 || i >= kProfileSetSize) { say("ERROR %d no such key", i); return; }
  const ProfileEntry& e = kProfileSet[i];
  static tflite::MicroMutableOpResolver<12> resolver;
  static bool ops_added = false;
  if (!ops_added) {
    resolver.AddConv2D(); resolver.AddDepthwiseConv2D(); resolver.AddFullyConnected(); resolver.AddAdd();
    resolver.AddMul(); resolver.AddMean(); resolver.AddSoftmax(); resolver.AddAveragePool2D();
    resolver.AddMaxPool2D(); resolver.AddReshape(); resolver.AddPad(); resolver.AddQuantize();
    ops_added = true;
  }
  tflite::MicroInterpreter interp(tflite::GetModel(e.model), resolver, g_arena, sizeof(g_arena));
  if (interp.AllocateTensors() != kTfLiteOk) { say("ERROR %d AllocateTensors failed", i); return; }
  for (size_t t = 0; t < interp.inputs_size(); ++t) {  // deterministic pseudo-random int8 inputs
    TfLiteTensor* in = interp.input(t);
    for (size_t b = 0; b < in->bytes; ++b) in->data.int8[b] = static_cast<int8_t>((b * 2654435761u) >> 24);
  }
  for (int w = 0; w < kWarmup; ++w) interp.Invoke();
  uint32_t s[kMaxSamples], total = 0;
  int n = 0;
  while (n < kMaxSamples && (n < 5 || total < kBudgetCycles)) {
    uint32_t t0 = cycles();
    if (interp.Invoke() != kTfLiteOk) { say("ERROR %d Invoke failed", i); return; }
    s[n] = cycles() - t0;
    total += s[n++];
  }
  uint32_t med = median(s, n), dev[kMaxSamples];
  for (int j = 0; j < n; ++j) dev[j] = s[j] > med ? s[j] - med : med - s[j];
  say("RESULT %d %lu %lu %d %s", i, (unsigned long)med, (unsigned long)median(dev, n), n, e.sha8);
}

void header() {
  say("EDGENAS-LUT 1 device=%s keys=%d clock_hz=%lu set=%s", kProfileDevice, kProfileSetSize,
      (unsigned long)board_clock_hz(), kProfileSetId);
}

}  // namespace

int main() {
  board_init();
  cycles_init();
  header();
  char line[64];
  for (;;) {
    board_read_line(line, sizeof(line));
    if (strncmp(line, "RUN ", 4) == 0) run(atoi(line + 4));
    else if (strcmp(line, "HELLO") == 0) header();
    else if (strcmp(line, "END") == 0) { say("BYE"); break; }
  }
  for (;;) {}
}
