// The few C++ ABI symbols TFLM's objects refer to, for RISC-V: Debian ships no C++ runtime library for
// riscv64-unknown-elf (TFLM is built with -fno-exceptions -fno-rtti -fno-threadsafe-statics and never
// allocates from the heap; virtual destructors still refer to a sized operator delete).
#include <cstddef>
#include <cstdlib>

void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void* operator new(std::size_t n) { return std::malloc(n); }
extern "C" void __cxa_pure_virtual() { std::abort(); }
