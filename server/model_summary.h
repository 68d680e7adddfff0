// What GetModelInfo reports: filled by main from the loaded runtime (a plain value type, so the gRPC
// service needs no torch header).
#pragma once

#include <cstdint>
#include <string>

namespace titand {

struct ModelSummary {
  std::string model_id;
  std::string model_path;
  std::string format;
  std::string architecture;
  std::string adapter_id;
  std::string dtype;
  std::string weights;       // CausalLM::WeightFormatSummary()
  int64_t weight_bytes = 0;
  int64_t vocab_size = 0;
  int64_t num_layers = 0;
  int64_t hidden_size = 0;
  int32_t eos_token_id = -1;
  int64_t max_prompt_tokens = 0;
  int64_t max_new_tokens = 0;
  int64_t max_queue = 0;
  int64_t max_running = 0;
};

}  // namespace titand
