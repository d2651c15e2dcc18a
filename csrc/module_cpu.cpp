// Python module object for mamba_kernels._C. The ops themselves are registered with
// TORCH_LIBRARY_FRAGMENT in the per-family *_bind_cpu.cpp files when this library is loaded;
// no pybind11 / torch/extension.h here, to keep the build short.
#include <Python.h>

extern "C" PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_C", "mamba_kernels C++ CPU ops", -1, nullptr};
  return PyModule_Create(&def);
}
