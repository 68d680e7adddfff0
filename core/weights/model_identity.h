// The identity of a base model, "<name>@<hex16>": what adapters and session snapshots are bound to.
//   GGUF:        name = metadata general.name ("" if absent); hex16 = first 16 lowercase hex digits of
//                SHA-256 over the raw stored bytes of token_embd.weight (no dequantisation), i.e. the
//                n_elements / block_size * type_size bytes at data_start + offset (docs/adapter-format.md).
//   safetensors: name = config.json "_name_or_path" (else "model_type", else ""); hex16 = the same digest
//                over the raw stored bytes of model.embed_tokens.weight (in whichever shard holds it).
// The two forms of one model generally differ (different stored bytes); a loader compares whole strings.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "core/weights/gguf_file.h"

namespace titand {

// NOT_FOUND if token_embd.weight is missing; INVALID_ARGUMENT if general.name is not a string.
absl::StatusOr<std::string> GgufBaseModelId(const GgufFile& f);

// `dir` is a Hugging Face model directory (config.json + model.safetensors or an index with shards).
// NOT_FOUND if config.json, the shards or model.embed_tokens.weight are missing; INVALID_ARGUMENT for
// a config.json that is not a JSON object.
absl::StatusOr<std::string> SafetensorsBaseModelId(const std::string& dir);

}  // namespace titand
