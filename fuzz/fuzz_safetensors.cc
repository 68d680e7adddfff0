// safetensors reader (core/weights/safetensors_file.h) on arbitrary bytes, then every tensor converted
// to float32 as the loader does.
#include "core/weights/safetensors_file.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = titand::fuzz::WriteScratch("in.safetensors", data, size);
  auto f = titand::SafetensorsFile::Open(path);
  if (!f.ok()) return 0;
  std::vector<float> out;
  for (const auto& t : (*f)->tensors()) (void)(*f)->ReadAsFloat(t, &out);
  return 0;
}
