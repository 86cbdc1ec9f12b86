// The dsa_ops operator schemas, and the Python module stub that loads them (import dsa_ops._C); a build
// without the CUDA kernels gives the module the reason, `cuda_not_built`.
#include <Python.h>
#include <torch/library.h>

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  PyObject* module = PyModule_Create(&module_def);
#ifdef DSA_OPS_CUDA_NOT_BUILT
  // Why this build holds no CUDA kernels (setup.py), as the UTF-8 bytes' codes.
  static const unsigned char reason[] = {DSA_OPS_CUDA_NOT_BUILT, 0};
  if (module != nullptr &&
      PyModule_AddStringConstant(module, "cuda_not_built", reinterpret_cast<const char*>(reason)) != 0) {
    Py_DECREF(module);
    return nullptr;
  }
#endif
  return module;
}
}

TORCH_LIBRARY(dsa_ops, m) {
  m.def("segment_pool(Tensor x, int num_segments, int channels) -> Tensor");
  m.def("segment_pool_backward(Tensor grad_pooled, Tensor x, int num_segments) -> Tensor");
  m.def("aggregate(Tensor x, Tensor weight, int num_segments, bool identity) -> Tensor");
  m.def(
      "aggregate_grad_input(Tensor grad_y, Tensor weight, Tensor? grad_pooled, int num_segments, "
      "bool identity) -> Tensor");
  m.def(
      "aggregate_grad_weight(Tensor grad_y, Tensor x, int num_segments, int channels, int kernel_size) "
      "-> Tensor");
  m.def(
      "dsa_forward(Tensor x, Tensor first_weight, Tensor bn_weight, Tensor bn_bias, Tensor running_mean, "
      "Tensor running_var, Tensor second_weight, int num_segments, int channels, bool training, float eps, "
      "bool identity) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "dsa_forward_(Tensor(a!) x, Tensor first_weight, Tensor bn_weight, Tensor bn_bias, Tensor running_mean, "
      "Tensor running_var, Tensor second_weight, int num_segments, int channels, bool training, float eps, "
      "bool identity) -> (Tensor, Tensor)");
  m.def(
      "dsa_backward(Tensor grad_y, Tensor x, Tensor pooled, Tensor mean, Tensor var, Tensor first_weight, "
      "Tensor bn_weight, Tensor bn_bias, Tensor second_weight, int num_segments, bool training, float eps, "
      "bool identity) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
}
