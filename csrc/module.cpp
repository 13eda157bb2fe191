// `pysnn._C`: an empty Python module. Importing it loads the shared library,
// whose static initialisers register every op with the dispatcher; the public
// API is `torch.ops.pysnn.*`. Plain Python.h, no pybind11: nothing crosses
// this module's boundary, and torch/extension.h alone took longer to compile
// than all of our kernels together.
#include <Python.h>

extern "C" PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", "pysnn compiled kernels; use torch.ops.pysnn.* or pysnn.ops", -1, nullptr,
  };
  return PyModule_Create(&module_def);
}
