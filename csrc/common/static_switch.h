// Compile-time switches for runtime values, so one dispatch function instantiates the kernel
// templates instead of hand-written copies (the flash-attention static_switch.h idiom).
// Framework-free: plain C++ usable from .cu and .cpp files.
#pragma once

#define MK_BOOL_SWITCH(COND, CONST_NAME, ...) \
  [&] {                                       \
    if (COND) {                               \
      constexpr static bool CONST_NAME = true; \
      return __VA_ARGS__();                   \
    } else {                                  \
      constexpr static bool CONST_NAME = false; \
      return __VA_ARGS__();                   \
    }                                         \
  }()
