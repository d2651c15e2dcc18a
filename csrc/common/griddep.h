// Programmatic dependent launch (sm_90+): a primary grid lets the grid launched after it on the stream (with
// cudaLaunchAttributeProgrammaticStreamSerialization) start early, and that dependent waits for the primary's
// completion before it reads what the primary wrote. Elsewhere (sm_80, the CPU emulation) both are no-ops: a
// dependent is then launched after its primary has completed anyway.
#pragma once

namespace mamba_kernels {

// This CTA allows the dependent grid to launch (it starts once every CTA of this grid has called this or exited).
__device__ __forceinline__ void griddep_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
// Waits until the grid this one depends on (launched before it with programmatic serialization) has completed and
// its memory is visible; returns at once for a normal launch. MK_EMU_GRIDDEP_WAIT: the verify emulation's hook,
// which shows a block the primary grid's writes only from its wait on (tests/cuda_emu/verify/verify_emu_ops.cpp).
__device__ __forceinline__ void griddep_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#elif defined(MK_EMU_GRIDDEP_WAIT)
  MK_EMU_GRIDDEP_WAIT();
#endif
}

}  // namespace mamba_kernels
