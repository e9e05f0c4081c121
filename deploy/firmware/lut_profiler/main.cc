// EdgeNAS on-board LUT profiler (TFLM). Speaks line protocol v1 (deploy/lut_profiler.py) on the console UART:
// prints a header at boot and on "HELLO"; for each "RUN <i>" from the host times model i and answers
// "RESULT <i> <median> <mad> <samples> <sha8>" (or "ERROR <i> <message>"); "END" -> "BYE", after which it keeps
// listening (a second `collect` needs no reflash). The counts come from the board (board.h): core cycles on a
// real board (DWT->CYCCNT on Cortex-M, mcycle on RISC-V), guest instructions under QEMU (boards/*_qemu.cc); the
// header says which (count=cycles|instructions). Board glue (UART, clock, counter) is one file per board.
#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "board.h"  // board_init(), board_clock_hz(), board_count(), board_count_unit(), board_read_line(), board_write()
#include "profile_set.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {

// Sampling: a few warm-up invokes, then at least kMinSamples timed ones and more until kMaxSamples or until the
// timed invokes add up to kBudget counts (about 0.2 to 1 s of a real core). Under emulation the counts are
// deterministic up to the counter's resolution, so the QEMU builds lower the budget (-DPROFILER_BUDGET=...).
#ifndef PROFILER_MAX_SAMPLES
#define PROFILER_MAX_SAMPLES 31
#endif
#ifndef PROFILER_MIN_SAMPLES
#define PROFILER_MIN_SAMPLES 5
#endif
#ifndef PROFILER_BUDGET
#define PROFILER_BUDGET 200000000u
#endif
#ifndef PROFILER_WARMUP
#define PROFILER_WARMUP 3
#endif
constexpr int kWarmup = PROFILER_WARMUP;  // an emulator's counts are deterministic: edgenas lut build uses 1
constexpr int kMaxSamples = PROFILER_MAX_SAMPLES;
constexpr int kMinSamples = PROFILER_MIN_SAMPLES;
constexpr uint64_t kBudget = PROFILER_BUDGET;
static_assert(kMinSamples >= 1 && kMinSamples <= kMaxSamples, "PROFILER_MIN_SAMPLES out of range");
alignas(16) uint8_t g_arena[ARENA_BYTES];  // -DARENA_BYTES=<largest arena_bytes in the set (+ a margin)>
bool g_counter_runs = false;               // checked at boot: QEMU, for one, has no DWT cycle counter

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
  if (!g_counter_runs) {
    say("ERROR %d the counter (%s) does not advance: no cycle counter on this core or emulator", i,
        board_count_unit());
    return;
  }
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
  uint32_t s[kMaxSamples];
  uint64_t total = 0;
  int n = 0;
  while (n < kMaxSamples && (n < kMinSamples || total < kBudget)) {
    const uint64_t t0 = board_count();
    if (interp.Invoke() != kTfLiteOk) { say("ERROR %d Invoke failed", i); return; }
    s[n] = static_cast<uint32_t>(board_count() - t0);
    total += s[n++];
  }
  uint32_t med = median(s, n), dev[kMaxSamples];
  for (int j = 0; j < n; ++j) dev[j] = s[j] > med ? s[j] - med : med - s[j];
  say("RESULT %d %lu %lu %d %s", i, (unsigned long)med, (unsigned long)median(dev, n), n, e.sha8);
}

void header() {
  say("EDGENAS-LUT 1 device=%s keys=%d clock_hz=%lu set=%s count=%s", kProfileDevice, kProfileSetSize,
      (unsigned long)board_clock_hz(), kProfileSetId, board_count_unit());
}

bool counter_runs() {
  const uint64_t c0 = board_count();
  for (volatile int k = 0; k < 100000; k = k + 1) {}
  return board_count() != c0;
}

}  // namespace

int main() {
  board_init();
  g_counter_runs = counter_runs();
  header();
  char line[64];
  for (;;) {
    board_read_line(line, sizeof(line));
    if (strncmp(line, "RUN ", 4) == 0) run(atoi(line + 4));
    else if (strcmp(line, "HELLO") == 0) header();
    else if (strcmp(line, "END") == 0) say("BYE");
  }
}
