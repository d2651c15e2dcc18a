// Cooperative fibers for the CPU emulations of the CUDA kernels (cuda_runtime.h here, verify/verify_emu_shim.h):
// a block's CUDA threads run as ucontext fibers on one OS thread, round robin, each until it waits at a barrier.
// Why not an OS thread per CUDA thread: with 256 lanes on a 2-core machine every barrier is a futex storm (the
// verify family's std::thread emulation spent ~6 minutes of CI on one group of cases). Lanes interleave only at
// barriers, so the emulation checks logic and indexing, not the GPU's weaker memory ordering.
#pragma once
#include <ucontext.h>

#include <cstddef>

namespace emu_fiber {

// A barrier of `n` fibers: arrivals count up; the last one opens the next generation.
struct Barrier {
  unsigned n = 0, count = 0, gen = 0;
};
struct Fiber {
  ucontext_t uc;
  unsigned shfl_parity = 0;  // every lane of a warp runs the same sequence of shuffles
  unsigned mma_parity = 0;   // and of mma.sync
  bool done = false;
};
inline Fiber* fibers = nullptr;  // the running block's
// Counts events by which some fiber got on (an arrival at a barrier, a barrier or an mbarrier phase opening, a fiber
// finishing): a waiter that sees it unchanged over a whole round knows that every fiber is waiting.
inline unsigned long long progress = 0;
inline unsigned cur = 0;         // the running fiber
inline ucontext_t sched_uc;
constexpr size_t kStack = 256 * 1024;

inline void yield() { swapcontext(&fibers[cur].uc, &sched_uc); }
// Opens b's next generation once `count` arrivals (count > 0) cover its n fibers; whether it did.
inline bool open_if_full(Barrier& b) {
  ++progress;
  if (b.count == 0 || b.count < b.n) return false;
  b.count = 0;
  ++b.gen;
  return true;
}
// Counts this fiber at b without waiting (bar.arrive).
inline void arrive(Barrier& b) {
  ++b.count;
  open_if_full(b);
}
inline void arrive_and_wait(Barrier& b) {
  const unsigned g = b.gen;
  ++b.count;
  if (open_if_full(b)) return;
  while (b.gen == g) yield();
}
// A fiber that leaves the kernel no longer counts for b (as an exited CUDA thread for __syncthreads): the others
// waiting there go on once the rest have arrived.
inline void drop(Barrier& b) {
  if (b.n > 0) --b.n;
  open_if_full(b);
}

inline void (*fiber_body)(void*) = nullptr;
inline void* fiber_arg = nullptr;
inline void (*fiber_exit)(unsigned) = nullptr;  // called with the fiber's index when its body returns (or null)
inline void fiber_entry() {
  fiber_body(fiber_arg);
  if (fiber_exit) fiber_exit(cur);
  fibers[cur].done = true;  // then returns to sched_uc (uc_link)
  ++progress;
}

// Body f (a callable without arguments) for the fibers started next; it must outlive their run.
template <class F>
inline void set_body(F& f) {
  fiber_body = [](void* a) { (*static_cast<F*>(a))(); };
  fiber_arg = const_cast<void*>(static_cast<const void*>(&f));
}

// Starts fibers 0..n-1 of fs (stack t at stacks + t kStack) at the body and runs them round robin until every
// one is done; on_resume(t) runs before fiber t is resumed (to set the emulated thread index).
template <class R>
inline void run_block(Fiber* fs, unsigned n, char* stacks, R&& on_resume) {
  fibers = fs;
  for (unsigned t = 0; t < n; ++t) {
    fs[t] = Fiber{};
    getcontext(&fs[t].uc);
    fs[t].uc.uc_stack.ss_sp = stacks + kStack * t;
    fs[t].uc.uc_stack.ss_size = kStack;
    fs[t].uc.uc_link = &sched_uc;
    makecontext(&fs[t].uc, fiber_entry, 0);
  }
  for (unsigned left = n; left > 0;) {
    for (unsigned t = 0; t < n; ++t) {
      if (fs[t].done) continue;
      cur = t;
      on_resume(t);
      swapcontext(&sched_uc, &fs[t].uc);
      if (fs[t].done) --left;
    }
  }
}

}  // namespace emu_fiber
