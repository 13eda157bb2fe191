// `pysnn._C`: importing this pybind11 module loads the shared library, whose
// static initialisers register every op with the dispatcher. The public API
// is `torch.ops.pysnn.*`, not functions of this module.
#include <torch/extension.h>

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "pysnn compiled kernels; use torch.ops.pysnn.* or pysnn.ops";
}
