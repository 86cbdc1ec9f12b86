// The dsa_ops operator schemas, and the Python module stub that loads them (import dsa_ops._C), which
// holds the torch version built against (`torch_version`), the GPU architectures the CUDA kernels were
// built for (`cuda_architectures`, e.g. "compute_90 sm_80 sm_90"), in a build without the CUDA kernels the
// reason (`cuda_not_built`), and `cpu_conversions()`: the instructions the CPU kernels convert float16 and
// bfloat16 with on this machine.
#include <Python.h>
#include <torch/library.h>

#include "cpu/convert.h"

namespace {

PyObject* cpu_conversions(PyObject*, PyObject*) {
  return PyUnicode_FromString(dsa_ops::cpu::conversion_instructions());
}

PyMethodDef module_methods[] = {
    {"cpu_conversions", cpu_conversions, METH_NOARGS, "The instructions of the CPU's float16/bfloat16 conversions"},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, module_methods};
  PyObject* module = PyModule_Create(&module_def);
  if (module == nullptr) return nullptr;
  // setup.py's string macros: a string's UTF-8 bytes' codes
  const auto add_string = [module](const char* name, const unsigned char* text) {
    return PyModule_AddStringConstant(module, name, reinterpret_cast<const char*>(text)) == 0;
  };
  static const unsigned char torch_version[] = {DSA_OPS_TORCH_VERSION, 0};  // the torch built against
  bool added = add_string("torch_version", torch_version);
#ifdef DSA_OPS_CUDA_ARCHITECTURES
  static const unsigned char cuda_architectures[] = {DSA_OPS_CUDA_ARCHITECTURES, 0};
  added = added && add_string("cuda_architectures", cuda_architectures);
#endif
#ifdef DSA_OPS_CUDA_NOT_BUILT
  static const unsigned char cuda_not_built[] = {DSA_OPS_CUDA_NOT_BUILT, 0};  // why no CUDA kernels
  added = added && add_string("cuda_not_built", cuda_not_built);
#endif
  if (!added) {
    Py_DECREF(module);
    return nullptr;
  }
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
