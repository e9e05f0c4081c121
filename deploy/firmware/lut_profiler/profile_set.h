// The profile set written by `edgenas lut profile-set` (profile_set.cc): one single-operator int8 model per
// LUT key, with the arena it needs on the host (an upper bound on a 32-bit MCU) and the first 8 hex digits of
// its sha256, which the board echoes so the host can check it runs the models the manifest lists.
#pragma once
#include <cstddef>

struct ProfileEntry {
  const unsigned char* model;
  size_t model_bytes;
  size_t arena_bytes;
  const char* sha8;
  const char* key;
};

extern const ProfileEntry kProfileSet[];
extern const int kProfileSetSize;
extern const char kProfileSetId[];
extern const char kProfileDevice[];
