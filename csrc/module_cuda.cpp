// Python module object for mamba_kernels._cuda. The ops are registered with TORCH_LIBRARY_FRAGMENT
// in the per-family *_bind_cuda.cpp files when this library is loaded.
#include <Python.h>

extern "C" PyMODINIT_FUNC PyInit__cuda(void) {
  static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_cuda", "mamba_kernels CUDA ops", -1, nullptr};
  return PyModule_Create(&def);
}
