// TPTT adapter reader (core/model/tptt_adapter.h) with fuzzed JSON. The first byte picks the file the
// rest of the input becomes: even -> tptt_config.json (no tensors); odd -> adapter_config.json of a PEFT
// folder beside a fixed valid tptt_config.json. The reader must answer a status, never throw or crash.
#include <fstream>

#include "core/model/tptt_adapter.h"
#include "fuzz/fuzz_util.h"

namespace {

titand::ModelConfig Config() {
  titand::ModelConfig c;
  c.arch = "llama";
  c.vocab_size = 16;
  c.hidden_size = 8;
  c.intermediate_size = 16;
  c.num_layers = 2;
  c.num_heads = 2;
  c.num_kv_heads = 1;
  c.head_dim = 4;
  c.max_position = 64;
  return c;
}

constexpr char kValidConfig[] =
    R"({"format": "titand-tptt", "version": 1, "base_model": "m", "operator": "linear",
        "feature_map": "tptt", "window": 4, "gates": "constant", "constants": {"b": 0.5, "a": 0.5},
        "layers": [0, 1], "mu": 0.5, "lora": null})";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string dir = titand::fuzz::ScratchDir() + "/adapter";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const bool peft = data[0] & 1;
  const std::string json(reinterpret_cast<const char*>(data + 1), size - 1);
  if (peft) {
    std::ofstream(dir + "/tptt_config.json") << kValidConfig;
    std::ofstream(dir + "/adapter_config.json") << json;
  } else {
    std::ofstream(dir + "/tptt_config.json") << json;
  }
  (void)titand::ReadTpttAdapter(dir, Config());
  return 0;
}
