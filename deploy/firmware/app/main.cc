// EdgeNAS emulation app: runs one firmware bundle (edgenas bundle) once under QEMU and reports, over the
// semihosting console, what the host compares and records. Built by deploy/emulate.py; see
// deploy/firmware/README.md.
//
// Inputs (generated next to this file by the build):
//   edgenas_bundle.h   includes the bundle's <name>_model_data.h, <name>_op_resolver.h, <name>_model_settings.h
//                      and defines EDGENAS_MODEL_DATA, EDGENAS_OP_RESOLVER, EDGENAS_REGISTER_OPS;
//   edgenas_input.cc   g_edgenas_input[] / g_edgenas_input_len: the input tensor's bytes (already quantised).
// Compile-time settings: EDGENAS_ARENA_BYTES (the measuring arena, default 2 MiB), EDGENAS_MAX_EVENTS.
//
// Report (one item per line, between EDGENAS-BEGIN and EDGENAS-END; integers in decimal):
//   calib <loop_instructions> <counter_delta>     a loop of known length, to check the counter's scale
//   settings_arena <kTensorArenaSize> <0|1>       whether the bundle's kTensorArenaSize allocates
//   arena_used_bytes <n>                          MicroInterpreter::arena_used_bytes() after AllocateTensors
//   invoke <counter_delta>                        the whole Invoke()
//   op <i> <tag> <counter_delta>                  each operator, in execution order (MicroProfilerInterface)
//   output <tensor_index> <hex bytes>             each output tensor
// Counter units: see edgenas_counter.h of the platform (SysTick ticks on Cortex-M, minstret on RISC-V).
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>

#include "edgenas_bundle.h"
#include "edgenas_counter.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_profiler_interface.h"

#ifndef EDGENAS_ARENA_BYTES
#define EDGENAS_ARENA_BYTES (2u << 20)
#endif
#ifndef EDGENAS_MAX_EVENTS
#define EDGENAS_MAX_EVENTS 2048
#endif

extern const unsigned char g_edgenas_input[];
extern const unsigned int g_edgenas_input_len;

namespace {

alignas(16) uint8_t g_arena[EDGENAS_ARENA_BYTES];

// Records the counter at the start and end of every event TFLM reports while `recording` is set; during
// Invoke() the top-level events are the operators, in execution order.
class OpProfiler : public tflite::MicroProfilerInterface {
 public:
  bool recording = false;
  uint32_t count = 0;
  const char* tags[EDGENAS_MAX_EVENTS];
  uint64_t begin[EDGENAS_MAX_EVENTS];
  uint64_t end[EDGENAS_MAX_EVENTS];
  uint16_t depth[EDGENAS_MAX_EVENTS];
  uint16_t open = 0;

  uint32_t BeginEvent(const char* tag) override {
    if (!recording || count >= EDGENAS_MAX_EVENTS) return EDGENAS_MAX_EVENTS;
    uint32_t h = count++;
    tags[h] = tag;
    depth[h] = open++;
    begin[h] = edgenas_counter_read();
    return h;
  }
  void EndEvent(uint32_t h) override {
    uint64_t now = edgenas_counter_read();
    if (h >= EDGENAS_MAX_EVENTS) return;
    end[h] = now;
    --open;
  }
};

OpProfiler g_profiler;

__attribute__((noinline)) void calibration_loop(uint32_t n) {
  // 2 instructions per iteration on both ISAs (decrement, branch), plus a few around the loop.
#if defined(__arm__)
  __asm__ volatile(
      "1: subs %0, %0, #1\n\t"
      "bne 1b\n\t"
      : "+r"(n)::"cc");
#else
  __asm__ volatile(
      "1: addi %0, %0, -1\n\t"
      "bnez %0, 1b\n\t"
      : "+r"(n));
#endif
}

// Decimal text of a 64-bit count (newlib-nano's printf has no %llu).
const char* u64(uint64_t v, char (&buf)[24]) {
  char* p = buf + sizeof(buf) - 1;
  *p = 0;
  do {
    *--p = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  return p;
}

void print_hex(const uint8_t* p, size_t n) {
  static const char hex[] = "0123456789abcdef";
  char buf[129];
  size_t k = 0;
  for (size_t i = 0; i < n; ++i) {
    buf[k++] = hex[p[i] >> 4];
    buf[k++] = hex[p[i] & 15];
    if (k == 128) {
      buf[k] = 0;
      fputs(buf, stdout);
      k = 0;
    }
  }
  buf[k] = 0;
  fputs(buf, stdout);
}

bool settings_arena_allocates(const tflite::Model* model) {
  static EDGENAS_OP_RESOLVER resolver;
  static bool registered = false;
  if (!registered) {
    EDGENAS_REGISTER_OPS(resolver);
    registered = true;
  }
  if (static_cast<size_t>(kTensorArenaSize) > sizeof(g_arena)) return false;
  alignas(tflite::MicroInterpreter) static uint8_t storage[sizeof(tflite::MicroInterpreter)];
  auto* interp = new (storage) tflite::MicroInterpreter(model, resolver, g_arena, kTensorArenaSize);
  bool ok = interp->AllocateTensors() == kTfLiteOk;
  interp->~MicroInterpreter();
  return ok;
}

}  // namespace

int main() {
  edgenas_counter_init();
  printf("EDGENAS-BEGIN\n");

  const uint32_t kCalib = 1000000;
  uint64_t t0 = edgenas_counter_read();
  calibration_loop(kCalib / 2);
  uint64_t t1 = edgenas_counter_read();
  char nb[24];
  printf("calib %lu %s\n", (unsigned long)kCalib, u64(t1 - t0, nb));

  const tflite::Model* model = tflite::GetModel(EDGENAS_MODEL_DATA);
  bool settings_ok = settings_arena_allocates(model);
  printf("settings_arena %d %d\n", (int)kTensorArenaSize, settings_ok ? 1 : 0);

  static EDGENAS_OP_RESOLVER resolver;
  if (EDGENAS_REGISTER_OPS(resolver) != kTfLiteOk) {
    printf("error registering operators\nEDGENAS-END\n");
    return 1;
  }
  static tflite::MicroInterpreter interpreter(model, resolver, g_arena, sizeof(g_arena), nullptr,
                                              &g_profiler);
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    printf("error AllocateTensors failed in a %lu-byte arena\nEDGENAS-END\n", (unsigned long)sizeof(g_arena));
    return 1;
  }
  printf("arena_used_bytes %lu\n", (unsigned long)interpreter.arena_used_bytes());

  TfLiteTensor* in = interpreter.input(0);
  if (in->bytes != g_edgenas_input_len) {
    printf("error input is %lu bytes, the model takes %lu\nEDGENAS-END\n", (unsigned long)g_edgenas_input_len,
           (unsigned long)in->bytes);
    return 1;
  }
  memcpy(in->data.raw, g_edgenas_input, in->bytes);

  g_profiler.recording = true;
  uint64_t a = edgenas_counter_read();
  TfLiteStatus st = interpreter.Invoke();
  uint64_t b = edgenas_counter_read();
  g_profiler.recording = false;
  if (st != kTfLiteOk) {
    printf("error Invoke failed\nEDGENAS-END\n");
    return 1;
  }
  printf("invoke %s\n", u64(b - a, nb));
  uint32_t op = 0;
  for (uint32_t i = 0; i < g_profiler.count; ++i) {
    if (g_profiler.depth[i] != 0) continue;
    printf("op %lu %s %s\n", (unsigned long)op++, g_profiler.tags[i],
           u64(g_profiler.end[i] - g_profiler.begin[i], nb));
  }
  for (size_t k = 0; k < interpreter.outputs_size(); ++k) {
    TfLiteTensor* out = interpreter.output(k);
    printf("output %lu ", (unsigned long)k);
    print_hex(out->data.uint8, out->bytes);
    printf("\n");
  }
  printf("EDGENAS-END\n");
  fflush(stdout);
  return 0;
}
