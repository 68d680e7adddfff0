// GGUF reader (core/weights/gguf_file.h) on arbitrary bytes, then what the loader reads from an accepted
// file: the model config, the tokenizer and every (small) tensor dequantised. Any crash, sanitizer
// report or escaping exception is a finding.
#include "core/model/model_config.h"
#include "core/tokenizer/tokenizer.h"
#include "core/weights/gguf_file.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = titand::fuzz::WriteScratch("in.gguf", data, size);
  auto f = titand::GgufFile::Open(path);
  if (!f.ok()) return 0;
  (void)titand::ConfigFromGguf(**f);
  (void)titand::Tokenizer::FromGguf(**f);
  std::vector<float> out;
  for (const auto& t : (*f)->tensors()) {
    if (t.nbytes <= (1u << 20)) (void)(*f)->ReadAsFloat(t, &out);
  }
  return 0;
}
